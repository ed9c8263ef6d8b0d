-- Back to chaining at commit: rows not sealed yet are chained first, in
-- the sealer's order, then the trigger takes over.
DROP INDEX audit_events_unsealed;

CREATE FUNCTION audit_field(v TEXT) RETURNS BYTEA LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN v IS NULL THEN '\x00'::bytea
                ELSE '\x01'::bytea || int8send(octet_length(convert_to(v, 'UTF8'))::int8)
                     || convert_to(v, 'UTF8')
           END
$$;

CREATE FUNCTION audit_chain_seal(row_seq BIGINT) RETURNS VOID LANGUAGE plpgsql AS $$
DECLARE
    r    audit_events%ROWTYPE;
    pos  BIGINT;
    prev TEXT;
    h    TEXT;
BEGIN
    SELECT * INTO r FROM audit_events WHERE seq = row_seq;
    IF NOT FOUND OR r.chain_pos IS NOT NULL THEN
        RETURN;
    END IF;
    UPDATE audit_chain SET head_pos = head_pos + 1 WHERE id = 1
        RETURNING head_pos, head_hash INTO pos, prev;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the audit chain head (table audit_chain) is missing';
    END IF;
    h := encode(sha256(
            convert_to(E'scim-gateway/audit/v1\n', 'UTF8')
            || audit_field(pos::text) || audit_field(r.seq::text) || audit_field(r.at)
            || audit_field(r.tenant) || audit_field(r.actor) || audit_field(r.action)
            || audit_field(r.resource_type) || audit_field(r.resource_id)
            || audit_field(r.outcome) || audit_field(r.detail) || audit_field(r.app)
            || audit_field(prev)), 'hex');
    UPDATE audit_events SET chain_pos = pos, prev_hash = prev, hash = h WHERE seq = row_seq;
    UPDATE audit_chain SET head_hash = h WHERE id = 1;
END
$$;

DO $$
DECLARE
    s BIGINT;
BEGIN
    FOR s IN SELECT seq FROM audit_events WHERE chain_pos IS NULL AND hash IS NULL
             ORDER BY txid, seq LOOP
        PERFORM audit_chain_seal(s);
    END LOOP;
END
$$;

ALTER TABLE audit_events DROP COLUMN txid;

CREATE FUNCTION audit_chain_append() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
    PERFORM audit_chain_seal(NEW.seq);
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER audit_events_chain AFTER INSERT ON audit_events
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION audit_chain_append();
