-- "The groups of this member" from the index alone (an index-only scan),
-- as SQLite's clustered group_members gives it in the same migration.
CREATE INDEX group_members_by_member_group ON group_members (member_id, group_id);
DROP INDEX group_members_by_member;
ALTER INDEX group_members_by_member_group RENAME TO group_members_by_member;
