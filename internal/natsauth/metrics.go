package natsauth

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clipgate/clipgate/internal/ops"
)

// Outcomes of a decision, besides the refusal reasons of broker.Refusal.
const (
	// OutcomeAllowed is an admitted client.
	OutcomeAllowed = "allowed"
	// OutcomeInvalid is a request that is no authorization request: it gets no answer.
	OutcomeInvalid = "invalid_request"
	// OutcomeError is a decision that could not be answered (signing failed).
	OutcomeError = "error"
)

// Metrics are the Prometheus metrics of the callout instances of one process: give the
// same Metrics to every instance's Config and register it once. Counters are the sums
// over the instances (a closed instance's counts stay in them).
type Metrics struct {
	latency prometheus.Histogram

	mu       sync.Mutex
	services []*Service

	decisions, kicks, admitted, connected *prometheus.Desc
}

// NewMetrics returns the metrics of a process's callout instances.
func NewMetrics() *Metrics {
	const sub = "nats_callout"
	return &Metrics{
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ops.Namespace, Subsystem: sub, Name: "decision_duration_seconds",
			Help:    "Time from an authorization request's arrival to its answer (decision, user JWT, signature).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14), // 0.5 ms to 4 s
		}),
		decisions: ops.Desc(sub, "decisions_total", "Authorization requests answered, by outcome: allowed, the refusal reason "+
			"(bad_login, not_authorized, client_id_rejected, busy), error (the decision or its signature failed) or invalid_request (not an authorization request; unanswered).", "outcome"),
		kicks:     ops.Desc(sub, "kicks_total", "Revoked devices' connections kicked through the system API, by result (ok or error).", "result"),
		admitted:  ops.Desc(sub, "admitted_devices", "Devices admitted by these instances and watched for revocation."),
		connected: ops.Desc(sub, "nats_connected", "Instances connected to the NATS cluster."),
	}
}

func (m *Metrics) add(s *Service) {
	m.mu.Lock()
	m.services = append(m.services, s)
	m.mu.Unlock()
}

func (m *Metrics) snapshot() []*Service {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*Service(nil), m.services...)
}

// Describe sends the descriptions.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.latency.Describe(ch)
	for _, d := range []*prometheus.Desc{m.decisions, m.kicks, m.admitted, m.connected} {
		ch <- d
	}
}

// Collect sends the metrics.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.latency.Collect(ch)
	outcomes := map[string]int64{OutcomeAllowed: 0, OutcomeInvalid: 0, OutcomeError: 0}
	var kicked, kickErrors int64
	admitted, connected := 0, 0
	for _, s := range m.snapshot() {
		st := s.Stats()
		outcomes[OutcomeAllowed] += st.Allowed
		outcomes[OutcomeInvalid] += st.Invalid
		outcomes[OutcomeError] += st.Errors
		for reason, n := range st.Refusals {
			outcomes[reason] += n
		}
		kicked += st.Kicked
		kickErrors += st.KickErrors
		admitted += st.Admitted
		if s.Connected() {
			connected++
		}
	}
	names := make([]string, 0, len(outcomes))
	for o := range outcomes {
		names = append(names, o)
	}
	sort.Strings(names)
	for _, o := range names {
		ops.Counter(ch, m.decisions, outcomes[o], o)
	}
	ops.Counter(ch, m.kicks, kicked, "ok")
	ops.Counter(ch, m.kicks, kickErrors, "error")
	ops.Gauge(ch, m.admitted, admitted)
	ops.Gauge(ch, m.connected, connected)
}

func (m *Metrics) observe(d time.Duration) {
	if m != nil {
		m.latency.Observe(d.Seconds())
	}
}

// ReadyCheck is the readiness of a process's instances: "nats", every one connected.
func (m *Metrics) ReadyCheck() ops.Check {
	return ops.Check{Name: "nats", Run: func(context.Context) error {
		all := m.snapshot()
		down := 0
		for _, s := range all {
			if !s.Connected() {
				down++
			}
		}
		if len(all) == 0 || down > 0 {
			return fmt.Errorf("%d of %d callout instances not connected", down, len(all))
		}
		return nil
	}}
}
