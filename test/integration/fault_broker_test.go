package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/internal/soak"
	"github.com/clipgate/clipgate/topics"
)

// faultCluster starts a soak cluster (a Restartable inproc stack: parts restart in place, each
// behind a proxy that keeps its address) in a temporary directory, closed at the end.
func faultCluster(t *testing.T, opts soak.ClusterOptions) *inproc.Stack {
	t.Helper()
	opts.Dir = t.TempDir()
	c, err := soak.StartCluster(testContext(t, time.Minute), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("cluster close: %v", err)
		}
	})
	return c
}

// faultUploadSmall writes a small clip and uploads it; Upload must succeed.
func faultUploadSmall(ctx context.Context, t *testing.T, k *devicekit.Kit, dir, name string, size int) *protocol.UploadEvent {
	t.Helper()
	clip, err := writeClip(dir, name, size)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := k.Upload(ctx, devicekit.Clip{Path: clip.path})
	if err != nil {
		t.Fatalf("Upload %s: %v", name, err)
	}
	if ev.CRC64 != clip.crc64 || ev.Size != int64(size) {
		t.Fatalf("Upload %s returned size %d crc %s, want %d %s", name, ev.Size, ev.CRC64, size, clip.crc64)
	}
	return ev
}

// TestFaultBrokerRestartQueuedEvents: a backend consumer with a persistent session
// (clean session false, QoS 1) is away while three devices upload: four events each are
// acknowledged by the broker and queued for the consumer's session. The broker stops;
// the devices upload two more clips each while it is down (their events wait in the
// devices' outboxes). The broker starts again over the same data directory (pebble), the
// devices reconnect and flush their outboxes, and then the consumer comes back — without
// subscribing again: its stored session has the subscription and every one of the 18
// events. A last clip per device shows that the restored subscription keeps working.
//
// The consumer returns after the devices have flushed; a consumer coming back at the
// same moment as the devices' events is TestFaultSessionTakeoverRace.
func TestFaultBrokerRestartQueuedEvents(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 3*time.Minute)
	c := faultCluster(t, soak.ClusterOptions{})
	user, pw := c.ServiceAccount(topics.RoleConsumer)
	consumer := newFaultPersistentConsumer(c.BrokerURL(), user, pw, "fault-restart", c.Topics().EventFilter(""))
	if present, err := consumer.connect(ctx, true); err != nil || present {
		t.Fatalf("first connect: session present %v, %v; want a new session", present, err)
	}
	consumer.disconnect()

	const devices = 3
	dir := t.TempDir()
	kits := make([]*devicekit.Kit, devices)
	want := make([]map[string]*protocol.UploadEvent, devices)
	var all []string
	upload := func(d int, name string) {
		ev := faultUploadSmall(ctx, t, kits[d], dir, fmt.Sprintf("d%d-%s.mp4", d, name), 1000+d*100+len(want[d]))
		want[d][ev.ID] = ev
		all = append(all, ev.ID)
	}
	outbox := func(d int) []string {
		return faultDirEntries(t, filepath.Join(c.DeviceConfig(fmt.Sprintf("cam-brk-%d", d)).StateDir, "outbox"))
	}
	for d := range devices {
		kits[d] = newKit(ctx, t, c, fmt.Sprintf("cam-brk-%d", d), func(cfg *devicekit.Config) {
			cfg.RequestTimeout = 2 * time.Second // the wait for a PUBACK while the broker is down
		})
		want[d] = map[string]*protocol.UploadEvent{}
		for i := range 4 {
			upload(d, fmt.Sprintf("queued-%d", i))
		}
		if left := outbox(d); len(left) != 0 {
			t.Fatalf("device %d: events %v not acknowledged with the broker up", d, left)
		}
	}

	if err := c.StopBroker(); err != nil {
		t.Fatal(err)
	}
	for d := range devices {
		for i := range 2 {
			upload(d, fmt.Sprintf("down-%d", i))
		}
		if left := outbox(d); len(left) != 2 {
			t.Fatalf("device %d: outbox %v while the broker is down, want 2 events", d, left)
		}
	}
	if err := c.StartBroker(); err != nil {
		t.Fatal(err)
	}
	faultPoll(ctx, t, "the devices to flush their outboxes", func() bool {
		for d := range devices {
			if len(outbox(d)) != 0 {
				return false
			}
		}
		return true
	})

	present, err := consumer.connect(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.disconnect()
	if !present {
		t.Error("the broker did not restore the consumer's session (session present false)")
	}
	if missing := consumer.events.waitIDs(ctx, all); len(missing) > 0 {
		t.Fatalf("%d of %d events lost across the broker restart: %v", len(missing), len(all), missing)
	}
	var last []string
	for d := range devices {
		upload(d, "after")
		last = append(last, all[len(all)-1])
	}
	if missing := consumer.events.waitIDs(ctx, last); len(missing) > 0 {
		t.Fatalf("events after the restart never arrived: %v", missing)
	}
	for d := range devices {
		if failed := faultCheckEvents(t, consumer.events, fmt.Sprintf("cam-brk-%d", d), want[d]); failed != 0 {
			t.Errorf("device %d: %d failed events", d, failed)
		}
	}
	if n := consumer.malformed.Load(); n != 0 {
		t.Errorf("%d malformed messages", n)
	}
}

