package nats_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/inproc"
)

// TestFullPath: a device uploads through the 3-node cluster and the console indexes the
// clip from the JetStream durable consumer on $MQTT_msgs.
func TestFullPath(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := inproc.New(t, inproc.Options{Engine: inproc.EngineNATS, Workers: 2})
	c, db := startConsole(t, ctx, s)
	kit := newKit(t, ctx, s, "cam-full")
	ev, err := kit.Upload(ctx, devicekit.Clip{Path: writeClip(t, t.TempDir(), "a.mp4", 4<<10), RecordedAt: recorded})
	if err != nil {
		t.Fatal(err)
	}
	waitIndexed(t, ctx, db, []string{ev.Key})
	clip, err := db.Clip(ctx, ev.Key)
	if err != nil || clip.Device != "cam-full" || clip.Size != 4<<10 {
		t.Fatalf("indexed %+v, %v", clip, err)
	}
	if st := c.Stats(); st.Consumer.Handled != 1 || st.Consumer.Verified != 1 {
		t.Fatalf("consumer stats %+v", st.Consumer)
	}
}

// TestFailoverWhileUploading: 20 devices upload continuously while the cluster loses, one
// after the other, the $MQTT_msgs stream leader, the JetStream meta leader and then a
// node with devices on it (each comes back before the next). Every upload the kit reported
// done is indexed, exactly once, and the devices carry on after each loss.
func TestFailoverWhileUploading(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	s := inproc.New(t, inproc.Options{Engine: inproc.EngineNATS, Workers: 2})
	c, db := startConsole(t, ctx, s)
	cl := s.Cluster()

	const devices = 20
	var (
		mu    sync.Mutex
		keys  []string
		done  atomic.Int64
		stop  = make(chan struct{})
		wg    sync.WaitGroup
		names = make([]string, devices)
	)
	for i := range devices {
		names[i] = deviceName(i)
		kit := newKit(t, ctx, s, names[i])
		dir := t.TempDir()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				p := writeClip(t, dir, fmt.Sprintf("c%04d.mp4", n), 2<<10)
				uctx, ucancel := context.WithTimeout(ctx, time.Minute)
				ev, err := kit.Upload(uctx, devicekit.Clip{Path: p, RecordedAt: recorded})
				ucancel()
				if err != nil {
					// An upload cut by the failover: its clip may or may not be stored; it
					// is not counted, and the next one goes on.
					t.Logf("%s: upload %d: %v", names[i], n, err)
					continue
				}
				mu.Lock()
				keys = append(keys, ev.Key)
				mu.Unlock()
				done.Add(1)
			}
		}()
	}
	// progress waits until n more uploads have completed.
	progress := func(what string, n int64) {
		t.Helper()
		target := done.Load() + n
		for done.Load() < target {
			select {
			case <-ctx.Done():
				t.Fatalf("%s: uploads stalled at %d, want %d", what, done.Load(), target)
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	progress("start", devices)

	kill := func(what string, i int) {
		t.Helper()
		t.Logf("stopping node %d (%s) after %d uploads", i, what, done.Load())
		cl.Stop(i)
		progress(what+" down", devices)
		if err := cl.Restart(i); err != nil {
			t.Fatal(err)
		}
		if err := cl.WaitMetaLeader(ctx); err != nil {
			t.Fatal(err)
		}
		progress(what+" back", devices)
	}
	i, err := cl.StreamLeader(ctx, "APP", "$MQTT_msgs")
	if err != nil {
		t.Fatal(err)
	}
	kill("$MQTT_msgs leader", i)
	if i, err = cl.MetaLeader(ctx); err != nil {
		t.Fatal(err)
	}
	kill("meta leader", i)
	// Devices are spread over the nodes by ID (DeviceConfig): node 0 has some.
	kill("a node with devices", 0)

	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d uploads acknowledged", len(keys))
	waitIndexed(t, ctx, db, keys)
	total := 0
	for _, d := range names {
		total += countClips(t, ctx, db, d)
	}
	// Uploads cut by a failover may have stored their clip and sent their event: the
	// index may hold more clips than the acknowledged uploads, never fewer. Each of them
	// was handled once (later deliveries are duplicates).
	if total < len(keys) {
		t.Fatalf("%d clips indexed, %d uploads acknowledged", total, len(keys))
	}
	if h := c.Stats().Consumer.Handled; h != int64(total) {
		t.Fatalf("the consumer handled %d events for %d indexed clips", h, total)
	}
}
