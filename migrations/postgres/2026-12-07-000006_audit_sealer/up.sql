-- The audit chain is sealed after commit instead of at commit.
--
-- Before: a deferred trigger gave each audit row its chain position at
-- commit, under the row lock of the one-row head, so every audited commit
-- of every gateway waited for the one before it to finish its WAL flush.
-- Now a row is written with the id of the transaction that wrote it
-- (`txid`) and no position; a sealer (one pass at a time across all
-- gateways, under an advisory lock) gives positions to committed rows that
-- have none, a transaction's rows together (src/store/seal.rs).
-- The hash is unchanged (src/audit/hash.rs), so rows chained before this
-- migration verify as they did.
DROP TRIGGER audit_events_chain ON audit_events;
DROP FUNCTION audit_chain_append();
DROP FUNCTION audit_chain_seal(BIGINT);
DROP FUNCTION audit_field(TEXT);

-- Rows already in the table were chained by the trigger (or, if any were
-- not, sort first, in seq order): 0 for all of them, without rewriting the
-- table. Rows written from now on carry their top-level transaction id
-- (also when written in a savepoint, and also by a gateway of the previous
-- version during a rolling upgrade).
ALTER TABLE audit_events ADD COLUMN txid BIGINT NOT NULL DEFAULT 0;
ALTER TABLE audit_events ALTER COLUMN txid SET DEFAULT pg_current_xact_id()::text::bigint;

-- What the sealer reads next, and what the lag metric counts: rows never
-- chained. (A row whose position was taken away keeps its hash, and stays
-- out of this index: `audit verify` reports it as tampering.)
CREATE INDEX audit_events_unsealed ON audit_events (txid, seq)
    WHERE chain_pos IS NULL AND hash IS NULL;
