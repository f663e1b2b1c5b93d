-- The replay log: every replay run, and every dead letter it put back.
-- In its own schema (dlq_replayer), with its own migration table, so it
-- shares a database with the other services without touching their tables.

CREATE TABLE replays (
    replay_id   uuid PRIMARY KEY,
    actor       text NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    -- The topic given with --to; NULL when each went back to its own.
    target      text,
    -- The command line's selection (filters or coordinates), for history.
    selection   text NOT NULL,
    forced      boolean NOT NULL DEFAULT false,
    -- running | done | stopped | failed
    outcome     text NOT NULL DEFAULT 'running'
);

CREATE TABLE replayed (
    dlq_topic        text NOT NULL,
    dlq_partition    integer NOT NULL,
    dlq_offset       bigint NOT NULL,
    replay_id        uuid NOT NULL REFERENCES replays,
    target_topic     text NOT NULL,
    target_partition integer NOT NULL,
    target_offset    bigint NOT NULL,
    replayed_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dlq_topic, dlq_partition, dlq_offset, replay_id)
);
