package console

import (
	"context"
	"testing"
	"time"

	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/quota"
)

// BenchmarkQuotaSnapshot measures what one quota snapshot costs the console on the
// clip-list benchmark's 1M-clip SQLite index, with every one of its 1,000 devices given
// a quota, in the middle of a month: the usage query (device_usage, kept per device and
// day), beside the baseline of summing the month's clips themselves through a covering
// index on (device, indexed_at, size); and signing the snapshot of 1,000 devices.
//
//	go test -run '^$' -bench 'BenchmarkQuotaSnapshot$' -benchtime 5x -v ./internal/console
func BenchmarkQuotaSnapshot(b *testing.B) {
	db := benchIndex(b)
	ctx := context.Background()
	// The benchmark's index is written without the usage rows: make them as migration 4
	// does, and the baseline's index.
	for _, q := range []string{
		"UPDATE devices SET quota_day = 1 << 30, quota_month = 1 << 40",
		"DELETE FROM device_usage",
		usageBackfill(b, SQLite),
		"CREATE INDEX IF NOT EXISTS bench_clips_usage ON clips (device, indexed_at, size)",
		"ANALYZE",
	} {
		if _, err := db.w.ExecContext(ctx, q); err != nil {
			b.Fatalf("%s: %v", q, err)
		}
	}
	b.Cleanup(func() {
		_, _ = db.w.ExecContext(ctx, "UPDATE devices SET quota_day = 0, quota_month = 0")
		_, _ = db.w.ExecContext(ctx, "DROP INDEX bench_clips_usage")
	})
	now := benchStart.Add(benchSpan / 2)
	day, month := quota.DayStart(now), quota.MonthStart(now)
	usage, err := db.QuotaUsage(ctx, day, month)
	if err != nil || len(usage) != benchDevices {
		b.Fatalf("QuotaUsage: %d devices, %v", len(usage), err)
	}
	var inMonth int64
	for _, u := range usage {
		inMonth += u.MonthUsed
	}
	b.Logf("%d devices with quotas; %d MiB of clips in the month", len(usage), inMonth>>20)
	baseline := "SELECT d.id, d.quota_day, d.quota_month, " +
		"CAST(COALESCE(SUM(CASE WHEN c.indexed_at >= $1 THEN c.size ELSE 0 END), 0) AS BIGINT), " +
		"CAST(COALESCE(SUM(c.size), 0) AS BIGINT) " +
		"FROM devices d LEFT JOIN clips c ON c.device = d.id AND c.indexed_at >= $2 " +
		"WHERE d.quota_day > 0 OR d.quota_month > 0 GROUP BY d.id, d.quota_day, d.quota_month ORDER BY d.id"
	b.Run("usage", func(b *testing.B) {
		for b.Loop() {
			if _, err := db.QuotaUsage(ctx, day, month); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("usage-baseline-sum-of-clips", func(b *testing.B) {
		for b.Loop() {
			rows, err := db.r.QueryContext(ctx, baseline, us(day), us(month))
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			for rows.Next() {
				n++
			}
			if err := rows.Close(); err != nil || n != benchDevices {
				b.Fatalf("%d rows, %v", n, err)
			}
		}
	})
	seed, err := identity.NewRevocationKey()
	if err != nil {
		b.Fatal(err)
	}
	snap := &quota.Snapshot{Day: day, Entries: make([]quota.Entry, len(usage))}
	for i := range usage {
		snap.Entries[i] = quotaEntry(&usage[i])
	}
	b.Run("sign-1000", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			snap.Issued = now.Add(time.Duration(i))
			data, err := quota.Sign(seed, snap)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(data)))
		}
	})
}
