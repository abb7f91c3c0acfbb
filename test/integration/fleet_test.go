package integration

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/protocol"
)

// TestFleetUploads: 20 cameras upload two clips each at the same time. Every object is
// in OSS with the announced size and CRC-64, and the consumer receives exactly the events
// the devices sent (the same set of event IDs, with the same content).
func TestFleetUploads(t *testing.T) {
	t.Parallel()
	const (
		devices        = 20
		clipsPerDevice = 2
	)
	ctx := testContext(t, 3*time.Minute)
	stack := inproc.New(t, inproc.Options{Workers: 2})
	consumer, err := stack.Consumer(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	recorded := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

	var (
		mu    sync.Mutex
		sent  = map[string]*protocol.UploadEvent{}
		clips = map[string]clipFile{} // by object key
	)
	g, gctx := errgroup.WithContext(ctx)
	for d := range devices {
		id := fmt.Sprintf("cam-%02d", d)
		dir := t.TempDir()
		g.Go(func() error {
			kit, err := startKit(gctx, stack, id, nil)
			if err != nil {
				return err
			}
			defer kit.Close()
			for c := range clipsPerDevice {
				// Sizes from 1 byte to ~190 KiB, all different.
				name := fmt.Sprintf("clip-%d.mp4", c)
				clip, err := writeClip(dir, name, 1+d*9973+c*97)
				if err != nil {
					return err
				}
				ev, err := kit.Upload(gctx, devicekit.Clip{Path: clip.path, RecordedAt: recorded})
				if err != nil {
					return fmt.Errorf("%s: Upload: %w", id, err)
				}
				if want := devicekit.ObjectKey(stack.Prefix(), id, recorded, name); ev.Key != want {
					return fmt.Errorf("%s: event key %q, want %q", id, ev.Key, want)
				}
				mu.Lock()
				sent[ev.ID] = ev
				clips[ev.Key] = clip
				mu.Unlock()
			}
			return nil
		})
	}

	// Collect events while the devices upload, until every expected ID has arrived.
	got := map[string]*protocol.UploadEvent{}
	for len(got) < devices*clipsPerDevice {
		ev, err := consumer.Next(ctx)
		if err != nil {
			t.Fatalf("after %d distinct events: %v", len(got), err)
		}
		if prev, dup := got[ev.ID]; dup && !sameEvent(prev, ev) {
			t.Errorf("event %s delivered twice with different content: %+v, then %+v", ev.ID, prev, ev)
		}
		got[ev.ID] = ev
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}

	sentIDs, gotIDs := slices.Sorted(maps.Keys(sent)), slices.Sorted(maps.Keys(got))
	if !slices.Equal(sentIDs, gotIDs) {
		t.Fatalf("event IDs differ:\nsent     %v\nreceived %v", sentIDs, gotIDs)
	}
	if n := consumer.Malformed(); n != 0 {
		t.Errorf("the consumer dropped %d malformed events", n)
	}

	bucket := stack.AdminBucket(t)
	keys := map[string]bool{}
	for id, ev := range got {
		want := sent[id]
		if !sameEvent(ev, want) {
			t.Errorf("event %s: received %+v, sent %+v", id, ev, want)
		}
		if ev.Status != protocol.StatusCompleted || ev.Bucket != stack.Bucket() {
			t.Errorf("event %s: status %q bucket %q", id, ev.Status, ev.Bucket)
		}
		if keys[ev.Key] {
			t.Errorf("two events for key %s", ev.Key)
		}
		keys[ev.Key] = true
		clip := clips[ev.Key]
		if ev.Size != int64(len(clip.data)) || ev.CRC64 != clip.crc64 {
			t.Errorf("event %s announces %d bytes, CRC-64 %s; the file has %d bytes, CRC-64 %s",
				id, ev.Size, ev.CRC64, len(clip.data), clip.crc64)
		}
		if err := checkObject(bucket, ev.Key, clip.data, "Normal"); err != nil {
			t.Error(err)
		}
	}
}

// sameEvent compares the fields of two events that travel on the wire.
func sameEvent(a, b *protocol.UploadEvent) bool {
	return a.ID == b.ID && a.Device == b.Device && a.Status == b.Status && a.Bucket == b.Bucket &&
		a.Key == b.Key && a.Size == b.Size && a.CRC64 == b.CRC64 && a.ContentType == b.ContentType &&
		a.RecordedAt.Equal(b.RecordedAt) && a.UploadedAt.Equal(b.UploadedAt) && a.Attempts == b.Attempts &&
		maps.Equal(a.Metadata, b.Metadata) && a.Error == b.Error
}
