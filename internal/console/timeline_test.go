package console

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clipgate/clipgate/internal/media"
)

// fixedConsole is a console without a broker on db, whose clock says now.
func fixedConsole(t *testing.T, db *DB, now time.Time) *Console {
	t.Helper()
	c, err := New(Config{Bucket: testBucket(t), Store: db, PasswordHash: testHash, Prefix: "clips/", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// indexAt indexes a verified clip of dev recorded at, of size bytes and d long.
func indexAt(t *testing.T, db *DB, dev string, at time.Time, size int64, d time.Duration) string {
	t.Helper()
	key := fmt.Sprintf("clips/%s/%s.mp4", dev, at.Format("20060102T150405"))
	ev := clipEvent(dev, "e-"+key, key, at)
	ev.Size = size
	if _, err := db.Index(context.Background(), ev, &Media{Info: media.Info{Container: media.MP4, Duration: d}}, at.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	return key
}

// TestTimeline: clips per hour and per day, every slot present, the gaps after a clip
// (not before the first one, not the slot in progress), on both databases.
func TestTimeline(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		h := func(hh, mm int) time.Time { return t0.Add(time.Duration(hh)*time.Hour + time.Duration(mm)*time.Minute) } // t0 is 12:00
		indexAt(t, db, "cam-01", h(-3, 0), 100, time.Minute)                                                           // 09:00
		indexAt(t, db, "cam-01", h(0, 10), 200, time.Minute)
		indexAt(t, db, "cam-01", h(0, 20), 300, 2*time.Minute)
		indexAt(t, db, "cam-01", h(1, 5), 400, 0) // length unknown
		indexAt(t, db, "cam-01", h(5, 30), 500, time.Minute)
		indexAt(t, db, "cam-02", h(2, 0), 600, time.Minute) // another device
		c := fixedConsole(t, db, h(6, 30))                  // 18:30: the 18:00 slot is in progress

		tl, err := c.Timeline(ctx, "cam-01", StepHour, h(0, 0), h(7, 0))
		if err != nil {
			t.Fatal(err)
		}
		var counts []int64
		for _, s := range tl.Slots {
			counts = append(counts, s.Clips)
		}
		if fmt.Sprint(counts) != "[2 1 0 0 0 1 0]" || !tl.Slots[0].Start.Equal(h(0, 0)) || tl.Clips != 4 || tl.Bytes != 1400 ||
			tl.RecordedMS != int64(4*time.Minute/time.Millisecond) || tl.Slots[0].Bytes != 500 || tl.Slots[0].RecordedMS != 180_000 {
			t.Fatalf("slots %v, totals %d clips %d bytes %d ms", counts, tl.Clips, tl.Bytes, tl.RecordedMS)
		}
		if len(tl.Gaps) != 1 || !tl.Gaps[0].From.Equal(h(2, 0)) || !tl.Gaps[0].To.Equal(h(5, 0)) || tl.Gaps[0].Slots != 3 {
			t.Fatalf("gaps %+v", tl.Gaps)
		}
		// From 10:00: the clip at 09:00 came before, so 10:00 to 12:00 is a gap too.
		tl, err = c.Timeline(ctx, "cam-01", StepHour, h(-2, 0), h(1, 0))
		if err != nil {
			t.Fatal(err)
		}
		if len(tl.Gaps) != 1 || !tl.Gaps[0].From.Equal(h(-2, 0)) || tl.Gaps[0].Slots != 2 {
			t.Fatalf("gaps after an earlier clip: %+v", tl.Gaps)
		}
		// Before the device's first clip there is no gap; bounds inside a slot take it whole.
		tl, err = c.Timeline(ctx, "cam-01", StepHour, h(-6, 15), h(-3, 1))
		if err != nil {
			t.Fatal(err)
		}
		if len(tl.Slots) != 4 || !tl.From.Equal(h(-6, 0)) || !tl.To.Equal(h(-2, 0)) || len(tl.Gaps) != 0 || tl.Clips != 1 {
			t.Fatalf("before the first clip: %+v", tl)
		}
		// The fleet: both devices.
		tl, err = c.Timeline(ctx, "", StepHour, h(0, 0), h(3, 0))
		if err != nil || tl.Clips != 4 || tl.Slots[2].Clips != 1 {
			t.Fatalf("fleet: %+v, %v", tl, err)
		}
		// Per day, by default the last 30 days up to today's end: all of cam-01's clips
		// today, no gap (nothing before).
		tl, err = c.Timeline(ctx, "cam-01", StepDay, time.Time{}, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		last := tl.Slots[len(tl.Slots)-1]
		if len(tl.Slots) != DefaultDays || !last.Start.Equal(t0.Truncate(24*time.Hour)) || last.Clips != 5 || len(tl.Gaps) != 0 {
			t.Fatalf("per day: %d slots, last %+v, gaps %+v", len(tl.Slots), last, tl.Gaps)
		}
		// The chart: a bar per slot, gap slots shaded, the tallest bar the fullest slot.
		tl, _ = c.Timeline(ctx, "cam-01", StepHour, h(0, 0), h(7, 0))
		ch := newChart(tl, "t", "/devices/cam-01")
		var classes []string
		for _, b := range ch.Bars {
			classes = append(classes, b.Class)
		}
		if strings.Join(classes, " ") != "bar bar gap gap gap bar empty" || ch.Bars[0].H != chartHeight-4 || ch.Bars[1].H >= ch.Bars[0].H ||
			!strings.Contains(ch.Bars[0].Href, "from=2026-03-01T12%3A00&to=2026-03-01T13%3A00") {
			t.Fatalf("chart bars: %v %+v", classes, ch.Bars[:2])
		}
		if got := formatGap(tl.Gaps[0]); got != "from Mar 1 14:00 to 17:00 (3 hours)" {
			t.Fatalf("gap text %q", got)
		}
		// Garbage.
		for _, tc := range []struct{ from, to time.Time }{{h(1, 0), h(1, 0)}, {h(2, 0), h(1, 0)}, {h(0, 0), h(0, 0).Add(2000 * time.Hour)}} {
			if _, err := c.Timeline(ctx, "cam-01", StepHour, tc.from, tc.to); err == nil {
				t.Errorf("timeline %v to %v: no error", tc.from, tc.to)
			}
		}
	})
}

// TestStorageCounts: a device's bytes follow its clips through inserts, overwrites and
// deletes; the totals add up the devices.
func TestStorageCounts(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		k1 := indexAt(t, db, "cam-01", t0, 1000, 0)
		indexAt(t, db, "cam-01", t0.Add(time.Second), 500, 0)
		indexAt(t, db, "cam-02", t0, 7, 0)
		if d := mustDevice(t, db, "cam-01"); d.Bytes != 1500 || d.Clips != 2 {
			t.Fatalf("cam-01: %+v", d)
		}
		// An unverified event, then the device's verified one with another size.
		k3 := "clips/cam-01/late.mp4"
		ev := clipEvent("cam-01", "u1", k3, t0)
		ev.Verified, ev.Reason, ev.Size = false, "size_mismatch", 10
		mustIndex(t, db, ev, Inserted)
		ev = clipEvent("cam-01", "v1", k3, t0)
		ev.Size = 4000
		mustIndex(t, db, ev, Updated)
		if d := mustDevice(t, db, "cam-01"); d.Bytes != 5500 || d.Clips != 3 {
			t.Fatalf("cam-01 after the overwrite: %+v", d)
		}
		if n, err := db.DeleteClips(ctx, []string{k1, k3}); err != nil || n != 2 {
			t.Fatal(n, err)
		}
		if d := mustDevice(t, db, "cam-01"); d.Bytes != 500 || d.Clips != 1 {
			t.Fatalf("cam-01 after deletes: %+v", d)
		}
		tot, err := db.Totals(ctx)
		if err != nil || tot != (Totals{Devices: 2, Clips: 2, Bytes: 507}) {
			t.Fatalf("totals %+v, %v", tot, err)
		}
	})
}

// TestMigrationFromVersion2: a database made by the previous console (schema 2) with
// clips in it is migrated in place: the devices' bytes are filled from their clips, the
// clips keep their rows with the media facts unknown, and an old session (without an
// operator) is no longer valid.
func TestMigrationFromVersion2(t *testing.T) {
	for _, dialect := range []Dialect{SQLite, Postgres} {
		t.Run(string(dialect), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			var dsn, driver string
			if dialect == SQLite {
				path := filepath.Join(t.TempDir(), "old.db")
				dsn, driver = "sqlite:"+path, "sqlite"
				path += "?_pragma=journal_mode(WAL)"
				raw := openRaw(t, driver, path)
				applyOld(t, raw, dialect, 2)
			} else {
				dsn = postgresDSN(t)
				driver = "pgx"
				applyOld(t, openRaw(t, driver, dsn), dialect, 2)
			}
			db, err := Open(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if v, err := db.SchemaVersion(ctx); err != nil || v != schemaVersion(t) {
				t.Fatalf("version %d, %v", v, err)
			}
			if d := mustDevice(t, db, "cam-01"); d.Bytes != 3000 || d.Clips != 2 {
				t.Fatalf("cam-01 after the migration: %+v", d)
			}
			c, err := db.Clip(ctx, "clips/cam-01/a.mp4")
			if err != nil || c.Size != 1000 || c.DurationMS != 0 || c.Poster || c.Codec != "" {
				t.Fatalf("old clip: %+v, %v", c, err)
			}
			if _, err := db.Session(ctx, "oldsession", t0); err == nil {
				t.Fatal("a session without an operator is valid")
			}
		})
	}
}

func openRaw(t *testing.T, driver, dsn string) *sql.DB {
	t.Helper()
	raw, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Close() })
	return raw
}

// applyOld makes the schema of version v, as a console of then did, and fills it.
func applyOld(t *testing.T, raw *sql.DB, dialect Dialect, v int) {
	t.Helper()
	ms, err := loadMigrations(dialect)
	if err != nil {
		t.Fatal(err)
	}
	stmts := []string{"CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)"}
	for _, m := range ms[:v] {
		stmts = append(stmts, m.sql, fmt.Sprintf("INSERT INTO schema_migrations VALUES (%d, '%s', 0)", m.version, m.name))
	}
	stmts = append(stmts,
		"INSERT INTO devices (id, clip_count) VALUES ('cam-01', 2)",
		"INSERT INTO clips (key, event_id, device, bucket, size, crc64, recorded_at, uploaded_at, indexed_at, verified) VALUES "+
			"('clips/cam-01/a.mp4', 'e1', 'cam-01', 'clips', 1000, '1', 0, 0, 0, true), "+
			"('clips/cam-01/b.mp4', 'e2', 'cam-01', 'clips', 2000, '2', 0, 0, 0, true)",
		"INSERT INTO sessions (id_hash, csrf, created_at, expires_at) VALUES ('oldsession', 'c', 0, 9000000000000000)",
	)
	for _, s := range stmts {
		if _, err := raw.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}
