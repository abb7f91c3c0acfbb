-- The console's index, PostgreSQL dialect (see the SQLite file for the column notes).
-- Times are Unix microseconds (UTC). Text keys use the "C" collation so that they sort
-- byte-wise, as in SQLite: keyset pagination and prefix ranges rely on it.

CREATE TABLE devices (
	id             TEXT COLLATE "C" PRIMARY KEY,
	online         BOOLEAN NOT NULL DEFAULT false,
	status_at      BIGINT,
	last_seen      BIGINT,
	last_upload    BIGINT,
	clip_count     BIGINT NOT NULL DEFAULT 0,
	rejected_count BIGINT NOT NULL DEFAULT 0,
	failed_count   BIGINT NOT NULL DEFAULT 0,
	revoked        BOOLEAN NOT NULL DEFAULT false,
	revoked_at     BIGINT
);

CREATE TABLE clips (
	key          TEXT COLLATE "C" PRIMARY KEY,
	event_id     TEXT NOT NULL,
	device       TEXT COLLATE "C" NOT NULL,
	bucket       TEXT NOT NULL,
	size         BIGINT NOT NULL,
	crc64        TEXT NOT NULL,
	content_type TEXT NOT NULL DEFAULT '',
	recorded_at  BIGINT NOT NULL,
	uploaded_at  BIGINT NOT NULL,
	indexed_at   BIGINT NOT NULL,
	verified     BOOLEAN NOT NULL,
	reason       TEXT NOT NULL DEFAULT '',
	reconciled   BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX clips_device_time ON clips (device, recorded_at, key);
CREATE INDEX clips_time ON clips (recorded_at, key);

CREATE TABLE seen_events (
	device   TEXT COLLATE "C" NOT NULL,
	event_id TEXT COLLATE "C" NOT NULL,
	seen_at  BIGINT NOT NULL,
	PRIMARY KEY (device, event_id)
);
CREATE INDEX seen_events_at ON seen_events (seen_at);

CREATE TABLE sessions (
	id_hash    TEXT PRIMARY KEY,
	csrf       TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_expiry ON sessions (expires_at);
