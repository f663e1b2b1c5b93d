-- Answers to requests that carried an Idempotency-Key, so a retried request
-- gets the first answer and produces nothing new. A 'pending' row marks a
-- request in flight; one older than the service's ack timeout was abandoned
-- by a crashed instance and may be claimed again.
CREATE TABLE ingest_idempotency (
    key            text        PRIMARY KEY,
    request_sha256 bytea       NOT NULL,
    state          text        NOT NULL CHECK (state IN ('pending', 'done')),
    status         smallint,
    response       jsonb,
    claimed_at     timestamptz NOT NULL DEFAULT now()
);
