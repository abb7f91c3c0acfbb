-- Operators with roles, API tokens, the audit log, retention rules, and what the console
-- reads from each clip (duration, resolution, poster). Additive: new tables and columns.

-- What the console read from the clip's container at ingest (ranged GETs), and whether
-- the device uploaded a poster ({key}.poster.jpg).
ALTER TABLE clips ADD COLUMN duration_ms INTEGER;               -- NULL: unknown
ALTER TABLE clips ADD COLUMN width INTEGER NOT NULL DEFAULT 0;  -- 0: unknown
ALTER TABLE clips ADD COLUMN height INTEGER NOT NULL DEFAULT 0;
ALTER TABLE clips ADD COLUMN codec TEXT NOT NULL DEFAULT '';     -- h264, h265, av1, vp9...
ALTER TABLE clips ADD COLUMN container TEXT NOT NULL DEFAULT ''; -- mp4, mov, mpegts
ALTER TABLE clips ADD COLUMN media_error TEXT NOT NULL DEFAULT '';
ALTER TABLE clips ADD COLUMN poster INTEGER NOT NULL DEFAULT 0;
-- The fleet-wide search for unverified clips walks this instead of every clip.
CREATE INDEX clips_unverified ON clips (recorded_at, key) WHERE NOT verified;

-- Bytes of the device's indexed clips, kept with clip_count.
ALTER TABLE devices ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
UPDATE devices SET bytes = COALESCE((SELECT SUM(size) FROM clips WHERE clips.device = devices.id), 0);

-- Operators: a viewer watches; an admin also deletes, revokes and sets retention.
CREATE TABLE operators (
	name          TEXT PRIMARY KEY,
	password_hash TEXT NOT NULL,       -- bcrypt
	role          TEXT NOT NULL,       -- viewer or admin
	created_at    INTEGER NOT NULL,
	updated_at    INTEGER NOT NULL
) WITHOUT ROWID;
-- A session belongs to an operator; sessions from before (no operator) are not valid.
ALTER TABLE sessions ADD COLUMN operator TEXT NOT NULL DEFAULT '';

-- API tokens: "cgt_{id}_{secret}"; the table holds the SHA-256 of the whole token.
CREATE TABLE api_tokens (
	id           TEXT PRIMARY KEY,
	hash         TEXT NOT NULL,
	name         TEXT NOT NULL,
	role         TEXT NOT NULL,
	created_by   TEXT NOT NULL,
	created_at   INTEGER NOT NULL,
	expires_at   INTEGER,              -- NULL: never
	last_used_at INTEGER,
	revoked_at   INTEGER
) WITHOUT ROWID;

-- Who did what: logins, playback URLs, deletes, revocations, retention runs, operators
-- and tokens.
CREATE TABLE audit_log (
	id     INTEGER PRIMARY KEY,
	at     INTEGER NOT NULL,
	actor  TEXT NOT NULL,              -- operator name, or "scheduler"
	role   TEXT NOT NULL DEFAULT '',
	via    TEXT NOT NULL DEFAULT '',   -- session, token ID, or empty for the console itself
	action TEXT NOT NULL,
	target TEXT NOT NULL DEFAULT '',
	detail TEXT NOT NULL DEFAULT '',
	client TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_action ON audit_log (action, id);

-- Retention rules, applied on a schedule: clips under prefix older than days go.
CREATE TABLE retention_rules (
	prefix       TEXT PRIMARY KEY,
	days         INTEGER NOT NULL,
	updated_by   TEXT NOT NULL,
	updated_at   INTEGER NOT NULL,
	last_run_at  INTEGER,
	last_objects INTEGER NOT NULL DEFAULT 0,
	last_error   TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;
