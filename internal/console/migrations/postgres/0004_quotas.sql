-- Upload quotas per device, and the usage by UTC day (see the SQLite file for the notes).
ALTER TABLE devices ADD COLUMN quota_day BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN quota_month BIGINT NOT NULL DEFAULT 0;
CREATE INDEX devices_quota ON devices (id) WHERE quota_day > 0 OR quota_month > 0;

CREATE TABLE device_usage (
	device TEXT COLLATE "C" NOT NULL,
	day    BIGINT NOT NULL,
	bytes  BIGINT NOT NULL,
	PRIMARY KEY (device, day)
);
INSERT INTO device_usage (device, day, bytes)
	SELECT device, indexed_at / 86400000000, SUM(size) FROM clips GROUP BY device, indexed_at / 86400000000;
