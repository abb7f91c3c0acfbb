package console

import (
	"context"

	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clipgate/clipgate/events"
	"github.com/clipgate/clipgate/internal/media"
	"github.com/clipgate/clipgate/internal/protocol"
)

// forEachStore runs f against a fresh SQLite database and a fresh PostgreSQL database.
func forEachStore(t *testing.T, f func(t *testing.T, db *DB)) {
	t.Helper()
	for _, dialect := range []Dialect{SQLite, Postgres} {
		t.Run(string(dialect), func(t *testing.T) {
			t.Parallel()
			f(t, openTestDB(t, dialect))
		})
	}
}

func openTestDB(t testing.TB, dialect Dialect) *DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var db *DB
	var err error
	if dialect == SQLite {
		db, err = OpenSQLite(ctx, filepath.Join(t.TempDir(), "console.db"))
	} else {
		db, err = OpenPostgres(ctx, postgresDSN(t))
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// clipEvent is a verified completed event of dev for key, published by dev.
func clipEvent(dev, id, key string, recorded time.Time) *events.Event {
	return &events.Event{
		UploadEvent: protocol.UploadEvent{V: 1, ID: id, Device: dev, Status: protocol.StatusCompleted, Bucket: "clips",
			Key: key, Size: 10, CRC64: "18446744073709551615", ContentType: "video/mp4", RecordedAt: recorded, UploadedAt: recorded.Add(time.Second)},
		Publisher: dev,
		Verified:  true,
	}
}

func mustIndex(t *testing.T, db *DB, ev *events.Event, want IndexOutcome) {
	t.Helper()
	got, err := db.Index(context.Background(), ev, nil, t0.Add(time.Hour))
	if err != nil {
		t.Fatalf("Index(%s): %v", ev.ID, err)
	}
	if got != want {
		t.Fatalf("Index(%s) = %v, want %v", ev.ID, got, want)
	}
}

func mustDevice(t *testing.T, db *DB, id string) *Device {
	t.Helper()
	d, err := db.Device(context.Background(), id)
	if err != nil {
		t.Fatalf("Device(%s): %v", id, err)
	}
	return d
}

// schemaVersion is the number of embedded migrations (the same for both dialects).
func schemaVersion(t *testing.T) int {
	t.Helper()
	lite, err := loadMigrations(SQLite)
	if err != nil {
		t.Fatal(err)
	}
	pg, err := loadMigrations(Postgres)
	if err != nil || len(pg) != len(lite) {
		t.Fatalf("%d PostgreSQL migrations, %d SQLite: %v", len(pg), len(lite), err)
	}
	return len(lite)
}

func TestStoreMigrations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "c.db")
	db, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := db.SchemaVersion(ctx)
	if err != nil || v != schemaVersion(t) {
		t.Fatalf("SchemaVersion = %d, %v; want %d", v, err, schemaVersion(t))
	}
	var mode string
	if err := db.r.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v", mode, err)
	}
	// The readers cannot write.
	if _, err := db.r.ExecContext(ctx, "DELETE FROM clips"); err == nil {
		t.Fatal("a reader connection could write")
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// Opening again applies nothing twice.
	db, err = OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.r.QueryRowContext(ctx, "SELECT COUNT(*) FROM schema_migrations").Scan(&n); err != nil || n != schemaVersion(t) {
		t.Fatalf("schema_migrations rows = %d, %v", n, err)
	}
	// A database from a newer console is refused.
	if _, err := db.w.ExecContext(ctx, "INSERT INTO schema_migrations VALUES (99, 'future', 0)"); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	if _, err := OpenSQLite(ctx, path); err == nil || !strings.Contains(err.Error(), "newer than this console") {
		t.Fatalf("opening a newer schema: %v", err)
	}
}

