package events

import (
	"sync"
	"time"
)

// lagBounds are the upper bounds, in seconds, of the ingest lag histogram's buckets.
var lagBounds = [...]float64{1, 5, 15, 60, 300, 900, 3600, 6 * 3600, 24 * 3600}

// LagBuckets returns the upper bounds, in seconds, of the buckets of LagHistogram.Counts.
func LagBuckets() []float64 { return append([]float64(nil), lagBounds[:]...) }

// LagHistogram is the distribution of the ingest lag of handled verified events:
// the time from the upload's completion (the event's UploadedAt, by the device's clock)
// to the handler's acceptance. Counts[i] counts the events with a lag up to
// LagBuckets()[i] seconds (cumulative, as Prometheus has it); Count counts them all and
// Sum is their total lag in seconds. A device clock ahead of ours counts as no lag.
type LagHistogram struct {
	Counts []uint64
	Count  uint64
	Sum    float64
}

// lagHistogram accumulates a LagHistogram.
type lagHistogram struct {
	mu     sync.Mutex
	counts [len(lagBounds) + 1]uint64 // per bucket, not cumulative; the last: beyond every bound
	count  uint64
	sum    float64
}

func (h *lagHistogram) observe(lag time.Duration) {
	s := max(lag.Seconds(), 0)
	i := 0
	for i < len(lagBounds) && s > lagBounds[i] {
		i++
	}
	h.mu.Lock()
	h.counts[i]++
	h.count++
	h.sum += s
	h.mu.Unlock()
}

func (h *lagHistogram) snapshot() LagHistogram {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := LagHistogram{Counts: make([]uint64, len(lagBounds)), Count: h.count, Sum: h.sum}
	var cum uint64
	for i := range lagBounds {
		cum += h.counts[i]
		out.Counts[i] = cum
	}
	return out
}
