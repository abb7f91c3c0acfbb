-- The console's index, SQLite dialect. Times are Unix microseconds (UTC); booleans 0/1.

-- One row per device the console has heard of (an event, a status message or a revocation).
CREATE TABLE devices (
	id             TEXT PRIMARY KEY,
	online         INTEGER NOT NULL DEFAULT 0,
	status_at      INTEGER,           -- when the last status message arrived
	last_seen      INTEGER,           -- last message from the device (event or status)
	last_upload    INTEGER,           -- upload time of its latest verified clip
	clip_count     INTEGER NOT NULL DEFAULT 0,
	rejected_count INTEGER NOT NULL DEFAULT 0, -- events naming objects not its own
	failed_count   INTEGER NOT NULL DEFAULT 0, -- failed-upload events
	revoked        INTEGER NOT NULL DEFAULT 0,
	revoked_at     INTEGER
) WITHOUT ROWID;

-- One row per object: the key is the clip's identity (it lies under the device's own
-- prefix, so it names its device); event_id is the latest event that described it.
CREATE TABLE clips (
	key          TEXT PRIMARY KEY,
	event_id     TEXT NOT NULL,
	device       TEXT NOT NULL,
	bucket       TEXT NOT NULL,
	size         INTEGER NOT NULL,
	crc64        TEXT NOT NULL,
	content_type TEXT NOT NULL DEFAULT '',
	recorded_at  INTEGER NOT NULL,
	uploaded_at  INTEGER NOT NULL,
	indexed_at   INTEGER NOT NULL,
	verified     INTEGER NOT NULL,
	reason       TEXT NOT NULL DEFAULT '',
	reconciled   INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX clips_device_time ON clips (device, recorded_at, key);
CREATE INDEX clips_time ON clips (recorded_at, key);

-- Handled events (events.Deduper), written in the transaction that indexes the event.
CREATE TABLE seen_events (
	device   TEXT NOT NULL,
	event_id TEXT NOT NULL,
	seen_at  INTEGER NOT NULL,
	PRIMARY KEY (device, event_id)
) WITHOUT ROWID;
CREATE INDEX seen_events_at ON seen_events (seen_at);

-- Operator sessions, by the SHA-256 of the session ID.
CREATE TABLE sessions (
	id_hash    TEXT PRIMARY KEY,
	csrf       TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX sessions_expiry ON sessions (expires_at);
