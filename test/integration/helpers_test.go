package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc64"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/broker"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/internal/tokenworker"
	"github.com/clipgate/clipgate/topics"
)

// headerObjectType is OSS's object type header: Normal, Multipart or Appendable.
const headerObjectType = "X-Oss-Object-Type"

// mqttTimeout bounds one MQTT handshake (CONNECT, SUBSCRIBE) of a test client.
const mqttTimeout = 10 * time.Second

// testContext returns a context that ends after d or when the test ends.
func testContext(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// newKit creates a device kit for id on stack (mod may adjust its config), connects it
// and closes it when the test ends.
func newKit(ctx context.Context, t testing.TB, stack *inproc.Stack, id string, mod func(*devicekit.Config)) *devicekit.Kit {
	t.Helper()
	k, err := startKit(ctx, stack, id, mod)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// startKit is newKit for goroutines: it returns errors instead of failing the test. The
// caller closes the kit.
func startKit(ctx context.Context, stack *inproc.Stack, id string, mod func(*devicekit.Config)) (*devicekit.Kit, error) {
	cfg := stack.DeviceConfig(id)
	if mod != nil {
		mod(&cfg)
	}
	k, err := devicekit.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: devicekit.New: %w", id, err)
	}
	if err := k.Connect(ctx); err != nil {
		k.Close()
		return nil, fmt.Errorf("%s: Connect: %w", id, err)
	}
	return k, nil
}

// clipFile is a clip written to disk by writeClip.
type clipFile struct {
	path  string
	data  []byte
	crc64 string // decimal, as in upload events and x-oss-hash-crc64ecma
}

var crcTable = crc64.MakeTable(crc64.ECMA)

func crcString(b []byte) string {
	return strconv.FormatUint(crc64.Checksum(b, crcTable), 10)
}

// writeClip writes size random bytes to dir/name.
func writeClip(dir, name string, size int) (clipFile, error) {
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		return clipFile{}, err
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		return clipFile{}, err
	}
	return clipFile{path: p, data: data, crc64: crcString(data)}, nil
}

// checkObject checks, with the admin's key, that key exists with the given content: HEAD
// reports its size, CRC-64 and object type, and GET returns exactly data.
func checkObject(b *oss.Bucket, key string, data []byte, objectType string) error {
	h, err := b.GetObjectDetailedMeta(key)
	if err != nil {
		return fmt.Errorf("HEAD %s: %w", key, err)
	}
	if got := h.Get("Content-Length"); got != strconv.Itoa(len(data)) {
		return fmt.Errorf("HEAD %s: Content-Length %s, want %d", key, got, len(data))
	}
	if got, want := h.Get(oss.HTTPHeaderOssCRC64), crcString(data); got != want {
		return fmt.Errorf("HEAD %s: %s %q, want %q", key, oss.HTTPHeaderOssCRC64, got, want)
	}
	if got := h.Get(headerObjectType); got != objectType {
		return fmt.Errorf("HEAD %s: %s %q, want %q", key, headerObjectType, got, objectType)
	}
	r, err := b.GetObject(key)
	if err != nil {
		return fmt.Errorf("GET %s: %w", key, err)
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("GET %s: %w", key, err)
	}
	if !bytes.Equal(got, data) {
		return fmt.Errorf("GET %s: %d bytes that differ from the %d uploaded", key, len(got), len(data))
	}
	return nil
}

// ossCode returns the OSS error code and HTTP status of err, or "" and 0 if err is not an
// OSS service error.
func ossCode(err error) (string, int) {
	var se oss.ServiceError
	if errors.As(err, &se) {
		return se.Code, se.StatusCode
	}
	var sp *oss.ServiceError
	if errors.As(err, &sp) && sp != nil {
		return sp.Code, sp.StatusCode
	}
	return "", 0
}

