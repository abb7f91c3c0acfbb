-- Failed and rejected events, listed with their reasons (the devices' failed_count and
-- rejected_count count the same events). Kept as long as seen_events.
CREATE TABLE problem_events (
	id         INTEGER PRIMARY KEY,       -- insertion order: the lists' cursor
	device     TEXT NOT NULL,             -- the publisher (the broker authenticated it)
	event_id   TEXT NOT NULL,
	claimed    TEXT NOT NULL,             -- the device the event names
	status     TEXT NOT NULL,             -- completed or failed
	reason     TEXT NOT NULL DEFAULT '',  -- the rejection's reason; '' for a failed upload
	detail     TEXT NOT NULL DEFAULT '',  -- the verification's explanation
	error      TEXT NOT NULL DEFAULT '',  -- the device's own error, for a failed upload
	bucket     TEXT NOT NULL DEFAULT '',
	key        TEXT NOT NULL DEFAULT '',
	size       INTEGER NOT NULL DEFAULT 0,
	event_at   INTEGER,                   -- the device's time of the event (uploadedAt)
	indexed_at INTEGER NOT NULL
);
CREATE INDEX problem_events_device ON problem_events (device, id);
CREATE INDEX problem_events_at ON problem_events (indexed_at);
