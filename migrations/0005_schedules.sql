-- Cron schedules (runtime.Client.Schedule, //qflow:flow NAME cron=... tz=...).
--
-- A schedule starts a run of its flow at every tick of its cron spec, read
-- in its time zone. Workers that serve the flow fire due ticks: computing
-- the next tick is Go's (github.com/robfig/cron/v3); the database makes a
-- tick fire once however many workers race for it. Firing is one
-- transaction that moves next_tick on only if it still holds the tick the
-- worker read (compare and set), inserts the (schedule, tick) row, whose
-- primary key admits one run per tick, and starts the run. A transaction
-- cut short (a worker killed, PostgreSQL restarted) leaves nothing behind,
-- and the tick fires on the next try.

CREATE TABLE qflow.schedules (
    name        text PRIMARY KEY,
    flow_slug   text NOT NULL,
    spec        text NOT NULL,
    tz          text NOT NULL DEFAULT 'UTC',
    input       jsonb NOT NULL DEFAULT '{}',
    missed      text NOT NULL DEFAULT 'latest' CHECK (missed IN ('latest', 'all')),
    paused      boolean NOT NULL DEFAULT false,
    next_tick   timestamptz NOT NULL,   -- the first tick not fired yet
    last_tick   timestamptz,            -- the last tick fired
    last_run_id uuid,                   -- the run the last tick started
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX schedules_flow ON qflow.schedules (flow_slug);

-- One row per fired tick. run_id has no foreign key: Prune deletes runs
-- without looking here. Each schedule keeps its newest ticks only (the
-- firing transaction deletes older ones; next_tick never moves back, so an
-- old tick cannot fire again).
CREATE TABLE qflow.schedule_ticks (
    schedule  text NOT NULL REFERENCES qflow.schedules ON DELETE CASCADE,
    tick      timestamptz NOT NULL,
    run_id    uuid,
    fired_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schedule, tick)
);
