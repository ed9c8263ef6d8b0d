-- Delivery: one pending job per (app, identity), written in the same
-- transaction as the change that caused it. A job means "converge this
-- identity in this app"; many changes to one identity coalesce into one row
-- (its generation counts them).
CREATE TABLE sync_jobs (
    app                TEXT NOT NULL,
    resource_id        TEXT NOT NULL,
    tenant             TEXT NOT NULL,
    state              TEXT NOT NULL,          -- pending | running | dead
    generation         BIGINT NOT NULL,
    attempts           BIGINT NOT NULL,
    next_attempt_at    TEXT NOT NULL,
    claimed_by         TEXT,
    claimed_until      TEXT,
    claimed_generation BIGINT,
    last_error         TEXT,
    last_status        BIGINT,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    PRIMARY KEY (app, resource_id)
);
CREATE INDEX sync_jobs_due ON sync_jobs (app, state, next_attempt_at);

-- What was last applied to each app for each identity: the diff base.
CREATE TABLE app_accounts (
    app           TEXT NOT NULL,
    resource_id   TEXT NOT NULL,
    tenant        TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    remote_id     TEXT,
    status        TEXT NOT NULL,               -- active | disabled
    applied       TEXT NOT NULL,
    revision      BIGINT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (app, resource_id)
);
CREATE INDEX app_accounts_by_remote ON app_accounts (app, remote_id);

-- Operator switches per app (pause / resume).
CREATE TABLE app_state (
    app        TEXT PRIMARY KEY NOT NULL,
    paused     BOOLEAN NOT NULL,
    reason     TEXT,
    updated_at TEXT NOT NULL
);

ALTER TABLE audit_events ADD COLUMN app TEXT;
CREATE INDEX audit_events_by_app ON audit_events (app, seq);