func TestStorePostgresMigrations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := postgresDSN(t)
	// Two consoles starting at once migrate once.
	errs := make(chan error, 2)
	dbs := make(chan *DB, 2)
	for range 2 {
		go func() {
			db, err := Open(ctx, dsn)
			errs <- err
			dbs <- db
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		db := <-dbs
		defer db.Close()
		if db.Dialect() != Postgres {
			t.Fatalf("Open(%q) dialect %s", dsn, db.Dialect())
		}
	}
	// The key=value form of a connection string opens PostgreSQL too.
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	kv := fmt.Sprintf("host=%s port=%s user=postgres dbname=%s sslmode=disable", u.Query().Get("host"), u.Query().Get("port"), strings.TrimPrefix(u.Path, "/"))
	db, err := Open(ctx, kv)
	if err != nil || db.Dialect() != Postgres {
		t.Fatalf("Open(%q): %v", kv, err)
	}
	defer db.Close()
	if v, err := db.SchemaVersion(ctx); err != nil || v != schemaVersion(t) {
		t.Fatalf("SchemaVersion = %d, %v", v, err)
	}
}

func TestOpenGarbage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	for _, p := range []string{"", "a.db?mode=ro", "x#y", "file:a.db", ":memory:", filepath.Join(dir, "missing", "dir", "c.db"), dir} {
		if db, err := OpenSQLite(ctx, p); err == nil {
			_ = db.Close()
			t.Errorf("OpenSQLite(%q) succeeded", p)
		}
	}
	// A file that is not a database.
	junk := filepath.Join(dir, "junk.db")
	if err := os.WriteFile(junk, []byte("this is not a SQLite database, not at all, no"), 0o600); err != nil {
		t.Fatal(err)
	}
	if db, err := Open(ctx, "sqlite:"+junk); err == nil {
		_ = db.Close()
		t.Error("opened a junk file")
	}
	// An unreachable PostgreSQL fails with an error, not a hang.
	ctx2, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if db, err := Open(ctx2, "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=2"); err == nil {
		_ = db.Close()
		t.Error("connected to nothing")
	}
	if db, err := Open(ctx2, "postgres://%zz"); err == nil {
		_ = db.Close()
		t.Error("accepted a malformed URL")
	}
}

