package console

import (
	"context"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/clipgate/clipgate/internal/libmetrics"
	"github.com/clipgate/clipgate/internal/ops"
)

// Collectors returns the console's Prometheus metrics: its own counters and, with a
// broker, those of its events consumer and reconciler.
func (c *Console) Collectors() []prometheus.Collector {
	var (
		indexed   = ops.Desc("console", "indexed_events_total", "Events the index accepted (duplicates included).")
		idxErrors = ops.Desc("console", "index_errors_total", "Failed attempts to index an event.")
		stErrors  = ops.Desc("console", "status_errors_total", "Device status messages that could not be recorded.")
	)
	own := ops.NewCollector([]*prometheus.Desc{indexed, idxErrors, stErrors}, func(ch chan<- prometheus.Metric) {
		ops.Counter(ch, indexed, c.indexed.Load())
		ops.Counter(ch, idxErrors, c.indexErrors.Load())
		ops.Counter(ch, stErrors, c.statusErrors.Load())
	})
	if c.consumer == nil {
		return []prometheus.Collector{own}
	}
	return []prometheus.Collector{own, libmetrics.ConsumerCollector(c.consumer.Stats, c.reconciler.Stats)}
}

// ReadyChecks are the console's readiness checks: "database" (a read of the store),
// "oss" (a one-key listing of the bucket under the prefix, which the reconciler needs
// anyway) and, with a broker, "broker" (the events consumer is connected).
func (c *Console) ReadyChecks() []ops.Check {
	checks := []ops.Check{
		{Name: "database", Run: func(ctx context.Context) error {
			_, err := c.store.RevokedDevices(ctx)
			return err
		}},
		{Name: "oss", Run: func(ctx context.Context) error {
			// The v1 SDK takes no context; the check's timeout bounds the wait, not the call.
			done := make(chan error, 1)
			go func() {
				_, err := c.cfg.Bucket.ListObjectsV2(oss.Prefix(c.cfg.Prefix), oss.MaxKeys(1))
				done <- err
			}()
			select {
			case err := <-done:
				return err
			case <-ctx.Done():
				return ctx.Err()
			}
		}},
	}
	if c.consumer != nil {
		checks = append(checks, ops.ConnectedCheck("broker", func() bool { return c.consumer.Stats().Connected }))
	}
	return checks
}
