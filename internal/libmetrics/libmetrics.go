// Package libmetrics exports the Stats snapshots of the library packages devicekit and
// events as Prometheus metrics, so that those packages need not import Prometheus. (It is
// apart from package ops because the libraries' tests import packages that import ops.)
package libmetrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/events"
	"github.com/clipgate/clipgate/internal/ops"
)

// ConsumerCollector exports an events Consumer's and Reconciler's Stats (either may be
// nil) as clipgate_events_* and clipgate_reconciler_* metrics.
func ConsumerCollector(consumer func() events.Stats, reconciler func() events.ReconcilerStats) *ops.Collector {
	var (
		received  = ops.Desc("events", "received_total", "Messages received from the broker, redeliveries included.")
		outcomes  = ops.Desc("events", "total", "Events by outcome: verified, rejected (malformed messages included), failed (failed-upload events) and duplicate (acknowledged without the handler).", "outcome")
		rejected  = ops.Desc("events", "rejected_total", "Rejected events by reason.", "reason")
		lag       = ops.Desc("events", "ingest_lag_seconds", "Time from a verified upload's completion (by the device's clock) to its handling.")
		retries   = ops.Desc("events", "retries_total", "Attempts after the first, of any step.")
		unacked   = ops.Desc("events", "unacked_total", "Deliveries left unacknowledged after their attempts (they come again).")
		errs      = ops.Desc("events", "errors_total", "Failed attempts, by kind: handler, oss (transient) or dedup.", "kind")
		connected = ops.Desc("events", "broker_connected", "1 while the consumer is connected to the broker.")
		passes    = ops.Desc("reconciler", "passes_total", "Reconciler passes, by result (ok or error).", "result")
		scanned   = ops.Desc("reconciler", "objects_scanned_total", "Objects the reconciler listed.")
		found     = ops.Desc("reconciler", "objects_found_total", "Objects without an event that the reconciler found and handed over.")
		skipped   = ops.Desc("reconciler", "objects_skipped_total", "Objects outside any device prefix or without usable metadata.")
	)
	descs := []*prometheus.Desc{received, outcomes, rejected, lag, retries, unacked, errs, connected, passes, scanned, found, skipped}
	return ops.NewCollector(descs, func(ch chan<- prometheus.Metric) {
		if consumer != nil {
			s := consumer()
			var rej int64
			for _, n := range s.Rejected {
				rej += n
			}
			ops.Counter(ch, received, s.Received)
			ops.Counter(ch, outcomes, s.Verified, "verified")
			ops.Counter(ch, outcomes, rej, "rejected")
			ops.Counter(ch, outcomes, s.Failed, "failed")
			ops.Counter(ch, outcomes, s.Duplicates, "duplicate")
			for r, n := range s.Rejected {
				ops.Counter(ch, rejected, n, string(r))
			}
			buckets := map[float64]uint64{}
			for i, b := range events.LagBuckets() {
				buckets[b] = s.Lag.Counts[i]
			}
			ch <- prometheus.MustNewConstHistogram(lag, s.Lag.Count, s.Lag.Sum, buckets)
			ops.Counter(ch, retries, s.Retries)
			ops.Counter(ch, unacked, s.Unacked)
			ops.Counter(ch, errs, s.HandlerErrors, "handler")
			ops.Counter(ch, errs, s.OSSErrors, "oss")
			ops.Counter(ch, errs, s.DedupErrors, "dedup")
			ops.Gauge(ch, connected, boolValue(s.Connected))
		}
		if reconciler != nil {
			r := reconciler()
			ops.Counter(ch, passes, r.Passes-r.Errors, "ok")
			ops.Counter(ch, passes, r.Errors, "error")
			ops.Counter(ch, scanned, r.Scanned)
			ops.Counter(ch, found, r.Emitted)
			ops.Counter(ch, skipped, r.Skipped)
		}
	})
}

// DeviceCollector exports a device Kit's and (when not nil) its Spool's Stats as
// clipgate_device_* metrics.
func DeviceCollector(kit *devicekit.Kit, spool *devicekit.Spool) *ops.Collector {
	var (
		refreshes = ops.Desc("device", "credential_refreshes_total", "Credentials received from the token worker and accepted.")
		outbox    = ops.Desc("device", "outbox_events", "Upload events waiting in the outbox for the broker's acknowledgement (-1: unreadable).")
		uploads   = ops.Desc("device", "uploads_total", "Clips uploaded and announced.")
		bytes     = ops.Desc("device", "uploaded_bytes_total", "Bytes of the clips uploaded.")
		dropped   = ops.Desc("device", "dropped_clips_total", "Clips the spool bounds (--max-bytes, --max-age) dropped.")
		rejected  = ops.Desc("device", "rejected_clips_total", "Clips that cannot be uploaded as they are (empty, unreadable).")
		backlog   = ops.Desc("device", "spool_backlog_clips", "Clips in the spool waiting to be uploaded (-1: unreadable).")
		backBytes = ops.Desc("device", "spool_backlog_bytes", "Bytes of the clips in the spool waiting to be uploaded (-1: unreadable).")
		connected = ops.Desc("device", "broker_connected", "1 while the device is connected to the broker.")
	)
	descs := []*prometheus.Desc{refreshes, outbox, uploads, bytes, dropped, rejected, backlog, backBytes, connected}
	return ops.NewCollector(descs, func(ch chan<- prometheus.Metric) {
		k := kit.Stats()
		ops.Counter(ch, refreshes, k.CredentialRefreshes)
		ops.Gauge(ch, outbox, k.OutboxDepth)
		ops.Gauge(ch, connected, boolValue(k.Connected))
		if spool == nil {
			return
		}
		s := spool.Stats()
		ops.Counter(ch, uploads, s.Uploaded)
		ops.Counter(ch, bytes, s.UploadedBytes)
		ops.Counter(ch, dropped, s.Dropped)
		ops.Counter(ch, rejected, s.Rejected)
		ops.Gauge(ch, backlog, s.Backlog)
		ops.Gauge(ch, backBytes, s.BacklogBytes)
	})
}

func boolValue(b bool) int {
	if b {
		return 1
	}
	return 0
}

// DeviceReady is a device's readiness check: "broker", the kit is connected.
func DeviceReady(kit *devicekit.Kit) ops.Check {
	return ops.ConnectedCheck("broker", func() bool { return kit.Stats().Connected })
}
