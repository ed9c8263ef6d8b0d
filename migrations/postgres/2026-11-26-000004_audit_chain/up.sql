-- The audit hash chain. Each row gets its place in the chain (chain_pos),
-- assigned at commit under the lock of the one-row chain head below, so the
-- chain follows commit order even when several gateways write to one
-- database. Rows written before this migration are chained at its end.
ALTER TABLE audit_events ADD COLUMN chain_pos BIGINT;
CREATE UNIQUE INDEX audit_events_by_chain_pos ON audit_events (chain_pos);

-- The chain head: position and hash of the last row, and the checkpoint
-- left by pruning (position and hash of the last pruned row; 0 and the
-- genesis hash when nothing was pruned).
CREATE TABLE audit_chain (
    id              INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    head_pos        BIGINT NOT NULL,
    head_hash       TEXT NOT NULL,
    checkpoint_pos  BIGINT NOT NULL,
    checkpoint_hash TEXT NOT NULL,
    checkpoint_at   TEXT
);
INSERT INTO audit_chain (id, head_pos, head_hash, checkpoint_pos, checkpoint_hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000', 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- On PostgreSQL the chain is extended at commit time, not at insert time:
-- a deferred constraint trigger runs as the last step of every transaction
-- that inserted audit rows. Only there does it take the head's row lock,
-- so (1) positions follow commit order across all gateway processes, (2)
-- the serial stretch is only the commit itself, and (3) the head is always
-- the last lock a transaction takes, so it cannot close a deadlock cycle
-- with row locks taken earlier. The hash is the one src/audit/hash.rs
-- documents; `audit verify` recomputes it in Rust.
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
        RETURN;  -- deleted in its own transaction, or already chained
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

CREATE FUNCTION audit_chain_append() RETURNS TRIGGER LANGUAGE plpgsql AS $$
BEGIN
    PERFORM audit_chain_seal(NEW.seq);
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER audit_events_chain AFTER INSERT ON audit_events
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION audit_chain_append();

-- Rows written before the chain existed, in seq order.
DO $$
DECLARE
    s BIGINT;
BEGIN
    FOR s IN SELECT seq FROM audit_events WHERE chain_pos IS NULL ORDER BY seq LOOP
        PERFORM audit_chain_seal(s);
    END LOOP;
END
$$;
