DROP TABLE lifecycle_timers;
DROP TABLE access_grants;
ALTER TABLE app_accounts DROP COLUMN disabled_at;
ALTER TABLE sync_jobs DROP COLUMN priority;
