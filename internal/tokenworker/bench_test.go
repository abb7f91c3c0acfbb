package tokenworker

import (
	"bytes"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// BenchmarkHandle measures Handle on its hot paths. Requests are signed ahead of time (in
// batches, outside the timer), so the figures are the worker's alone.
//
//	go test -run '^$' -bench BenchmarkHandle -benchmem ./internal/tokenworker
func BenchmarkHandle(b *testing.B) {
	c := startCloud(b, nil)
	fleet := newFleetKey(b)
	var clock atomic.Int64 // the worker's clock, advanced per request (unix ns)
	base := time.Now()
	clock.Store(base.UnixNano())

	newBench := func(b *testing.B, seal bool) *Worker {
		cfg := c.config(fleet)
		cfg.Seal = &seal
		cfg.DeviceRate, cfg.DeviceBurst = rate.Inf, 1
		cfg.Now = func() time.Time { return time.Unix(0, clock.Load()) }
		return newWorker(b, cfg)
	}
	run := func(b *testing.B, w *Worker, device string, wantOK bool) {
		const batch = 4096
		type item struct {
			topic   string
			payload []byte
			ts      int64
		}
		items := make([]item, 0, batch)
		// Warm up: the first request calls STS and fills the cache.
		clock.Store(time.Now().UnixNano())
		r := newRequest(b, fleet, device, "w", time.Unix(0, clock.Load()))
		if _, reply, ok := w.Handle(bg, r.topic(), r.payload(b)); !ok || !isOK(reply) {
			b.Fatalf("warm-up failed: %s", reply)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if i%batch == 0 {
				b.StopTimer()
				items = items[:0]
				now := clock.Load()
				for j := 0; j < batch; j++ {
					ts := now + int64(j+1)*int64(time.Millisecond)
					r := newRequest(b, fleet, device, "w", time.Unix(0, ts))
					items = append(items, item{r.topic(), r.payload(b), ts})
				}
				b.StartTimer()
			}
			it := &items[i%batch]
			clock.Store(it.ts)
			_, reply, ok := w.Handle(bg, it.topic, it.payload)
			if !ok || isOK(reply) != wantOK {
				b.Fatalf("unexpected reply: %s", reply)
			}
		}
	}
	b.Run("reuse/sealed", func(b *testing.B) {
		w := newBench(b, true)
		run(b, w, "cam-bench-1", true)
		if st := w.Stats(); st.STSCalls != 1 {
			b.Fatalf("%d STS calls, want 1", st.STSCalls)
		}
	})
	b.Run("reuse/plain", func(b *testing.B) {
		w := newBench(b, false)
		run(b, w, "cam-bench-2", true)
	})
}

// isOK tells a successful reply without decoding it (which would dominate the figures);
// the tests check replies strictly.
func isOK(reply []byte) bool { return bytes.Contains(reply, []byte(`"ok":true`)) }

// BenchmarkHandleRefused measures the cheapest refusals: a bad signature and garbage.
func BenchmarkHandleRefused(b *testing.B) {
	fleet := newFleetKey(b)
	w := newWorker(b, offlineConfig(fleet))
	forged := newRequest(b, newFleetKey(b), "cam-forged", "w", time.Now())
	topic, payload := forged.topic(), forged.payload(b)
	b.Run("bad-signature", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, reply, ok := w.Handle(bg, topic, payload); !ok || isOK(reply) {
				b.Fatal("forged request not refused")
			}
		}
	})
	b.Run("garbage", func(b *testing.B) {
		b.ReportAllocs()
		junk := []byte(`{"v":1,"id":"junk","device":`)
		for i := 0; i < b.N; i++ {
			if _, _, ok := w.Handle(bg, topic, junk); ok {
				b.Fatal("garbage answered")
			}
		}
	})
}