func TestStoreIndex(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		key := "clips/cam-01/2026/03/01/a.mp4"
		ev := clipEvent("cam-01", "e1", key, t0)
		if seen, err := db.Seen(ctx, "cam-01", "e1"); err != nil || seen {
			t.Fatalf("Seen before indexing = %v, %v", seen, err)
		}
		mustIndex(t, db, ev, Inserted)
		mustIndex(t, db, ev, Duplicate)
		if seen, err := db.Seen(ctx, "cam-01", "e1"); err != nil || !seen {
			t.Fatalf("Seen after indexing = %v, %v", seen, err)
		}
		// Dedup is per device: another device's event with the same ID is not a duplicate.
		if seen, err := db.Seen(ctx, "cam-02", "e1"); err != nil || seen {
			t.Fatalf("Seen(cam-02, e1) = %v, %v", seen, err)
		}
		d := mustDevice(t, db, "cam-01")
		// Last seen: the event's own time (uploadedAt), not when it was indexed.
		if d.Clips != 1 || !d.LastUpload.Equal(t0.Add(time.Second)) || !d.LastSeen.Equal(t0.Add(time.Second)) {
			t.Fatalf("device after one clip: %+v", d)
		}
		c, err := db.Clip(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		want := Clip{Key: key, EventID: "e1", Device: "cam-01", Bucket: "clips", Size: 10, CRC64: "18446744073709551615",
			ContentType: "video/mp4", RecordedAt: t0, UploadedAt: t0.Add(time.Second), IndexedAt: t0.Add(time.Hour), Verified: true}
		if *c != want {
			t.Fatalf("Clip = %+v\nwant %+v", *c, want)
		}
		if known, err := db.KnownClip(ctx, key); err != nil || !known {
			t.Fatalf("KnownClip = %v, %v", known, err)
		}

		// A reconciled event for the same object does not replace the device's event.
		rec := clipEvent("cam-01", "r-1", key, time.Time{})
		rec.Publisher, rec.Reconciled, rec.UploadedAt = "", true, t0.Add(time.Minute)
		mustIndex(t, db, rec, Unchanged)
		// A later verified upload over the same key does.
		again := clipEvent("cam-01", "e2", key, t0.Add(time.Minute))
		again.Size = 20
		mustIndex(t, db, again, Updated)
		if c, _ := db.Clip(ctx, key); c.Size != 20 || c.EventID != "e2" {
			t.Fatalf("after overwrite: %+v", c)
		}
		if d := mustDevice(t, db, "cam-01"); d.Clips != 1 {
			t.Fatalf("an update counted as a new clip: %+v", d)
		}

		// An unverified event is indexed with its reason, and not Known, so that the
		// reconciler heals it; the verified reconciled event then replaces it.
		bad := clipEvent("cam-01", "e3", "clips/cam-01/2026/03/01/b.mp4", t0)
		bad.Verified, bad.Reason = false, events.ReasonSizeMismatch
		mustIndex(t, db, bad, Inserted)
		if known, _ := db.KnownClip(ctx, bad.Key); known {
			t.Fatal("an unverified clip is Known")
		}
		heal := clipEvent("cam-01", "r-2", bad.Key, time.Time{})
		heal.Publisher, heal.Reconciled = "", true
		mustIndex(t, db, heal, Updated)
		if c, _ := db.Clip(ctx, bad.Key); !c.Verified || c.Reason != "" || !c.Reconciled || !c.RecordedAt.Equal(heal.UploadedAt) {
			t.Fatalf("healed clip: %+v", c)
		}
		d = mustDevice(t, db, "cam-01")
		if d.Clips != 2 || d.Rejected != 1 {
			t.Fatalf("device: %+v", d)
		}

		// A device announcing another's object: counted against the publisher, and the
		// key stays free for its owner.
		foreign := clipEvent("cam-01", "e4", "clips/cam-02/2026/03/01/x.mp4", t0)
		foreign.Verified, foreign.Reason = false, events.ReasonWrongPrefix
		mustIndex(t, db, foreign, NotStored)
		spoof := clipEvent("cam-02", "e5", "clips/cam-02/2026/03/01/y.mp4", t0)
		spoof.Publisher, spoof.Verified, spoof.Reason = "cam-01", false, events.ReasonWrongDevice
		mustIndex(t, db, spoof, NotStored)
		if _, err := db.Clip(ctx, foreign.Key); !errors.Is(err, ErrNotFound) {
			t.Fatalf("foreign key indexed: %v", err)
		}
		if d := mustDevice(t, db, "cam-01"); d.Rejected != 3 || d.Clips != 2 {
			t.Fatalf("publisher counters: %+v", d)
		}
		if _, err := db.Device(ctx, "cam-02"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("the spoofed device got a row: %v", err)
		}
		owner := clipEvent("cam-02", "e1", foreign.Key, t0)
		mustIndex(t, db, owner, Inserted)
		// The spoofed event's ID is recorded for its publisher: cam-02's own event with
		// that ID is not taken for a duplicate.
		if seen, err := db.Seen(ctx, "cam-01", "e5"); err != nil || !seen {
			t.Fatalf("Seen(cam-01, e5) = %v, %v", seen, err)
		}
		real5 := clipEvent("cam-02", "e5", spoof.Key, t0)
		mustIndex(t, db, real5, Inserted)

		// A failed upload counts, names no clip.
		failed := &events.Event{UploadEvent: protocol.UploadEvent{V: 1, ID: "e6", Device: "cam-03", Status: protocol.StatusFailed, Error: "disk"}, Publisher: "cam-03"}
		mustIndex(t, db, failed, NotStored)
		if d := mustDevice(t, db, "cam-03"); d.Failed != 1 || d.Clips != 0 || d.Rejected != 0 {
			t.Fatalf("failed upload: %+v", d)
		}
		// Mark is a no-op that succeeds.
		if err := db.Mark(ctx, "cam-03", "e6"); err != nil {
			t.Fatal(err)
		}
	})
}

