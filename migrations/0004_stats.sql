-- Per-step execution statistics, learned from every run of every flow and
-- read by the optimiser (runtime: WorkerOptions.Optimize; runtime/goals)
-- and by anyone through runtime.Client.StepStats.
--
-- Statistics are keyed twice: by flow slug + step slug, so they carry over
-- between runs and versions of the same flow, and by handler kind, so they
-- carry over between composed plans that use the same kind.
--
-- Recording (step_stats): the engine records every finished task in the
-- transaction that finishes it, so statistics survive exactly what the
-- tasks survive. The settle appends one row per step of the tasks it
-- completed (record_completions: one INSERT from the settle's own set of
-- completed tasks, nothing read from the tables); fail_tasks appends a row
-- per step for the attempts it failed (record_failures). Neither touches a
-- shared row, so settling workers never wait for each other here. The
-- appended rows (step_stats_pending) are folded into step_stats by
-- fold_step_stats: in every worker's upkeep (one worker at a time) and
-- before Client.StepStats reads.
--
-- Kinds (kind_stats) are recorded per finished composed run
-- (record_run_stats, called by runtime/goals).
--
-- Tuning (step_tuning): what the optimisation level of the workers of a
-- flow version applied to it (tune_steps).

CREATE TABLE qflow.step_stats (
    flow_slug       text NOT NULL,
    step_slug       text NOT NULL,
    kind            text,                                -- handler kind, for composed flows
    runs            bigint NOT NULL DEFAULT 0,           -- runs recorded
    tasks           bigint NOT NULL DEFAULT 0,           -- tasks recorded (finished or timed out)
    successes       bigint NOT NULL DEFAULT 0,
    failures        bigint NOT NULL DEFAULT 0,           -- tasks that failed for good
    attempts        bigint NOT NULL DEFAULT 0,
    failed_attempts bigint NOT NULL DEFAULT 0,           -- attempts that failed (retried or final)
    retried_ok      bigint NOT NULL DEFAULT 0,           -- tasks that succeeded after a failed attempt
    timeouts        bigint NOT NULL DEFAULT 0,           -- attempts that hit the step timeout
    sum_ms          double precision NOT NULL DEFAULT 0, -- successful attempts' durations
    max_ms          double precision NOT NULL DEFAULT 0,
    recent_ms       double precision[] NOT NULL DEFAULT '{}', -- the last 128 successful durations, oldest first
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (flow_slug, step_slug)
);

