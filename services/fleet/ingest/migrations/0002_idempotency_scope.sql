-- A key belongs to the token that sent it: two clients choosing the same key
-- never see each other's answers. A claim carries its own id, so only the
-- request holding it completes or releases it (a request that outlived its
-- claim cannot overwrite the answer of the one that took the key over).
-- Rows older than the service's key lifetime are pruned.
ALTER TABLE ingest_idempotency ADD COLUMN token_sha256 bytea NOT NULL DEFAULT '\x';
ALTER TABLE ingest_idempotency ADD COLUMN claim_id uuid;
ALTER TABLE ingest_idempotency DROP CONSTRAINT ingest_idempotency_pkey;
ALTER TABLE ingest_idempotency ADD PRIMARY KEY (token_sha256, key);
CREATE INDEX ingest_idempotency_claimed_at ON ingest_idempotency (claimed_at);
