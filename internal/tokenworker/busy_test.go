package tokenworker

import (
	"slices"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/clipgate/clipgate/internal/protocol"
)

// Requests refused at one instant get successive slots of the STS rate after the queue:
// slot k starts at (depth+k)/rate; the jitter stays within the slot. Slots handed out decay
// as the clock passes them.
func TestBusyScheduleSpreadsRetries(t *testing.T) {
	t.Parallel()
	var s busySchedule
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const slot = 20 * time.Millisecond // 50/s
	inSlot := func(d time.Duration, k int) bool {
		lo := time.Duration(k)*slot + time.Millisecond
		return d >= lo && d < lo+slot
	}
	for k := range 100 {
		if d := s.retryAfter(now, 10, 50); !inSlot(d, 10+k) {
			t.Fatalf("refusal %d with 10 queued: retry after %v, want slot %d [%v, %v)", k, d, 10+k, time.Duration(10+k)*slot, time.Duration(11+k)*slot)
		}
	}
	// 110 slots handed out until now+2.2s. A second later, 60 of them are still ahead.
	if d := s.retryAfter(now.Add(time.Second), 0, 50); !inSlot(d, 60) {
		t.Fatalf("a second later: %v, want slot 60", d)
	}
	// Once the clock has passed every slot, the queue alone counts.
	if d := s.retryAfter(now.Add(time.Minute), 5, 50); !inSlot(d, 5) {
		t.Fatalf("a minute later: %v, want slot 5", d)
	}
	// Without a rate limit the worker cannot predict: the fixed hint.
	if d := s.retryAfter(now, 1000, rate.Inf); d != retryBusy {
		t.Fatalf("no rate limit: %v, want %v", d, retryBusy)
	}
	// Never beyond what the protocol allows.
	if d := s.retryAfter(now, 1<<20, 0.001); d != time.Duration(protocol.MaxRetryAfterMs)*time.Millisecond {
		t.Fatalf("a huge backlog: %v, want the cap", d)
	}
}

// A worker whose queue is full answers busy with retryAfterMs from its queue depth and
// STS rate, each refused request its own slot (before: 1 s for every one of them, so a
// refused fleet came back at once).
func TestMQTTQueueFullSpreadsRetries(t *testing.T) {
	t.Parallel()
	c := startCloud(t, nil)
	fleet := newFleetKey(t)
	url := startBroker(t, fleet)
	cfg := mqttConfig(c, fleet, url)
	const queue, refused = 4, 6
	cfg.QueueSize = queue
	cfg.STSRate = 50 // the default, stated: a slot is 20 ms
	now := time.Now()
	cfg.Now = func() time.Time { return now } // the schedule's clock stands still
	w := newWorker(t, cfg)
	w.poolSize = 0 // nothing takes requests off the queue
	if err := w.Start(bg); err != nil {
		t.Fatal(err)
	}
	d := connectDevice(t, url, fleet, "cam-spread")
	for range queue {
		d.send(t, newRequest(t, fleet, d.id, "w", now))
	}
	for w.queueDepth() < queue { // explicit: the queue is full before the next requests
		time.Sleep(time.Millisecond)
	}
	var got []int64
	for range refused {
		r := newRequest(t, fleet, d.id, "w", now)
		d.send(t, r)
		rep := wantError(t, r.ID, d.reply(t), protocol.CodeBusy)
		got = append(got, rep.Error.RetryAfterMs)
	}
	slices.Sort(got)
	for k, ms := range got {
		lo := int64((queue+k)*20 + 1)
		if ms < lo || ms > lo+20 { // the upper end: retryMs rounds up
			t.Fatalf("retryAfterMs of the refused requests %v: number %d is %d, want [%d, %d] (queue %d, 50/s)", got, k, ms, lo, lo+20, queue)
		}
	}
}
