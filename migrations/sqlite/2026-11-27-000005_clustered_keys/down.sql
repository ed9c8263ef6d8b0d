CREATE TABLE unique_keys_rowid (
    tenant        TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    attr          TEXT NOT NULL,
    value         TEXT NOT NULL,
    resource_id   TEXT NOT NULL REFERENCES resources (id) ON DELETE CASCADE,
    PRIMARY KEY (tenant, resource_type, attr, value)
);
INSERT INTO unique_keys_rowid (tenant, resource_type, attr, value, resource_id)
    SELECT tenant, resource_type, attr, value, resource_id FROM unique_keys;
DROP TABLE unique_keys;
ALTER TABLE unique_keys_rowid RENAME TO unique_keys;
CREATE INDEX unique_keys_by_resource ON unique_keys (resource_id);

CREATE TABLE group_members_rowid (
    group_id    TEXT NOT NULL REFERENCES resources (id) ON DELETE CASCADE,
    member_id   TEXT NOT NULL REFERENCES resources (id) ON DELETE CASCADE,
    member_type TEXT NOT NULL,
    PRIMARY KEY (group_id, member_id)
);
INSERT INTO group_members_rowid (group_id, member_id, member_type)
    SELECT group_id, member_id, member_type FROM group_members;
DROP TABLE group_members;
ALTER TABLE group_members_rowid RENAME TO group_members;
CREATE INDEX group_members_by_member ON group_members (member_id);