// wantOSSError fails the test unless err is the OSS error code with HTTP status 403.
func wantAccessDenied(t testing.TB, what string, err error) {
	t.Helper()
	code, status := ossCode(err)
	if code != "AccessDenied" || status != http.StatusForbidden {
		t.Errorf("%s: got error %v (code %q, status %d), want AccessDenied 403", what, err, code, status)
	}
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// signedRequest returns an auth request of device, signed with key, its nonce and its
// payload.
func signedRequest(key *devicekit.DeviceKey, device string, now time.Time, mode clipgate.Mode) (*protocol.AuthRequest, []byte, []byte, error) {
	nonce := make([]byte, protocol.NonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, nil, nil, err
	}
	id := make([]byte, 12)
	if _, err := rand.Read(id); err != nil {
		return nil, nil, nil, err
	}
	req := &protocol.AuthRequest{
		V:      protocol.Version,
		ID:     base64.RawURLEncoding.EncodeToString(id),
		Device: device,
		TS:     now.UTC().Format(time.RFC3339Nano),
		Nonce:  base64.RawURLEncoding.EncodeToString(nonce),
		Mode:   mode,
		KID:    key.KeyID,
	}
	req.Sig = identity.Sign(key.Request, req.SigningString())
	payload, err := protocol.Encode(req)
	return req, nonce, payload, err
}

// message is an MQTT message received by a test client.
type message struct {
	topic   string
	payload []byte
}

// mqttClient is a raw paho client (MQTT 3.1.1, clean session, no reconnect) that collects
// what it receives. Every message is kept until a test takes it, whatever its topic, so a
// reply that arrives before the test waits for it is never lost.
type mqttClient struct {
	client paho.Client
	lost   chan error // connection lost (buffered, first loss only)

	mu       sync.Mutex
	received []message     // in arrival order, not yet taken
	arrived  chan struct{} // closed and replaced at every arrival
}

// connectMQTT connects a raw client. The caller disconnects it (close).
func connectMQTT(ctx context.Context, url, clientID, username, password string) (*mqttClient, error) {
	return connectMQTTVia(ctx, nil, url, clientID, username, password)
}

// connectMQTTVia is connectMQTT with dialer (nil: paho's default) opening the socket,
// e.g. from another loopback source address (sourceDialer).
func connectMQTTVia(ctx context.Context, dialer *net.Dialer, url, clientID, username, password string) (*mqttClient, error) {
	c := &mqttClient{lost: make(chan error, 1), arrived: make(chan struct{})}
	opts := paho.NewClientOptions().
		AddBroker(url).
		SetClientID(clientID).
		SetUsername(username).
		SetPassword(password).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetOrderMatters(false).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(mqttTimeout).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			select {
			case c.lost <- err:
			default:
			}
		}).
		SetDefaultPublishHandler(c.receive)
	if dialer != nil {
		opts.SetDialer(dialer)
	}
	c.client = paho.NewClient(opts)
	if err := waitToken(ctx, c.client.Connect()); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *mqttClient) receive(_ paho.Client, m paho.Message) {
	c.add(message{m.Topic(), m.Payload()})
}

func (c *mqttClient) add(m message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.received = append(c.received, m)
	close(c.arrived)
	c.arrived = make(chan struct{})
}

// take removes and returns the oldest message that match accepts, if there is one, and
// otherwise a channel closed at the next arrival.
func (c *mqttClient) take(match func(message) bool) (message, bool, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, m := range c.received {
		if match(m) {
			c.received = append(c.received[:i], c.received[i+1:]...)
			return m, true, nil
		}
	}
	return message{}, false, c.arrived
}

// nextMatching returns the oldest message match accepts, waiting for one until ctx ends.
// Messages it does not accept stay for later calls.
func (c *mqttClient) nextMatching(ctx context.Context, what string, match func(message) bool) (message, error) {
	for {
		m, ok, arrived := c.take(match)
		if ok {
			return m, nil
		}
		select {
		case <-arrived:
		case <-ctx.Done():
			return message{}, fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		}
	}
}

// connectDevice connects a raw client as device id, with an MQTT password made from key.
func connectDevice(ctx context.Context, stack *inproc.Stack, id string, key *devicekit.DeviceKey) (*mqttClient, error) {
	return connectMQTT(ctx, stack.BrokerURL(), id, id, key.Password(time.Now()))
}

// randomDeviceKey is a well-formed device key of id with random keys, derived from no
// fleet key of the stack.
func randomDeviceKey(t testing.TB, id string) *devicekit.DeviceKey {
	t.Helper()
	fleet, err := identity.NewFleetKeyring()
	if err != nil {
		t.Fatal(err)
	}
	k, err := identity.NewDeviceKey(fleet, id)
	if err != nil {
		t.Fatal(err)
	}
	return (*devicekit.DeviceKey)(k)
}

// connectService connects a raw client with the stack's service account for role.
func connectService(ctx context.Context, stack *inproc.Stack, role topics.Role) (*mqttClient, error) {
	user, pw := stack.ServiceAccount(role)
	return connectMQTT(ctx, stack.BrokerURL(), broker.ServiceClientID(user, randomHex(6)), user, pw)
}

