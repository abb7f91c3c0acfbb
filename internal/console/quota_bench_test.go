package console

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/quota"
)

// BenchmarkQuotaSnapshot measures what one quota snapshot costs the console on the
// clip-list benchmark's 1M-clip SQLite index, with every one of its 1,000 devices given
// a quota: the usage query in the middle of the month (about half the index is in the
// month), beside the same query kept off the (device, indexed_at) index (the baseline),
// and signing the snapshot of 1,000 devices.
//
//	go test -run '^$' -bench 'BenchmarkQuotaSnapshot$' -benchtime 20x -v ./internal/console
func BenchmarkQuotaSnapshot(b *testing.B) {
	db := benchIndex(b)
	ctx := context.Background()
	if _, err := db.w.ExecContext(ctx, "UPDATE devices SET quota_day = 1 << 30, quota_month = 1 << 40"); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _, _ = db.w.ExecContext(ctx, "UPDATE devices SET quota_day = 0, quota_month = 0") })
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
	noIndex := strings.Replace(db.q.quotaUsage, "LEFT JOIN clips c ", "LEFT JOIN clips c NOT INDEXED ", 1)
	b.Run("usage", func(b *testing.B) {
		for b.Loop() {
			if _, err := db.QuotaUsage(ctx, day, month); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("usage-baseline-no-index", func(b *testing.B) {
		for b.Loop() {
			rows, err := db.r.QueryContext(ctx, noIndex, us(day), us(month))
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
