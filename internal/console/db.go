package console

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite" (pure Go)

	"github.com/clipgate/clipgate/events"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/protocol"
)

// Dialect names a supported database.
type Dialect string

// The supported databases.
const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

//go:embed migrations
var migrationFiles embed.FS

// DB is the Store on SQLite or PostgreSQL. Both share the SQL below; the schemas differ
// in types only (migrations/{sqlite,postgres}). Times are stored as Unix microseconds.
//
// On SQLite, writes go through one connection whose transactions begin IMMEDIATE (so
// that concurrent writers queue on the busy timeout instead of failing to upgrade a read
// lock), and reads through a small pool of read-only connections, which WAL lets run
// beside the writer.
type DB struct {
	dialect Dialect
	w, r    *sql.DB // writer and readers; the same pool on PostgreSQL
	q       queries
}

// Open opens the database named by dsn: a postgres:// or postgresql:// URL, or a
// key=value connection string ("host=... dbname=..."), opens PostgreSQL; anything else
// is a SQLite file path (an optional "sqlite:" prefix is removed). It applies the
// migrations the database lacks.
func Open(ctx context.Context, dsn string) (*DB, error) {
	switch {
	case strings.HasPrefix(dsn, "sqlite:"):
		return OpenSQLite(ctx, strings.TrimPrefix(dsn, "sqlite:"))
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"),
		strings.Contains(dsn, "host="), strings.Contains(dsn, "dbname="):
		return OpenPostgres(ctx, dsn)
	default:
		return OpenSQLite(ctx, dsn)
	}
}

// SQLite settings: WAL so that readers do not block the writer; FULL synchronous so that
// a committed event (and so an acknowledged one) survives a power cut; a busy timeout so
// that the readers and a second process wait for the writer instead of failing.
const (
	sqliteBusyTimeout = 10 * time.Second
	sqliteReaders     = 4
)

// OpenSQLite opens (creating it if needed) the SQLite database file at path with
// modernc.org/sqlite, a pure-Go driver, and migrates it.
func OpenSQLite(ctx context.Context, path string) (*DB, error) {
	switch {
	case path == "":
		return nil, errors.New("console: SQLite database path is empty")
	case strings.ContainsAny(path, "?#"), strings.HasPrefix(path, "file:"), path == ":memory:":
		return nil, fmt.Errorf("console: SQLite database path %q: want a plain file path (without '?', '#', file: or :memory:)", path)
	}
	busy := strconv.FormatInt(sqliteBusyTimeout.Milliseconds(), 10)
	w, err := sql.Open("sqlite", path+"?_pragma=busy_timeout("+busy+")&_pragma=journal_mode(WAL)"+
		"&_pragma=synchronous(FULL)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("console: opening SQLite %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxIdleTime(0)
	d := &DB{dialect: SQLite, w: w, r: w, q: buildQueries(SQLite)}
	if err := d.init(ctx); err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("console: SQLite %s: %w", path, err)
	}
	// The readers open after the writer has switched the file to WAL.
	r, err := sql.Open("sqlite", path+"?_pragma=busy_timeout("+busy+")&_pragma=query_only(1)")
	if err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("console: opening SQLite %s: %w", path, err)
	}
	r.SetMaxOpenConns(sqliteReaders)
	r.SetMaxIdleConns(sqliteReaders)
	d.r = r
	return d, nil
}

// OpenPostgres connects to PostgreSQL with pgx (database/sql driver "pgx") and migrates
// the database. dsn is a URL or key=value connection string.
func OpenPostgres(ctx context.Context, dsn string) (*DB, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("console: PostgreSQL: %w", err)
	}
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(8)
	db.SetConnMaxIdleTime(5 * time.Minute)
	d := &DB{dialect: Postgres, w: db, r: db, q: buildQueries(Postgres)}
	if err := d.init(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("console: PostgreSQL: %w", err)
	}
	return d, nil
}

// Dialect returns the database's dialect.
func (d *DB) Dialect() Dialect { return d.dialect }

