package console

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"
)

// TestStoreQuotas (issue 16 point 3), on SQLite and PostgreSQL: a quota is set on a known
// device only; the usage is the size of the device's clips indexed since the start of
// the UTC day and of the UTC month (the index's own time, not the device's), kept per
// day through inserts, re-indexing and deletes, equal to the sum over the clips (and to
// migration 4's backfill); only devices with a quota are in the snapshot's list; a quota
// of 0 and 0 removes it; old usage is pruned.
func TestStoreQuotas(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		if err := db.SetQuota(ctx, "cam-unknown", Quota{DayBytes: 1}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("SetQuota of an unknown device: %v", err)
		}
		day := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
		month := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
		index := func(dev, id string, size int64, indexed time.Time) {
			t.Helper()
			ev := clipEvent(dev, id, "clips/"+dev+"/"+id+".mp4", t0) // recorded long before: does not matter
			ev.Size = size
			if _, err := db.Index(ctx, ev, nil, indexed); err != nil {
				t.Fatal(err)
			}
		}
		index("cam-a", "last-month", 1000, month.Add(-time.Microsecond))
		index("cam-a", "this-month", 200, month)
		index("cam-a", "yesterday", 30, day.Add(-time.Microsecond))
		index("cam-a", "today", 4, day)
		index("cam-a", "later-today", 5, day.Add(23*time.Hour))
		index("cam-b", "today", 7, day.Add(time.Hour))
		index("cam-c", "today", 9, day.Add(time.Hour))

		if err := db.SetQuota(ctx, "cam-a", Quota{DayBytes: 10, MonthBytes: 1 << 40}); err != nil {
			t.Fatal(err)
		}
		if err := db.SetQuota(ctx, "cam-b", Quota{MonthBytes: 5}); err != nil {
			t.Fatal(err)
		}
		if d := mustDevice(t, db, "cam-a"); d.Quota != (Quota{DayBytes: 10, MonthBytes: 1 << 40}) {
			t.Fatalf("cam-a's quota: %+v", d.Quota)
		}
		want := []QuotaUsage{
			{Device: "cam-a", Quota: Quota{DayBytes: 10, MonthBytes: 1 << 40}, DayUsed: 9, MonthUsed: 239},
			{Device: "cam-b", Quota: Quota{MonthBytes: 5}, DayUsed: 7, MonthUsed: 7},
		}
		got, err := db.QuotaUsage(ctx, day, month)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
			t.Fatalf("QuotaUsage = %+v, want %+v", got, want)
		}
		// One device, with or without a quota.
		if u, err := db.DeviceQuotaUsage(ctx, "cam-c", day, month); err != nil || *u != (QuotaUsage{Device: "cam-c", DayUsed: 9, MonthUsed: 9}) {
			t.Fatalf("DeviceQuotaUsage(cam-c) = %+v, %v", u, err)
		}
		if u, err := db.DeviceQuotaUsage(ctx, "cam-a", day, month); err != nil || *u != want[0] {
			t.Fatalf("DeviceQuotaUsage(cam-a) = %+v, %v", u, err)
		}
		if _, err := db.DeviceQuotaUsage(ctx, "cam-unknown", day, month); !errors.Is(err, ErrNotFound) {
			t.Fatalf("DeviceQuotaUsage of an unknown device: %v", err)
		}
		// A device with a quota and no clips.
		if err := db.SetRevoked(ctx, "cam-new", false, day); err != nil {
			t.Fatal(err)
		}
		if err := db.SetQuota(ctx, "cam-new", Quota{DayBytes: 1}); err != nil {
			t.Fatal(err)
		}
		// Removing cam-b's quota takes it out of the list.
		if err := db.SetQuota(ctx, "cam-b", Quota{}); err != nil {
			t.Fatal(err)
		}
		got, err = db.QuotaUsage(ctx, day, month)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0] != want[0] || got[1] != (QuotaUsage{Device: "cam-new", Quota: Quota{DayBytes: 1}}) {
			t.Fatalf("QuotaUsage after the changes = %+v", got)
		}
		// Deleted clips no longer count.
		if _, err := db.DeleteClips(ctx, []string{"clips/cam-a/today.mp4"}); err != nil {
			t.Fatal(err)
		}
		if u, err := db.DeviceQuotaUsage(ctx, "cam-a", day, month); err != nil || u.DayUsed != 5 || u.MonthUsed != 235 {
			t.Fatalf("after a delete: %+v, %v", u, err)
		}
		// A clip indexed again (an overwrite: a new verified event) counts on the day it
		// was indexed again, with its new size.
		again := clipEvent("cam-a", "this-month-again", "clips/cam-a/this-month.mp4", t0)
		again.Size = 50
		if _, err := db.Index(ctx, again, nil, day.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if u, err := db.DeviceQuotaUsage(ctx, "cam-a", day, month); err != nil || u.DayUsed != 55 || u.MonthUsed != 85 {
			t.Fatalf("after a re-index: %+v, %v", u, err)
		}
		// The kept usage is the sum over the index, and the migration's backfill makes
		// the same from the clips.
		checkUsageMatchesClips(t, db)
		backfill := usageBackfill(t, db.Dialect())
		if _, err := db.w.ExecContext(ctx, "DELETE FROM device_usage"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.w.ExecContext(ctx, backfill); err != nil {
			t.Fatalf("backfill: %v", err)
		}
		checkUsageMatchesClips(t, db)
		if u, err := db.DeviceQuotaUsage(ctx, "cam-a", day, month); err != nil || u.DayUsed != 55 || u.MonthUsed != 85 {
			t.Fatalf("after the backfill: %+v, %v", u, err)
		}
		// Pruning keeps this month's and the previous month's usage only.
		if _, err := db.Prune(ctx, day, day.AddDate(0, 2, 0)); err != nil {
			t.Fatal(err)
		}
		var left int
		if err := db.w.QueryRowContext(ctx, "SELECT COUNT(*) FROM device_usage").Scan(&left); err != nil || left != 0 {
			t.Fatalf("%d usage rows two months on, %v", left, err)
		}
	})
}

// checkUsageMatchesClips holds device_usage to the clips it counts: per device and UTC
// day of indexing, the sum of the clips' sizes.
func checkUsageMatchesClips(t *testing.T, db *DB) {
	t.Helper()
	read := func(query string) map[string]int64 {
		rows, err := db.r.Query(query)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		m := map[string]int64{}
		for rows.Next() {
			var dev string
			var day, bytes int64
			if err := rows.Scan(&dev, &day, &bytes); err != nil {
				t.Fatal(err)
			}
			if bytes != 0 {
				m[fmt.Sprintf("%s/%d", dev, day)] = bytes
			}
		}
		return m
	}
	kept := read("SELECT device, day, bytes FROM device_usage")
	want := read("SELECT device, indexed_at / 86400000000, CAST(SUM(size) AS BIGINT) FROM clips GROUP BY device, indexed_at / 86400000000")
	if !maps.Equal(kept, want) {
		t.Fatalf("device_usage %v, the clips say %v", kept, want)
	}
}

// usageBackfill returns the INSERT of migration 4 that fills device_usage from the clips.
func usageBackfill(t testing.TB, dialect Dialect) string {
	ms, err := loadMigrations(dialect)
	if err != nil {
		t.Fatal(err)
	}
	_, stmt, ok := strings.Cut(ms[3].sql, "INSERT INTO device_usage")
	if !ok || ms[3].name != "quotas" {
		t.Fatalf("migration 4 (%s) has no backfill", ms[3].name)
	}
	return "INSERT INTO device_usage" + stmt
}
