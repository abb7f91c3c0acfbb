-- Upload quotas per device (see the SQLite file for the notes).
ALTER TABLE devices ADD COLUMN quota_day BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN quota_month BIGINT NOT NULL DEFAULT 0;
CREATE INDEX devices_quota ON devices (id) WHERE quota_day > 0 OR quota_month > 0;
CREATE INDEX clips_device_indexed ON clips (device, indexed_at);
