package events_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/clipgatetest"
	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/events"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/mqttclient"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/internal/testutil"
	"github.com/clipgate/clipgate/topics"
)

// testTimeout bounds each stack test.
const testTimeout = 90 * time.Second

func testContext(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// consumerConfig is a consumer configuration for stack with the consumer account.
func consumerConfig(t testing.TB, stack *inproc.Stack, clientID string) events.Config {
	t.Helper()
	user, pw := stack.ServiceAccount(topics.RoleConsumer)
	return events.Config{
		BrokerURL:       stack.BrokerURL(),
		Username:        user,
		Password:        pw,
		ClientID:        clientID,
		Group:           "indexer",
		Topics:          stack.Topics(),
		Bucket:          stack.Bucket(),
		Prefix:          stack.Prefix(),
		OSS:             stack.AdminBucket(t),
		RetryBackoff:    5 * time.Millisecond,
		MaxBackoff:      20 * time.Millisecond,
		RedeliveryDelay: 50 * time.Millisecond,
	}
}

// startConsumer starts a consumer and closes it when the test ends.
func startConsumer(t testing.TB, cfg events.Config, h events.Handler) *events.Consumer {
	t.Helper()
	c, err := events.NewConsumer(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Start(testContext(t)); err != nil {
		t.Fatal(err)
	}
	return c
}

// recorder is a Handler that keeps every event it is given, by event ID, and signals
// each on a channel.
type recorder struct {
	mu    sync.Mutex
	calls map[string][]events.Event // event ID -> each call's event
	ch    chan *events.Event
	// fail, when set, decides whether a call fails.
	fail func(ev *events.Event, call int) error
}

func newRecorder() *recorder {
	return &recorder{calls: map[string][]events.Event{}, ch: make(chan *events.Event, 1024)}
}

func (r *recorder) handle(_ context.Context, ev *events.Event) error {
	r.mu.Lock()
	r.calls[ev.ID] = append(r.calls[ev.ID], *ev)
	n := len(r.calls[ev.ID])
	fail := r.fail
	r.mu.Unlock()
	if fail != nil {
		if err := fail(ev, n); err != nil {
			return err
		}
	}
	r.ch <- ev
	return nil
}

// callsOf returns the events the handler was called with for id.
func (r *recorder) callsOf(id string) []events.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]events.Event(nil), r.calls[id]...)
}

// next waits for the next accepted event.
func (r *recorder) next(t testing.TB, ctx context.Context) *events.Event {
	t.Helper()
	select {
	case ev := <-r.ch:
		return ev
	case <-ctx.Done():
		t.Fatalf("no event: %v", ctx.Err())
		return nil
	}
}

// collect waits for n accepted events and returns them by ID.
func (r *recorder) collect(t testing.TB, ctx context.Context, n int) map[string]*events.Event {
	t.Helper()
	got := make(map[string]*events.Event, n)
	for len(got) < n {
		ev := r.next(t, ctx)
		if _, dup := got[ev.ID]; dup {
			t.Fatalf("event %s accepted twice", ev.ID)
		}
		got[ev.ID] = ev
	}
	return got
}

// settled waits until c has counted n handled events and returns its stats. A handler
// signals the test before it returns, and the consumer counts the event after that; it
// counts handled last, so the other counters of those events are final by then.
func settled(t testing.TB, ctx context.Context, c *events.Consumer, n int64) events.Stats {
	t.Helper()
	var st events.Stats
	testutil.WaitFor(t, fmt.Sprintf("%d events counted as handled", n), func() bool {
		st = c.Stats()
		return st.Handled >= n
	})
	return st
}

// mqttClient connects a client (clean session) and closes it when the test ends.
func mqttClient(t testing.TB, stack *inproc.Stack, clientID, user, password string) *mqttclient.Client {
	t.Helper()
	c, err := mqttclient.New(mqttclient.Config{BrokerURL: stack.BrokerURL(), ClientID: clientID,
		Username: user, Password: password, NoReconnect: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatalf("connect %s: %v", clientID, err)
	}
	return c
}

// rawDevice connects as device id with its MQTT password, as a device kit would, but
// lets the test publish whatever it likes on the device's topics.
func rawDevice(t testing.TB, stack *inproc.Stack, id string) *mqttclient.Client {
	t.Helper()
	return mqttClient(t, stack, id, id, stack.DeviceKey(id).Password(time.Now()))
}

// adminClient connects with the stack's admin service account.
func adminClient(t testing.TB, stack *inproc.Stack) *mqttclient.Client {
	t.Helper()
	user, pw := stack.ServiceAccount(topics.RoleAdmin)
	return mqttClient(t, stack, "admin:"+randomHex(4), user, pw)
}

// publish publishes payload with QoS 1 and waits for the broker's PUBACK.
func publish(t testing.TB, c *mqttclient.Client, topic string, payload []byte) {
	t.Helper()
	tok := c.Publish(topic, 1, false, payload)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish on %s: %v", topic, tok.Error())
	}
}

