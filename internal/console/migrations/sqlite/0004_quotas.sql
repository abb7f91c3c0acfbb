-- Upload quotas per device: bytes per UTC day and per UTC month (0: no limit); the
-- partial index finds the devices with a quota.
ALTER TABLE devices ADD COLUMN quota_day INTEGER NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN quota_month INTEGER NOT NULL DEFAULT 0;
CREATE INDEX devices_quota ON devices (id) WHERE quota_day > 0 OR quota_month > 0;

-- The usage the quotas are held to: the size of the device's indexed clips by the UTC day
-- they were indexed (day: Unix days, indexed_at / 86400000000), kept in the transactions
-- that index, re-index and delete clips, so that a quota snapshot sums a month's rows,
-- not a month's clips. Rows before the previous month are pruned.
CREATE TABLE device_usage (
	device TEXT NOT NULL,
	day    INTEGER NOT NULL,
	bytes  INTEGER NOT NULL,
	PRIMARY KEY (device, day)
) WITHOUT ROWID;
INSERT INTO device_usage (device, day, bytes)
	SELECT device, indexed_at / 86400000000, SUM(size) FROM clips GROUP BY device, indexed_at / 86400000000;