func TestStoreStatusAndRevocation(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		// Last seen is the status's own time, not its arrival.
		if err := db.SetStatus(ctx, "cam-01", true, t0, t0.Add(-2*time.Hour)); err != nil {
			t.Fatal(err)
		}
		if d := mustDevice(t, db, "cam-01"); !d.Online || !d.StatusAt.Equal(t0) || !d.LastSeen.Equal(t0.Add(-2*time.Hour)) {
			t.Fatalf("online: %+v", d)
		}
		// An offline status with an older time; last seen never goes back.
		if err := db.SetStatus(ctx, "cam-01", false, t0.Add(time.Minute), t0.Add(-3*time.Hour)); err != nil {
			t.Fatal(err)
		}
		if d := mustDevice(t, db, "cam-01"); d.Online || !d.StatusAt.Equal(t0.Add(time.Minute)) || !d.LastSeen.Equal(t0.Add(-2*time.Hour)) {
			t.Fatalf("offline: %+v", d)
		}
		// Without a time, last seen is left alone; a new device has none.
		if err := db.SetStatus(ctx, "cam-01", true, t0.Add(2*time.Minute), time.Time{}); err != nil {
			t.Fatal(err)
		}
		if err := db.SetStatus(ctx, "cam-02", true, t0, time.Time{}); err != nil {
			t.Fatal(err)
		}
		if d := mustDevice(t, db, "cam-01"); !d.Online || !d.LastSeen.Equal(t0.Add(-2*time.Hour)) {
			t.Fatalf("status without a time: %+v", d)
		}
		if d := mustDevice(t, db, "cam-02"); !d.Online || !d.LastSeen.IsZero() {
			t.Fatalf("new device, status without a time: %+v", d)
		}
		// A time ahead of the arrival (a device clock running fast) counts as the arrival.
		if err := db.SetStatus(ctx, "cam-01", true, t0.Add(3*time.Minute), t0.Add(24*time.Hour)); err != nil {
			t.Fatal(err)
		}
		if d := mustDevice(t, db, "cam-01"); !d.LastSeen.Equal(t0.Add(3 * time.Minute)) {
			t.Fatalf("status from the future: %+v", d)
		}
		for _, id := range []string{"cam-09", "cam-01", "never-seen"} {
			if err := db.SetRevoked(ctx, id, true, t0); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.SetRevoked(ctx, "cam-09", false, t0); err != nil {
			t.Fatal(err)
		}
		ids, err := db.RevokedDevices(ctx)
		if err != nil || !slices.Equal(ids, []string{"cam-01", "never-seen"}) {
			t.Fatalf("RevokedDevices = %v, %v", ids, err)
		}
		if d := mustDevice(t, db, "cam-09"); d.Revoked || !d.RevokedAt.IsZero() {
			t.Fatalf("restored device: %+v", d)
		}
		if d := mustDevice(t, db, "cam-01"); !d.Revoked || !d.RevokedAt.Equal(t0) {
			t.Fatalf("revoked device: %+v", d)
		}
		// Devices pages by ID.
		all, err := db.Devices(ctx, "", 100)
		if err != nil || len(all) != 4 || all[0].ID != "cam-01" || all[3].ID != "never-seen" {
			t.Fatalf("Devices = %+v, %v", all, err)
		}
		page, err := db.Devices(ctx, "cam-01", 1)
		if err != nil || len(page) != 1 || page[0].ID != "cam-02" {
			t.Fatalf("Devices after cam-01 = %+v, %v", page, err)
		}
	})
}

