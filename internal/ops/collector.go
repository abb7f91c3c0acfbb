package ops

import "github.com/prometheus/client_golang/prometheus"

// Collector is a prometheus.Collector that reads its metrics at scrape time: Collect
// takes a snapshot and sends one const metric per value.
type Collector struct {
	descs   []*prometheus.Desc
	collect func(ch chan<- prometheus.Metric)
}

// NewCollector returns a Collector of the metrics described by descs, sent by collect.
func NewCollector(descs []*prometheus.Desc, collect func(ch chan<- prometheus.Metric)) *Collector {
	return &Collector{descs: descs, collect: collect}
}

// Describe sends the descriptions.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect sends the metrics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }

// Desc describes a clipgate metric: Namespace_subsystem_name.
func Desc(subsystem, name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(Namespace, subsystem, name), help, labels, nil)
}

// Counter sends a counter.
func Counter[T int64 | uint64 | int](ch chan<- prometheus.Metric, d *prometheus.Desc, v T, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

// Gauge sends a gauge.
func Gauge[T int64 | uint64 | int | float64](ch chan<- prometheus.Metric, d *prometheus.Desc, v T, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
}
