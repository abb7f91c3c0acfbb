-- Failed and rejected events (see the SQLite file for the column notes).
CREATE TABLE problem_events (
	id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	device     TEXT COLLATE "C" NOT NULL,
	event_id   TEXT NOT NULL,
	claimed    TEXT NOT NULL,
	status     TEXT NOT NULL,
	reason     TEXT NOT NULL DEFAULT '',
	detail     TEXT NOT NULL DEFAULT '',
	error      TEXT NOT NULL DEFAULT '',
	bucket     TEXT NOT NULL DEFAULT '',
	key        TEXT NOT NULL DEFAULT '',
	size       BIGINT NOT NULL DEFAULT 0,
	event_at   BIGINT,
	indexed_at BIGINT NOT NULL
);
CREATE INDEX problem_events_device ON problem_events (device, id);
CREATE INDEX problem_events_at ON problem_events (indexed_at);
