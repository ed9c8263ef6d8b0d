ALTER TABLE sync_jobs DROP COLUMN inflight;
