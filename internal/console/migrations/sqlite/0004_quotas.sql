-- Upload quotas per device: bytes per UTC day and per UTC month (0: no limit). The usage
-- is counted from the index (the size of the clips indexed in the day or month), hence
-- the index on (device, indexed_at); the partial index finds the devices with a quota.
ALTER TABLE devices ADD COLUMN quota_day INTEGER NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN quota_month INTEGER NOT NULL DEFAULT 0;
CREATE INDEX devices_quota ON devices (id) WHERE quota_day > 0 OR quota_month > 0;
CREATE INDEX clips_device_indexed ON clips (device, indexed_at);
