package nats_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/console"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/topics"
)

var recorded = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// startConsole runs the console on the stack's JetStream durable consumer "console" (on
// the mochi broker: its shared subscription),
// indexing into a SQLite database in a temporary directory.
func startConsole(t *testing.T, ctx context.Context, s *inproc.Stack) (*console.Console, *console.DB) {
	t.Helper()
	dir := t.TempDir()
	db, err := console.OpenSQLite(ctx, filepath.Join(dir, "console.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	client, err := s.OSSClient()
	if err != nil {
		t.Fatal(err)
	}
	bucket, err := client.Bucket(s.Bucket())
	if err != nil {
		t.Fatal(err)
	}
	hash, err := identity.HashPassword("operator-password")
	if err != nil {
		t.Fatal(err)
	}
	cfg := console.Config{
		Topics: s.Topics(), Bucket: bucket, Prefix: s.Prefix(), Store: db,
		Addr: "127.0.0.1:0", PasswordHash: hash,
		ReconcileInterval: 24 * time.Hour, // only events index here
	}
	if s.Cluster() != nil {
		if cfg.Events, err = s.EventsSource("console", "c1"); err != nil {
			t.Fatal(err)
		}
		if cfg.Status, err = s.StatusSource("c1-status"); err != nil {
			t.Fatal(err)
		}
	} else { // the mochi broker, for side-by-side figures
		cfg.BrokerURL = s.BrokerURL()
		cfg.Username, cfg.Password = s.ServiceAccount(topics.RoleConsumer)
		cfg.ClientID = cfg.Username + ":console"
	}
	c, err := console.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, db
}

// newKit connects a device kit, closed when the test ends.
func newKit(t *testing.T, ctx context.Context, s *inproc.Stack, id string) *devicekit.Kit {
	t.Helper()
	kit, err := devicekit.New(s.DeviceConfig(id))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kit.Close() })
	if err := kit.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	return kit
}

// writeClip writes n random bytes to dir/name.
func writeClip(t *testing.T, dir, name string, n int) string {
	t.Helper()
	b := make([]byte, n)
	_, _ = rand.Read(b)
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitIndexed waits until every key is in the index.
func waitIndexed(t *testing.T, ctx context.Context, db *console.DB, keys []string) {
	t.Helper()
	for _, k := range keys {
		for {
			if _, err := db.Clip(ctx, k); err == nil {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s was never indexed", k)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

// waitHandled waits until the console's consumer has counted n events handled.
func waitHandled(t *testing.T, ctx context.Context, c *console.Console, n int64) {
	t.Helper()
	for c.Stats().Consumer.Handled < n {
		select {
		case <-ctx.Done():
			t.Fatalf("the consumer handled %d events, want %d: %+v", c.Stats().Consumer.Handled, n, c.Stats().Consumer)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// countClips counts the clips of device in the index.
func countClips(t *testing.T, ctx context.Context, db *console.DB, device string) int {
	t.Helper()
	clips, err := db.Clips(ctx, console.ClipQuery{Device: device, Limit: console.MaxPageSize})
	if err != nil {
		t.Fatal(err)
	}
	if len(clips) == console.MaxPageSize {
		t.Fatalf("%s: a page is full; count with paging", device)
	}
	return len(clips)
}

func deviceName(i int) string { return fmt.Sprintf("cam-%02d", i) }

// fleet is devices uploading small clips in a loop until stopped.
type fleet struct {
	t     *testing.T
	ctx   context.Context
	names []string
	mu    sync.Mutex
	keys  []string // of the uploads the kit reported done
	done  atomic.Int64
	stop  chan struct{}
	wg    sync.WaitGroup
}

func startFleet(t *testing.T, ctx context.Context, s *inproc.Stack, devices int) *fleet {
	f := &fleet{t: t, ctx: ctx, stop: make(chan struct{})}
	for i := range devices {
		name := deviceName(i)
		f.names = append(f.names, name)
		kit := newKit(t, ctx, s, name)
		dir := t.TempDir()
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			for n := 0; ; n++ {
				select {
				case <-f.stop:
					return
				default:
				}
				p := writeClip(t, dir, fmt.Sprintf("c%04d.mp4", n), 2<<10)
				uctx, cancel := context.WithTimeout(ctx, time.Minute)
				ev, err := kit.Upload(uctx, devicekit.Clip{Path: p, RecordedAt: recorded})
				cancel()
				if err != nil {
					// An upload cut by the failover: its clip may or may not be stored; it
					// is not counted, and the next one goes on.
					t.Logf("%s: upload %d: %v", name, n, err)
					continue
				}
				f.mu.Lock()
				f.keys = append(f.keys, ev.Key)
				f.mu.Unlock()
				f.done.Add(1)
			}
		}()
	}
	t.Cleanup(f.halt)
	return f
}

func (f *fleet) halt() {
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	f.wg.Wait()
}

// progress waits until n more uploads have completed.
func (f *fleet) progress(what string, n int64) {
	f.t.Helper()
	target := f.done.Load() + n
	for f.done.Load() < target {
		select {
		case <-f.ctx.Done():
			f.t.Fatalf("%s: uploads stalled at %d, want %d", what, f.done.Load(), target)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// check stops the uploads and checks the index: every upload the kits reported done is
// indexed, and the consumer handled each indexed clip once.
func (f *fleet) check(c *console.Console, db *console.DB) {
	t := f.t
	t.Helper()
	f.halt()
	f.mu.Lock()
	defer f.mu.Unlock()
	t.Logf("%d uploads acknowledged", len(f.keys))
	waitIndexed(t, f.ctx, db, f.keys)
	total := 0
	for _, d := range f.names {
		total += countClips(t, f.ctx, db, d)
	}
	// Uploads cut by a failover may have stored their clip and sent their event: the
	// index may hold more clips than the acknowledged uploads, never fewer. Each of them
	// was handled once (later deliveries are duplicates).
	if total < len(f.keys) {
		t.Fatalf("%d clips indexed, %d uploads acknowledged", total, len(f.keys))
	}
	// The consumer counts an event handled after its commit: a moment after the index
	// shows it.
	waitHandled(t, f.ctx, c, int64(total))
	if h := c.Stats().Consumer.Handled; h != int64(total) {
		t.Fatalf("the consumer handled %d events for %d indexed clips", h, total)
	}
}

// onNode counts the fleet's devices whose first broker URL is node i's.
func (f *fleet) onNode(s *inproc.Stack, i int) int {
	n := 0
	for _, d := range f.names {
		if s.DeviceConfig(d).BrokerURL == s.Cluster().Nodes()[i].MQTTURL() {
			n++
		}
	}
	return n
}