// TestStoreClipPages is the fleet-wide search: every combination of device, time range
// and status, page by page, against the same filter applied to all the clips.
func TestStoreClipPages(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		// 60 clips over 3 devices; several share a recording time, so that the key breaks
		// ties. Every status occurs on every device (i%5 against i%3).
		var all []Clip
		for i := range 60 {
			dev := fmt.Sprintf("cam-%02d", i%3)
			at := t0.Add(time.Duration(i/4) * time.Minute)
			key := fmt.Sprintf("clips/%s/2026/03/01/c%03d.mp4", dev, (i*37)%100)
			ev := clipEvent(dev, fmt.Sprintf("e%d", i), key, at)
			var m *Media
			switch i % 5 {
			case 1:
				ev.Verified, ev.Reason = false, events.ReasonSizeMismatch
			case 2:
				ev.ID, ev.Publisher, ev.Reconciled = "r-"+ev.ID, "", true
			case 3:
				m = &Media{Info: media.Info{Container: "MP4", Codec: "H264", Width: 640, Height: 360, Duration: 2 * time.Second}, Poster: true}
			case 4:
				m = &Media{Info: media.Info{Container: "MPEGTS", Duration: time.Second}}
			}
			if got, err := db.Index(ctx, ev, m, t0.Add(time.Hour)); err != nil || got != Inserted {
				t.Fatalf("Index(%s) = %v, %v", ev.ID, got, err)
			}
			c, err := db.Clip(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, *c)
		}
		newestFirst := func(a, b Clip) int {
			if c := b.RecordedAt.Compare(a.RecordedAt); c != 0 {
				return c
			}
			return strings.Compare(b.Key, a.Key)
		}
		slices.SortFunc(all, newestFirst)
		hasStatus := map[ClipStatus]func(c Clip) bool{
			"":               func(Clip) bool { return true },
			ClipVerified:     func(c Clip) bool { return c.Verified },
			ClipUnverified:   func(c Clip) bool { return !c.Verified },
			ClipReconciled:   func(c Clip) bool { return c.Reconciled },
			ClipWithPoster:   func(c Clip) bool { return c.Poster },
			ClipMediaUnknown: func(c Clip) bool { return c.DurationMS == 0 },
		}
		var queries []ClipQuery
		for _, status := range ClipStatuses() {
			for _, q := range []ClipQuery{
				{Limit: 7},
				{Device: "cam-01", Limit: 4},
				{From: t0.Add(3 * time.Minute), To: t0.Add(9 * time.Minute), Limit: 5},
				{Device: "cam-02", From: t0.Add(2 * time.Minute), Limit: 3},
				{Device: "cam-00", To: t0.Add(time.Minute), Limit: 100},
				{Device: "cam-01", From: t0.Add(4 * time.Minute), To: t0.Add(12 * time.Minute), Limit: 2},
				{Device: "nobody", Limit: 10},
			} {
				q.Status = ClipStatus(status)
				queries = append(queries, q)
			}
		}
		for _, q := range queries {
			var want []Clip
			for _, c := range all {
				if (q.Device == "" || c.Device == q.Device) && (q.From.IsZero() || !c.RecordedAt.Before(q.From)) &&
					(q.To.IsZero() || c.RecordedAt.Before(q.To)) && hasStatus[q.Status](c) {
					want = append(want, c)
				}
			}
			// The search by all three must find clips of each status, or a wrong filter
			// would go unseen.
			if len(want) == 0 && q.Device != "" && !q.From.IsZero() && !q.To.IsZero() {
				t.Fatalf("query %+v matches no clip", q)
			}
			var got []Clip
			for pages := 0; ; pages++ {
				page, err := db.Clips(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				if len(page) > q.Limit {
					t.Fatalf("page of %d over the limit %d", len(page), q.Limit)
				}
				got = append(got, page...)
				if len(page) < q.Limit {
					break
				}
				last := page[len(page)-1]
				q.After = &Cursor{RecordedAt: last.RecordedAt, Key: last.Key}
				if pages > 100 {
					t.Fatal("pagination does not end")
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("query %+v: got %d clips, want %d\ngot  %v\nwant %v", q, len(got), len(want), keys(got), keys(want))
			}
		}
	})
}

