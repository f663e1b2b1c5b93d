-- The transactional outbox: a business service inserts a row here in the
-- same transaction as its own change; outbox-relay streams committed rows to
-- Kafka through logical replication. Rows may be deleted right after insert
-- (in the same transaction): the insert is in the WAL and is still relayed.
CREATE TABLE IF NOT EXISTS outbox (
    id             uuid        PRIMARY KEY,          -- the event_id
    aggregate_type text        NOT NULL,             -- orders, requests: the topic <aggregate_type>.events.v1
    aggregate_id   text        NOT NULL,             -- the Kafka key
    event_type     text        NOT NULL,             -- a record of the topic's payload union, e.g. OrderPlaced
    payload        jsonb       NOT NULL,             -- the event's fields
    occurred_at    timestamptz NOT NULL DEFAULT now(),
    correlation_id text,
    causation_id   text,
    traceparent    text                              -- W3C trace context, carried as a Kafka header
);
