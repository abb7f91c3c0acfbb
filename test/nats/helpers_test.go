package nats_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/console"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/inproc"
)

var recorded = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// startConsole runs the console on the stack's JetStream durable consumer "console",
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
	evs, err := s.EventsSource("console", "c1")
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.StatusSource("c1-status")
	if err != nil {
		t.Fatal(err)
	}
	hash, err := identity.HashPassword("operator-password")
	if err != nil {
		t.Fatal(err)
	}
	c, err := console.New(console.Config{
		Events: evs, Status: st,
		Topics: s.Topics(), Bucket: bucket, Prefix: s.Prefix(), Store: db,
		Addr: "127.0.0.1:0", PasswordHash: hash,
		ReconcileInterval: 24 * time.Hour, // only events index here
	})
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