func keys(cs []Clip) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Key
	}
	return out
}

func TestStoreDeleteAndExpire(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		var keysA []string
		for i := range 1200 { // more than one DELETE batch
			dev := "cam-a"
			if i%2 == 1 {
				dev = "cam-b"
			}
			key := fmt.Sprintf("clips/%s/k%04d", dev, i)
			ev := clipEvent(dev, fmt.Sprintf("e%d", i), key, t0.Add(time.Duration(i)*time.Second))
			mustIndex(t, db, ev, Inserted)
			if dev == "cam-a" {
				keysA = append(keysA, key)
			}
		}
		// Expired under a prefix: uploaded before t0+101s under clips/cam-a/.
		var expired []string
		after := ""
		for {
			page, err := db.ExpiredClips(ctx, "clips/cam-a/", t0.Add(101*time.Second), after, 7)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range page {
				expired = append(expired, r.Key)
			}
			if len(page) < 7 {
				break
			}
			after = page[len(page)-1].Key
		}
		// Uploaded at t0 + i + 1s < t0 + 101s: i < 100, even i only.
		if len(expired) != 50 || expired[0] != "clips/cam-a/k0000" || expired[49] != "clips/cam-a/k0098" {
			t.Fatalf("expired = %d keys: %v", len(expired), expired)
		}
		all, err := db.ExpiredClips(ctx, "", t0.Add(3*time.Second), "", 100)
		if err != nil || !slices.Equal(all, []ClipRef{{Key: "clips/cam-a/k0000"}, {Key: "clips/cam-b/k0001"}}) {
			t.Fatalf("expired without a prefix = %v, %v", all, err)
		}
		// Delete cam-a's clips (600, in two batches) plus keys that are not indexed.
		n, err := db.DeleteClips(ctx, append(slices.Clone(keysA), "clips/none/x", "clips/cam-a/k9999"))
		if err != nil || n != 600 {
			t.Fatalf("DeleteClips = %d, %v", n, err)
		}
		if d := mustDevice(t, db, "cam-a"); d.Clips != 0 {
			t.Fatalf("cam-a after delete: %+v", d)
		}
		if d := mustDevice(t, db, "cam-b"); d.Clips != 600 {
			t.Fatalf("cam-b after delete: %+v", d)
		}
		if n, err := db.DeleteClips(ctx, keysA[:3]); err != nil || n != 0 {
			t.Fatalf("deleting again = %d, %v", n, err)
		}
		if _, err := db.Clip(ctx, keysA[0]); !errors.Is(err, ErrNotFound) {
			t.Fatalf("deleted clip: %v", err)
		}
	})
}

