DROP TABLE audit_chain;
DROP INDEX audit_events_by_chain_pos;
ALTER TABLE audit_events DROP COLUMN chain_pos;
