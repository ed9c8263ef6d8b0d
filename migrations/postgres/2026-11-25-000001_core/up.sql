-- Identity store: resources are schema-driven JSON documents; everything a
-- query must find fast lives in side tables keyed by tenant.
CREATE TABLE resources (
    id            TEXT PRIMARY KEY NOT NULL,
    tenant        TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    external_id   TEXT,
    display       TEXT,
    data          TEXT NOT NULL,
    version       BIGINT NOT NULL,
    created       TEXT NOT NULL,
    last_modified TEXT NOT NULL
);
CREATE INDEX resources_by_type ON resources (tenant, resource_type, created, id);

-- One row per (indexed attribute, normalised value) of a resource.
CREATE TABLE attr_index (
    tenant        TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    attr          TEXT NOT NULL,
    -- byte order, as on SQLite: prefix searches are index range scans
    value         TEXT COLLATE "C" NOT NULL,
    resource_id   TEXT NOT NULL REFERENCES resources (id) ON DELETE CASCADE
);
CREATE INDEX attr_index_lookup ON attr_index (tenant, resource_type, attr, value);
CREATE INDEX attr_index_by_resource ON attr_index (resource_id);

-- Server-enforced uniqueness (userName, Group displayName), case-folded.
CREATE TABLE unique_keys (
    tenant        TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    attr          TEXT NOT NULL,
    value         TEXT NOT NULL,
    resource_id   TEXT NOT NULL REFERENCES resources (id) ON DELETE CASCADE,
    PRIMARY KEY (tenant, resource_type, attr, value)
);
CREATE INDEX unique_keys_by_resource ON unique_keys (resource_id);

-- Group membership: one row per member, never inside the group document.
CREATE TABLE group_members (
    group_id    TEXT NOT NULL REFERENCES resources (id) ON DELETE CASCADE,
    member_id   TEXT NOT NULL REFERENCES resources (id) ON DELETE CASCADE,
    member_type TEXT NOT NULL,
    PRIMARY KEY (group_id, member_id)
);
CREATE INDEX group_members_by_member ON group_members (member_id);

-- Append-only audit trail; hash columns are filled by the audit chain.
CREATE TABLE audit_events (
    seq           BIGSERIAL PRIMARY KEY,
    at            TEXT NOT NULL,
    tenant        TEXT,
    actor         TEXT NOT NULL,
    action        TEXT NOT NULL,
    resource_type TEXT,
    resource_id   TEXT,
    outcome       TEXT NOT NULL,
    detail        TEXT,
    prev_hash     TEXT,
    hash          TEXT
);
CREATE INDEX audit_events_by_resource ON audit_events (resource_id);
