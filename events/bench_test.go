package events_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/events"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/internal/testutil"
)

// BenchmarkConsume measures verified events per second through the whole path: an admin
// client publishes upload events (QoS 1) for existing objects to the stack's broker; the
// consumer receives them, HEADs each object in the local OSS, checks size and CRC-64,
// deduplicates, calls the handler and acknowledges. The publisher keeps at most window
// events outstanding, so that the broker never has to drop (see docs/ARCHITECTURE.md, reliability model); the
// figure is the consumer's sustained rate, not a burst into buffers.
func BenchmarkConsume(b *testing.B) {
	for _, conc := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) { benchConsume(b, conc) })
	}
}

const (
	benchObjects = 64
	benchWindow  = 256
	benchStall   = 30 * time.Second // no progress for this long fails the benchmark
)

func benchConsume(b *testing.B, concurrency int) {
	stack := inproc.New(b, inproc.Options{})
	admin := stack.AdminBucket(b)
	type object struct {
		device, key string
		data        []byte
	}
	objects := make([]object, benchObjects)
	for i := range objects {
		dev := fmt.Sprintf("cam-b%02d", i%16)
		key := fmt.Sprintf("%s%s/2024/05/01/clip-%02d.mp4", stack.Prefix(), dev, i)
		objects[i] = object{dev, key, putObject(b, admin, key, 4<<10)}
	}

	var handled, verified atomic.Int64
	cfg := consumerConfig(b, stack, "consumer:bench")
	cfg.Concurrency = concurrency
	c := startConsumer(b, cfg, func(_ context.Context, ev *events.Event) error {
		if ev.Verified {
			verified.Add(1)
		}
		handled.Add(1)
		return nil
	})
	pub := adminClient(b, stack)
	run := randomHex(4)
	payloads := make([][]byte, len(objects))
	ev := clipgate.UploadEvent{V: protocol.Version, Status: clipgate.StatusCompleted, Bucket: stack.Bucket(),
		UploadedAt: time.Now().UTC().Truncate(time.Second)}

	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	lastProgress, lastHandled := start, int64(0)
	for i := 0; i < b.N; i++ {
		for int64(i)-handled.Load() >= benchWindow {
			if h := handled.Load(); h != lastHandled {
				lastHandled, lastProgress = h, time.Now()
			} else if time.Since(lastProgress) > benchStall {
				b.Fatalf("stalled at %d of %d handled; consumer %+v; broker %+v", h, b.N, c.Stats(), stack.BrokerStats())
			}
			time.Sleep(50 * time.Microsecond)
		}
		o := &objects[i%len(objects)]
		ev.ID, ev.Device, ev.Key, ev.Size, ev.CRC64 = fmt.Sprintf("b%s-%d", run, i), o.device, o.key, int64(len(o.data)), testutil.CRC64(o.data)
		var err error
		if payloads[i%len(objects)], err = json.Marshal(&ev); err != nil {
			b.Fatal(err)
		}
		// The token is not waited for: the window bounds what is in flight.
		pub.Publish(stack.Topics().UploadEvent(o.device), 1, false, payloads[i%len(objects)])
	}
	for handled.Load() < int64(b.N) {
		if h := handled.Load(); h != lastHandled {
			lastHandled, lastProgress = h, time.Now()
		} else if time.Since(lastProgress) > benchStall {
			b.Fatalf("stalled at %d of %d handled; consumer %+v; broker %+v", h, b.N, c.Stats(), stack.BrokerStats())
		}
		time.Sleep(100 * time.Microsecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	if v := verified.Load(); v != int64(b.N) {
		b.Fatalf("%d of %d events verified; consumer %+v", v, b.N, c.Stats())
	}
}
