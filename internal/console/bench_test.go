package console

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The clip-list benchmark's index: benchClips clips (default 1M, CLIPGATE_BENCH_CLIPS to
// change) of benchDevices devices, one clip per device every benchStep, in a SQLite file
// built once per process.
const (
	benchDevices = 1000
	benchSpan    = 30 * 24 * time.Hour // the recording times of the whole index
)

var (
	benchOnce  sync.Once
	benchDir   string
	benchDB    *DB
	benchErr   error
	benchN     int
	benchBuilt time.Duration
	benchStart = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
)

func benchKey(dev, i int) string {
	return fmt.Sprintf("clips/cam-%04d/2026/03/clip-%07d.mp4", dev, i)
}

// benchIndex returns the shared index, building it on first use: one transaction, one
// prepared statement, in (recorded_at) order as a live fleet would fill it.
func benchIndex(b *testing.B) *DB {
	benchOnce.Do(func() {
		benchN = 1_000_000
		if v := os.Getenv("CLIPGATE_BENCH_CLIPS"); v != "" {
			if benchN, benchErr = strconv.Atoi(v); benchErr != nil {
				return
			}
		}
		benchDir, benchErr = os.MkdirTemp("", "clipgate-console-bench-") // removed by TestMain
		if benchErr != nil {
			return
		}
		start := time.Now()
		benchDB, benchErr = buildBenchIndex(filepath.Join(benchDir, "bench.db"), benchN)
		benchBuilt = time.Since(start)
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchDB
}

func buildBenchIndex(path string, n int) (*DB, error) {
	ctx := context.Background()
	db, err := OpenSQLite(ctx, path)
	if err != nil {
		return nil, err
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback() }()
	ins, err := tx.PrepareContext(ctx, db.q.insertClip)
	if err != nil {
		return nil, err
	}
	step := benchSpan / time.Duration(max(n/benchDevices, 1)) // between a device's clips: 43 minutes for 1M
	for i := range n {
		dev := i % benchDevices
		at := benchStart.Add(time.Duration(i/benchDevices) * step).Add(time.Duration(dev) * time.Millisecond)
		if _, err := ins.ExecContext(ctx, benchKey(dev, i), fmt.Sprintf("e%d", i), fmt.Sprintf("cam-%04d", dev), "clips",
			int64(1<<20+i%4096), "1234567890123456789", "video/mp4", us(at), us(at.Add(5*time.Second)), us(at.Add(6*time.Second)),
			true, "", false); err != nil {
			return nil, err
		}
	}
	for dev := range benchDevices {
		if _, err := tx.ExecContext(ctx, "INSERT INTO devices (id, clip_count) VALUES ($1, $2)", fmt.Sprintf("cam-%04d", dev), n/benchDevices); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	_, err = db.w.ExecContext(ctx, "ANALYZE")
	return db, err
}

// cursorAt returns the cursor after the first skip clips of q (newest first).
func cursorAt(b *testing.B, db *DB, q ClipQuery, skip int) *Cursor {
	q.Limit = skip
	clips, err := db.Clips(context.Background(), q)
	if err != nil || len(clips) != skip {
		b.Fatalf("skipping %d clips: got %d, %v", skip, len(clips), err)
	}
	last := clips[skip-1]
	return &Cursor{RecordedAt: last.RecordedAt, Key: last.Key}
}

// BenchmarkClipList measures one page (DefaultPageSize clips, plus the one that tells
// whether there is a next page) of the clip lists over a 1M-clip SQLite index: a
// device's newest clips and a page deep in its history, the fleet's clips in a one-week
// window, first and deep (keyset pagination), and the deep device page through the HTTP
// API. The index is built once (a minute or two) in a temporary directory.
//
//	go test -run '^$' -bench 'BenchmarkClipList$' -benchtime 500x -v ./internal/console
func BenchmarkClipList(b *testing.B) {
	db := benchIndex(b)
	b.Logf("index: %d clips of %d devices, built in %v", benchN, benchDevices, benchBuilt.Round(time.Millisecond))
	ctx := context.Background()
	perDevice := benchN / benchDevices
	week, inWeek := benchWeek(b, db)
	deepDevice := perDevice * 9 / 10
	deepWeek := inWeek * 9 / 10
	b.Logf("one week holds %d clips of the fleet; a device has %d", inWeek, perDevice)
	device := ClipQuery{Device: "cam-0421"}
	cases := []struct {
		name string
		q    ClipQuery
	}{
		{"device/first", device},
		{fmt.Sprintf("device/deep-%d", deepDevice), withCursor(device, cursorAt(b, db, device, deepDevice))},
		{"fleet-week/first", week},
		{fmt.Sprintf("fleet-week/deep-%d", deepWeek), withCursor(week, cursorAt(b, db, week, deepWeek))},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			q := tc.q
			q.Limit = DefaultPageSize + 1
			b.ReportAllocs()
			for b.Loop() {
				clips, err := db.Clips(ctx, q)
				if err != nil || len(clips) == 0 {
					b.Fatalf("got %d clips, %v", len(clips), err)
				}
			}
		})
	}
	// The deep device page through the HTTP API (session lookup, query, JSON).
	b.Run(fmt.Sprintf("http/device/deep-%d", deepDevice), func(b *testing.B) {
		c, err := New(Config{Bucket: testBucket(b), Store: db, PasswordHash: testHash})
		if err != nil {
			b.Fatal(err)
		}
		id := newToken()
		if err := db.CreateSession(ctx, Session{IDHash: hashID(id), CSRF: newToken(), Created: time.Now(), Expires: time.Now().Add(time.Hour)}); err != nil {
			b.Fatal(err)
		}
		cur := cursorAt(b, db, device, deepDevice)
		target := "/api/clips?device=cam-0421&after=" + encodeCursor(*cur)
		h := c.Handler()
		for b.Loop() {
			req := httptest.NewRequest(http.MethodGet, target, nil)
			req.AddCookie(&http.Cookie{Name: sessionCookie, Value: id})
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	})
}

// BenchmarkClipListOffset is, for contrast, BenchmarkClipList's deep page of the fleet's
// week by OFFSET, which reads every row it skips (about a second a page: run it with
// -benchtime 5x).
func BenchmarkClipListOffset(b *testing.B) {
	db := benchIndex(b)
	ctx := context.Background()
	week, inWeek := benchWeek(b, db)
	deep := inWeek * 9 / 10
	query := "SELECT " + clipColumns + " FROM clips WHERE recorded_at >= $1 AND recorded_at < $2 ORDER BY recorded_at DESC, key DESC LIMIT $3 OFFSET $4"
	b.Run(fmt.Sprintf("fleet-week/offset-%d", deep), func(b *testing.B) {
		for b.Loop() {
			rows, err := db.r.QueryContext(ctx, query, us(week.From), us(week.To), DefaultPageSize+1, deep)
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			for rows.Next() {
				if _, err := scanClip(rows); err != nil {
					b.Fatal(err)
				}
				n++
			}
			if err := rows.Close(); err != nil || n != DefaultPageSize+1 {
				b.Fatalf("got %d, %v", n, err)
			}
		}
	})
}

// benchWeek returns the week window of the fleet list and the clips it holds.
func benchWeek(b *testing.B, db *DB) (ClipQuery, int) {
	week := ClipQuery{From: benchStart.Add(benchSpan / 3), To: benchStart.Add(benchSpan/3 + benchSpan*7/30)}
	var n int
	if err := db.r.QueryRowContext(context.Background(), "SELECT COUNT(*) FROM clips WHERE recorded_at >= $1 AND recorded_at < $2",
		us(week.From), us(week.To)).Scan(&n); err != nil {
		b.Fatal(err)
	}
	return week, n
}

func withCursor(q ClipQuery, c *Cursor) ClipQuery {
	q.After = c
	return q
}

// TestClipListPlans checks that both clip lists walk their index (SQLite's query plan),
// so that the benchmark's figures hold at any depth.
func TestClipListPlans(t *testing.T) {
	t.Parallel()
	db := openTestDB(t, SQLite)
	ctx := context.Background()
	for _, tc := range []struct {
		key  clipListKey
		name string
	}{
		{clipListKey{byDevice: true}, "clips_device_time"},
		{clipListKey{}, "clips_time"},
		{clipListKey{status: ClipVerified}, "clips_time"},
		{clipListKey{byDevice: true, status: ClipReconciled}, "clips_device_time"},
		{clipListKey{status: ClipUnverified}, "clips_unverified"}, // the partial index
	} {
		name := tc.name
		args := []any{0, 1, 2, "k", 10}
		if tc.key.byDevice {
			args = append(args, "cam-01")
		}
		rows, err := db.r.QueryContext(ctx, "EXPLAIN QUERY PLAN "+db.q.clips[tc.key], args...)
		if err != nil {
			t.Fatal(err)
		}
		plan := ""
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			plan += detail + "\n"
		}
		rows.Close()
		if want := "USING INDEX " + name; !strings.Contains(plan, want) || strings.Contains(plan, "TEMP B-TREE") {
			t.Errorf("plan of the %+v query:\n%s(want %q, no sort)", tc.key, plan, want)
		}
	}
}
