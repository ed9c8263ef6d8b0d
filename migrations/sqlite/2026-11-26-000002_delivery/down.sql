DROP INDEX audit_events_by_app;
ALTER TABLE audit_events DROP COLUMN app;
DROP TABLE app_state;
DROP TABLE app_accounts;
DROP TABLE sync_jobs;