CREATE TABLE qflow.kind_stats (
    kind            text PRIMARY KEY,
    runs            bigint NOT NULL DEFAULT 0,
    tasks           bigint NOT NULL DEFAULT 0,
    successes       bigint NOT NULL DEFAULT 0,
    failures        bigint NOT NULL DEFAULT 0,
    attempts        bigint NOT NULL DEFAULT 0,
    failed_attempts bigint NOT NULL DEFAULT 0,
    retried_ok      bigint NOT NULL DEFAULT 0,
    timeouts        bigint NOT NULL DEFAULT 0,
    sum_ms          double precision NOT NULL DEFAULT 0,
    max_ms          double precision NOT NULL DEFAULT 0,
    recent_ms       double precision[] NOT NULL DEFAULT '{}',
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Runs already recorded by record_run_stats: recording is idempotent.
CREATE TABLE qflow.stats_runs (
    run_id      uuid PRIMARY KEY,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

-- stats_window is how many recent successful durations are kept per key.
CREATE FUNCTION qflow.stats_window() RETURNS integer LANGUAGE sql IMMUTABLE AS $$ SELECT 128 $$;

-- Recording ------------------------------------------------------------------------

-- step_stats_pending holds what settles and failures appended and no fold
-- has taken yet: one row per flow version, step and transaction, with the
-- durations of the successful attempts it saw. No index and no key, so an
-- append costs a heap insert and nothing else; fold_step_stats reads and
-- deletes the whole table. Vacuumed like the engine's busy tables.
CREATE TABLE qflow.step_stats_pending (
    flow_id         integer NOT NULL,
    step_idx        smallint NOT NULL,
    at              timestamptz NOT NULL,
    runs            integer NOT NULL DEFAULT 0, -- tasks with index 0 that finished: once per run and step
    tasks           integer NOT NULL DEFAULT 0, -- tasks that finished (completed or failed for good)
    successes       integer NOT NULL DEFAULT 0,
    failures        integer NOT NULL DEFAULT 0,
    attempts        integer NOT NULL DEFAULT 0, -- of the tasks that finished
    failed_attempts integer NOT NULL DEFAULT 0,
    retried_ok      integer NOT NULL DEFAULT 0,
    timeouts        integer NOT NULL DEFAULT 0, -- attempts that hit the step timeout, retried or not
    sum_ms          double precision NOT NULL DEFAULT 0,
    max_ms          double precision NOT NULL DEFAULT 0,
    durs            double precision[]          -- successful attempts' durations (ms)
) WITH (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_cost_delay = 1);

-- record_completions appends the statistics of the tasks a settle completed
-- at p_at (the settle's qflow.done_task rows): one row per flow version and
-- step, from the set in hand. A task's duration is that of its successful
-- attempt, from its claim to p_at; its earlier attempts count as failed.
-- Called from settle, whose plan_cache_mode it runs under.
CREATE FUNCTION qflow.record_completions(p_done qflow.done_task[], p_at timestamptz)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO qflow.step_stats_pending (flow_id, step_idx, at, runs, tasks, successes, attempts, failed_attempts,
                                          retried_ok, sum_ms, max_ms, durs)
    SELECT d.flow_id, d.step_idx, p_at, count(*) FILTER (WHERE d.task_index = 0), count(*), count(*),
           sum(d.attempts), sum(d.attempts - 1), count(*) FILTER (WHERE d.attempts > 1),
           sum(x.ms), max(x.ms), array_agg(x.ms)
    FROM unnest(p_done) d
    CROSS JOIN LATERAL (SELECT (extract(epoch FROM p_at - d.started_at) * 1000)::double precision AS ms) x
    GROUP BY d.flow_id, d.step_idx;
END $$;

-- record_failures appends the statistics of the attempts fail_tasks failed
-- (qflow.failed_attempt, in 0002_qflow.sql):
-- per flow version and step, the attempts that hit the step timeout (the
-- worker's error "step "…" timed out after …", which a retry would
-- otherwise overwrite), and the tasks that failed for good with all their
-- attempts.
CREATE FUNCTION qflow.record_failures(p_failed qflow.failed_attempt[])
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO qflow.step_stats_pending (flow_id, step_idx, at, runs, tasks, failures, attempts, failed_attempts,
                                          timeouts)
    SELECT f.flow_id, f.step_idx, clock_timestamp(),
           count(*) FILTER (WHERE f.final AND f.task_index = 0), count(*) FILTER (WHERE f.final),
           count(*) FILTER (WHERE f.final), coalesce(sum(f.attempts) FILTER (WHERE f.final), 0),
           coalesce(sum(f.attempts) FILTER (WHERE f.final), 0),
           count(*) FILTER (WHERE f.error LIKE '%step "%" timed out after %')
    FROM unnest(p_failed) f
    GROUP BY f.flow_id, f.step_idx;
END $$;

-- fold_step_stats moves the appended rows into step_stats (by flow slug and
-- step slug, across versions) and returns the number of steps it updated.
-- One fold runs at a time (a transaction-level advisory lock): with p_wait
-- it waits for a fold under way (so a reader sees everything committed
-- before it called), without (upkeep) it leaves the work to that fold. Rows
-- appended by transactions not yet committed are left for the next fold.
-- Rows of a flow version that no longer exists are dropped.
CREATE FUNCTION qflow.fold_step_stats(p_wait boolean DEFAULT false)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_n integer;
BEGIN
    -- The key: the 64-bit FNV-1a hash of "qflow.fold_step_stats".
    IF p_wait THEN
        PERFORM pg_advisory_xact_lock(-2866788933273023888);
    ELSIF NOT pg_try_advisory_xact_lock(-2866788933273023888) THEN
        RETURN 0;
    END IF;
    WITH d AS (
        DELETE FROM qflow.step_stats_pending RETURNING *
    ), ds AS (
        SELECT f.slug AS flow_slug, st.slug AS step_slug, d.*
        FROM d
        JOIN qflow.flows f ON f.id = d.flow_id
        JOIN qflow.steps st ON st.flow_id = d.flow_id AND st.idx = d.step_idx
    ), k AS (
        SELECT ds.flow_slug, ds.step_slug, sum(ds.runs)::bigint AS runs, sum(ds.tasks)::bigint AS tasks,
               sum(ds.successes)::bigint AS successes, sum(ds.failures)::bigint AS failures,
               sum(ds.attempts)::bigint AS attempts, sum(ds.failed_attempts)::bigint AS failed_attempts,
               sum(ds.retried_ok)::bigint AS retried_ok, sum(ds.timeouts)::bigint AS timeouts,
               sum(ds.sum_ms) AS sum_ms, max(ds.max_ms) AS max_ms
        FROM ds GROUP BY 1, 2
    ), w AS (
        -- The newest stats_window() durations per step, oldest first.
        SELECT x.flow_slug, x.step_slug, array_agg(x.ms ORDER BY x.at, x.o) AS durs
        FROM (SELECT ds.flow_slug, ds.step_slug, ds.at, u.o, u.ms,
                     row_number() OVER (PARTITION BY ds.flow_slug, ds.step_slug ORDER BY ds.at DESC, u.o DESC) AS rn
              FROM ds CROSS JOIN LATERAL unnest(ds.durs) WITH ORDINALITY AS u(ms, o)) x
        WHERE x.rn <= qflow.stats_window()
        GROUP BY 1, 2
    ), ins AS (
        INSERT INTO qflow.step_stats AS s (flow_slug, step_slug, runs, tasks, successes, failures, attempts,
                                           failed_attempts, retried_ok, timeouts, sum_ms, max_ms, recent_ms)
        SELECT k.flow_slug, k.step_slug, k.runs, k.tasks, k.successes, k.failures, k.attempts, k.failed_attempts,
               k.retried_ok, k.timeouts, k.sum_ms, k.max_ms, coalesce(w.durs, '{}')
        FROM k LEFT JOIN w ON w.flow_slug = k.flow_slug AND w.step_slug = k.step_slug
        ORDER BY k.flow_slug, k.step_slug -- rows are locked in key order (record_run_stats too)
        ON CONFLICT (flow_slug, step_slug) DO UPDATE SET
            runs = s.runs + excluded.runs,
            tasks = s.tasks + excluded.tasks,
            successes = s.successes + excluded.successes,
            failures = s.failures + excluded.failures,
            attempts = s.attempts + excluded.attempts,
            failed_attempts = s.failed_attempts + excluded.failed_attempts,
            retried_ok = s.retried_ok + excluded.retried_ok,
            timeouts = s.timeouts + excluded.timeouts,
            sum_ms = s.sum_ms + excluded.sum_ms,
            max_ms = greatest(s.max_ms, excluded.max_ms),
            recent_ms = (s.recent_ms || excluded.recent_ms)[greatest(1, cardinality(s.recent_ms || excluded.recent_ms) - qflow.stats_window() + 1):],
            updated_at = now()
        RETURNING 1
    )
    SELECT count(*) INTO v_n FROM ins;
    RETURN v_n;
END $$;

-- Kinds: per finished composed run --------------------------------------------------

-- record_run_stats records one finished composed run under the handler
-- kinds of its steps and returns the number of steps recorded (0 for a run
-- still going, unknown, or already recorded). p_kinds maps step slugs to
-- handler kinds: each kind's statistics take the run's tasks of its steps,
-- and the steps' rows of step_stats are labelled with their kind (the
-- engine records the steps' own statistics as their tasks finish).
-- p_timeouts maps step slugs to the number of attempts that timed out, as
-- counted by the caller's handlers; a final error that says "timed out
-- after" is counted as a timeout too.
CREATE FUNCTION qflow.record_run_stats(p_run uuid, p_kinds jsonb DEFAULT '{}', p_timeouts jsonb DEFAULT '{}')
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_flow text;
    v_n    integer;
BEGIN
    SELECT flow_slug INTO v_flow FROM qflow.runs WHERE id = p_run AND status <> 'started';
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    INSERT INTO qflow.stats_runs (run_id) VALUES (p_run) ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    p_kinds := coalesce(p_kinds, '{}');
    p_timeouts := coalesce(p_timeouts, '{}');

    WITH r AS (
        SELECT st.slug AS step_slug, p_kinds->>st.slug AS kind,
               count(*) FILTER (WHERE t.status IN ('completed', 'failed')) AS tasks,
               count(*) FILTER (WHERE t.status = 'completed') AS successes,
               count(*) FILTER (WHERE t.status = 'failed') AS failures,
               coalesce(sum(t.attempts) FILTER (WHERE t.status IN ('completed', 'failed')), 0)::bigint AS attempts,
               coalesce(sum(CASE WHEN t.status = 'completed' THEN t.attempts - 1
                                 WHEN t.status = 'failed' THEN t.attempts ELSE 0 END), 0)::bigint AS failed_attempts,
               count(*) FILTER (WHERE t.status = 'completed' AND t.attempts > 1) AS retried_ok,
               greatest(coalesce((p_timeouts->>st.slug)::bigint, 0),
                        count(*) FILTER (WHERE t.error LIKE '%timed out after%')) AS timeouts,
               coalesce(sum(extract(epoch FROM t.finished_at - t.started_at) * 1000)
                        FILTER (WHERE t.status = 'completed'), 0)::double precision AS sum_ms,
               coalesce(max(extract(epoch FROM t.finished_at - t.started_at) * 1000)
                        FILTER (WHERE t.status = 'completed'), 0)::double precision AS max_ms,
               coalesce(array_agg((extract(epoch FROM t.finished_at - t.started_at) * 1000)::double precision
                                  ORDER BY t.finished_at) FILTER (WHERE t.status = 'completed'),
                        '{}')::double precision[] AS durs
        FROM qflow.step_tasks t
        JOIN qflow.steps st ON st.flow_id = t.flow_id AND st.idx = t.step_idx
        WHERE t.run_id = p_run
        GROUP BY st.slug
        HAVING count(*) FILTER (WHERE t.status IN ('completed', 'failed')) > 0
            OR coalesce((p_timeouts->>st.slug)::bigint, 0) > 0
    ), k AS (
        SELECT r.kind, sum(r.tasks)::bigint AS tasks, sum(r.successes)::bigint AS successes,
               sum(r.failures)::bigint AS failures, sum(r.attempts)::bigint AS attempts,
               sum(r.failed_attempts)::bigint AS failed_attempts, sum(r.retried_ok)::bigint AS retried_ok,
               sum(r.timeouts)::bigint AS timeouts, sum(r.sum_ms) AS sum_ms, max(r.max_ms) AS max_ms,
               coalesce((SELECT array_agg(d) FROM r r2, unnest(r2.durs) AS d WHERE r2.kind = r.kind),
                        '{}')::double precision[] AS durs
        FROM r WHERE r.kind IS NOT NULL AND r.kind <> '' GROUP BY r.kind
    ), ins_kind AS (
        INSERT INTO qflow.kind_stats AS s (kind, runs, tasks, successes, failures, attempts, failed_attempts,
                                           retried_ok, timeouts, sum_ms, max_ms, recent_ms)
        SELECT k.kind, 1, k.tasks, k.successes, k.failures, k.attempts, k.failed_attempts, k.retried_ok,
               k.timeouts, k.sum_ms, k.max_ms, k.durs[greatest(1, cardinality(k.durs) - qflow.stats_window() + 1):]
        FROM k
        ON CONFLICT (kind) DO UPDATE SET
            runs = s.runs + 1,
            tasks = s.tasks + excluded.tasks,
            successes = s.successes + excluded.successes,
            failures = s.failures + excluded.failures,
            attempts = s.attempts + excluded.attempts,
            failed_attempts = s.failed_attempts + excluded.failed_attempts,
            retried_ok = s.retried_ok + excluded.retried_ok,
            timeouts = s.timeouts + excluded.timeouts,
            sum_ms = s.sum_ms + excluded.sum_ms,
            max_ms = greatest(s.max_ms, excluded.max_ms),
            recent_ms = (s.recent_ms || excluded.recent_ms)[greatest(1, cardinality(s.recent_ms || excluded.recent_ms) - qflow.stats_window() + 1):],
            updated_at = now()
        RETURNING 1
    ), label AS (
        -- The step's own counts come from the engine (fold_step_stats).
        INSERT INTO qflow.step_stats AS s (flow_slug, step_slug, kind)
        SELECT v_flow, r.step_slug, r.kind FROM r WHERE r.kind IS NOT NULL AND r.kind <> '' ORDER BY r.step_slug
        ON CONFLICT (flow_slug, step_slug) DO UPDATE SET kind = excluded.kind
        WHERE s.kind IS DISTINCT FROM excluded.kind
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM r) + 0 * (SELECT count(*) FROM ins_kind) + 0 * (SELECT count(*) FROM label) INTO v_n;
    RETURN v_n;
END $$;

-- stats_percentiles turns a window of recent durations into percentiles.
CREATE FUNCTION qflow.stats_percentiles(p_recent double precision[],
    OUT p50 double precision, OUT p90 double precision, OUT p95 double precision, OUT p99 double precision)
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(percentile_cont(0.50) WITHIN GROUP (ORDER BY d), 0),
           coalesce(percentile_cont(0.90) WITHIN GROUP (ORDER BY d), 0),
           coalesce(percentile_cont(0.95) WITHIN GROUP (ORDER BY d), 0),
           coalesce(percentile_cont(0.99) WITHIN GROUP (ORDER BY d), 0)
    FROM unnest(p_recent) AS d
$$;

-- Tuning -----------------------------------------------------------------------------

-- step_tuning holds what the optimisation level of a flow version's workers
-- applied to its steps (runtime: WorkerOptions.Optimize): the attempts
-- (basic) and claim priority (advanced) written over the step's own in
-- qflow.steps, with the step's own kept to be put back, and, for reading,
-- the timeout and hedging delay the workers apply to their handlers. A
-- version with no rows here runs as defined.
CREATE TABLE qflow.step_tuning (
    flow_id       integer NOT NULL,
    step_idx      smallint NOT NULL,
    level         smallint NOT NULL CHECK (level BETWEEN 1 AND 3),
    max_attempts  integer CHECK (max_attempts >= 1), -- learned; NULL: the step's own
    priority      integer,                           -- learned; NULL: the step's own
    timeout_ms    bigint CHECK (timeout_ms > 0),     -- learned; NULL: the step's own
    hedge_ms      bigint CHECK (hedge_ms > 0),       -- learned; NULL: no hedging
    own_attempts  integer NOT NULL,                  -- steps.max_attempts before tuning
    own_priority  integer NOT NULL,                  -- steps.priority before tuning
    tuned_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (flow_id, step_idx),
    FOREIGN KEY (flow_id, step_idx) REFERENCES qflow.steps ON DELETE CASCADE
);

-- tune_steps applies an optimisation level's learned options to the steps
-- of flow version p_flow_id: p_slugs names steps, with one value each in
-- the other arrays (NULL: not learned). A step not named, or whose value
-- is NULL, runs with its own. At level 0 it puts back every step's own
-- attempts and priority and forgets the tuning. Tasks already queued keep
-- the attempts and priority they were queued with; a version whose steps
-- end up with a non-zero priority is marked prioritized (as
-- set_step_priorities does). Returns the number of steps whose attempts or
-- priority changed.
CREATE FUNCTION qflow.tune_steps(p_flow_id integer, p_level smallint, p_slugs text[], p_attempts integer[],
                                 p_priorities integer[], p_timeouts_ms bigint[], p_hedges_ms bigint[])
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_n    integer := 0;
    v_bad  text;
    v_slug text;
BEGIN
    IF p_level IS NULL OR p_level NOT BETWEEN 0 AND 3 THEN
        RAISE EXCEPTION 'qflow: tune_steps: level % is not 0 to 3', p_level USING ERRCODE = '22023';
    END IF;
    IF coalesce(cardinality(p_slugs), 0) <> coalesce(cardinality(p_attempts), 0)
       OR coalesce(cardinality(p_slugs), 0) <> coalesce(cardinality(p_priorities), 0)
       OR coalesce(cardinality(p_slugs), 0) <> coalesce(cardinality(p_timeouts_ms), 0)
       OR coalesce(cardinality(p_slugs), 0) <> coalesce(cardinality(p_hedges_ms), 0) THEN
        RAISE EXCEPTION 'qflow: tune_steps: the arrays differ in length' USING ERRCODE = '22023';
    END IF;
    -- define_flow's lock first (it updates the steps, then the flow), then
    -- the flow row, not FOR UPDATE: starts of runs hold it FOR KEY SHARE.
    SELECT slug INTO v_slug FROM qflow.flows WHERE id = p_flow_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'qflow: unknown flow id %', p_flow_id USING ERRCODE = 'QF404';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('qflow.define_flow:' || v_slug, 0));
    PERFORM 1 FROM qflow.flows WHERE id = p_flow_id FOR NO KEY UPDATE;
    SELECT string_agg(format('"%s"', x.slug), ', ') INTO v_bad FROM unnest(p_slugs) AS x(slug)
    WHERE NOT EXISTS (SELECT 1 FROM qflow.steps st WHERE st.flow_id = p_flow_id AND st.slug = x.slug);
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'qflow: tune_steps: flow id % has no step %', p_flow_id, v_bad USING ERRCODE = '22023';
    END IF;
    IF p_level = 0 THEN
        WITH u AS (
            UPDATE qflow.steps st SET max_attempts = tu.own_attempts, priority = tu.own_priority
            FROM qflow.step_tuning tu
            WHERE tu.flow_id = p_flow_id AND st.flow_id = p_flow_id AND st.idx = tu.step_idx
              AND (st.max_attempts, st.priority) IS DISTINCT FROM (tu.own_attempts, tu.own_priority)
            RETURNING 1
        )
        SELECT count(*) INTO v_n FROM u;
        DELETE FROM qflow.step_tuning WHERE flow_id = p_flow_id;
    ELSE
        -- Keep each step's own options the first time it is tuned.
        INSERT INTO qflow.step_tuning (flow_id, step_idx, level, own_attempts, own_priority)
        SELECT p_flow_id, st.idx, p_level, st.max_attempts, st.priority
        FROM qflow.steps st WHERE st.flow_id = p_flow_id
        ON CONFLICT (flow_id, step_idx) DO NOTHING;
        UPDATE qflow.step_tuning tu SET level = p_level, max_attempts = x.attempts, priority = x.priority,
            timeout_ms = x.timeout_ms, hedge_ms = x.hedge_ms, tuned_at = now()
        FROM qflow.steps st
        LEFT JOIN unnest(p_slugs, p_attempts, p_priorities, p_timeouts_ms, p_hedges_ms)
             AS x(slug, attempts, priority, timeout_ms, hedge_ms) ON x.slug = st.slug
        WHERE tu.flow_id = p_flow_id AND st.flow_id = p_flow_id AND st.idx = tu.step_idx;
        WITH u AS (
            UPDATE qflow.steps st SET max_attempts = coalesce(tu.max_attempts, tu.own_attempts),
                priority = coalesce(tu.priority, tu.own_priority)
            FROM qflow.step_tuning tu
            WHERE tu.flow_id = p_flow_id AND st.flow_id = p_flow_id AND st.idx = tu.step_idx
              AND (st.max_attempts, st.priority) IS DISTINCT FROM
                  (coalesce(tu.max_attempts, tu.own_attempts), coalesce(tu.priority, tu.own_priority))
            RETURNING 1
        )
        SELECT count(*) INTO v_n FROM u;
    END IF;
    IF v_n > 0 THEN
        UPDATE qflow.flows SET prioritized = EXISTS (SELECT 1 FROM qflow.steps WHERE flow_id = p_flow_id AND priority <> 0)
        WHERE id = p_flow_id;
    END IF;
    RETURN v_n;
END $$;
