DROP TRIGGER audit_events_chain ON audit_events;
DROP FUNCTION audit_chain_append();
DROP FUNCTION audit_chain_seal(BIGINT);
DROP FUNCTION audit_field(TEXT);
DROP TABLE audit_chain;
DROP INDEX audit_events_by_chain_pos;
ALTER TABLE audit_events DROP COLUMN chain_pos;
