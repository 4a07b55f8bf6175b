-- Exactly-once delivery: a key for each job unique across brokers (the
-- target's checkpoint table is keyed by it), and the split key of each
-- split's last committed row.
ALTER TABLE jobs ADD COLUMN job_key TEXT NULL;
ALTER TABLE splits ADD COLUMN last_key TEXT NULL;
