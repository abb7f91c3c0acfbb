package integration

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	"golang.org/x/sync/errgroup"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/faultnet"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/protocol"
)

// faultPartitionLength is how long TestFaultNetworkPartition cuts the devices off.
const faultPartitionLength = 60 * time.Second

// TestFaultNetworkPartition: four devices reach the broker through a faultnet proxy; the
// network between them is cut for a full minute (live connections dropped, new ones
// black-holed). OSS stays reachable, so the devices upload three clips each meanwhile
// (one in parts); Upload succeeds and the events wait in the devices' outboxes — none
// reaches the consumer during the partition. After it heals the devices reconnect by
// themselves and every event arrives, each completed event once per clip under the ID
// Upload returned; uploads after the partition work as before.
//
// The test takes over a minute; it runs in parallel with the others.
func TestFaultNetworkPartition(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 5*time.Minute)
	stack := inproc.New(t, inproc.Options{})
	u, err := url.Parse(stack.BrokerURL())
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := faultnet.Listen(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	consumer, err := stack.Consumer(ctx, "") // on the broker's side of the cut
	if err != nil {
		t.Fatal(err)
	}
	events := newFaultEvents()
	go func() {
		for ev := range consumer.Events() {
			events.add(ev)
		}
	}()

	const devices = 4
	dir := t.TempDir()
	kits := startKits(ctx, t, stack, "cam-part", devices, func(c *devicekit.Config) {
		c.BrokerURL = "tcp://" + proxy.Addr()
		c.RequestTimeout = 3 * time.Second
		c.PartSize, c.MultipartThreshold = devicekit.MinPartSize, devicekit.MinPartSize
	})
	want := make([]map[string]*protocol.UploadEvent, devices)
	upload := func(ctx context.Context, d int, name string, size int) (*protocol.UploadEvent, error) {
		clip, err := writeClip(dir, fmt.Sprintf("d%d-%s.mp4", d, name), size)
		if err != nil {
			return nil, err
		}
		ev, err := kits[d].Upload(ctx, devicekit.Clip{Path: clip.path})
		if err != nil {
			return nil, fmt.Errorf("device %d: Upload %s: %w", d, name, err)
		}
		if ev.CRC64 != clip.crc64 {
			return nil, fmt.Errorf("device %d: %s: event CRC %s, file %s", d, name, ev.CRC64, clip.crc64)
		}
		return ev, nil
	}
	// uploadAll uploads the named clips on every device at once and returns the events.
	uploadAll := func(names []string, sizes []int) []string {
		t.Helper()
		evs := make([][]*protocol.UploadEvent, devices)
		g, gctx := errgroup.WithContext(ctx)
		for d := range devices {
			g.Go(func() error {
				for i, name := range names {
					ev, err := upload(gctx, d, name, sizes[i]+d)
					if err != nil {
						return err
					}
					evs[d] = append(evs[d], ev)
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for d := range devices {
			for _, ev := range evs[d] {
				want[d][ev.ID] = ev
				ids = append(ids, ev.ID)
			}
		}
		return ids
	}
	outboxes := func() int {
		n := 0
		for d := range devices {
			n += len(faultDirEntries(t, filepath.Join(stack.DeviceConfig(fmt.Sprintf("cam-part-%02d", d)).StateDir, "outbox")))
		}
		return n
	}
	for d := range devices {
		want[d] = map[string]*protocol.UploadEvent{}
		// Credentials before the cut: they last an hour, the partition a minute.
		if _, err := kits[d].Credentials(ctx); err != nil {
			t.Fatal(err)
		}
	}
	before := uploadAll([]string{"before"}, []int{2000})
	if missing := events.waitIDs(ctx, before); len(missing) > 0 {
		t.Fatalf("events before the partition never arrived: %v", missing)
	}

	cut := time.Now()
	proxy.Partition()
	during := uploadAll([]string{"during-1", "during-2", "during-parts"}, []int{3000, 4000, 2*int(devicekit.MinPartSize) + 5})
	if n := outboxes(); n != len(during) {
		t.Errorf("%d events in the outboxes during the partition, want %d", n, len(during))
	}
	faultPoll(ctx, t, "a device reconnecting into the black hole", func() bool { return proxy.Stats().Held > 0 })
	// Hold the partition for its full length.
	select {
	case <-time.After(faultPartitionLength - time.Since(cut)):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	for _, id := range during {
		if events.seen(id) != 0 {
			t.Fatalf("event %s reached the consumer during the partition", id)
		}
	}
	if !proxy.Partitioned() {
		t.Fatal("the proxy is not partitioned")
	}
	held := proxy.Stats().Held
	proxy.Heal()
	t.Logf("partition held %v; %d connection attempts in the black hole at the end", time.Since(cut).Round(time.Second), held)

	if missing := events.waitIDs(ctx, during); len(missing) > 0 {
		t.Fatalf("%d of %d events from the partition never arrived", len(missing), len(during))
	}
	after := uploadAll([]string{"after"}, []int{1500})
	if missing := events.waitIDs(ctx, after); len(missing) > 0 {
		t.Fatalf("events after the partition never arrived: %v", missing)
	}
	if n := outboxes(); n != 0 {
		t.Errorf("%d events still in the outboxes", n)
	}
	// Nothing more can come: each kit's outbox is empty. A probe orders the check after
	// anything already on its way.
	faultProbe(ctx, t, stack, events)
	b := stack.AdminBucket(t)
	for d := range devices {
		faultCheckEvents(t, events, fmt.Sprintf("cam-part-%02d", d), want[d])
		for id, ev := range want[d] {
			h, err := b.GetObjectDetailedMeta(ev.Key)
			if err != nil {
				t.Errorf("object %s of event %s: %v", ev.Key, id, err)
			} else if got := h.Get(oss.HTTPHeaderOssCRC64); got != ev.CRC64 {
				t.Errorf("object %s: CRC-64 %s, event says %s", ev.Key, got, ev.CRC64)
			}
		}
	}
}
