package tokenworker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clipgate/clipgate/internal/ops"
	"github.com/clipgate/clipgate/internal/protocol"
)

// Metrics are the Prometheus metrics of the token workers of one process: give the same
// Metrics to every worker's Config and register it once. Counters are the sums over the
// workers (a closed worker's counts stay in them, so they never go down).
type Metrics struct {
	sts *prometheus.HistogramVec

	mu      sync.Mutex
	workers []*Worker

	requests, replies, dropped, hits, queue, connected *prometheus.Desc
}

// NewMetrics returns the metrics of a process's workers.
func NewMetrics() *Metrics {
	const sub = "tokenworker"
	return &Metrics{
		sts: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ops.Namespace, Subsystem: sub, Name: "sts_call_duration_seconds",
			Help:    "Duration of AssumeRole calls, by result (ok or error).",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12), // 5 ms to 10 s
		}, []string{"result"}),
		requests:  ops.Desc(sub, "requests_total", "Auth requests received (handled, or refused because the queue was full)."),
		replies:   ops.Desc(sub, "replies_total", "Replies sent, by outcome code: ok, or the error code (busy, rate_limited, unauthenticated, ...).", "code"),
		dropped:   ops.Desc(sub, "dropped_requests_total", "Requests that got no reply: not an auth-request topic, or no request ID."),
		hits:      ops.Desc(sub, "cache_hits_total", "Credentials served from the cache without an STS call."),
		queue:     ops.Desc(sub, "queue_depth", "Requests waiting for a handler."),
		connected: ops.Desc(sub, "broker_connected", "Workers connected to the broker."),
	}
}

func (m *Metrics) add(w *Worker) {
	m.mu.Lock()
	m.workers = append(m.workers, w)
	m.mu.Unlock()
}

func (m *Metrics) observeSTS(d time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.sts.WithLabelValues(result).Observe(d.Seconds())
}

// Describe sends the descriptions.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.sts.Describe(ch)
	for _, d := range []*prometheus.Desc{m.requests, m.replies, m.dropped, m.hits, m.queue, m.connected} {
		ch <- d
	}
}

// Collect sends the metrics.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.sts.Collect(ch)
	m.mu.Lock()
	workers := append([]*Worker(nil), m.workers...)
	m.mu.Unlock()
	var sum Stats
	errs := map[protocol.Code]uint64{}
	queued, connected := 0, 0
	for _, w := range workers {
		s := w.Stats()
		sum.Requests += s.Requests
		sum.Dropped += s.Dropped
		sum.OK += s.OK
		sum.Reused += s.Reused
		for c, n := range s.Errors {
			errs[c] += n
		}
		q, up := w.live()
		queued += q
		if up {
			connected++
		}
	}
	ops.Counter(ch, m.requests, sum.Requests)
	ops.Counter(ch, m.dropped, sum.Dropped)
	ops.Counter(ch, m.hits, sum.Reused)
	ops.Counter(ch, m.replies, sum.OK, "ok")
	for _, c := range codes {
		ops.Counter(ch, m.replies, errs[c], string(c))
	}
	ops.Gauge(ch, m.queue, queued)
	ops.Gauge(ch, m.connected, connected)
}

// live returns the worker's queue length and whether it is connected to the broker.
func (w *Worker) live() (queued int, connected bool) {
	w.mu.Lock()
	q, c, closed := w.queue, w.client, w.closed
	w.mu.Unlock()
	return len(q), c != nil && !closed && c.Connected()
}

// ReadyChecks are the readiness checks of a process's workers: "broker" (every worker is
// connected) and "sts" (the STS endpoint answers HTTP).
func ReadyChecks(workers []*Worker) []ops.Check {
	if len(workers) == 0 {
		return nil
	}
	sts := workers[0].cfg.STS
	return []ops.Check{
		{Name: "broker", Run: func(context.Context) error {
			down := 0
			for _, w := range workers {
				if _, up := w.live(); !up {
					down++
				}
			}
			if down > 0 {
				return fmt.Errorf("%d of %d workers not connected", down, len(workers))
			}
			return nil
		}},
		ops.HTTPReachable("sts", sts.Scheme+"://"+sts.Endpoint, nil),
	}
}