func TestStoreSessionsAndPrune(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		if err := db.PutOperator(ctx, Operator{Name: "alice", Role: RoleViewer, PasswordHash: testHash, Updated: t0}); err != nil {
			t.Fatal(err)
		}
		s := Session{IDHash: "h1", CSRF: "tok", Created: t0, Expires: t0.Add(time.Hour), Operator: "alice", Role: RoleViewer}
		if err := db.CreateSession(ctx, s); err != nil {
			t.Fatal(err)
		}
		if err := db.CreateSession(ctx, s); err == nil {
			t.Fatal("a session ID was stored twice")
		}
		got, err := db.Session(ctx, "h1", t0.Add(time.Minute))
		if err != nil || *got != s {
			t.Fatalf("Session = %+v, %v", got, err)
		}
		if _, err := db.Session(ctx, "h1", t0.Add(time.Hour)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("expired session: %v", err)
		}
		if _, err := db.Session(ctx, "nope", t0); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown session: %v", err)
		}
		if err := db.CreateSession(ctx, Session{IDHash: "h2", CSRF: "t2", Created: t0, Expires: t0.Add(2 * time.Hour), Operator: "alice"}); err != nil {
			t.Fatal(err)
		}
		if err := db.DeleteSession(ctx, "h2"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Session(ctx, "h2", t0); !errors.Is(err, ErrNotFound) {
			t.Fatalf("deleted session: %v", err)
		}
		// Seen records: indexed at t0+1h by mustIndex.
		for i := range 3 {
			mustIndex(t, db, clipEvent("cam-01", fmt.Sprintf("e%d", i), fmt.Sprintf("clips/cam-01/%d", i), t0), Inserted)
		}
		r, err := db.Prune(ctx, t0.Add(30*time.Minute), t0.Add(2*time.Hour))
		if err != nil || r.Seen != 0 || r.Sessions != 1 {
			t.Fatalf("Prune = %+v, %v", r, err)
		}
		r, err = db.Prune(ctx, t0.Add(2*time.Hour), t0.Add(2*time.Hour))
		if err != nil || r.Seen != 3 || r.Sessions != 0 {
			t.Fatalf("Prune = %+v, %v", r, err)
		}
		if seen, _ := db.Seen(ctx, "cam-01", "e0"); seen {
			t.Fatal("pruned event still seen")
		}
		// The clips stay.
		if known, _ := db.KnownClip(ctx, "clips/cam-01/0"); !known {
			t.Fatal("pruning removed a clip")
		}
	})
}