// TestFaultSessionTakeoverRace: a backend consumer with a persistent session comes back
// while 400 events wait for it and devices keep publishing. Every event the broker
// acknowledged must reach it.
//
// This is what happens after every broker restart (the consumer and the devices
// reconnect at once), reduced to its core: no restart is needed. mochi-mqtt's session
// takeover (Server.inheritClientSession) copies the old session's inflight messages to
// the new client, then clears the old session's — one synchronous pebble delete each —
// and only then registers the new client: a message published meanwhile is routed to the
// old session and is cleared with it, or left behind on it.
func TestFaultSessionTakeoverRace(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 3*time.Minute)
	c := faultCluster(t, soak.ClusterOptions{Workers: 1})
	user, pw := c.ServiceAccount(topics.RoleConsumer)
	consumer := newFaultPersistentConsumer(c.BrokerURL(), user, pw, "fault-takeover", c.Topics().EventFilter(""))
	if _, err := consumer.connect(ctx, true); err != nil {
		t.Fatal(err)
	}
	consumer.disconnect()

	// Raw device clients publish valid events (status "failed", the smallest valid event).
	var mu sync.Mutex
	var acked []string
	publish := func(ctx context.Context, dc *mqttClient, dev string) error {
		ev := &protocol.UploadEvent{V: protocol.Version, ID: randomHex(11), Device: dev,
			Status: protocol.StatusFailed, Error: "takeover probe", UploadedAt: time.Now().UTC()}
		payload, err := protocol.Encode(ev)
		if err != nil {
			return err
		}
		if err := dc.publish(ctx, c.Topics().UploadEvent(dev), payload); err != nil {
			return fmt.Errorf("%s: publish: %w", dev, err)
		}
		mu.Lock()
		acked = append(acked, ev.ID)
		mu.Unlock()
		return nil
	}
	connect := func(dev string) *mqttClient {
		dc, err := connectMQTT(ctx, c.BrokerURL(), dev, dev, c.DeviceKey(dev).Password(time.Now()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(dc.close)
		return dc
	}

	// 400 events queued for the absent consumer (20 devices, within their burst).
	g, gctx := errgroup.WithContext(ctx)
	for d := range 20 {
		dev := fmt.Sprintf("cam-q-%02d", d)
		dc := connect(dev)
		g.Go(func() error {
			for range 20 {
				if err := publish(gctx, dc, dev); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}

	// Five devices keep publishing, ten events a second each, while the consumer returns.
	sctx, stop := context.WithCancel(ctx)
	streams, _ := errgroup.WithContext(sctx)
	for d := range 5 {
		dev := fmt.Sprintf("cam-s-%d", d)
		dc := connect(dev)
		streams.Go(func() error {
			for sctx.Err() == nil {
				if err := publish(sctx, dc, dev); err != nil && sctx.Err() == nil {
					return err
				}
				time.Sleep(100 * time.Millisecond)
			}
			return nil
		})
	}
	mu.Lock()
	before := len(acked)
	mu.Unlock()
	faultPoll(ctx, t, "the stream to start", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= before+10
	})
	if _, err := consumer.connect(ctx, false); err != nil {
		t.Fatal(err)
	}
	defer consumer.disconnect()
	// Keep the stream going until the consumer has the queued events (the takeover is
	// over by then) and then some.
	mu.Lock()
	queued := slices.Clone(acked[:400])
	mu.Unlock()
	consumer.events.waitIDs(testContext(t, 30*time.Second), queued)
	mu.Lock()
	mark := len(acked)
	mu.Unlock()
	faultPoll(ctx, t, "more events after the takeover", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= mark+20
	})
	stop()
	if err := streams.Wait(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	all := slices.Clone(acked)
	mu.Unlock()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if missing := consumer.events.waitIDs(wctx, all); len(missing) > 0 {
		inQueue := 0
		for _, id := range missing {
			if slices.Contains(queued, id) {
				inQueue++
			}
		}
		st := c.BrokerStats()
		t.Fatalf("%d of %d events acknowledged by the broker never reached the consumer (persistent session, QoS 1): %d of the %d queued before it came back, %d of those published while it came back; broker: %d dropped (writes pending full), %d inflight dropped, %d inflight",
			len(missing), len(all), inQueue, len(queued), len(missing)-inQueue, st.MessagesDropped, st.InflightDropped, st.Inflight)
	}
}