// subscribe subscribes to filter with QoS 1 and returns the broker's SUBACK code.
func (c *mqttClient) subscribe(ctx context.Context, filter string) (byte, error) {
	tok := c.client.Subscribe(filter, 1, nil)
	if err := waitToken(ctx, tok); err != nil {
		return 0, err
	}
	code, ok := tok.(*paho.SubscribeToken).Result()[filter]
	if !ok {
		return 0, fmt.Errorf("no SUBACK code for %s", filter)
	}
	return code, nil
}

// mustSubscribe subscribes and fails the test unless the broker grants the subscription.
func (c *mqttClient) mustSubscribe(ctx context.Context, t testing.TB, filter string) {
	t.Helper()
	code, err := c.subscribe(ctx, filter)
	if err != nil {
		t.Fatalf("subscribe %s: %v", filter, err)
	}
	if code > 2 {
		t.Fatalf("subscribe %s: refused (SUBACK %#x)", filter, code)
	}
}

// publish publishes payload with QoS 1 and waits for the PUBACK.
func (c *mqttClient) publish(ctx context.Context, topic string, payload []byte) error {
	return waitToken(ctx, c.client.Publish(topic, 1, false, payload))
}

// next returns the oldest message on topic; messages on other topics are kept.
func (c *mqttClient) next(ctx context.Context, topic string) (message, error) {
	return c.nextMatching(ctx, "a message on "+topic, func(m message) bool { return m.topic == topic })
}

// stream hands every message, oldest first, to the returned channel until ctx ends, for
// tests that wait on messages and other channels at once.
func (c *mqttClient) stream(ctx context.Context) <-chan message {
	ch := make(chan message)
	go func() {
		for {
			m, err := c.nextAny(ctx)
			if err != nil {
				return
			}
			select {
			case ch <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch
}

// nextAny returns the oldest message on any topic.
func (c *mqttClient) nextAny(ctx context.Context) (message, error) {
	return c.nextMatching(ctx, "a message", func(message) bool { return true })
}

// reply returns the next auth reply on topic, decoded.
func (c *mqttClient) reply(ctx context.Context, topic string) (*protocol.AuthReply, []byte, error) {
	m, err := c.next(ctx, topic)
	if err != nil {
		return nil, nil, err
	}
	r, err := protocol.DecodeAuthReply(m.payload)
	if err != nil {
		return nil, m.payload, fmt.Errorf("malformed auth reply %q: %w", m.payload, err)
	}
	return r, m.payload, nil
}

func (c *mqttClient) close() { c.client.Disconnect(100) }

// waitToken waits for a paho token or ctx.
func waitToken(ctx context.Context, tok paho.Token) error {
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// wantReplyError fails the test unless r is a refusal with code.
func wantReplyError(t testing.TB, what string, r *protocol.AuthReply, code protocol.Code) {
	t.Helper()
	switch {
	case r.OK:
		t.Errorf("%s: reply ok, want error %q", what, code)
	case r.Error == nil:
		t.Errorf("%s: reply without error, want %q", what, code)
	case r.Error.Code != code:
		t.Errorf("%s: reply error %q (%s), want %q", what, r.Error.Code, r.Error.Message, code)
	case r.Credentials != nil || r.Sealed != "":
		t.Errorf("%s: refusal carries credentials", what)
	}
}

// workerTotals sums the counters of the stack's token workers 0..n-1 (running ones).
func workerTotals(stack *inproc.Stack, n int) tokenworker.Stats {
	var sum tokenworker.Stats
	sum.Errors = map[protocol.Code]uint64{}
	for i := range n {
		s, ok := stack.WorkerStats(i)
		if !ok {
			continue
		}
		sum.Requests += s.Requests
		sum.OK += s.OK
		sum.Reused += s.Reused
		sum.STSCalls += s.STSCalls
		sum.Dropped += s.Dropped
		for c, v := range s.Errors {
			sum.Errors[c] += v
		}
	}
	return sum
}

// clock is a settable clock: real time plus an offset.
type clock struct{ off atomic.Int64 }

func newClock(offset time.Duration) *clock {
	c := &clock{}
	c.off.Store(int64(offset))
	return c
}

func (c *clock) Now() time.Time           { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) Set(offset time.Duration) { c.off.Store(int64(offset)) }

// forgetKeptCredentials removes the credentials a device's kits keep in its state
// directory (devicekit keeps them sealed on disk for a warm restart), so that its next kit
// asks a token worker.
func forgetKeptCredentials(stack *inproc.Stack, id string) error {
	kept, err := filepath.Glob(filepath.Join(stack.DeviceConfig(id).StateDir, "credentials-*.json"))
	if err != nil {
		return err
	}
	for _, f := range kept {
		if err := os.Remove(f); err != nil {
			return err
		}
	}
	return nil
}