// publishEvent encodes ev and publishes it on the upload topic of device from.
func publishEvent(t testing.TB, stack *inproc.Stack, c *mqttclient.Client, from string, ev *clipgate.UploadEvent) {
	t.Helper()
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	publish(t, c, stack.Topics().UploadEvent(from), b)
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// putObject stores size random bytes at key with the admin key and returns them.
func putObject(t testing.TB, b *oss.Bucket, key string, size int) []byte {
	t.Helper()
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	if err := b.PutObject(key, bytes.NewReader(data)); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	return data
}

// completedEvent is a hand-built completed event of device for key and data.
func completedEvent(stack *inproc.Stack, device, key string, data []byte) *clipgate.UploadEvent {
	return &clipgate.UploadEvent{
		V: protocol.Version, ID: "ev-" + randomHex(8), Device: device, Status: clipgate.StatusCompleted,
		Bucket: stack.Bucket(), Key: key, Size: int64(len(data)), CRC64: testutil.CRC64(data),
		UploadedAt: time.Now().UTC().Truncate(time.Second),
	}
}

// uploadClip uploads size random bytes as clip name from device kit k.
func uploadClip(t testing.TB, ctx context.Context, k *devicekit.Kit, dir, name string, size int) *clipgate.UploadEvent {
	t.Helper()
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	ev, err := k.Upload(ctx, devicekit.Clip{Path: p, RecordedAt: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatalf("upload %s: %v", name, err)
	}
	return ev
}

// flakyStat fails the first n HEADs with a real network error (a request to a closed
// loopback port through the SDK), then passes them to the real bucket.
type flakyStat struct {
	real, dead *oss.Bucket
	mu         sync.Mutex
	n          int
	calls      int
}

func newFlakyStat(t testing.TB, stack *inproc.Stack, n int) *flakyStat {
	t.Helper()
	id, secret := stack.AdminKey()
	c, err := oss.New("http://"+closedPort(t), id, secret, oss.ForcePathStyle(true),
		oss.AuthVersion(oss.AuthV4), oss.Region(stack.Region()), oss.Timeout(2, 2))
	if err != nil {
		t.Fatal(err)
	}
	dead, err := c.Bucket(stack.Bucket())
	if err != nil {
		t.Fatal(err)
	}
	return &flakyStat{real: stack.AdminBucket(t), dead: dead, n: n}
}

func (f *flakyStat) GetObjectDetailedMeta(key string, options ...oss.Option) (h http.Header, err error) {
	f.mu.Lock()
	f.calls++
	fail := f.calls <= f.n
	f.mu.Unlock()
	if fail {
		h, err = f.dead.GetObjectDetailedMeta(key, options...)
		if err == nil {
			return nil, errors.New("flakyStat: the dead endpoint answered")
		}
		return h, err
	}
	return f.real.GetObjectDetailedMeta(key, options...)
}

func (f *flakyStat) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// closedPort returns a loopback address on which nothing listens (a port just released).
func closedPort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// memDeduper is a Deduper over a map, standing in for the caller's database table.
type memDeduper struct {
	mu      sync.Mutex
	seen    map[string]bool
	seenErr error // returned by Seen while set
	marks   int
}

func (d *memDeduper) Seen(_ context.Context, device, id string) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.seenErr != nil {
		return false, d.seenErr
	}
	return d.seen[device+"/"+id], nil
}

func (d *memDeduper) Mark(_ context.Context, device, id string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.seen == nil {
		d.seen = map[string]bool{}
	}
	d.seen[device+"/"+id] = true
	d.marks++
	return nil
}

func (d *memDeduper) markCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.marks
}

func (d *memDeduper) setSeenErr(err error) {
	d.mu.Lock()
	d.seenErr = err
	d.mu.Unlock()
}

func fmtEvent(ev *events.Event) string {
	return fmt.Sprintf("%s (device %s, key %s): verified %v, reason %q (%s)", ev.ID, ev.Device, ev.Key, ev.Verified, ev.Reason, ev.Detail)
}

// stoppedStack starts a stack on addresses held for the test (clipgatetest.HoldAddr)
// and stops it; again starts it anew there, with the same keys: a broker restart, as far
// as its clients can tell.
func stoppedStack(t testing.TB) (stopped *inproc.Stack, again func() *inproc.Stack) {
	t.Helper()
	opts := inproc.Options{Dir: t.TempDir(), MQTTAddr: clipgatetest.HoldAddr(t),
		OSSAddr: clipgatetest.HoldAddr(t), STSAddr: clipgatetest.HoldAddr(t)}
	s := inproc.New(t, opts)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return s, func() *inproc.Stack { return inproc.New(t, opts) }
}
