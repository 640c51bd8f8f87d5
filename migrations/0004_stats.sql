-- Per-step execution statistics, learned from finished runs and read by the
-- optimiser of runtime/goals (and by anyone through runtime.Client).
--
-- Statistics are keyed twice: by flow slug + step slug, so they carry over
-- between runs and versions of the same flow, and by handler kind, so they
-- carry over between composed plans that use the same kind. Recording is
-- one set-based statement per finished run (record_run_stats); nothing is
-- added to the engine's claim or completion paths.

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

-- Runs already recorded: recording is idempotent.
CREATE TABLE qflow.stats_runs (
    run_id      uuid PRIMARY KEY,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

-- stats_window is how many recent successful durations are kept per key.
CREATE FUNCTION qflow.stats_window() RETURNS integer LANGUAGE sql IMMUTABLE AS $$ SELECT 128 $$;

-- record_run_stats folds one finished run into the statistics and returns
-- the number of steps recorded (0 for a run still going, unknown, or
-- already recorded). p_kinds maps step slugs to handler kinds; p_timeouts
-- maps step slugs to the number of attempts that timed out, as counted by
-- the caller's handlers (the engine keeps only a task's last error, so a
-- timeout that a retry then recovered leaves no trace in step_tasks). A
-- final error that says "timed out after" is counted as a timeout too.
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
    ), ins_step AS (
        INSERT INTO qflow.step_stats AS s (flow_slug, step_slug, kind, runs, tasks, successes, failures, attempts,
                                           failed_attempts, retried_ok, timeouts, sum_ms, max_ms, recent_ms)
        SELECT v_flow, r.step_slug, r.kind, 1, r.tasks, r.successes, r.failures, r.attempts, r.failed_attempts,
               r.retried_ok, r.timeouts, r.sum_ms, r.max_ms,
               r.durs[greatest(1, cardinality(r.durs) - qflow.stats_window() + 1):]
        FROM r
        ON CONFLICT (flow_slug, step_slug) DO UPDATE SET
            kind = coalesce(excluded.kind, s.kind),
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
    )
    SELECT (SELECT count(*) FROM ins_step) + 0 * (SELECT count(*) FROM ins_kind) INTO v_n;
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
