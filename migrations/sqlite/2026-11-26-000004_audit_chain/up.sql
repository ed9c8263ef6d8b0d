-- The audit hash chain. Each row gets its place in the chain (chain_pos),
-- assigned under the lock of the one-row chain head below, so the chain
-- follows commit order even when several gateways write to one database.
-- Rows written before this migration get their place and hash at the next
-- audit write, in seq order.
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
