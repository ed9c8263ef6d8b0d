-- Lifecycle: leavers first, grants with their rule and dates, and timers
-- for what happens later (expiry, end of a grace period).
ALTER TABLE sync_jobs ADD COLUMN priority BIGINT NOT NULL DEFAULT 0;

ALTER TABLE app_accounts ADD COLUMN disabled_at TEXT;

-- Who has access to what, since when, and why: one row per (app, identity,
-- entitlement, rule); entitlement '' is the account itself.
CREATE TABLE access_grants (
    app         TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    tenant      TEXT NOT NULL,
    entitlement TEXT NOT NULL,
    rule        TEXT NOT NULL,
    granted_at  TEXT NOT NULL,
    expires_at  TEXT,
    expired_at  TEXT,
    PRIMARY KEY (app, resource_id, entitlement, rule)
);
CREATE INDEX access_grants_by_identity ON access_grants (resource_id);

-- When an identity must converge again in an app without any change
-- (a grant expires, a grace period ends, an end date passes).
CREATE TABLE lifecycle_timers (
    app         TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    tenant      TEXT NOT NULL,
    due_at      TEXT NOT NULL,
    PRIMARY KEY (app, resource_id)
);
CREATE INDEX lifecycle_timers_due ON lifecycle_timers (due_at);
