package tokenworker

import (
	"math/rand/v2"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/clipgate/clipgate/internal/protocol"
)

// busySchedule spreads the retries of the requests a worker answers busy for lack of
// capacity (queue full, every STS slot taken, STS rate exhausted): each one is given the
// next free slot of the worker's STS rate after what its queue already holds, as
// retryAfterMs, plus a jitter within that slot. A fleet refused at once (10,000 cameras
// back from a power cut) thus comes back one STS interval apart, at the rate the worker
// can serve, instead of all together after a fixed second, to be refused again.
//
// The slots handed out are remembered (next) and decay with time: a device that does not
// come back only leaves its slot unused. With several workers each spreads the devices it
// refused; round-robin routing then brings them back to any worker, which together serve
// them at the sum of their rates.
type busySchedule struct {
	mu   sync.Mutex
	next time.Time // end of the last slot handed out
}

// retryAfter returns the wait for a request refused at now by a worker that calls STS at
// most r times a second and has depth requests queued. With no rate limit (rate.Inf) the
// slots are the STS calls in flight, which the worker cannot predict: it answers
// retryBusy.
func (s *busySchedule) retryAfter(now time.Time, depth int, r rate.Limit) time.Duration {
	if r == rate.Inf || r <= 0 {
		return retryBusy
	}
	slot := time.Duration(float64(time.Second) / float64(r))
	s.mu.Lock()
	if start := now.Add(time.Duration(depth) * slot); s.next.Before(start) {
		s.next = start // the queue is served first
	}
	s.next = s.next.Add(slot)
	d := s.next.Sub(now) - slot // the start of this request's slot
	s.mu.Unlock()
	d += time.Duration(rand.Int64N(int64(slot))) + time.Millisecond
	return min(d, time.Duration(protocol.MaxRetryAfterMs)*time.Millisecond)
}

// busyRetry is the retryAfter of a request this worker refuses busy now (busySchedule).
func (w *Worker) busyRetry() time.Duration {
	return w.busy.retryAfter(w.cfg.Now(), w.queueDepth(), w.cfg.STSRate)
}

// queueDepth is the number of requests received over MQTT and not yet taken by the pool.
func (w *Worker) queueDepth() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.queue)
}
