package localcloud

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clipgate/clipgate/internal/ops"
)

// cloudMetrics are the local cloud's Prometheus metrics, updated as requests end.
type cloudMetrics struct {
	requests *prometheus.CounterVec
	bytesIn  *prometheus.CounterVec
	bytesOut *prometheus.CounterVec
}

func newCloudMetrics() *cloudMetrics {
	const sub = "localcloud"
	return &cloudMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ops.Namespace, Subsystem: sub, Name: "requests_total",
			Help: "Requests served, by service (oss, sts), operation (PutObject, AssumeRole, ...; unknown when none was recognised) and HTTP status code.",
		}, []string{"service", "operation", "code"}),
		bytesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ops.Namespace, Subsystem: sub, Name: "received_bytes_total",
			Help: "Request body bytes read, by service.",
		}, []string{"service"}),
		bytesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ops.Namespace, Subsystem: sub, Name: "sent_bytes_total",
			Help: "Response body bytes written, by service.",
		}, []string{"service"}),
	}
}

// observe counts one request; m may be nil (a service built without Start).
func (m *cloudMetrics) observe(service, operation string, status int, in, out int64) {
	if m == nil {
		return
	}
	if operation == "" {
		operation = "unknown"
	}
	if status == 0 {
		status = 200 // nothing written: net/http answers 200 with an empty body
	}
	m.requests.WithLabelValues(service, operation, strconv.Itoa(status)).Inc()
	m.bytesIn.WithLabelValues(service).Add(float64(max(in, 0)))
	m.bytesOut.WithLabelValues(service).Add(float64(max(out, 0)))
}

// Describe sends the descriptions.
func (m *cloudMetrics) Describe(ch chan<- *prometheus.Desc) {
	m.requests.Describe(ch)
	m.bytesIn.Describe(ch)
	m.bytesOut.Describe(ch)
}

// Collect sends the metrics.
func (m *cloudMetrics) Collect(ch chan<- prometheus.Metric) {
	m.requests.Collect(ch)
	m.bytesIn.Collect(ch)
	m.bytesOut.Collect(ch)
}

// Collector returns the server's Prometheus metrics.
func (s *Server) Collector() prometheus.Collector { return s.cfg.metrics }

// stsOperation bounds the operation label of STS to the actions it knows.
func stsOperation(action string) string {
	switch action {
	case "AssumeRole", "GetCallerIdentity":
		return action
	}
	return ""
}
