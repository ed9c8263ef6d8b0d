DROP TABLE audit_events;
DROP TABLE group_members;
DROP TABLE unique_keys;
DROP TABLE attr_index;
DROP TABLE resources;