// Close closes the connections.
func (d *DB) Close() error {
	err := d.w.Close()
	if d.r != d.w {
		err = errors.Join(err, d.r.Close())
	}
	return err
}

func (d *DB) init(ctx context.Context) error {
	if err := d.w.PingContext(ctx); err != nil {
		return err
	}
	if d.dialect == SQLite {
		var mode string
		if err := d.w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
			return err
		}
		if !strings.EqualFold(mode, "wal") {
			return fmt.Errorf("journal mode is %q, not WAL (is the file on a file system without shared memory?)", mode)
		}
	}
	return d.migrate(ctx)
}

// migration is one embedded SQL file, NNNN_name.sql.
type migration struct {
	version int
	name    string
	sql     string
}

func loadMigrations(dialect Dialect) ([]migration, error) {
	dir := path.Join("migrations", string(dialect))
	entries, err := fs.ReadDir(migrationFiles, dir)
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		num, name, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v < 1 || !strings.HasSuffix(e.Name(), ".sql") {
			return nil, fmt.Errorf("migration file %s: want NNNN_name.sql", e.Name())
		}
		text, err := fs.ReadFile(migrationFiles, path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: name, sql: string(text)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("migrations: version %d missing or repeated", i+1)
		}
	}
	return ms, nil
}

// migrate applies, in one transaction, the migrations the database lacks, and records
// each in schema_migrations. It refuses a database migrated by a newer console.
func (d *DB) migrate(ctx context.Context) error {
	ms, err := loadMigrations(d.dialect)
	if err != nil {
		return err
	}
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if d.dialect == Postgres {
		// Consoles starting together take turns (SQLite's IMMEDIATE transaction does
		// the same there). The key is arbitrary: "clipgate" in ASCII.
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(7182724155856971877)"); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("creating schema_migrations: %w", err)
	}
	var current sql.NullInt64
	if err := tx.QueryRowContext(ctx, "SELECT MAX(version) FROM schema_migrations").Scan(&current); err != nil {
		return err
	}
	if int(current.Int64) > len(ms) {
		return fmt.Errorf("the database schema is at version %d, newer than this console knows (%d): upgrade the console", current.Int64, len(ms))
	}
	for _, m := range ms[current.Int64:] {
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("migration %04d_%s: %w", m.version, m.name, err)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
			m.version, m.name, time.Now().UnixMicro()); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// SchemaVersion returns the highest migration applied.
func (d *DB) SchemaVersion(ctx context.Context) (int, error) {
	var v sql.NullInt64
	err := d.r.QueryRowContext(ctx, "SELECT MAX(version) FROM schema_migrations").Scan(&v)
	return int(v.Int64), err
}

// queries holds the SQL text, shared by both dialects except where noted.
type queries struct {
	insertSeen, seen                          string
	touchDevice, ensureDevice                 string
	countFailed, countRejected                string
	clipVerified, insertClip, updateClip      string
	addClip, setLastUpload, resizeClip        string
	knownClip, setStatus                      string
	devices, device, clip                     string
	clips                                     map[clipListKey]string
	timelineAll, timelineDevice, totals       string
	expiredAll, expiredPrefix                 string
	setRevoked, revoked, revocations          string
	createSession, session, deleteSession     string
	deleteOperatorSessions                    string
	pruneSeen, pruneSessions, decrementDevice string
	insertProblem, pruneProblems              string
	problemsAll, problemsDevice               string
}

const deviceColumns = "id, online, status_at, last_seen, last_upload, clip_count, bytes, rejected_count, failed_count, revoked, revoked_at"

const clipColumns = "key, event_id, device, bucket, size, crc64, content_type, recorded_at, uploaded_at, indexed_at, verified, reason, reconciled, " +
	"duration_ms, width, height, codec, container, media_error, poster"

// clipListKey selects one of the clip list queries.
type clipListKey struct {
	byDevice bool
	status   ClipStatus
}

// statusCondition is the SQL of a clip status filter, written so that the partial index
// on unverified clips applies.
var statusCondition = map[ClipStatus]string{
	"":               "",
	ClipVerified:     " AND verified",
	ClipUnverified:   " AND NOT verified",
	ClipReconciled:   " AND reconciled",
	ClipWithPoster:   " AND poster",
	ClipMediaUnknown: " AND duration_ms IS NULL",
}

const problemColumns = "id, device, event_id, claimed, status, reason, detail, error, bucket, key, size, event_at, indexed_at"

func buildQueries(dialect Dialect) queries {
	// GREATEST is max() in SQLite (the two-argument scalar function).
	greatest := "GREATEST"
	if dialect == SQLite {
		greatest = "max"
	}
	clips := func(byDevice bool, status ClipStatus) string {
		// $2 is the inclusive upper bound (the earlier of To and the cursor's time), so
		// that the index range starts at the cursor; the OR orders the rows recorded at
		// the cursor's very time by key. (A row-value comparison would be simpler, but
		// SQLite does not use it to bound the index range.)
		where := "recorded_at >= $1 AND recorded_at <= $2 AND (recorded_at < $3 OR key < $4)"
		if byDevice {
			where = "device = $6 AND " + where
		}
		return "SELECT " + clipColumns + " FROM clips WHERE " + where + statusCondition[status] + " ORDER BY recorded_at DESC, key DESC LIMIT $5"
	}
	clipLists := map[clipListKey]string{}
	for status := range statusCondition {
		for _, byDevice := range []bool{false, true} {
			clipLists[clipListKey{byDevice, status}] = clips(byDevice, status)
		}
	}
	// A timeline counts clips, bytes and recorded milliseconds per slot of $3
	// microseconds from $1 to $2 (CAST: PostgreSQL's SUM of BIGINT is NUMERIC).
	timeline := func(where string) string {
		return "SELECT (recorded_at - $1) / $3 AS slot, COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT), " +
			"CAST(COALESCE(SUM(duration_ms), 0) AS BIGINT) FROM clips WHERE " + where +
			"recorded_at >= $1 AND recorded_at < $2 GROUP BY slot ORDER BY slot"
	}
	return queries{
		insertSeen:    "INSERT INTO seen_events (device, event_id, seen_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
		seen:          "SELECT 1 FROM seen_events WHERE device = $1 AND event_id = $2",
		touchDevice:   "INSERT INTO devices (id, last_seen) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET last_seen = " + greatest + "(COALESCE(devices.last_seen, 0), COALESCE(excluded.last_seen, 0))",
		ensureDevice:  "INSERT INTO devices (id) VALUES ($1) ON CONFLICT (id) DO NOTHING",
		countFailed:   "UPDATE devices SET failed_count = failed_count + 1 WHERE id = $1",
		countRejected: "UPDATE devices SET rejected_count = rejected_count + 1 WHERE id = $1",
		clipVerified:  "SELECT verified, size FROM clips WHERE key = $1",
		insertClip: "INSERT INTO clips (" + clipColumns + ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, " +
			"$14, $15, $16, $17, $18, $19, $20)",
		updateClip: "UPDATE clips SET event_id = $2, device = $3, bucket = $4, size = $5, crc64 = $6, content_type = $7, " +
			"recorded_at = $8, uploaded_at = $9, indexed_at = $10, verified = $11, reason = $12, reconciled = $13, " +
			"duration_ms = $14, width = $15, height = $16, codec = $17, container = $18, media_error = $19, poster = $20 WHERE key = $1",
		addClip:         "UPDATE devices SET clip_count = clip_count + 1, bytes = bytes + $2 WHERE id = $1",
		resizeClip:      "UPDATE devices SET bytes = " + greatest + "(bytes + $2, 0) WHERE id = $1",
		setLastUpload:   "UPDATE devices SET last_upload = " + greatest + "(COALESCE(last_upload, 0), $2) WHERE id = $1",
		decrementDevice: "UPDATE devices SET clip_count = " + greatest + "(clip_count - $2, 0), bytes = " + greatest + "(bytes - $3, 0) WHERE id = $1",
		knownClip:       "SELECT 1 FROM clips WHERE key = $1 AND verified",
		setStatus: "INSERT INTO devices (id, online, status_at, last_seen) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET " +
			"online = excluded.online, status_at = excluded.status_at, last_seen = " + greatest + "(COALESCE(devices.last_seen, 0), COALESCE(excluded.last_seen, 0))",
		devices:        "SELECT " + deviceColumns + " FROM devices WHERE id > $1 ORDER BY id LIMIT $2",
		device:         "SELECT " + deviceColumns + " FROM devices WHERE id = $1",
		clip:           "SELECT " + clipColumns + " FROM clips WHERE key = $1",
		clips:          clipLists,
		timelineAll:    timeline(""),
		timelineDevice: timeline("device = $4 AND "),
		totals:         "SELECT COUNT(*), CAST(COALESCE(SUM(clip_count), 0) AS BIGINT), CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM devices",
		expiredAll:     "SELECT key, poster FROM clips WHERE key > $1 AND uploaded_at < $2 ORDER BY key LIMIT $3",
		expiredPrefix:  "SELECT key, poster FROM clips WHERE key > $1 AND uploaded_at < $2 AND key >= $4 AND key < $5 ORDER BY key LIMIT $3",
		// Revoking a revoked device keeps its first revocation time: objects it wrote
		// since then stay flagged, and the OSS Deny lasts from then on.
		setRevoked: "INSERT INTO devices (id, revoked, revoked_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET " +
			"revoked_at = CASE WHEN devices.revoked AND excluded.revoked THEN devices.revoked_at ELSE excluded.revoked_at END, " +
			"revoked = excluded.revoked",
		revoked:       "SELECT id FROM devices WHERE revoked ORDER BY id",
		revocations:   "SELECT id, revoked_at FROM devices WHERE revoked ORDER BY id",
		createSession: "INSERT INTO sessions (id_hash, csrf, created_at, expires_at, operator) VALUES ($1, $2, $3, $4, $5)",
		// The role is the operator's now: a change applies to sessions at once, and a
		// removed operator's sessions end.
		session: "SELECT s.id_hash, s.csrf, s.created_at, s.expires_at, s.operator, o.role FROM sessions s " +
			"JOIN operators o ON o.name = s.operator WHERE s.id_hash = $1 AND s.expires_at > $2",
		deleteSession:          "DELETE FROM sessions WHERE id_hash = $1",
		deleteOperatorSessions: "DELETE FROM sessions WHERE operator = $1",
		pruneSeen: "DELETE FROM seen_events WHERE (device, event_id) IN " +
			"(SELECT device, event_id FROM seen_events WHERE seen_at < $1 LIMIT $2)",
		pruneSessions: "DELETE FROM sessions WHERE expires_at <= $1",
		insertProblem: "INSERT INTO problem_events (device, event_id, claimed, status, reason, detail, error, bucket, key, size, event_at, indexed_at) " +
			"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
		pruneProblems:  "DELETE FROM problem_events WHERE id IN (SELECT id FROM problem_events WHERE indexed_at < $1 LIMIT $2)",
		problemsAll:    "SELECT " + problemColumns + " FROM problem_events WHERE id < $1 ORDER BY id DESC LIMIT $2",
		problemsDevice: "SELECT " + problemColumns + " FROM problem_events WHERE device = $3 AND id < $1 ORDER BY id DESC LIMIT $2",
	}
}

// us converts a time to the stored Unix microseconds.
func us(t time.Time) int64 { return t.UnixMicro() }

// fromUS converts stored Unix microseconds to a UTC time.
func fromUS(v int64) time.Time { return time.UnixMicro(v).UTC() }

// nullUS converts a nullable column; NULL and 0 are the zero time.
func nullUS(v sql.NullInt64) time.Time {
	if !v.Valid || v.Int64 == 0 {
		return time.Time{}
	}
	return fromUS(v.Int64)
}

// Seen implements events.Deduper: it reports whether the event was indexed.
func (d *DB) Seen(ctx context.Context, device, id string) (bool, error) {
	var one int
	err := d.r.QueryRowContext(ctx, d.q.seen, device, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// Mark implements events.Deduper. It does nothing: Index records the event in the same
// transaction as the clip, so that the index and the record cannot disagree.
func (d *DB) Mark(context.Context, string, string) error { return nil }

// Index implements Store.
func (d *DB) Index(ctx context.Context, ev *events.Event, m *Media, now time.Time) (IndexOutcome, error) {
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback() }()
	// The device that sent the event: the publisher (authenticated by the broker), or
	// for a reconciled event the owner of the key. Events are deduplicated by it, as the
	// events package does, so that an event forged in another device's name cannot
	// shadow that device's real event with the same ID.
	who := ev.Publisher
	if who == "" {
		who = ev.Device
	}
	res, err := tx.ExecContext(ctx, d.q.insertSeen, who, ev.ID, us(now))
	if err != nil {
		return 0, err
	}
	if n, err := res.RowsAffected(); err != nil {
		return 0, err
	} else if n == 0 {
		return Duplicate, nil
	}
	// The device was seen when it made the event (its own clock, no later than now), not
	// when the console got it: a redelivery after a restart is no sign of life.
	if seen := seenAt(ev.UploadedAt, now); ev.Publisher == "" || !seen.Valid {
		_, err = tx.ExecContext(ctx, d.q.ensureDevice, who)
	} else {
		_, err = tx.ExecContext(ctx, d.q.touchDevice, who, seen)
	}
	if err != nil {
		return 0, err
	}
	if ev.Rejected() {
		if _, err := tx.ExecContext(ctx, d.q.countRejected, who); err != nil {
			return 0, err
		}
	}
	if ev.Rejected() || ev.Status == protocol.StatusFailed {
		if _, err := tx.ExecContext(ctx, d.q.insertProblem, who, ev.ID, ev.Device, string(ev.Status), string(ev.Reason),
			truncate(ev.Detail, maxProblemText), ev.Error, ev.Bucket, ev.Key, ev.Size, seenAt(ev.UploadedAt, now), us(now)); err != nil {
			return 0, err
		}
	}
	outcome := NotStored
	if !storable(ev) {
		if !ev.Rejected() {
			if _, err := tx.ExecContext(ctx, d.q.countFailed, who); err != nil {
				return 0, err
			}
		}
	} else if outcome, err = d.indexClip(ctx, tx, ev, m, now); err != nil {
		return 0, err
	}
	return outcome, tx.Commit()
}

func (d *DB) indexClip(ctx context.Context, tx *sql.Tx, ev *events.Event, m *Media, now time.Time) (IndexOutcome, error) {
	recorded := ev.RecordedAt
	if recorded.IsZero() {
		recorded = ev.UploadedAt
	}
	if m == nil {
		m = &Media{}
	}
	var duration sql.NullInt64
	if m.Duration > 0 {
		duration = sql.NullInt64{Int64: m.Duration.Milliseconds(), Valid: true}
	}
	args := []any{ev.Key, ev.ID, ev.Device, ev.Bucket, ev.Size, ev.CRC64, ev.ContentType,
		us(recorded), us(ev.UploadedAt), us(now), ev.Verified, string(ev.Reason), ev.Reconciled,
		duration, m.Width, m.Height, m.Codec, m.Container, truncate(m.Error, maxProblemText), m.Poster}
	var verified bool
	var oldSize int64
	err := tx.QueryRowContext(ctx, d.q.clipVerified, ev.Key).Scan(&verified, &oldSize)
	outcome := Inserted
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := tx.ExecContext(ctx, d.q.insertClip, args...); err != nil {
			return 0, err
		}
		if _, err := tx.ExecContext(ctx, d.q.addClip, ev.Device, ev.Size); err != nil {
			return 0, err
		}
	case err != nil:
		return 0, err
	// A verified row gives way only to a verified event from the device (a new upload
	// over the same key); a reconciled event knows less than the device's event did.
	case !verified || (ev.Verified && !ev.Reconciled):
		if _, err := tx.ExecContext(ctx, d.q.updateClip, args...); err != nil {
			return 0, err
		}
		if ev.Size != oldSize {
			if _, err := tx.ExecContext(ctx, d.q.resizeClip, ev.Device, ev.Size-oldSize); err != nil {
				return 0, err
			}
		}
		outcome = Updated
	default:
		return Unchanged, nil
	}
	if ev.Verified {
		if _, err := tx.ExecContext(ctx, d.q.setLastUpload, ev.Device, us(ev.UploadedAt)); err != nil {
			return 0, err
		}
	}
	return outcome, nil
}

// KnownClip implements Store.
func (d *DB) KnownClip(ctx context.Context, key string) (bool, error) {
	var one int
	err := d.r.QueryRowContext(ctx, d.q.knownClip, key).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// SetStatus implements Store.
func (d *DB) SetStatus(ctx context.Context, device string, online bool, at, seen time.Time) error {
	_, err := d.w.ExecContext(ctx, d.q.setStatus, device, online, us(at), seenAt(seen, at))
	return err
}

// seenAt is a device's own time of a message as a nullable column: NULL when unknown
// (zero), and no later than now (a device whose clock runs ahead is not seen in the
// future).
func seenAt(t, now time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	if t.After(now) {
		t = now
	}
	return sql.NullInt64{Int64: us(t), Valid: true}
}

// maxProblemText bounds the stored explanation of a rejection.
const maxProblemText = 1000

func scanProblem(s scanner) (Problem, error) {
	var p Problem
	var eventAt sql.NullInt64
	var indexed int64
	err := s.Scan(&p.ID, &p.Device, &p.EventID, &p.ClaimedDevice, &p.Status, &p.Reason, &p.Detail, &p.Error,
		&p.Bucket, &p.Key, &p.Size, &eventAt, &indexed)
	p.EventAt, p.IndexedAt = nullUS(eventAt), fromUS(indexed)
	return p, err
}

// Problems implements Store.
func (d *DB) Problems(ctx context.Context, q ProblemQuery) ([]Problem, error) {
	after := q.After
	if after <= 0 {
		after = math.MaxInt64
	}
	var rows *sql.Rows
	var err error
	if q.Device != "" {
		rows, err = d.r.QueryContext(ctx, d.q.problemsDevice, after, q.Limit, q.Device)
	} else {
		rows, err = d.r.QueryContext(ctx, d.q.problemsAll, after, q.Limit)
	}
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make([]Problem, 0, min(q.Limit, 256))
	for rows.Next() {
		p, err := scanProblem(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

type scanner interface{ Scan(dest ...any) error }

func scanDevice(s scanner) (Device, error) {
	var dv Device
	var statusAt, lastSeen, lastUpload, revokedAt sql.NullInt64
	err := s.Scan(&dv.ID, &dv.Online, &statusAt, &lastSeen, &lastUpload, &dv.Clips, &dv.Bytes, &dv.Rejected, &dv.Failed, &dv.Revoked, &revokedAt)
	dv.StatusAt, dv.LastSeen, dv.LastUpload, dv.RevokedAt = nullUS(statusAt), nullUS(lastSeen), nullUS(lastUpload), nullUS(revokedAt)
	return dv, err
}

func scanClip(s scanner) (Clip, error) {
	var c Clip
	var recorded, uploaded, indexed int64
	var duration sql.NullInt64
	err := s.Scan(&c.Key, &c.EventID, &c.Device, &c.Bucket, &c.Size, &c.CRC64, &c.ContentType,
		&recorded, &uploaded, &indexed, &c.Verified, &c.Reason, &c.Reconciled,
		&duration, &c.Width, &c.Height, &c.Codec, &c.Container, &c.MediaError, &c.Poster)
	c.RecordedAt, c.UploadedAt, c.IndexedAt = fromUS(recorded), fromUS(uploaded), fromUS(indexed)
	c.DurationMS = duration.Int64
	return c, err
}

// Devices implements Store.
func (d *DB) Devices(ctx context.Context, after string, limit int) ([]Device, error) {
	rows, err := d.r.QueryContext(ctx, d.q.devices, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make([]Device, 0, min(limit, 256))
	for rows.Next() {
		dv, err := scanDevice(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, dv)
	}
	return out, rows.Err()
}

// Device implements Store.
func (d *DB) Device(ctx context.Context, id string) (*Device, error) {
	dv, err := scanDevice(d.r.QueryRowContext(ctx, d.q.device, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return &dv, nil
}

// Clip implements Store.
func (d *DB) Clip(ctx context.Context, key string) (*Clip, error) {
	c, err := scanClip(d.r.QueryRowContext(ctx, d.q.clip, key))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// Clips implements Store. Both the per-device and the fleet-wide list walk an index on
// (device, recorded_at, key) or (recorded_at, key) backwards from the cursor, so a deep
// page costs what the first does.
func (d *DB) Clips(ctx context.Context, q ClipQuery) ([]Clip, error) {
	from, hi := int64(math.MinInt64), int64(math.MaxInt64)
	if !q.From.IsZero() {
		from = us(q.From)
	}
	if !q.To.IsZero() {
		hi = us(q.To) - 1 // recorded_at < To, in whole microseconds
	}
	// Without a cursor, (MaxInt64, "") is above every row.
	afterAt, afterKey := int64(math.MaxInt64), ""
	if q.After != nil {
		afterAt, afterKey = us(q.After.RecordedAt), q.After.Key
		hi = min(hi, afterAt)
	}
	query, ok := d.q.clips[clipListKey{byDevice: q.Device != "", status: q.Status}]
	if !ok {
		return nil, invalidf("clip status %q: want one of %s", q.Status, strings.Join(ClipStatuses(), ", "))
	}
	var rows *sql.Rows
	var err error
	if q.Device != "" {
		rows, err = d.r.QueryContext(ctx, query, from, hi, afterAt, afterKey, q.Limit, q.Device)
	} else {
		rows, err = d.r.QueryContext(ctx, query, from, hi, afterAt, afterKey, q.Limit)
	}
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make([]Clip, 0, q.Limit)
	for rows.Next() {
		c, err := scanClip(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// maxBatch bounds the keys of one DELETE statement.
const maxBatch = 500

// DeleteClips implements Store.
func (d *DB) DeleteClips(ctx context.Context, keys []string) (int, error) {
	total := 0
	for len(keys) > 0 {
		n := min(len(keys), maxBatch)
		got, err := d.deleteBatch(ctx, keys[:n])
		total += got
		if err != nil {
			return total, err
		}
		keys = keys[n:]
	}
	return total, nil
}

func (d *DB) deleteBatch(ctx context.Context, keys []string) (int, error) {
	var b strings.Builder
	b.WriteString("DELETE FROM clips WHERE key IN (")
	args := make([]any, len(keys))
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("$" + strconv.Itoa(i+1))
		args[i] = k
	}
	b.WriteString(") RETURNING device, size")
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback() }()
	rows, err := tx.QueryContext(ctx, b.String(), args...)
	if err != nil {
		return 0, err
	}
	type removed struct{ clips, bytes int64 }
	perDevice := map[string]removed{}
	n := 0
	for rows.Next() {
		var dev string
		var size int64
		if err := rows.Scan(&dev, &size); err != nil {
			rows.Close()
			return 0, err
		}
		r := perDevice[dev]
		r.clips++
		r.bytes += size
		perDevice[dev] = r
		n++
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return 0, err
	}
	for dev, r := range perDevice {
		if _, err := tx.ExecContext(ctx, d.q.decrementDevice, dev, r.clips, r.bytes); err != nil {
			return 0, err
		}
	}
	return n, tx.Commit()
}

// ExpiredClips implements Store.
func (d *DB) ExpiredClips(ctx context.Context, prefix string, before time.Time, after string, limit int) ([]ClipRef, error) {
	var rows *sql.Rows
	var err error
	if prefix == "" {
		rows, err = d.r.QueryContext(ctx, d.q.expiredAll, after, us(before), limit)
	} else {
		rows, err = d.r.QueryContext(ctx, d.q.expiredPrefix, after, us(before), limit, prefix, prefixEnd(prefix))
	}
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var refs []ClipRef
	for rows.Next() {
		var r ClipRef
		if err := rows.Scan(&r.Key, &r.Poster); err != nil {
			return nil, err
		}
		refs = append(refs, r)
	}
	return refs, rows.Err()
}

// prefixEnd returns the smallest string above every string that starts with prefix, for
// a key range. Prefixes are ASCII ([A-Za-z0-9._/-]), so incrementing the last byte does.
func prefixEnd(prefix string) string {
	b := []byte(prefix)
	b[len(b)-1]++
	return string(b)
}

// SetRevoked implements Store.
func (d *DB) SetRevoked(ctx context.Context, device string, revoked bool, at time.Time) error {
	var when sql.NullInt64
	if revoked {
		when = sql.NullInt64{Int64: us(at), Valid: true}
	}
	_, err := d.w.ExecContext(ctx, d.q.setRevoked, device, revoked, when)
	return err
}

// RevokedDevices implements Store.
func (d *DB) RevokedDevices(ctx context.Context) ([]string, error) {
	// From the writer: the caller has just changed the list and must see the change.
	rows, err := d.w.QueryContext(ctx, d.q.revoked)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// Revocations implements Store.
func (d *DB) Revocations(ctx context.Context) ([]identity.Revocation, error) {
	rows, err := d.w.QueryContext(ctx, d.q.revocations)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []identity.Revocation
	for rows.Next() {
		var id string
		var at sql.NullInt64
		if err := rows.Scan(&id, &at); err != nil {
			return nil, err
		}
		out = append(out, identity.Revocation{Device: id, At: nullUS(at)})
	}
	return out, rows.Err()
}

// CreateSession implements Store.
func (d *DB) CreateSession(ctx context.Context, s Session) error {
	_, err := d.w.ExecContext(ctx, d.q.createSession, s.IDHash, s.CSRF, us(s.Created), us(s.Expires), s.Operator)
	return err
}

// Session implements Store.
func (d *DB) Session(ctx context.Context, idHash string, now time.Time) (*Session, error) {
	var s Session
	var created, expires int64
	err := d.r.QueryRowContext(ctx, d.q.session, idHash, us(now)).Scan(&s.IDHash, &s.CSRF, &created, &expires, &s.Operator, &s.Role)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	s.Created, s.Expires = fromUS(created), fromUS(expires)
	return &s, nil
}

// DeleteSession implements Store.
func (d *DB) DeleteSession(ctx context.Context, idHash string) error {
	_, err := d.w.ExecContext(ctx, d.q.deleteSession, idHash)
	return err
}

// pruneBatch bounds the rows one pruning statement deletes, so that the writer is not
// held for long.
const pruneBatch = 10_000

// Prune implements Store.
func (d *DB) Prune(ctx context.Context, seenBefore, now time.Time) (PruneResult, error) {
	var r PruneResult
	var err error
	if r.Seen, err = d.pruneBatches(ctx, d.q.pruneSeen, seenBefore); err != nil {
		return r, err
	}
	if r.Problems, err = d.pruneBatches(ctx, d.q.pruneProblems, seenBefore); err != nil {
		return r, err
	}
	res, err := d.w.ExecContext(ctx, d.q.pruneSessions, us(now))
	if err != nil {
		return r, err
	}
	r.Sessions, err = res.RowsAffected()
	return r, err
}

// pruneBatches runs a pruning statement ($1 the cutoff, $2 the batch size) until it
// deletes less than a batch, and returns the rows deleted.
func (d *DB) pruneBatches(ctx context.Context, query string, before time.Time) (int64, error) {
	var total int64
	for {
		res, err := d.w.ExecContext(ctx, query, us(before), pruneBatch)
		if err != nil {
			return total, err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, err
		}
		total += n
		if n < pruneBatch {
			return total, nil
		}
	}
}
