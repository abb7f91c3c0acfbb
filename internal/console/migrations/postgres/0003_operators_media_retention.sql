-- Operators, API tokens, the audit log, retention rules, and clip media facts (see the
-- SQLite file for the column notes). Additive: new tables and columns.
ALTER TABLE clips ADD COLUMN duration_ms BIGINT;
ALTER TABLE clips ADD COLUMN width INTEGER NOT NULL DEFAULT 0;
ALTER TABLE clips ADD COLUMN height INTEGER NOT NULL DEFAULT 0;
ALTER TABLE clips ADD COLUMN codec TEXT NOT NULL DEFAULT '';
ALTER TABLE clips ADD COLUMN container TEXT NOT NULL DEFAULT '';
ALTER TABLE clips ADD COLUMN media_error TEXT NOT NULL DEFAULT '';
ALTER TABLE clips ADD COLUMN poster BOOLEAN NOT NULL DEFAULT false;
CREATE INDEX clips_unverified ON clips (recorded_at, key) WHERE NOT verified;

ALTER TABLE devices ADD COLUMN bytes BIGINT NOT NULL DEFAULT 0;
UPDATE devices SET bytes = COALESCE((SELECT SUM(size) FROM clips WHERE clips.device = devices.id), 0);

CREATE TABLE operators (
	name          TEXT COLLATE "C" PRIMARY KEY,
	password_hash TEXT NOT NULL,
	role          TEXT NOT NULL,
	created_at    BIGINT NOT NULL,
	updated_at    BIGINT NOT NULL
);
ALTER TABLE sessions ADD COLUMN operator TEXT COLLATE "C" NOT NULL DEFAULT '';

CREATE TABLE api_tokens (
	id           TEXT COLLATE "C" PRIMARY KEY,
	hash         TEXT NOT NULL,
	name         TEXT NOT NULL,
	role         TEXT NOT NULL,
	created_by   TEXT NOT NULL,
	created_at   BIGINT NOT NULL,
	expires_at   BIGINT,
	last_used_at BIGINT,
	revoked_at   BIGINT
);

CREATE TABLE audit_log (
	id     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	at     BIGINT NOT NULL,
	actor  TEXT NOT NULL,
	role   TEXT NOT NULL DEFAULT '',
	via    TEXT NOT NULL DEFAULT '',
	action TEXT NOT NULL,
	target TEXT NOT NULL DEFAULT '',
	detail TEXT NOT NULL DEFAULT '',
	client TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_action ON audit_log (action, id);

CREATE TABLE retention_rules (
	prefix       TEXT COLLATE "C" PRIMARY KEY,
	days         INTEGER NOT NULL,
	updated_by   TEXT NOT NULL,
	updated_at   BIGINT NOT NULL,
	last_run_at  BIGINT,
	last_objects BIGINT NOT NULL DEFAULT 0,
	last_error   TEXT NOT NULL DEFAULT ''
);
