-- Saga instances, their step log, and the orchestrator's outbox. In its own
-- schema (saga), with its own migration table, beside the other services.

CREATE TABLE sagas (
    saga_id         uuid PRIMARY KEY,
    saga_type       text NOT NULL,
    -- What the saga is about (the order id); one saga per type and key.
    business_key    text NOT NULL,
    -- RUNNING | COMPENSATING | COMPLETED | COMPENSATED | FAILED
    state           text NOT NULL,
    -- The step being run or compensated (the last one once finished).
    step            text NOT NULL,
    attempt         integer NOT NULL,
    data            jsonb NOT NULL,
    -- {"step": …, "reason": …} once a step failed.
    failure         jsonb,
    -- Bumped by every change; the step log is unique per version.
    version         integer NOT NULL,
    -- When the current step times out; NULL once finished.
    deadline        timestamptz,
    started_at      timestamptz NOT NULL DEFAULT now(),
    step_started_at timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    UNIQUE (saga_type, business_key)
);

CREATE INDEX sagas_deadline ON sagas (deadline) WHERE deadline IS NOT NULL;
CREATE INDEX sagas_state ON sagas (state, started_at);

CREATE TABLE saga_steps (
    saga_id  uuid NOT NULL REFERENCES sagas,
    version  integer NOT NULL,
    -- Order within the change.
    entry    integer NOT NULL,
    step     text NOT NULL,
    attempt  integer NOT NULL,
    -- command_sent | succeeded | failed | timed_out | compensation_sent |
    -- compensated | compensation_failed | completed | rejected
    event    text NOT NULL,
    detail   text,
    at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (saga_id, version, entry)
);

-- Messages to send, already addressed and Avro-encoded; outbox-relay
-- (--outbox-format addressed) streams the inserts to Kafka. Written in the
-- transaction that changes the saga, so state and commands never part.
CREATE TABLE outbox (
    id          uuid PRIMARY KEY,
    topic       text NOT NULL,
    message_key text NOT NULL,
    value       bytea NOT NULL,
    headers     jsonb,
    saga_id     uuid NOT NULL,
    step        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX outbox_saga ON outbox (saga_id);