// TestStoreProblems: failed and rejected events are listed with their reasons, per device
// and fleet-wide, newest first, once each, as many as the counters say; pruned with the
// seen events.
func TestStoreProblems(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		mustIndex(t, db, clipEvent("cam-01", "ok", "clips/cam-01/2026/03/01/ok.mp4", t0), Inserted)
		failed := &events.Event{UploadEvent: protocol.UploadEvent{V: 1, ID: "f1", Device: "cam-03", Status: protocol.StatusFailed,
			Size: 5, UploadedAt: t0.Add(time.Minute), Error: "disk full"}, Publisher: "cam-03"}
		mustIndex(t, db, failed, NotStored)
		mustIndex(t, db, failed, Duplicate) // a redelivery: listed once
		foreign := clipEvent("cam-01", "r1", "clips/cam-02/2026/03/01/x.mp4", t0)
		foreign.Verified, foreign.Reason, foreign.Detail = false, events.ReasonWrongPrefix, "the key is not under clips/cam-01/"
		mustIndex(t, db, foreign, NotStored)
		missing := clipEvent("cam-01", "r2", "clips/cam-01/2026/03/01/ghost.mp4", t0)
		missing.Verified, missing.Reason = false, events.ReasonNotFound
		mustIndex(t, db, missing, Inserted)
		spoof := clipEvent("cam-02", "r3", "clips/cam-02/2026/03/01/y.mp4", t0)
		spoof.Publisher, spoof.Verified, spoof.Reason = "cam-01", false, events.ReasonWrongDevice
		mustIndex(t, db, spoof, NotStored)

		all, err := db.Problems(ctx, ProblemQuery{Limit: 100})
		if err != nil || len(all) != 4 {
			t.Fatalf("Problems = %+v, %v; want 4", all, err)
		}
		for i := 1; i < len(all); i++ {
			if all[i].ID >= all[i-1].ID {
				t.Fatalf("not newest first: %+v", all)
			}
		}
		indexed := t0.Add(time.Hour) // mustIndex's now
		want := []Problem{
			{Device: "cam-01", EventID: "r3", ClaimedDevice: "cam-02", Status: "completed", Reason: "wrong_device", Bucket: "clips",
				Key: spoof.Key, Size: 10, EventAt: t0.Add(time.Second), IndexedAt: indexed},
			{Device: "cam-01", EventID: "r2", ClaimedDevice: "cam-01", Status: "completed", Reason: "not_found", Bucket: "clips",
				Key: missing.Key, Size: 10, EventAt: t0.Add(time.Second), IndexedAt: indexed},
			{Device: "cam-01", EventID: "r1", ClaimedDevice: "cam-01", Status: "completed", Reason: "wrong_prefix",
				Detail: foreign.Detail, Bucket: "clips", Key: foreign.Key, Size: 10, EventAt: t0.Add(time.Second), IndexedAt: indexed},
			{Device: "cam-03", EventID: "f1", ClaimedDevice: "cam-03", Status: "failed", Error: "disk full", Size: 5,
				EventAt: t0.Add(time.Minute), IndexedAt: indexed},
		}
		for i := range want {
			want[i].ID = all[i].ID
			if all[i] != want[i] {
				t.Errorf("problem %d = %+v\nwant %+v", i, all[i], want[i])
			}
		}
		// Per device, by pages; as many as the counters say.
		p1, err := db.Problems(ctx, ProblemQuery{Device: "cam-01", Limit: 2})
		if err != nil || len(p1) != 2 || p1[0].EventID != "r3" || p1[1].EventID != "r2" {
			t.Fatalf("cam-01 page 1 = %+v, %v", p1, err)
		}
		p2, err := db.Problems(ctx, ProblemQuery{Device: "cam-01", After: p1[1].ID, Limit: 2})
		if err != nil || len(p2) != 1 || p2[0].EventID != "r1" {
			t.Fatalf("cam-01 page 2 = %+v, %v", p2, err)
		}
		if p3, err := db.Problems(ctx, ProblemQuery{Device: "cam-01", After: p2[0].ID, Limit: 2}); err != nil || len(p3) != 0 {
			t.Fatalf("cam-01 page 3 = %+v, %v", p3, err)
		}
		if d := mustDevice(t, db, "cam-01"); d.Rejected != 3 || d.Failed != 0 {
			t.Fatalf("cam-01 counters: %+v", d)
		}
		if d := mustDevice(t, db, "cam-03"); d.Failed != 1 {
			t.Fatalf("cam-03 counters: %+v", d)
		}
		if none, err := db.Problems(ctx, ProblemQuery{Device: "cam-02", Limit: 10}); err != nil || len(none) != 0 {
			t.Fatalf("cam-02 (named, not the publisher) = %+v, %v", none, err)
		}
		// Pruned with the seen events.
		r, err := db.Prune(ctx, indexed, indexed)
		if err != nil || r.Problems != 0 {
			t.Fatalf("Prune before = %+v, %v", r, err)
		}
		r, err = db.Prune(ctx, indexed.Add(time.Microsecond), indexed)
		if err != nil || r.Problems != 4 {
			t.Fatalf("Prune = %+v, %v", r, err)
		}
		if left, err := db.Problems(ctx, ProblemQuery{Limit: 10}); err != nil || len(left) != 0 {
			t.Fatalf("after pruning: %+v, %v", left, err)
		}
	})
}

// TestStoreConcurrentWriters: SQLite writers in parallel queue instead of failing with
// SQLITE_BUSY.
func TestStoreConcurrentWriters(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		errs := make(chan error, 8)
		for w := range 8 {
			go func() {
				var err error
				for i := range 25 {
					ev := clipEvent("cam-01", fmt.Sprintf("w%d-%d", w, i), fmt.Sprintf("clips/cam-01/w%d/%d", w, i), t0)
					if _, e := db.Index(ctx, ev, nil, t0); e != nil && err == nil {
						err = e
					}
					if _, e := db.Clips(ctx, ClipQuery{Device: "cam-01", Limit: 10}); e != nil && err == nil {
						err = e
					}
				}
				errs <- err
			}()
		}
		for range 8 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		if d := mustDevice(t, db, "cam-01"); d.Clips != 200 {
			t.Fatalf("clips = %d, want 200", d.Clips)
		}
	})
}

var _ Store = (*DB)(nil)
