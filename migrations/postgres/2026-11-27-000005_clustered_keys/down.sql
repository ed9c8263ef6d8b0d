CREATE INDEX group_members_by_member_one ON group_members (member_id);
DROP INDEX group_members_by_member;
ALTER INDEX group_members_by_member_one RENAME TO group_members_by_member;
