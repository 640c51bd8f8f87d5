-- QuantumFlow engine schema: flow definitions, run state, workers, and the
-- transitions between states. Every transition is one function call, hence
-- one transaction.
--
-- The engine keeps its task queue in a table it owns: a task row of
-- qflow.step_tasks is its own queue message. An unfinished task is in the
-- partial index step_tasks_ready, ordered for claiming; vt is when a queued
-- task becomes visible, and for a started task when its lease ends. So the
-- engine depends on no pgmq table layout, and no statement in the hot path
-- is built or planned per call (no dynamic SQL).
--
-- Plans: the tables grow without bound, and a benchmark or a new install
-- runs on tables the planner has no statistics for yet, where it would
-- rather scan a few thousand rows than probe an index. So every lookup of a
-- run by id is a LATERAL subquery the planner cannot flatten (it locks its
-- row, or ends in LIMIT 1), which makes it a primary-key probe per key, and
-- updates of sets of runs go by TID; tasks and step states are always
-- reached through their primary keys from a small set of keys.
--
-- Locks: every transition of a run (settle, fail, cancel, expire) locks the
-- run row first, in id order; the run lock serialises everything that
-- changes a run's steps and tasks, so step and task locks cannot deadlock.
-- The one table-level lock is an analyse's (analyze_after_fanout, in the
-- transaction of a large fan-out, until it commits): nothing waits for it,
-- since every analyse of the engine's tables gives up at once when it
-- cannot have the lock.
-- Claims and heartbeats lock only task rows, with SKIP LOCKED, and never wait;
-- a claim of a flow version with limits also locks the gates it passes
-- (qflow.gates), with SKIP LOCKED too (see "Limits" below).

CREATE SCHEMA IF NOT EXISTS qflow;

-- Definitions ---------------------------------------------------------------

CREATE TABLE qflow.flows (
    id         integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slug       text NOT NULL CHECK (slug ~ '^[a-z][a-z0-9_]{0,39}$'),
    version    integer NOT NULL CHECK (version > 0),
    shape_hash text NOT NULL,
    -- queue_name names the version's work (<slug>_<version>): the payload
    -- of the wake-up notifications on qflow_work, and a label in logs.
    queue_name text NOT NULL UNIQUE,
    step_count integer NOT NULL CHECK (step_count > 0),
    definition jsonb NOT NULL,
    -- prioritized: some step has a non-zero priority (set by define_flow
    -- from the definition, or by set_step_priorities). When false, tasks
    -- carry only their run's priority (0 unless StartOptions.Priority).
    prioritized boolean NOT NULL DEFAULT false,
    -- concurrency: at most this many tasks of the flow (all versions, all
    -- steps) run at once (StepOptions.Concurrency on the flow's options;
    -- NULL: no such limit). limited: the version has a limit (this one or
    -- a step's); its claims go through claim_limited. Both are set by
    -- define_flow from the definition, like step priorities.
    concurrency integer CHECK (concurrency > 0),
    limited     boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (slug, version),
    UNIQUE (slug, shape_hash)
);

CREATE TABLE qflow.steps (
    flow_id        integer NOT NULL REFERENCES qflow.flows ON DELETE CASCADE,
    idx            smallint NOT NULL CHECK (idx >= 0),
    slug           text NOT NULL CHECK (slug ~ '^[a-z][a-z0-9_]{0,39}$' AND slug <> 'run'),
    kind           text NOT NULL CHECK (kind IN ('single', 'map')),
    takes_input    boolean NOT NULL,
    max_attempts   integer NOT NULL CHECK (max_attempts >= 1),
    base_delay_ms  bigint NOT NULL CHECK (base_delay_ms >= 0),
    timeout_ms     bigint NOT NULL CHECK (timeout_ms > 0),
    start_delay_ms bigint NOT NULL CHECK (start_delay_ms >= 0),
    dep_count      integer NOT NULL CHECK (dep_count >= 0),
    is_leaf        boolean NOT NULL,
    priority       integer NOT NULL DEFAULT 0,
    -- Limits across workers (see "Limits" below), set by define_flow:
    -- at most concurrency tasks running at once, tasks starting at most
    -- rate_n every rate_per_ms with bursts of burst, per value of the
    -- task input at JSON path limit_key when set (NULL: one limit for the
    -- step). gated: the step has concurrency or a rate, so its tasks pass
    -- a gate.
    concurrency    integer CHECK (concurrency > 0),
    rate_n         integer CHECK (rate_n > 0),
    rate_per_ms    bigint CHECK (rate_per_ms > 0),
    burst          integer CHECK (burst > 0),
    limit_key      text[],
    gated          boolean NOT NULL DEFAULT false,
    -- The graph, denormalised for the hot path: dependencies in parameter
    -- order (with their slugs, the keys of the task input) and dependents.
    deps           smallint[] NOT NULL DEFAULT '{}',
    dep_slugs      text[] NOT NULL DEFAULT '{}',
    dependents     smallint[] NOT NULL DEFAULT '{}',
    -- Conditional and optional steps (see skip_steps): a conditional step
    -- has a condition the worker evaluates before the handler, and a false
    -- one skips it; a failed optional step is skipped instead of failing
    -- its run; absent_ok lists the dependencies whose skip the step takes
    -- (it runs without their output), where any other skipped dependency
    -- skips it too.
    conditional    boolean NOT NULL DEFAULT false,
    optional       boolean NOT NULL DEFAULT false,
    absent_ok      smallint[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (flow_id, idx),
    UNIQUE (flow_id, slug),
    CHECK (kind = 'single' OR dep_count <= 1),
    CHECK ((rate_n IS NULL) = (rate_per_ms IS NULL) AND (rate_n IS NULL) = (burst IS NULL)),
    CHECK (gated = (concurrency IS NOT NULL OR rate_n IS NOT NULL))
);

CREATE TABLE qflow.deps (
    flow_id  integer NOT NULL,
    step_idx smallint NOT NULL,
    dep_idx  smallint NOT NULL,
    position smallint NOT NULL,
    PRIMARY KEY (flow_id, step_idx, dep_idx),
    FOREIGN KEY (flow_id, step_idx) REFERENCES qflow.steps ON DELETE CASCADE,
    FOREIGN KEY (flow_id, dep_idx) REFERENCES qflow.steps ON DELETE CASCADE,
    CHECK (step_idx <> dep_idx)
);
CREATE INDEX deps_by_dep ON qflow.deps (flow_id, dep_idx);

-- Run state -------------------------------------------------------------------

-- The run, step and task tables change on every transition: each row is
-- updated a few times and then never again. Autovacuum's defaults (a
-- fifth of a table dead before a vacuum, throttled) leave millions of dead
-- rows, and dead entries at the head of step_tasks_ready, in a busy
-- deployment, so these tables are vacuumed at 1% dead and almost without
-- throttling (docs/reliability.md).
--
-- Their rules (the status values, counters never negative, status in step
-- with finished_at, output and the counters) are kept by the engine's
-- functions, and qflow.invariant_violations (0008_rules.sql) lists any row
-- that breaks them; every test's database is checked with it when the test ends
-- (internal/pgtest), and the chaos suite's after each scenario. They are
-- not CHECK constraints: PostgreSQL reads and plans a table's CHECK
-- expressions again on every statement that writes the table (about 19
-- microseconds a statement for the seven that runs had), which cost 5-8%
-- of W1's throughput (docs/benchmarks.md).

CREATE TABLE qflow.runs (
    id              uuid PRIMARY KEY,
    flow_id         integer NOT NULL REFERENCES qflow.flows,
    flow_slug       text NOT NULL,
    status          text NOT NULL DEFAULT 'started', -- started, completed, failed or cancelled
    input           jsonb NOT NULL,
    output          jsonb,
    remaining_steps integer NOT NULL,
    error           text,
    failed_step     text,
    events          boolean NOT NULL DEFAULT true,
    sequential      boolean NOT NULL DEFAULT false,
    -- The run's priority (StartOptions.Priority), added to each of its
    -- tasks' step priority to make the task's claim priority (start_steps).
    priority        integer NOT NULL DEFAULT 0,
    max_attempts    integer,
    deadline        timestamptz,
    -- The W3C trace context (OpenTelemetry's propagator fields as a JSON
    -- object, e.g. {"traceparent": "00-…"}) of the caller that started the
    -- run; NULL when it had none. Copied to the run's tasks, so a worker's
    -- task spans are children of the caller's span across processes.
    trace_context   jsonb,
    -- The caller's idempotency key (StartOptions.Key): unique per flow slug
    -- across versions while the run exists (runs_key); NULL for none.
    idempotency_key text,
    -- How many times the run was resumed (resume_run), and when last.
    resumes         integer NOT NULL DEFAULT 0,
    resumed_at      timestamptz,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
) WITH (fillfactor = 80, autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_cost_delay = 1);
CREATE INDEX runs_list ON qflow.runs (flow_slug, status, started_at DESC, id);
CREATE INDEX runs_started_at ON qflow.runs (started_at DESC, id);
CREATE INDEX runs_deadline ON qflow.runs (deadline) WHERE status = 'started' AND deadline IS NOT NULL;
CREATE INDEX runs_finished ON qflow.runs (finished_at) WHERE status <> 'started'; -- pruning
-- A key names one run of a flow (any version) for as long as the run
-- exists: pruning the run frees its key.
CREATE UNIQUE INDEX runs_key ON qflow.runs (flow_slug, idempotency_key) WHERE idempotency_key IS NOT NULL;

-- A step's state exists from the moment the step starts (its dependencies
-- have completed, or were skipped and the step takes their skip) or is
-- skipped; a step with no row has not started yet. The run lock makes
-- "every dependency has completed or was skipped" a safe test, so no
-- per-step dependency counters are kept. A skipped step has no output;
-- its error is set when it is an optional step that failed.
CREATE TABLE qflow.step_states (
    run_id          uuid NOT NULL,
    step_idx        smallint NOT NULL,
    flow_id         integer NOT NULL,
    status          text NOT NULL DEFAULT 'started', -- created, started, completed, failed, cancelled or skipped
    task_count      integer,
    remaining_tasks integer,
    output          jsonb,
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    PRIMARY KEY (run_id, step_idx)
) WITH (fillfactor = 80, autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_cost_delay = 1);

-- A task is one execution unit and its own queue message. Status moves
-- queued → started → completed | failed | cancelled | skipped (a retry
-- moves a started task back to queued; skipped: its step's condition was
-- false). finished_at is set exactly when the task has finished for good,
-- which takes it out of step_tasks_ready; a claim changes no indexed
-- column, so it can be a HOT update.
CREATE SEQUENCE qflow.task_seq AS bigint;
CREATE TABLE qflow.step_tasks (
    run_id       uuid NOT NULL,
    step_idx     smallint NOT NULL,
    task_index   integer NOT NULL,
    flow_id      integer NOT NULL,
    -- seq orders claims (FIFO within a priority).
    seq          bigint NOT NULL DEFAULT nextval('qflow.task_seq'),
    -- The claim priority: the step's priority (when its flow version is
    -- prioritized) plus the run's, clamped to 32 bits; see start_steps.
    priority     integer NOT NULL DEFAULT 0,
    -- lane: 0, or for a task of a step with a limit (steps.gated) the
    -- lane of its gate (qflow.lane), by which claims find each gate's
    -- tasks in step_tasks_ready. limit_key: NULL for a task no limit
    -- holds; else its key ('' for a limit without key). Both are set when
    -- the task is queued (start_steps, and again by define_flow for queued
    -- tasks when the limits change, and by resume_run).
    lane         integer NOT NULL DEFAULT 0,
    limit_key    text,
    status       text NOT NULL DEFAULT 'queued',
    attempts     integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL,
    -- queued: visible from vt ('infinity' while a sequential run's turn has
    -- not come); started: the lease ends at vt.
    vt           timestamptz NOT NULL,
    deadline     timestamptz, -- the run's deadline: no claim after it
    events       boolean NOT NULL DEFAULT true,  -- the run's events flag
    sequential   boolean NOT NULL DEFAULT false, -- the run's sequential flag
    input        jsonb,       -- materialised when the task is enqueued
    trace_context jsonb,      -- the run's trace context, returned with each claim
    output       jsonb,
    error        text,
    worker_id    uuid,
    queued_at    timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz,
    PRIMARY KEY (run_id, step_idx, task_index)
) WITH (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_cost_delay = 1);
-- Claim order within a lane: the ungated tasks of a version are lane 0.
CREATE INDEX step_tasks_ready ON qflow.step_tasks (flow_id, lane, priority DESC, seq) WHERE finished_at IS NULL;

CREATE TABLE qflow.workers (
    id           uuid PRIMARY KEY,
    queues       text[] NOT NULL,
    hostname     text NOT NULL DEFAULT '',
    pid          integer NOT NULL DEFAULT 0,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    stopped_at   timestamptz
);

-- Keys used to pass sets of rows between functions.
CREATE TYPE qflow.task_key AS (run_id uuid, step_idx smallint, task_index integer);
-- A step about to start, with the source of its tasks' inputs.
CREATE TYPE qflow.ready_step AS (
    run_id uuid, step_idx smallint, flow_id integer, kind text, src jsonb, n integer,
    step_slug text, flow_slug text, queue_name text, events boolean, sequential boolean,
    max_attempts integer, priority integer, vt timestamptz, deadline timestamptz, dep_slug text,
    trace_context jsonb, gated boolean, key_path text[], flow_limited boolean
);
-- A task a settle completed.
CREATE TYPE qflow.done_task AS (
    run_id uuid, step_idx smallint, task_index integer, flow_id integer, attempts integer,
    started_at timestamptz, output jsonb, events boolean, sequential boolean
);
-- An attempt fail_tasks failed, for the step statistics (0004_stats.sql):
-- final is false when the task was queued again, true when it failed for
-- good.
CREATE TYPE qflow.failed_attempt AS (
    flow_id integer, step_idx smallint, task_index integer, attempts integer, final boolean, error text
);
-- A task a claim handed out.
CREATE TYPE qflow.claimed_task AS (
    seq bigint, run_id uuid, step_idx smallint, task_index integer, attempt integer, input jsonb,
    priority integer, flow_id integer, events boolean, trace_context jsonb, deadline timestamptz,
    sequential boolean
);

-- Limits ----------------------------------------------------------------------

-- Concurrency and rate limits across all workers (StepOptions.Concurrency,
-- Rate and Key; the flow's Concurrency) are enforced when tasks are
-- claimed. A gate is one limit's state: the limit of a step (step_slug),
-- or of the flow as a whole (step_slug ''), for one key ('' without a
-- key), shared by every version of the flow. It records the tasks that
-- hold its places (holders: a place is taken while its task is started
-- and its lease runs; a finished task, or one whose lease expired, frees
-- it with no write here) and, for a rate, the theoretical arrival time of
-- the generic cell rate algorithm (tat: a start is allowed while
-- tat - now <= (burst - 1) × interval, and moves tat to
-- max(tat, now) + interval).
--
-- A claim locks each gate it passes with SKIP LOCKED: claims of one gate
-- take turns without waiting (a claim finding the gate taken skips its
-- tasks, and is told to look again shortly), claims of different gates
-- and of flows without limits never meet, and nothing else locks a gate
-- (a prune of idle gates skips taken ones too). Gates are made when first
-- claimed through, so queuing a task takes no lock: their tasks are found
-- by lane (qflow.lane) in step_tasks_ready.
CREATE TABLE qflow.gates (
    flow_slug text NOT NULL,
    step_slug text NOT NULL,
    key       text NOT NULL,
    holders   qflow.task_key[] NOT NULL DEFAULT '{}',
    tat       timestamptz NOT NULL DEFAULT '-infinity',
    PRIMARY KEY (flow_slug, step_slug, key)
) WITH (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_cost_delay = 1);

-- limit_key is the key of a task with this input for a limit keyed by JSON
-- path p_path: the string there, or the JSON text of another value, ''
-- when absent or null, and a hash for a key over 255 bytes; '' for a
-- limit without key (p_path NULL).
CREATE FUNCTION qflow.limit_key(p_input jsonb, p_path text[])
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_path IS NULL THEN ''
                WHEN octet_length(k) > 255 THEN 'sha256:' || encode(sha256(convert_to(k, 'UTF8')), 'hex')
                ELSE k END
    FROM (SELECT coalesce(p_input #>> p_path, '') AS k) x
$$;

-- task_priority is a task's claim priority: its run's priority plus, in a
-- prioritized flow version, its step's, clamped to 32 bits (start_steps,
-- record_inline). A plain SQL expression, so callers inline it.
CREATE FUNCTION qflow.task_priority(p_run integer, p_prioritized boolean, p_step integer)
RETURNS integer LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_run = 0 AND NOT p_prioritized THEN 0
                ELSE greatest(-2147483648, least(2147483647,
                     p_run::bigint + CASE WHEN p_prioritized THEN p_step ELSE 0 END))::integer END
$$;

-- lane is the lane of the gate of step p_step for key p_key: its tasks'
-- step_tasks.lane, from 1 to 2^31 - 1 (0 is the lane of ungated tasks).
-- Lanes are hashes: two gates of a flow version may share one, which costs
-- them only some fairness against each other.
CREATE FUNCTION qflow.lane(p_step text, p_key text)
RETURNS integer LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN h = 0 THEN 1 ELSE h END FROM (SELECT hashtext(p_step || '/' || p_key) & 2147483647 AS h) x
$$;

-- The head of a lane (claim_limited's scan) and a gate a claim passed.
CREATE TYPE qflow.lane_head AS (lane integer, step_idx smallint, limit_key text, priority integer, seq bigint);
CREATE TYPE qflow.gate_pass AS (
    step_slug text, key text, step_idx smallint, lane integer, holders qflow.task_key[], tat timestamptz,
    concurrency integer, interval_us double precision
);

-- live_holders returns the holders of a gate whose tasks still hold their
-- places (started, lease running) and the earliest of their leases' ends.
CREATE FUNCTION qflow.live_holders(p_holders qflow.task_key[], p_now timestamptz,
                                   OUT o_live qflow.task_key[], OUT o_until timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT coalesce(array_agg(ROW(h.run_id, h.step_idx, h.task_index)::qflow.task_key), '{}'), min(t.vt)
    FROM unnest(p_holders) AS h(run_id, step_idx, task_index)
    JOIN qflow.step_tasks t ON t.run_id = h.run_id AND t.step_idx = h.step_idx AND t.task_index = h.task_index
    WHERE t.status = 'started' AND t.vt > p_now
$$;

-- lock_gate locks the gate (made when missing) for the calling claim and
-- returns it; NULL when another claim holds it, or is making it. It never
-- waits: claims making the same gate at once take turns by a transaction
-- advisory lock on the gate tried without waiting, so none waits on
-- another's insert.
CREATE FUNCTION qflow.lock_gate(p_flow text, p_step text, p_key text)
RETURNS qflow.gates LANGUAGE plpgsql AS $$
DECLARE
    g qflow.gates;
BEGIN
    SELECT * INTO g FROM qflow.gates
    WHERE flow_slug = p_flow AND step_slug = p_step AND key = p_key
    FOR NO KEY UPDATE SKIP LOCKED;
    IF FOUND THEN
        RETURN g;
    END IF;
    IF NOT pg_try_advisory_xact_lock(hashtextextended('qflow.gate:' || p_flow || '/' || p_step || '/' || p_key, 0)) THEN
        RETURN NULL;
    END IF;
    INSERT INTO qflow.gates (flow_slug, step_slug, key) VALUES (p_flow, p_step, p_key)
    ON CONFLICT DO NOTHING
    RETURNING * INTO g;
    RETURN g; -- NULL: it exists (made meanwhile) and another claim holds it
END $$;

-- gate_room is how many of step p_step's tasks gate g lets start now, up
-- to p_want: the places its concurrency leaves (the holders are looked at
-- only when they could fill it: pass live holders for an exact count) and
-- the starts its rate allows now (the generic cell rate algorithm).
CREATE FUNCTION qflow.gate_room(g qflow.gates, p_step qflow.steps, p_want integer, p_now timestamptz)
RETURNS integer LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_room integer := p_want;
BEGIN
    IF p_step.concurrency IS NOT NULL AND cardinality(g.holders) + v_room > p_step.concurrency THEN
        v_room := least(v_room, p_step.concurrency
                                - cardinality((qflow.live_holders(g.holders, p_now)).o_live));
    END IF;
    IF p_step.rate_n IS NOT NULL AND v_room > 0 THEN
        v_room := least(v_room, floor(p_step.burst - extract(epoch FROM greatest(g.tat, p_now) - p_now) * 1000000
                                      / (p_step.rate_per_ms * 1000.0 / p_step.rate_n) + 1e-9)::integer);
    END IF;
    RETURN greatest(v_room, 0);
END $$;

-- gate_next is when gate g, which lets no task of step p_step start now,
-- may next let one: the next start its rate allows, or when the earliest
-- lease of its live holders ends (a finished holder frees its place
-- sooner, and its settle wakes the workers).
CREATE FUNCTION qflow.gate_next(g qflow.gates, p_step qflow.steps, p_now timestamptz)
RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_live record;
    v_at   timestamptz;
BEGIN
    IF p_step.concurrency IS NOT NULL THEN
        v_live := qflow.live_holders(g.holders, p_now);
        IF cardinality(v_live.o_live) >= p_step.concurrency THEN
            v_at := v_live.o_until;
        END IF;
    END IF;
    IF p_step.rate_n IS NOT NULL THEN
        v_at := greatest(v_at, greatest(g.tat, p_now)
                               - make_interval(secs => (p_step.burst - 1) * p_step.rate_per_ms / 1000.0 / p_step.rate_n));
    END IF;
    RETURN v_at;
END $$;

-- Events ----------------------------------------------------------------------

-- ev_ts formats a time as events carry it (ts, until): RFC 3339 in UTC,
-- with microseconds.
CREATE FUNCTION qflow.ev_ts(p_at timestamptz) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT to_char(p_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

-- ev builds one event, as JSON text (see package runtime/notify for the
-- fields). NULL fields are left out; ts is the clock time of the transition
-- in UTC: p_ts, which a statement that builds many events reads once
-- (qflow.ev_ts(clock_timestamp()) just before it: formatting the clock for
-- every event was 40% of an event's cost), else the clock now; p_resume is
-- the resume count of a workflow_resumed event. Long
-- errors: when an error's JSON encoding exceeds 4000 bytes, the event
-- carries its first 600 characters followed by " …[truncated]" and
-- error_truncated = true (600 characters encode to at most 3600 bytes), so
-- one event stays far below the 8000 bytes pg_notify accepts. The full
-- error is kept on the task and the step. The error goes through to_json,
-- which escapes it; flow and step are slugs, which the CHECKs on flows and
-- steps hold to [a-z0-9_] (every caller passes a slug read from those
-- tables, or runs.flow_slug, copied from flows), so they need no escaping
-- (to_json on both was a third of an event's cost); the rest are numbers,
-- booleans, uuids and fixed words. Built
-- as text rather than jsonb (which was sorted, stripped of nulls and printed
-- again for pg_notify): a third of the cost. A plain SQL expression, so
-- callers inline it. finish_chains writes the same fields out by hand: a
-- change here is a change there too (TestFinishChainsWritesEventsAsEvDoes
-- compares the two).
CREATE FUNCTION qflow.ev(p_type text, p_run uuid, p_flow text, p_step text, p_task integer,
                         p_status text, p_attempt integer, p_duration_ms bigint,
                         p_error text, p_will_retry boolean, p_resume integer DEFAULT NULL,
                         p_until timestamptz DEFAULT NULL, p_ts text DEFAULT NULL)
RETURNS text LANGUAGE sql VOLATILE AS $$
    SELECT '{"type":"' || p_type || '","run_id":"' || p_run || '","flow":"' || p_flow || '"'
        || coalesce(',"step":"' || p_step || '"', '')
        || coalesce(',"task_index":' || p_task, '')
        || coalesce(',"status":"' || p_status || '"', '')
        || coalesce(',"attempt":' || p_attempt, '')
        || coalesce(',"will_retry":' || p_will_retry, '')
        || coalesce(',"duration_ms":' || p_duration_ms, '')
        || coalesce(',"resume":' || p_resume, '')
        || coalesce(',"until":"' || qflow.ev_ts(p_until) || '"', '')
        || coalesce(',"error":' || to_json(CASE WHEN octet_length(p_error) > 600
                                                     AND octet_length(to_json(p_error)::text) > 4000
                                                THEN left(p_error, 600) || ' …[truncated]' ELSE p_error END)::text
                    || CASE WHEN octet_length(p_error) > 600 AND octet_length(to_json(p_error)::text) > 4000
                            THEN ',"error_truncated":true' ELSE '' END, '')
        || ',"ts":"' || coalesce(p_ts, qflow.ev_ts(clock_timestamp())) || '"}'
$$;

-- events_on reports whether this session publishes events: workers started
-- with WorkerOptions.DisableEvents open their connections with the setting
-- qflow.events = 'off'. Runs started with events off publish nothing either
-- (runs.events).
CREATE FUNCTION qflow.events_on() RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT current_setting('qflow.events', true) IS DISTINCT FROM 'off'
$$;

-- publish sends events, in order, on channel qflow_events: as few
-- notifications as fit, each a JSON array of events under 7,900 bytes.
-- A few events that fit in one go out joined at once (half the cost of the
-- loop); more are appended to one text in turn. (That measured faster than
-- cutting the array by the events' lengths and joining slices: the query
-- for the lengths costs more than the copies it saves, and slicing an
-- array held by PL/pgSQL copies the whole array.)
CREATE FUNCTION qflow.publish(p_events text[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_buf text := '';
    v_one text;
BEGIN
    IF p_events IS NULL OR cardinality(p_events) = 0 THEN
        RETURN;
    END IF;
    IF cardinality(p_events) <= 64 THEN -- an event is over 120 bytes: more never fit
        v_buf := array_to_string(p_events, ',');
        IF octet_length(v_buf) <= 7898 THEN
            PERFORM pg_notify('qflow_events', '[' || v_buf || ']');
            RETURN;
        END IF;
        v_buf := '';
    END IF;
    FOREACH v_one IN ARRAY p_events LOOP
        IF v_buf <> '' AND octet_length(v_buf) + octet_length(v_one) + 2 > 7900 THEN
            PERFORM pg_notify('qflow_events', '[' || v_buf || ']');
            v_buf := '';
        END IF;
        v_buf := CASE WHEN v_buf = '' THEN v_one ELSE v_buf || ',' || v_one END;
    END LOOP;
    PERFORM pg_notify('qflow_events', '[' || v_buf || ']');
END $$;

-- Definitions: define_flow ------------------------------------------------------

-- step_limits reads the limits of each step of a normalised definition
-- (see define_flow), by step index.
CREATE FUNCTION qflow.step_limits(p_steps jsonb)
RETURNS TABLE (idx smallint, concurrency integer, rate_n integer, rate_per_ms bigint, burst integer,
               limit_key text[], gated boolean)
LANGUAGE sql IMMUTABLE AS $$
    SELECT (e.o - 1)::smallint, nullif(l.concurrency, 0), nullif(l.rate_n, 0), nullif(l.rate_per_ms, 0),
           CASE WHEN nullif(l.rate_n, 0) IS NOT NULL THEN greatest(coalesce(l.burst, 1), 1) END,
           CASE WHEN nullif(l.key, '') IS NOT NULL THEN string_to_array(substr(l.key, 2), '.') END,
           nullif(l.concurrency, 0) IS NOT NULL OR nullif(l.rate_n, 0) IS NOT NULL
    FROM jsonb_array_elements(p_steps) WITH ORDINALITY AS e(v, o)
    CROSS JOIN LATERAL jsonb_to_record(e.v) AS l(concurrency integer, rate_n integer, rate_per_ms bigint,
                                                 burst integer, key text)
$$;

-- apply_limits brings flow version p_flow_id in line with its limits as
-- they now stand: whether its claims go through gates (flows.limited),
-- and the gates of its queued tasks (lane, limit_key), so a limit set on
-- a version with a backlog holds the backlog too. Tasks already running
-- when a limit is set hold no place in it; they finish as they are.
CREATE FUNCTION qflow.apply_limits(p_flow_id integer)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_flow qflow.flows;
BEGIN
    UPDATE qflow.flows f SET limited = f.concurrency IS NOT NULL
                                       OR EXISTS (SELECT 1 FROM qflow.steps st WHERE st.flow_id = f.id AND st.gated)
    WHERE f.id = p_flow_id
    RETURNING * INTO v_flow;
    UPDATE qflow.step_tasks t
    SET lane = CASE WHEN st.gated THEN qflow.lane(st.slug, qflow.limit_key(t.input, st.limit_key)) ELSE 0 END,
        limit_key = CASE WHEN st.gated THEN qflow.limit_key(t.input, st.limit_key)
                         WHEN v_flow.concurrency IS NOT NULL THEN '' END
    FROM qflow.steps st
    WHERE t.flow_id = p_flow_id AND t.finished_at IS NULL AND t.status = 'queued'
      AND st.flow_id = t.flow_id AND st.idx = t.step_idx
      AND (t.lane, t.limit_key) IS DISTINCT FROM
          (CASE WHEN st.gated THEN qflow.lane(st.slug, qflow.limit_key(t.input, st.limit_key)) ELSE 0 END,
           CASE WHEN st.gated THEN qflow.limit_key(t.input, st.limit_key)
                WHEN v_flow.concurrency IS NOT NULL THEN '' END);
END $$;

-- define_flow stores a flow definition that Go has validated and
-- normalised (package flowdef: FlowDef.Normalize) and returns its id.
-- p_steps holds the steps in order, each with every option resolved and
-- durations in milliseconds: {"slug", "depends_on": [slugs in parameter
-- order], "map", "takes_input", "max_attempts", "base_delay_ms",
-- "timeout_ms", "start_delay_ms"}, and when set "when" (the step has a
-- condition), "optional" and "accepts_skipped" (slugs of dependencies
-- whose skip it takes); p_def is the definition as written,
-- kept for display. The rules of a definition (slugs, defaults, the
-- dependency graph and its cycles) live in Go; here only the tables'
-- integrity constraints apply: a step naming an unknown dependency fails
-- the NOT NULL of deps.dep_idx.
--
-- It is idempotent: the same slug and shape hash return the existing row;
-- a different shape under an existing slug becomes the next version (runs
-- keep the version they started on).
--
-- Step priorities ("priority" of a step, absent for 0) are not part of the
-- shape: when any step of p_steps has a non-zero priority, the version's
-- step priorities become p_steps' (new or existing version alike, as
-- set_step_priorities would set them); when none has, an existing
-- version's priorities are left as they are.
--
-- Limits are not part of the shape either, and a definition always sets
-- its version's (new or existing): each step's "concurrency", "rate_n",
-- "rate_per_ms", "burst" and "key" (a JSON path, ".a.b", "." for the whole
-- input), absent for none, and the flow's own concurrency, read from
-- p_def's options (FlowDef.Options.Concurrency). When they change, the
-- version's queued tasks move to the gates of the new limits (see
-- apply_limits), and p_def replaces the definition kept for display.
CREATE FUNCTION qflow.define_flow(p_slug text, p_shape_hash text, p_def jsonb, p_steps jsonb)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_id      integer;
    v_version integer;
    v_fconc   integer := nullif((p_def->'options'->>'concurrency')::integer, 0);
    v_n       integer;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('qflow.define_flow:' || p_slug, 0));
    SELECT id INTO v_id FROM qflow.flows WHERE slug = p_slug AND shape_hash = p_shape_hash;
    IF FOUND THEN
        UPDATE qflow.steps st SET concurrency = l.concurrency, rate_n = l.rate_n, rate_per_ms = l.rate_per_ms,
            burst = l.burst, limit_key = l.limit_key, gated = l.gated
        FROM qflow.step_limits(p_steps) l
        WHERE st.flow_id = v_id AND st.idx = l.idx
          AND (st.concurrency, st.rate_n, st.rate_per_ms, st.burst, st.limit_key)
              IS DISTINCT FROM (l.concurrency, l.rate_n, l.rate_per_ms, l.burst, l.limit_key);
        GET DIAGNOSTICS v_n = ROW_COUNT;
        UPDATE qflow.flows SET concurrency = v_fconc WHERE id = v_id AND concurrency IS DISTINCT FROM v_fconc;
        IF v_n > 0 OR FOUND THEN
            -- The definition kept for display shows the limits in force.
            UPDATE qflow.flows SET definition = p_def WHERE id = v_id;
            PERFORM qflow.apply_limits(v_id);
        END IF;
        IF EXISTS (SELECT 1 FROM jsonb_array_elements(p_steps) e WHERE coalesce((e->>'priority')::integer, 0) <> 0) THEN
            UPDATE qflow.steps st SET priority = coalesce((e.v->>'priority')::integer, 0)
            FROM jsonb_array_elements(p_steps) WITH ORDINALITY AS e(v, o)
            WHERE st.flow_id = v_id AND st.idx = e.o - 1
              AND st.priority IS DISTINCT FROM coalesce((e.v->>'priority')::integer, 0);
            IF FOUND THEN
                UPDATE qflow.flows SET prioritized = EXISTS (SELECT 1 FROM qflow.steps WHERE flow_id = v_id AND priority <> 0)
                WHERE id = v_id;
            END IF;
        END IF;
        RETURN v_id;
    END IF;
    SELECT coalesce(max(version), 0) + 1 INTO v_version FROM qflow.flows WHERE slug = p_slug;
    INSERT INTO qflow.flows (slug, version, shape_hash, queue_name, step_count, definition, prioritized,
                             concurrency, limited)
    VALUES (p_slug, v_version, p_shape_hash, p_slug || '_' || v_version, jsonb_array_length(p_steps), p_def,
            EXISTS (SELECT 1 FROM jsonb_array_elements(p_steps) e WHERE coalesce((e->>'priority')::integer, 0) <> 0),
            v_fconc, v_fconc IS NOT NULL OR EXISTS (SELECT 1 FROM qflow.step_limits(p_steps) l WHERE l.gated))
    RETURNING id INTO v_id;

    INSERT INTO qflow.steps (flow_id, idx, slug, kind, takes_input, max_attempts, base_delay_ms,
                             timeout_ms, start_delay_ms, dep_count, is_leaf, priority,
                             concurrency, rate_n, rate_per_ms, burst, limit_key, gated)
    SELECT v_id, (e.o - 1)::smallint, s.slug, CASE WHEN s.map THEN 'map' ELSE 'single' END, s.takes_input,
           s.max_attempts, s.base_delay_ms, s.timeout_ms, s.start_delay_ms, cardinality(s.depends_on), false,
           coalesce(s.priority, 0), l.concurrency, l.rate_n, l.rate_per_ms, l.burst, l.limit_key, l.gated
    FROM jsonb_array_elements(p_steps) WITH ORDINALITY AS e(v, o)
    CROSS JOIN LATERAL jsonb_to_record(e.v) AS s(slug text, depends_on text[], map boolean, takes_input boolean,
         max_attempts integer, base_delay_ms bigint, timeout_ms bigint, start_delay_ms bigint, priority integer)
    JOIN qflow.step_limits(p_steps) l ON l.idx = e.o - 1;

    INSERT INTO qflow.deps (flow_id, step_idx, dep_idx, position)
    SELECT v_id, (s.o - 1)::smallint, dp.idx, (d.o - 1)::smallint
    FROM jsonb_array_elements(p_steps) WITH ORDINALITY AS s(v, o)
    CROSS JOIN LATERAL jsonb_array_elements_text(s.v->'depends_on') WITH ORDINALITY AS d(dep, o)
    LEFT JOIN qflow.steps dp ON dp.flow_id = v_id AND dp.slug = d.dep;

    UPDATE qflow.steps st SET
        is_leaf = NOT EXISTS (SELECT 1 FROM qflow.deps d WHERE d.flow_id = v_id AND d.dep_idx = st.idx),
        deps = coalesce((SELECT array_agg(d.dep_idx ORDER BY d.position) FROM qflow.deps d
                         WHERE d.flow_id = v_id AND d.step_idx = st.idx), '{}'),
        dep_slugs = coalesce((SELECT array_agg(x.slug ORDER BY d.position) FROM qflow.deps d
                              JOIN qflow.steps x ON x.flow_id = v_id AND x.idx = d.dep_idx
                              WHERE d.flow_id = v_id AND d.step_idx = st.idx), '{}'),
        dependents = coalesce((SELECT array_agg(d.step_idx ORDER BY d.step_idx) FROM qflow.deps d
                               WHERE d.flow_id = v_id AND d.dep_idx = st.idx), '{}')
    WHERE st.flow_id = v_id;

    -- Conditional and optional steps, and the dependencies whose skip a
    -- step takes.
    UPDATE qflow.steps st SET
        conditional = coalesce((e.v->>'when')::boolean, false),
        optional = coalesce((e.v->>'optional')::boolean, false),
        absent_ok = coalesce((SELECT array_agg(x.idx ORDER BY x.idx)
                              FROM jsonb_array_elements_text(e.v->'accepts_skipped') AS a(slug)
                              JOIN qflow.steps x ON x.flow_id = v_id AND x.slug = a.slug), '{}')
    FROM jsonb_array_elements(p_steps) WITH ORDINALITY AS e(v, o)
    WHERE st.flow_id = v_id AND st.idx = e.o - 1
      AND (e.v ? 'when' OR e.v ? 'optional' OR e.v ? 'accepts_skipped');
    -- Steps that wait for a signal (0006_signals.sql).
    PERFORM qflow.define_waits(v_id, p_steps);
    RETURN v_id;
END $$;

-- Steps: start ----------------------------------------------------------------------

-- start_steps starts steps whose dependencies have all completed (or were
-- skipped, where the step takes their skip: their keys are left out of its
-- input), in runs that are still going and that the caller has locked (or
-- just created): it creates each step's state and its tasks (one, or one
-- per element for a map step) with their inputs materialised, so a claim
-- reads nothing else. An empty map completes at once with [] and is
-- returned in o_runs/o_steps for the caller to propagate; a map over a
-- non-array fails its run (even an optional one: no task of it failed). o_tasks counts the tasks created; o_queues names the queues
-- that got them. A task's claim priority is its step's priority (0 unless
-- the flow version is prioritized) plus its run's, clamped to 32 bits.
-- With p_worker (start_runs_claim: a worker in the starting process), up
-- to p_qty of the tasks a claim could take at once (visible now, under no
-- limit, not of a sequential run), in claim order, are created claimed by
-- that worker (leased for p_lease_ms, task_started published when
-- p_started_events) and returned in o_claimed: the same rows and events as
-- creating them queued and claiming them. None are when one of the steps
-- is an empty map, which completes at once (advance then starts its
-- dependents, perhaps with a higher priority); the first task of a
-- sequential run is left to the workers' claims too.
CREATE FUNCTION qflow.start_steps(p_runs uuid[], p_steps smallint[],
                                  p_worker uuid DEFAULT NULL, p_qty integer DEFAULT 0,
                                  p_lease_ms bigint DEFAULT 0, p_started_events boolean DEFAULT false,
                                  OUT o_runs uuid[], OUT o_steps smallint[], OUT o_flows integer[],
                                  OUT o_tasks integer, OUT o_queues text[], OUT o_claimed qflow.claimed_task[])
LANGUAGE plpgsql AS $$
DECLARE
    v_now    timestamptz := clock_timestamp();
    v_events boolean := qflow.events_on();
    v_ready  qflow.ready_step[];
    r        qflow.ready_step;
    v_take   qflow.task_key[];
    v_ts     text;
BEGIN
    o_tasks := 0;
    SELECT array_agg(ROW(x.run_id, x.step_idx, ru.flow_id, st.kind, src.v,
           CASE WHEN st.kind = 'single' THEN 1
                WHEN jsonb_typeof(src.v) = 'array' THEN jsonb_array_length(src.v)
                ELSE -1 END,
           st.slug, ru.flow_slug, f.queue_name, ru.events AND v_events, ru.sequential,
           coalesce(ru.max_attempts, st.max_attempts),
           qflow.task_priority(ru.priority, f.prioritized, st.priority),
           v_now + make_interval(secs => st.start_delay_ms / 1000.0),
           ru.deadline, st.dep_slugs[1], ru.trace_context,
           st.gated, st.limit_key, f.concurrency IS NOT NULL)::qflow.ready_step ORDER BY x.run_id, x.step_idx)
    INTO v_ready
    FROM unnest(p_runs, p_steps) AS x(run_id, step_idx)
    CROSS JOIN LATERAL (SELECT r1.* FROM qflow.runs r1 WHERE r1.id = x.run_id LIMIT 1) ru
    JOIN qflow.steps st ON st.flow_id = ru.flow_id AND st.idx = x.step_idx
    JOIN qflow.flows f ON f.id = ru.flow_id
    CROSS JOIN LATERAL (
        SELECT CASE
            WHEN st.kind = 'map' AND st.dep_count = 0 THEN ru.input
            WHEN st.kind = 'map' THEN (SELECT ds.output FROM qflow.step_states ds
                                       WHERE ds.run_id = x.run_id AND ds.step_idx = st.deps[1])
            ELSE (CASE WHEN st.takes_input THEN jsonb_build_object('run', ru.input) ELSE '{}'::jsonb END)
                 || coalesce((SELECT jsonb_object_agg(st.dep_slugs[i], ds.output)
                              FROM generate_subscripts(st.deps, 1) AS i
                              JOIN qflow.step_states ds ON ds.run_id = x.run_id AND ds.step_idx = st.deps[i]
                                                       AND ds.status = 'completed'),
                             '{}'::jsonb)
            END AS v
    ) src
    WHERE ru.status = 'started';
    IF v_ready IS NULL THEN
        RETURN;
    END IF;

    -- A map over something that is not an array fails its run, which then
    -- starts nothing more.
    FOR r IN SELECT * FROM unnest(v_ready) q WHERE q.n < 0 LOOP
        INSERT INTO qflow.step_states (run_id, step_idx, flow_id, status, started_at)
        VALUES (r.run_id, r.step_idx, r.flow_id, 'started', v_now);
        PERFORM qflow.fail_run(r.run_id, r.step_idx,
            format('map step "%s" needs a JSON array from %s, got a JSON %s', r.step_slug,
                   coalesce('step "' || r.dep_slug || '"', 'the flow input'), coalesce(jsonb_typeof(r.src), 'null')));
        SELECT array_agg(q) INTO v_ready FROM unnest(v_ready) q WHERE q.run_id <> r.run_id;
    END LOOP;
    -- Steps that wait for a signal not received yet are held
    -- (0006_signals.sql).
    v_ready := qflow.hold_waits(v_ready, v_now);
    IF v_ready IS NULL THEN
        RETURN;
    END IF;

    INSERT INTO qflow.step_states (run_id, step_idx, flow_id, status, task_count, remaining_tasks, output,
                                   started_at, finished_at)
    SELECT q.run_id, q.step_idx, q.flow_id, CASE WHEN q.n = 0 THEN 'completed' ELSE 'started' END, q.n, q.n,
           CASE WHEN q.n = 0 THEN '[]'::jsonb END, v_now, CASE WHEN q.n = 0 THEN v_now END
    FROM unnest(v_ready) q;

    -- The tasks to create claimed: the first p_qty a claim could take at
    -- once, in claim order; none when an empty map completes here (advance
    -- then starts its dependents, whose tasks may come first).
    IF p_worker IS NOT NULL AND p_qty > 0 AND NOT EXISTS (SELECT 1 FROM unnest(v_ready) q WHERE q.n = 0) THEN
        SELECT array_agg(ROW(t.run_id, t.step_idx, t.i)::qflow.task_key) INTO v_take FROM (
            SELECT q.run_id, q.step_idx, g.i FROM unnest(v_ready) q
            CROSS JOIN LATERAL generate_series(0, least(q.n, p_qty) - 1) AS g(i)
            WHERE NOT q.sequential AND q.vt <= v_now AND NOT q.gated AND NOT q.flow_limited
              AND (q.deadline IS NULL OR q.deadline > v_now)
            ORDER BY q.priority DESC, q.run_id, q.step_idx, g.i
            LIMIT p_qty) t;
    END IF;
    WITH ins AS (
        INSERT INTO qflow.step_tasks (run_id, step_idx, task_index, flow_id, priority, max_attempts, vt, deadline,
                                      events, sequential, input, trace_context, lane, limit_key,
                                      status, attempts, worker_id, started_at)
        SELECT y.run_id, y.step_idx, y.i, y.flow_id, y.priority, y.max_attempts,
               CASE WHEN y.take THEN v_now + make_interval(secs => p_lease_ms / 1000.0)
                    WHEN y.sequential THEN 'infinity'::timestamptz ELSE y.vt END,
               y.deadline, y.events, y.sequential, y.v, y.trace_context,
               CASE WHEN y.gated THEN qflow.lane(y.step_slug, qflow.limit_key(y.v, y.key_path)) ELSE 0 END,
               CASE WHEN y.gated THEN qflow.limit_key(y.v, y.key_path) WHEN y.flow_limited THEN '' END,
               CASE WHEN y.take THEN 'started' ELSE 'queued' END, CASE WHEN y.take THEN 1 ELSE 0 END,
               CASE WHEN y.take THEN p_worker END, CASE WHEN y.take THEN v_now END
        FROM (
            SELECT q.*, e.i, e.v,
                   v_take IS NOT NULL AND ROW(q.run_id, q.step_idx, e.i)::qflow.task_key = ANY (v_take) AS take
            FROM unnest(v_ready) q
            CROSS JOIN LATERAL (
                SELECT (x.o - 1)::integer AS i, x.v FROM jsonb_array_elements(q.src) WITH ORDINALITY AS x(v, o)
                WHERE q.kind = 'map' AND q.n > 0
                UNION ALL
                SELECT 0, q.src WHERE q.kind = 'single'
            ) e
        ) y
        ORDER BY y.run_id, y.step_idx, y.i
        RETURNING seq, run_id, step_idx, task_index, attempts, input, priority, flow_id, events, trace_context,
                  deadline, sequential, status
    )
    SELECT count(*)::integer,
           array_agg(ROW(i.seq, i.run_id, i.step_idx, i.task_index, i.attempts, i.input, i.priority, i.flow_id,
                         i.events, i.trace_context, i.deadline, i.sequential)::qflow.claimed_task
                     ORDER BY i.priority DESC, i.seq) FILTER (WHERE i.status = 'started')
    INTO o_tasks, o_claimed FROM ins i;
    IF o_tasks >= 1000 THEN
        PERFORM qflow.analyze_after_fanout(o_tasks);
    END IF;

    IF o_tasks > 0 THEN
        SELECT array_agg(DISTINCT q.queue_name) INTO o_queues FROM unnest(v_ready) q WHERE q.n > 0;
        -- Sequential runs: the earliest waiting task takes its turn when
        -- none of the run's other tasks is queued or running.
        PERFORM qflow.next_turn(array_agg(DISTINCT q.run_id))
        FROM unnest(v_ready) q WHERE q.sequential AND q.n > 0 HAVING count(*) > 0;
    END IF;

    -- Per run: its steps' events, then its claimed tasks' (as a claim
    -- after this would publish them).
    v_ts := qflow.ev_ts(clock_timestamp());
    PERFORM qflow.publish(array_agg(x.e ORDER BY x.run_id, x.k, x.step_idx, x.i)) FROM (
        SELECT CASE WHEN q.n = 0
                    THEN qflow.ev('step_completed', q.run_id, q.flow_slug, q.step_slug, NULL, 'completed', NULL, 0, NULL, NULL,
                                  p_ts => v_ts)
                    ELSE qflow.ev('step_started', q.run_id, q.flow_slug, q.step_slug, NULL, 'started', NULL, NULL, NULL, NULL,
                                  p_ts => v_ts)
               END AS e, q.run_id, 0 AS k, q.step_idx, 0 AS i
        FROM unnest(v_ready) q WHERE q.events
        UNION ALL
        SELECT qflow.ev('task_started', c.run_id, q.flow_slug, q.step_slug, c.task_index, 'started', c.attempt,
                        NULL, NULL, NULL, p_ts => v_ts), c.run_id, 1, c.step_idx, c.task_index
        FROM unnest(o_claimed) c JOIN unnest(v_ready) q ON q.run_id = c.run_id AND q.step_idx = c.step_idx
        WHERE c.events AND p_started_events
    ) x HAVING count(*) > 0;

    SELECT array_agg(q.run_id), array_agg(q.step_idx), array_agg(q.flow_id) INTO o_runs, o_steps, o_flows
    FROM unnest(v_ready) q WHERE q.n = 0;
END $$;

-- next_turn gives each of these sequential runs its next task, the
-- earliest waiting one, when none of its tasks is queued and visible or
-- running.
CREATE FUNCTION qflow.next_turn(p_runs uuid[])
RETURNS void LANGUAGE sql AS $$
    UPDATE qflow.step_tasks t SET vt = clock_timestamp()
    FROM unnest(p_runs) AS r(id)
    CROSS JOIN LATERAL (
        SELECT w.step_idx, w.task_index FROM qflow.step_tasks w
        WHERE w.run_id = r.id AND w.finished_at IS NULL AND w.vt = 'infinity'
        ORDER BY w.seq LIMIT 1
    ) nxt
    WHERE t.run_id = r.id AND t.step_idx = nxt.step_idx AND t.task_index = nxt.task_index
      AND NOT EXISTS (SELECT 1 FROM qflow.step_tasks o
                      WHERE o.run_id = r.id AND o.finished_at IS NULL AND o.vt <> 'infinity')
$$;

-- advance propagates completed (or skipped: skip_steps) steps of locked
-- runs: runs lose a remaining step and complete when none is left (their
-- output is their completed leaf steps' outputs: a skipped leaf has no
-- key), and dependents whose dependencies have all completed or been
-- skipped start (a dependent that does not take a dependency's skip was
-- skipped with it, so it has a state already).
-- Empty maps started on the way complete at once and propagate in turn.
-- Returns the number of tasks created and the queues that got them, and
-- the runs it completed with their outputs (NULL for an output over 8 kB).
CREATE FUNCTION qflow.advance(p_runs uuid[], p_steps smallint[], p_flows integer[],
                              OUT o_tasks integer, OUT o_queues text[],
                              OUT o_finished uuid[], OUT o_outputs jsonb[])
LANGUAGE plpgsql AS $$
DECLARE
    v_events boolean := qflow.events_on();
    v_evs    text[];
    v_fin    uuid[];
    v_out    jsonb[];
    v_rr     uuid[];
    v_rs     smallint[];
    v_st     record;
    v_ts     text;
BEGIN
    o_tasks := 0;
    WHILE cardinality(p_runs) > 0 LOOP
        v_ts := qflow.ev_ts(clock_timestamp());
        WITH u AS (
            UPDATE qflow.runs r SET remaining_steps = r.remaining_steps - c.n,
                status = CASE WHEN r.remaining_steps = c.n THEN 'completed' ELSE r.status END,
                finished_at = CASE WHEN r.remaining_steps = c.n THEN now() END,
                output = CASE WHEN r.remaining_steps = c.n THEN
                    coalesce((SELECT jsonb_object_agg(st.slug, ss.output)
                              FROM qflow.steps st
                              JOIN qflow.step_states ss ON ss.run_id = r.id AND ss.step_idx = st.idx
                              WHERE st.flow_id = r.flow_id AND st.is_leaf AND ss.status = 'completed'), '{}') END
            FROM (SELECT x.run_id, count(*)::integer AS n FROM unnest(p_runs) AS x(run_id) GROUP BY 1) c
            WHERE r.ctid = ANY (ARRAY(
                      SELECT l.ctid FROM (SELECT DISTINCT y FROM unnest(p_runs) AS y) y
                      CROSS JOIN LATERAL (SELECT r2.ctid FROM qflow.runs r2 WHERE r2.id = y.y LIMIT 1) l))
              AND r.id = c.run_id AND r.status = 'started'
            RETURNING r.id, r.status, r.flow_slug, r.events, r.started_at, r.output
        )
        SELECT array_agg(qflow.ev('workflow_completed', u.id, u.flow_slug, NULL, NULL, 'completed', NULL,
                                  (extract(epoch FROM clock_timestamp() - u.started_at) * 1000)::bigint, NULL, NULL,
                                  p_ts => v_ts))
                   FILTER (WHERE u.events AND v_events),
               array_agg(u.id),
               array_agg(CASE WHEN pg_column_size(u.output) <= 8192 THEN u.output END)
        INTO v_evs, v_fin, v_out FROM u WHERE u.status = 'completed';
        PERFORM qflow.publish(v_evs);
        o_finished := o_finished || v_fin;
        o_outputs := o_outputs || v_out;

        -- Dependents whose dependencies have all completed or been skipped,
        -- not started yet (a finished run has none left; start_steps skips
        -- failed ones).
        SELECT array_agg(d.run_id), array_agg(d.step_idx) INTO v_rr, v_rs
        FROM (
            SELECT DISTINCT x.run_id, dd AS step_idx, x.flow_id
            FROM unnest(p_runs, p_steps, p_flows) AS x(run_id, step_idx, flow_id)
            JOIN qflow.steps st ON st.flow_id = x.flow_id AND st.idx = x.step_idx
            CROSS JOIN LATERAL unnest(st.dependents) AS dd
        ) d
        JOIN qflow.steps ds ON ds.flow_id = d.flow_id AND ds.idx = d.step_idx
        WHERE NOT EXISTS (SELECT 1 FROM qflow.step_states s WHERE s.run_id = d.run_id AND s.step_idx = d.step_idx)
          AND (ds.dep_count = 1
               OR (SELECT count(*) FROM qflow.step_states s
                   WHERE s.run_id = d.run_id AND s.step_idx = ANY (ds.deps)
                     AND s.status IN ('completed', 'skipped')) = ds.dep_count);
        EXIT WHEN v_rr IS NULL;
        v_st := qflow.start_steps(v_rr, v_rs);
        o_tasks := o_tasks + v_st.o_tasks;
        o_queues := o_queues || v_st.o_queues;
        p_runs := v_st.o_runs;
        p_steps := v_st.o_steps;
        p_flows := v_st.o_flows;
    END LOOP;
END $$;

-- Steps: skip (conditional and optional steps) ------------------------------------

-- skip_steps records steps of locked, started runs as skipped: conditional
-- steps whose condition was false (skip_tasks) and optional steps that
-- failed (skip_failed, with their error in p_errors; NULL for none). A
-- skipped step has no output. Every dependent not started yet that does not
-- take its skip (steps.absent_ok) is skipped with it, and so on down the
-- graph, at once: a step without a state never has a skipped dependency
-- it does not take, so advance may count skipped dependencies as done. It
-- publishes step_skipped for each step it skips, then propagates them as
-- advance propagates completions: the run loses a remaining step per
-- skipped step and completes when none is left, and dependents that take
-- the skips start once their other dependencies are done. Sequential runs
-- give their next task its turn. Returns what advance returns.
CREATE FUNCTION qflow.skip_steps(p_runs uuid[], p_steps smallint[], p_errors text[],
                                 OUT o_tasks integer, OUT o_queues text[],
                                 OUT o_finished uuid[], OUT o_outputs jsonb[])
LANGUAGE plpgsql AS $$
DECLARE
    v_now    timestamptz := clock_timestamp();
    v_runs   uuid[];
    v_steps  smallint[];
    v_flows  integer[];
    v_errs   text[];
    v_rr     uuid[];
    v_rs     smallint[];
    v_rf     integer[];
    v_adv    record;
BEGIN
    o_tasks := 0;
    WITH u AS (
        UPDATE qflow.step_states ss SET status = 'skipped', output = NULL, error = x.err, remaining_tasks = 0,
            finished_at = v_now
        FROM unnest(p_runs, p_steps, p_errors) AS x(run_id, step_idx, err)
        WHERE ss.run_id = x.run_id AND ss.step_idx = x.step_idx AND ss.status = 'started'
        RETURNING ss.run_id, ss.step_idx, ss.flow_id, ss.error
    )
    SELECT array_agg(u.run_id ORDER BY u.run_id, u.step_idx), array_agg(u.step_idx ORDER BY u.run_id, u.step_idx),
           array_agg(u.flow_id ORDER BY u.run_id, u.step_idx), array_agg(u.error ORDER BY u.run_id, u.step_idx)
    INTO v_runs, v_steps, v_flows, v_errs FROM u;
    IF v_runs IS NULL THEN
        RETURN;
    END IF;

    -- The cascade: dependents that do not take the skip, level by level.
    v_rr := v_runs;
    v_rs := v_steps;
    v_rf := v_flows;
    LOOP
        WITH d AS (
            SELECT DISTINCT x.run_id, dd AS step_idx, x.flow_id
            FROM unnest(v_rr, v_rs, v_rf) AS x(run_id, step_idx, flow_id)
            JOIN qflow.steps st ON st.flow_id = x.flow_id AND st.idx = x.step_idx
            CROSS JOIN LATERAL unnest(st.dependents) AS dd
            JOIN qflow.steps ds ON ds.flow_id = x.flow_id AND ds.idx = dd
            WHERE NOT (x.step_idx = ANY (ds.absent_ok))
        ), ins AS (
            INSERT INTO qflow.step_states (run_id, step_idx, flow_id, status, finished_at)
            SELECT d.run_id, d.step_idx, d.flow_id, 'skipped', v_now FROM d ORDER BY d.run_id, d.step_idx
            ON CONFLICT (run_id, step_idx) DO NOTHING
            RETURNING run_id, step_idx, flow_id
        )
        SELECT array_agg(ins.run_id ORDER BY ins.run_id, ins.step_idx),
               array_agg(ins.step_idx ORDER BY ins.run_id, ins.step_idx),
               array_agg(ins.flow_id ORDER BY ins.run_id, ins.step_idx)
        INTO v_rr, v_rs, v_rf FROM ins;
        EXIT WHEN v_rr IS NULL;
        v_runs := v_runs || v_rr;
        v_steps := v_steps || v_rs;
        v_flows := v_flows || v_rf;
        v_errs := v_errs || array_fill(NULL::text, ARRAY[cardinality(v_rr)]);
    END LOOP;

    IF qflow.events_on() THEN
        PERFORM qflow.publish(array_agg(qflow.ev('step_skipped', x.run_id, ru.flow_slug, st.slug, NULL, 'skipped',
                                                 NULL, NULL, x.err, NULL) ORDER BY x.o))
        FROM unnest(v_runs, v_steps, v_flows, v_errs) WITH ORDINALITY AS x(run_id, step_idx, flow_id, err, o)
        CROSS JOIN LATERAL (SELECT r.flow_slug, r.events FROM qflow.runs r WHERE r.id = x.run_id LIMIT 1) ru
        JOIN qflow.steps st ON st.flow_id = x.flow_id AND st.idx = x.step_idx
        WHERE ru.events HAVING count(*) > 0;
    END IF;

    SELECT * INTO v_adv FROM qflow.advance(v_runs, v_steps, v_flows);
    o_tasks := v_adv.o_tasks;
    o_queues := v_adv.o_queues;
    o_finished := v_adv.o_finished;
    o_outputs := v_adv.o_outputs;
    -- Sequential runs: a skip may end the task that had the turn without
    -- starting another.
    PERFORM qflow.next_turn(array_agg(DISTINCT r.id))
    FROM qflow.runs r WHERE r.id = ANY (v_runs) AND r.sequential AND r.status = 'started' HAVING count(*) > 0;
END $$;

-- skip_tasks records the tasks of conditional steps whose condition was
-- false (settle: a NULL output): each such task still started becomes
-- skipped, and so does its step (skip_steps; a conditional step is not a
-- map step, so this is its only task). A NULL output of a step without a
-- condition is no skip: settle completes it with JSON null, as ever.
-- Returns what skip_steps returns.
CREATE FUNCTION qflow.skip_tasks(p_runs uuid[], p_steps smallint[], p_tasks integer[], p_outputs jsonb[],
                                 OUT o_tasks integer, OUT o_queues text[],
                                 OUT o_finished uuid[], OUT o_outputs jsonb[])
LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
    v_r   uuid[];
    v_s   smallint[];
    v_sk  record;
BEGIN
    o_tasks := 0;
    WITH u AS (
        UPDATE qflow.step_tasks t SET status = 'skipped', error = NULL, finished_at = v_now, vt = v_now
        FROM unnest(p_runs, p_steps, p_tasks, p_outputs) AS k(run_id, step_idx, task_index, output)
        WHERE k.output IS NULL
          AND t.run_id = k.run_id AND t.step_idx = k.step_idx AND t.task_index = k.task_index
          AND t.status = 'started'
          AND EXISTS (SELECT 1 FROM qflow.steps st WHERE st.flow_id = t.flow_id AND st.idx = t.step_idx AND st.conditional)
        RETURNING t.run_id, t.step_idx
    )
    SELECT array_agg(u.run_id ORDER BY u.run_id, u.step_idx), array_agg(u.step_idx ORDER BY u.run_id, u.step_idx)
    INTO v_r, v_s FROM u;
    IF v_r IS NULL THEN
        RETURN;
    END IF;
    SELECT * INTO v_sk FROM qflow.skip_steps(v_r, v_s, NULL);
    o_tasks := v_sk.o_tasks;
    o_queues := v_sk.o_queues;
    o_finished := v_sk.o_finished;
    o_outputs := v_sk.o_outputs;
END $$;

-- skip_failed skips optional step p_step of locked, started run p_run,
-- whose task has just failed for good (fail_tasks): the step's other
-- unfinished tasks are cancelled (workers running them learn it at their
-- next heartbeat), the step is skipped with the task's error (skip_steps),
-- and workers are woken for the tasks that start.
CREATE FUNCTION qflow.skip_failed(p_run uuid, p_step smallint, p_error text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_sk record;
BEGIN
    UPDATE qflow.step_tasks SET status = 'cancelled', finished_at = now()
    WHERE run_id = p_run AND step_idx = p_step AND finished_at IS NULL;
    SELECT * INTO v_sk FROM qflow.skip_steps(ARRAY[p_run], ARRAY[p_step], ARRAY[p_error]);
    PERFORM qflow.wake(v_sk.o_queues);
END $$;

-- Runs: start -------------------------------------------------------------------

-- insert_keyed_runs is start_runs_core's insert when the start carries
-- idempotency keys (p_opts "key": one key for every input; "keys": one per
-- input, null for none). p_ids are fresh ids in input order. An input whose
-- key already names a run of the flow (by slug, any version), or an earlier
-- input of this call, gets that run's id and starts nothing; a concurrent
-- start of the same key waits for the other transaction on runs_key and
-- then takes its run (or inserts its own if the other rolled back).
-- Returns every input's run id (o_ids), the runs inserted (o_new), and
-- whether each input's run already existed (o_existing).
CREATE FUNCTION qflow.insert_keyed_runs(p_flow qflow.flows, p_ids uuid[], p_inputs jsonb[], p_opts jsonb,
                                        OUT o_ids uuid[], OUT o_new uuid[], OUT o_existing boolean[])
LANGUAGE plpgsql AS $$
DECLARE
    v_keys text[];
    v_bad  integer;
BEGIN
    IF p_opts ? 'keys' THEN
        IF jsonb_typeof(p_opts->'keys') IS DISTINCT FROM 'array'
           OR jsonb_array_length(p_opts->'keys') <> cardinality(p_inputs) THEN
            RAISE EXCEPTION 'qflow: start flow "%": keys must be an array with one key (or null) per input (% inputs)',
                p_flow.slug, cardinality(p_inputs) USING ERRCODE = 'QF400';
        END IF;
        SELECT array_agg(CASE WHEN jsonb_typeof(k) = 'string' THEN nullif(k #>> '{}', '') END ORDER BY o)
        INTO v_keys FROM jsonb_array_elements(p_opts->'keys') WITH ORDINALITY AS x(k, o);
    ELSE
        v_keys := array_fill(nullif(p_opts->>'key', ''), ARRAY[cardinality(p_inputs)]);
    END IF;
    SELECT min(o) INTO v_bad FROM unnest(v_keys) WITH ORDINALITY AS k(k, o) WHERE octet_length(k) > 255;
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'qflow: start flow "%": the key of input % is over 255 bytes', p_flow.slug, v_bad
            USING ERRCODE = 'QF400';
    END IF;

    WITH x AS (
        SELECT i.o, i.id, i.input, i.key,
               i.key IS NULL OR row_number() OVER (PARTITION BY i.key ORDER BY i.o) = 1 AS first
        FROM unnest(p_ids, p_inputs, v_keys) WITH ORDINALITY AS i(id, input, key, o)
    ), ins AS (
        INSERT INTO qflow.runs (id, flow_id, flow_slug, input, remaining_steps, events, sequential, priority,
                                max_attempts, deadline, trace_context, idempotency_key)
        SELECT x.id, p_flow.id, p_flow.slug, x.input, p_flow.step_count,
               coalesce((p_opts->>'events')::boolean, true),
               coalesce((p_opts->>'sequential')::boolean, false),
               coalesce((p_opts->>'priority')::integer, 0),
               nullif((p_opts->>'max_attempts')::integer, 0),
               now() + make_interval(secs => nullif((p_opts->>'timeout_ms')::bigint, 0) / 1000.0),
               p_opts->'trace_context', x.key
        -- In key order, so concurrent starts of overlapping keys wait for
        -- each other in the same order and cannot deadlock.
        FROM x WHERE x.first ORDER BY x.key, x.o
        ON CONFLICT (flow_slug, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
        RETURNING id
    )
    SELECT array_agg(x.id ORDER BY x.o) INTO o_new FROM x WHERE x.id IN (SELECT id FROM ins);
    o_new := coalesce(o_new, '{}');

    -- The others take the run their key names (a new statement: it sees
    -- what a concurrent start committed while this one waited).
    SELECT array_agg(CASE WHEN i.id = ANY (o_new) THEN i.id ELSE e.id END ORDER BY i.o),
           array_agg(NOT (i.id = ANY (o_new)) ORDER BY i.o)
    INTO o_ids, o_existing
    FROM unnest(p_ids, v_keys) WITH ORDINALITY AS i(id, key, o)
    LEFT JOIN LATERAL (SELECT r.id FROM qflow.runs r
                       WHERE r.flow_slug = p_flow.slug AND r.idempotency_key = i.key LIMIT 1) e
           ON NOT (i.id = ANY (o_new));
    IF array_position(o_ids, NULL) IS NOT NULL THEN
        -- The run holding the key was pruned between the two statements.
        RAISE EXCEPTION 'qflow: start flow "%": the run holding a key went away meanwhile; start again', p_flow.slug
            USING ERRCODE = '40001';
    END IF;
END $$;

-- start_roots is start_runs_core's fast path for versions whose root steps
-- are all plain single steps (no limit, start delay or signal to wait for)
-- and runs that are neither keyed nor sequential: in one statement it
-- inserts the runs (ids p_ids, in input order), their root steps' states
-- and tasks, the first p_qty tasks in claim order created claimed by
-- p_worker (as start_steps does), and publishes what start_runs_core and
-- start_steps publish, in the same order: workflow_started for each run,
-- then per run its step_started events and, when p_started_events, its
-- claimed tasks' task_started. It returns the number of tasks and the
-- claimed ones, in claim order.
CREATE FUNCTION qflow.start_roots(p_flow qflow.flows, p_ids uuid[], p_inputs jsonb[], p_opts jsonb,
                                  p_worker uuid, p_qty integer, p_lease_ms bigint, p_started_events boolean,
                                  OUT o_tasks integer, OUT o_claimed qflow.claimed_task[])
LANGUAGE plpgsql AS $$
DECLARE
    v_now    timestamptz := clock_timestamp();
    v_ts     text := qflow.ev_ts(v_now);
    v_events boolean := coalesce((p_opts->>'events')::boolean, true);
    v_on     boolean := qflow.events_on();
    v_evs    text[];
BEGIN
    WITH ins_runs AS (
        INSERT INTO qflow.runs (id, flow_id, flow_slug, input, remaining_steps, events, sequential, priority,
                                max_attempts, deadline, trace_context)
        SELECT r.id, p_flow.id, p_flow.slug, r.input, p_flow.step_count, v_events, false,
               coalesce((p_opts->>'priority')::integer, 0),
               nullif((p_opts->>'max_attempts')::integer, 0),
               now() + make_interval(secs => nullif((p_opts->>'timeout_ms')::bigint, 0) / 1000.0),
               p_opts->'trace_context'
        FROM unnest(p_ids, p_inputs) AS r(id, input)
        RETURNING id, input, priority, max_attempts, deadline, trace_context
    ), q AS ( -- a row per run and root step, numbered in claim order
        SELECT ru.id AS run_id, st.idx AS step_idx,
               qflow.task_priority(ru.priority, p_flow.prioritized, st.priority) AS priority,
               coalesce(ru.max_attempts, st.max_attempts) AS max_attempts, ru.deadline, ru.trace_context,
               CASE WHEN st.takes_input THEN jsonb_build_object('run', ru.input) ELSE '{}'::jsonb END AS input,
               row_number() OVER (ORDER BY qflow.task_priority(ru.priority, p_flow.prioritized, st.priority) DESC,
                                           ru.id, st.idx) AS n
        FROM ins_runs ru
        CROSS JOIN qflow.steps st
        WHERE st.flow_id = p_flow.id AND st.dep_count = 0
    ), states AS (
        INSERT INTO qflow.step_states (run_id, step_idx, flow_id, status, task_count, remaining_tasks, started_at)
        SELECT q.run_id, q.step_idx, p_flow.id, 'started', 1, 1, v_now FROM q
    ), tasks AS (
        INSERT INTO qflow.step_tasks (run_id, step_idx, task_index, flow_id, priority, max_attempts, vt, deadline,
                                      events, sequential, input, trace_context, lane, status, attempts, worker_id,
                                      started_at)
        SELECT q.run_id, q.step_idx, 0, p_flow.id, q.priority, q.max_attempts,
               CASE WHEN q.take THEN v_now + make_interval(secs => p_lease_ms / 1000.0) ELSE v_now END,
               q.deadline, v_events AND v_on, false, q.input, q.trace_context, 0,
               CASE WHEN q.take THEN 'started' ELSE 'queued' END, CASE WHEN q.take THEN 1 ELSE 0 END,
               CASE WHEN q.take THEN p_worker END, CASE WHEN q.take THEN v_now END
        FROM (SELECT q.*, p_worker IS NOT NULL AND q.n <= p_qty AND (q.deadline IS NULL OR q.deadline > v_now) AS take
              FROM q) q
        ORDER BY q.run_id, q.step_idx
        RETURNING seq, run_id, step_idx, task_index, attempts, input, priority, flow_id, events, trace_context,
                  deadline, sequential, status
    ), sl AS MATERIALIZED ( -- the version's step slugs, by index
        SELECT array_agg(st.slug ORDER BY st.idx) AS slugs FROM qflow.steps st WHERE st.flow_id = p_flow.id
    )
    SELECT (SELECT count(*)::integer FROM tasks),
           (SELECT array_agg(ROW(i.seq, i.run_id, i.step_idx, i.task_index, i.attempts, i.input, i.priority,
                                 i.flow_id, i.events, i.trace_context, i.deadline, i.sequential)::qflow.claimed_task
                             ORDER BY i.priority DESC, i.seq)
            FROM tasks i WHERE i.status = 'started'),
           -- The runs' workflow_started in input order, then per run its
           -- steps' step_started and its claimed tasks' task_started (one
           -- qflow.ev call for every kind: each call is inlined, so each
           -- more would be parsed when the statement is planned and
           -- compiled on every execution).
           (SELECT array_agg(qflow.ev(x.type, x.run_id, p_flow.slug, sl.slugs[x.step_idx + 1], x.task, 'started',
                                      x.attempt, NULL, NULL, NULL, p_ts => v_ts)
                             ORDER BY x.g, x.o, x.run_id, x.k, x.step_idx)
            FROM sl, (SELECT 'workflow_started' AS type, r.id AS run_id, NULL::smallint AS step_idx,
                             NULL::integer AS task, NULL::integer AS attempt, 0 AS g, r.o, 0 AS k
                      FROM unnest(p_ids) WITH ORDINALITY AS r(id, o)
                      UNION ALL
                      SELECT 'step_started', i.run_id, i.step_idx, NULL, NULL, 1, 0, 0 FROM tasks i
                      UNION ALL
                      SELECT 'task_started', i.run_id, i.step_idx, 0, 1, 1, 0, 1 FROM tasks i
                      WHERE i.status = 'started' AND p_started_events) x
            WHERE v_events AND v_on)
    INTO o_tasks, o_claimed, v_evs;
    PERFORM qflow.publish(v_evs);
    IF o_tasks >= 1000 THEN
        PERFORM qflow.analyze_after_fanout(o_tasks);
    END IF;
END $$;

-- start_runs_core starts one run per input of flow p_flow_id and returns
-- their ids in input order, with the number of tasks created and their
-- queues; it wakes no worker. p_opts: {"events": bool, "sequential": bool,
-- "priority": int (the runs' priority), "max_attempts": int,
-- "timeout_ms": int, "trace_context": object,
-- "key": text or "keys": [text|null, …]}. With a key (see
-- insert_keyed_runs) an input may get an existing run's id instead:
-- o_existing then says which (NULL for a start without keys), and only the
-- runs it created start (o_tasks, o_queues).
CREATE FUNCTION qflow.start_runs_core(p_flow_id integer, p_inputs jsonb[], p_opts jsonb,
                                      p_worker uuid DEFAULT NULL, p_qty integer DEFAULT 0,
                                      p_lease_ms bigint DEFAULT 0, p_started_events boolean DEFAULT false,
                                      OUT o_ids uuid[], OUT o_tasks integer, OUT o_queues text[],
                                      OUT o_existing boolean[], OUT o_claimed qflow.claimed_task[])
LANGUAGE plpgsql AS $$
DECLARE
    v_flow   qflow.flows;
    v_ids    uuid[];
    v_all    uuid[];
    v_bad    integer;
    v_roots  smallint[];
    v_map_root boolean;  -- a root step is a map
    v_plain  boolean;    -- every root step is a single step with no limit, delay or signal
    v_events boolean := coalesce((p_opts->>'events')::boolean, true);
    v_st     record;
    v_adv    record;
BEGIN
    o_tasks := 0;
    SELECT * INTO v_flow FROM qflow.flows WHERE id = p_flow_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'qflow: unknown flow id %', p_flow_id USING ERRCODE = 'QF404';
    END IF;
    IF p_inputs IS NULL OR cardinality(p_inputs) = 0 THEN
        RETURN;
    END IF;
    SELECT min(o) INTO v_bad FROM unnest(p_inputs) WITH ORDINALITY AS i(v, o) WHERE v IS NULL;
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'qflow: input % of flow "%" is null', v_bad, v_flow.slug USING ERRCODE = 'QF400';
    END IF;
    SELECT array_agg(idx ORDER BY idx), bool_or(kind = 'map'),
           bool_and(kind = 'single' AND NOT gated AND start_delay_ms = 0 AND wait_signal IS NULL)
    INTO v_roots, v_map_root, v_plain
    FROM qflow.steps WHERE flow_id = p_flow_id AND dep_count = 0;
    IF v_map_root THEN
        SELECT min(o) INTO v_bad FROM unnest(p_inputs) WITH ORDINALITY AS i(v, o) WHERE jsonb_typeof(v) <> 'array';
        IF v_bad IS NOT NULL THEN
            RAISE EXCEPTION 'qflow: flow "%" starts with a map step, so its input must be a JSON array; input % is a JSON %',
                v_flow.slug, v_bad, jsonb_typeof(p_inputs[v_bad]) USING ERRCODE = 'QF400';
        END IF;
    END IF;
    SELECT array_agg(gen_random_uuid()) INTO v_ids FROM unnest(p_inputs);

    -- Plain roots, no key, no order to keep: one statement (start_roots).
    IF v_plain AND v_flow.concurrency IS NULL AND NOT (p_opts ? 'key' OR p_opts ? 'keys')
       AND NOT coalesce((p_opts->>'sequential')::boolean, false) THEN
        SELECT * INTO o_tasks, o_claimed
        FROM qflow.start_roots(v_flow, v_ids, p_inputs, p_opts, p_worker, p_qty, p_lease_ms, p_started_events);
        IF o_tasks > 0 THEN
            o_queues := ARRAY[v_flow.queue_name];
        END IF;
        o_ids := v_ids;
        RETURN;
    END IF;

    IF p_opts ? 'key' OR p_opts ? 'keys' THEN
        SELECT k.o_ids, k.o_new, k.o_existing INTO v_all, v_ids, o_existing
        FROM qflow.insert_keyed_runs(v_flow, v_ids, p_inputs, p_opts) k;
    ELSE
    INSERT INTO qflow.runs (id, flow_id, flow_slug, input, remaining_steps, events, sequential, priority,
                            max_attempts, deadline, trace_context)
    SELECT r.id, p_flow_id, v_flow.slug, r.input, v_flow.step_count, v_events,
           coalesce((p_opts->>'sequential')::boolean, false),
           coalesce((p_opts->>'priority')::integer, 0),
           nullif((p_opts->>'max_attempts')::integer, 0),
           now() + make_interval(secs => nullif((p_opts->>'timeout_ms')::bigint, 0) / 1000.0),
           p_opts->'trace_context'
    FROM unnest(v_ids, p_inputs) AS r(id, input);
    END IF;

    IF v_events AND qflow.events_on() THEN
        PERFORM qflow.publish(array_agg(qflow.ev('workflow_started', r.id, v_flow.slug, NULL, NULL, 'started',
                                                 NULL, NULL, NULL, NULL, p_ts => t.ts) ORDER BY o))
        FROM unnest(v_ids) WITH ORDINALITY AS r(id, o), (SELECT qflow.ev_ts(clock_timestamp()) AS ts) t;
    END IF;

    SELECT * INTO v_st FROM qflow.start_steps(
        ARRAY(SELECT r FROM unnest(v_ids) AS r, unnest(v_roots) AS s ORDER BY 1, s),
        ARRAY(SELECT s FROM unnest(v_ids) AS r, unnest(v_roots) AS s ORDER BY r, 1),
        p_worker, p_qty, p_lease_ms, p_started_events);
    o_tasks := v_st.o_tasks;
    o_queues := v_st.o_queues;
    o_claimed := v_st.o_claimed;
    IF v_st.o_runs IS NOT NULL THEN
        SELECT * INTO v_adv FROM qflow.advance(v_st.o_runs, v_st.o_steps, v_st.o_flows);
        o_tasks := o_tasks + v_adv.o_tasks;
        o_queues := o_queues || v_adv.o_queues;
    END IF;
    o_ids := coalesce(v_all, v_ids);
END $$;

-- wake wakes idle workers of these queues (identical notifications in one
-- transaction are delivered once).
CREATE FUNCTION qflow.wake(p_queues text[])
RETURNS void LANGUAGE sql AS $$
    SELECT pg_notify('qflow_work', q) FROM (SELECT DISTINCT q FROM unnest(p_queues) AS q) d
$$;

-- start_runs starts one run per input of flow p_flow_id (see
-- start_runs_core for p_opts), wakes idle workers, and returns the runs'
-- ids in input order.
CREATE FUNCTION qflow.start_runs(p_flow_id integer, p_inputs jsonb[], p_opts jsonb DEFAULT '{}')
RETURNS SETOF uuid LANGUAGE plpgsql AS $$
DECLARE
    v_st record;
BEGIN
    v_st := qflow.start_runs_core(p_flow_id, p_inputs, p_opts);
    PERFORM qflow.wake(v_st.o_queues);
    RETURN QUERY SELECT unnest(v_st.o_ids);
END $$;

-- start_runs_claim is start_runs for a client with a worker of flow version
-- p_worker_flow in its own process: in the same transaction it claims up
-- to p_qty of the new runs' first tasks for worker p_worker (start_steps
-- creates them claimed, with the rows and events a claim would leave,
-- publishing task_started when p_events; not a sequential run's, nor any
-- when a root step is an empty map), and wakes other workers
-- only for tasks left unclaimed. So a run's first step costs no round trip
-- of its own, and no notification. Returns the ids in input order and the
-- claimed tasks as parallel arrays, and o_existing from start_runs_core (a
-- keyed start that found its run claims none of that run's tasks). With
-- p_qty 0 it is start_runs that also reports o_existing.
--
-- Priorities stay honoured: when a visible queued task of another run of
-- the version has a higher claim priority than the new runs' tasks may
-- have (the runs' priority plus the lowest step priority of a prioritized
-- version), it claims nothing and wakes the workers, whose claims take
-- the highest priority first. Without priorities every task has 0 and the
-- check is one probe of step_tasks_ready that finds nothing.
--
-- Limits stay honoured too: tasks a step's limit holds are left to the
-- workers' claims (start_steps creates them queued), and a version with a limit on
-- the whole flow claims nothing here.
CREATE FUNCTION qflow.start_runs_claim(p_flow_id integer, p_inputs jsonb[], p_opts jsonb,
                                       p_worker uuid, p_worker_flow integer, p_qty integer,
                                       p_lease_ms bigint, p_events boolean,
                                       OUT o_ids uuid[], OUT o_seq bigint[], OUT o_run uuid[],
                                       OUT o_step smallint[], OUT o_task integer[], OUT o_attempt integer[],
                                       OUT o_input jsonb[], OUT o_priority integer[], OUT o_trace jsonb[],
                                       OUT o_existing boolean[], OUT o_deadline timestamptz[],
                                       OUT o_sequential boolean[])
LANGUAGE plpgsql AS $$
DECLARE
    v_st    record;
    v_got   qflow.claimed_task[];
    v_floor integer;
BEGIN
    IF p_qty > 0 AND p_flow_id = p_worker_flow THEN
        SELECT greatest(-2147483648, least(2147483647, coalesce((p_opts->>'priority')::integer, 0)::bigint
               + CASE WHEN f.prioritized THEN (SELECT min(st.priority) FROM qflow.steps st WHERE st.flow_id = f.id)
                      ELSE 0 END))::integer,
               CASE WHEN f.concurrency IS NOT NULL THEN 0 ELSE p_qty END
        INTO v_floor, p_qty FROM qflow.flows f WHERE f.id = p_flow_id;
        IF EXISTS (SELECT 1 FROM qflow.step_tasks q
                   WHERE q.flow_id = p_flow_id AND q.lane = 0 AND q.finished_at IS NULL AND q.priority > v_floor
                     AND q.status = 'queued' AND q.vt <= clock_timestamp()) THEN
            p_qty := 0;
        END IF;
    ELSE
        p_qty := 0;
    END IF;
    -- The new runs' first tasks are created claimed (start_steps).
    v_st := qflow.start_runs_core(p_flow_id, p_inputs, p_opts,
                                  CASE WHEN p_qty > 0 THEN p_worker END, p_qty, p_lease_ms, p_events);
    o_ids := v_st.o_ids;
    o_existing := v_st.o_existing;
    v_got := v_st.o_claimed;
    IF v_got IS NOT NULL THEN
        SELECT array_agg(g.seq), array_agg(g.run_id), array_agg(g.step_idx), array_agg(g.task_index),
               array_agg(g.attempt), array_agg(g.input), array_agg(g.priority), array_agg(g.trace_context),
               array_agg(g.deadline), array_agg(g.sequential)
        INTO o_seq, o_run, o_step, o_task, o_attempt, o_input, o_priority, o_trace, o_deadline, o_sequential
        FROM unnest(v_got) g;
    END IF;
    IF v_st.o_tasks > coalesce(cardinality(v_got), 0) THEN
        PERFORM qflow.wake(v_st.o_queues);
    END IF;
END $$;

-- Runs: fail, cancel, expire ----------------------------------------------------------

-- fail_run marks a run failed because of step p_step_idx and cancels its
-- other unfinished steps and tasks. The caller holds the run's lock.
CREATE FUNCTION qflow.fail_run(p_run uuid, p_step_idx smallint, p_error text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_run  qflow.runs;
    v_slug text;
BEGIN
    SELECT slug INTO v_slug FROM qflow.steps st JOIN qflow.runs r ON r.flow_id = st.flow_id
    WHERE r.id = p_run AND st.idx = p_step_idx;
    UPDATE qflow.runs SET status = 'failed', error = p_error, failed_step = v_slug, finished_at = now()
    WHERE id = p_run AND status = 'started'
    RETURNING * INTO v_run;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    UPDATE qflow.step_states SET status = 'failed', error = p_error, finished_at = now()
    WHERE run_id = p_run AND step_idx = p_step_idx AND status IN ('created', 'started');
    PERFORM qflow.cancel_unfinished(p_run);
    IF v_run.events AND qflow.events_on() THEN
        PERFORM qflow.publish(ARRAY[
            qflow.ev('step_failed', p_run, v_run.flow_slug, v_slug, NULL, 'failed', NULL, NULL, p_error, NULL),
            qflow.ev('workflow_failed', p_run, v_run.flow_slug, v_slug, NULL, 'failed', NULL,
                     (extract(epoch FROM clock_timestamp() - v_run.started_at) * 1000)::bigint, p_error, NULL)]);
    END IF;
END $$;

-- cancel_unfinished cancels a finished run's unfinished steps and tasks.
CREATE FUNCTION qflow.cancel_unfinished(p_run uuid)
RETURNS void LANGUAGE sql AS $$
    UPDATE qflow.step_states SET status = 'cancelled', finished_at = now()
    WHERE run_id = p_run AND status IN ('created', 'started');
    UPDATE qflow.step_tasks SET status = 'cancelled', finished_at = now()
    WHERE run_id = p_run AND finished_at IS NULL;
$$;

-- cancel_run cancels a started run: the run and its unfinished steps and
-- tasks become cancelled. Workers running its tasks learn it at their next
-- heartbeat and cancel the handlers' contexts. Returns false when the run
-- had already finished. Running tasks that held a limit's place free it,
-- and the version's workers are woken to use it.
CREATE FUNCTION qflow.cancel_run(p_run uuid, p_reason text DEFAULT 'cancelled')
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_run   qflow.runs;
    v_freed boolean;
BEGIN
    UPDATE qflow.runs SET status = 'cancelled', error = p_reason, finished_at = now()
    WHERE id = p_run AND status = 'started'
    RETURNING * INTO v_run;
    IF NOT FOUND THEN
        IF NOT EXISTS (SELECT 1 FROM qflow.runs WHERE id = p_run) THEN
            RAISE EXCEPTION 'qflow: run % not found', p_run USING ERRCODE = 'QF410';
        END IF;
        RETURN false;
    END IF;
    v_freed := EXISTS (SELECT 1 FROM qflow.step_tasks t
                       WHERE t.run_id = p_run AND t.status = 'started' AND t.limit_key IS NOT NULL);
    PERFORM qflow.cancel_unfinished(p_run);
    IF v_freed THEN
        PERFORM qflow.wake(ARRAY(SELECT f.queue_name FROM qflow.flows f WHERE f.id = v_run.flow_id));
    END IF;
    IF v_run.events AND qflow.events_on() THEN
        PERFORM qflow.publish(ARRAY[qflow.ev('workflow_cancelled', p_run, v_run.flow_slug, NULL, NULL, 'cancelled', NULL,
                           (extract(epoch FROM clock_timestamp() - v_run.started_at) * 1000)::bigint, p_reason, NULL)]);
    END IF;
    RETURN true;
END $$;

-- expire_runs cancels started runs whose whole-run deadline has passed and
-- returns how many it cancelled.
CREATE FUNCTION qflow.expire_runs()
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_n integer := 0;
    r   record;
BEGIN
    FOR r IN SELECT id, deadline, started_at FROM qflow.runs
             WHERE status = 'started' AND deadline IS NOT NULL AND deadline <= now()
             ORDER BY deadline LIMIT 1000 FOR UPDATE SKIP LOCKED LOOP
        IF qflow.cancel_run(r.id, format('run timed out after %s', r.deadline - r.started_at)) THEN
            v_n := v_n + 1;
        END IF;
    END LOOP;
    RETURN v_n;
END $$;

-- resume_run resumes a failed or cancelled run under the same id: in one
-- transaction, with the run locked first, what did not complete is queued
-- again and everything that completed is kept. Tasks that failed or were
-- cancelled go back to queued with a fresh attempt budget (their completed
-- siblings of a map step keep their outputs); their steps start again;
-- steps whose dependencies have all completed (or been skipped) but that
-- have no state yet (never started) start; the others start as their
-- dependencies complete, as usual. Skipped steps stay skipped, like
-- completed ones: a false condition, or an optional step's failure, was
-- the run's decision, and dependents may have run on it (an optional
-- step's failed task is not queued again). The run keeps its flow
-- version, counts the resume (resumes, resumed_at) and publishes
-- workflow_resumed, then step_started for each step it restarts. p_opts: {"max_attempts": int (the resumed tasks' and
-- the run's attempts from now on; 0 or absent: keep the run's setting),
-- "timeout_ms": int (a new deadline; absent: none, the old one is
-- dropped)}. Errors: QF410 for an unknown run, QF409 for a run that is
-- running or completed, QF404 when the run's flow version has lost its
-- steps. Returns the number of steps and tasks queued again or started.
CREATE FUNCTION qflow.resume_run(p_run uuid, p_opts jsonb DEFAULT '{}',
                                 OUT o_steps integer, OUT o_tasks integer)
LANGUAGE plpgsql AS $$
DECLARE
    v_run    qflow.runs;
    v_flow   qflow.flows;
    v_now    timestamptz := clock_timestamp();
    v_max    integer := nullif((p_opts->>'max_attempts')::integer, 0);
    v_events boolean;
    v_n      integer;
    v_ready  smallint[];
    v_evs    text[];
    v_st     record;
    v_adv    record;
    v_queues text[];
BEGIN
    o_steps := 0;
    o_tasks := 0;
    SELECT * INTO v_run FROM qflow.runs WHERE id = p_run FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'qflow: run % not found', p_run USING ERRCODE = 'QF410';
    END IF;
    IF v_run.status NOT IN ('failed', 'cancelled') THEN
        RAISE EXCEPTION 'qflow: run % is %: only a failed or cancelled run can be resumed', p_run,
            CASE v_run.status WHEN 'started' THEN 'still running' ELSE v_run.status END USING ERRCODE = 'QF409';
    END IF;
    SELECT * INTO v_flow FROM qflow.flows WHERE id = v_run.flow_id;
    SELECT count(*) INTO v_n FROM qflow.steps WHERE flow_id = v_run.flow_id;
    IF v_flow.id IS NULL OR v_n = 0 OR v_n <> v_flow.step_count THEN
        RAISE EXCEPTION 'qflow: run %: the definition of flow "%" version % is gone (% of its % steps are left)', p_run,
            v_run.flow_slug, v_flow.version, v_n, v_flow.step_count USING ERRCODE = 'QF404';
    END IF;
    IF v_max IS NOT NULL AND v_max < 1 THEN
        RAISE EXCEPTION 'qflow: resume run %: max_attempts must be positive', p_run USING ERRCODE = 'QF400';
    END IF;
    v_events := v_run.events AND qflow.events_on();

    UPDATE qflow.runs SET status = 'started', error = NULL, failed_step = NULL, finished_at = NULL, output = NULL,
        resumes = resumes + 1, resumed_at = v_now, max_attempts = coalesce(v_max, max_attempts),
        deadline = now() + make_interval(secs => nullif((p_opts->>'timeout_ms')::bigint, 0) / 1000.0),
        remaining_steps = v_flow.step_count - (SELECT count(*) FROM qflow.step_states s
                                               WHERE s.run_id = p_run AND s.status IN ('completed', 'skipped'))
    WHERE id = p_run
    RETURNING * INTO v_run;
    IF v_events THEN
        PERFORM qflow.publish(ARRAY[qflow.ev('workflow_resumed', p_run, v_run.flow_slug, NULL, NULL, 'started',
                                             NULL, NULL, NULL, NULL, v_run.resumes)]);
    END IF;

    -- A step that failed before it had tasks (a map over a non-array)
    -- starts from scratch below.
    DELETE FROM qflow.step_states WHERE run_id = p_run AND status IN ('failed', 'cancelled') AND task_count IS NULL;

    -- Unfinished tasks go back to the queue with a fresh budget, held by
    -- the limits as they now stand.
    UPDATE qflow.step_tasks t SET status = 'queued', attempts = 0, error = NULL, output = NULL, worker_id = NULL,
        started_at = NULL, finished_at = NULL, seq = nextval('qflow.task_seq'), queued_at = v_now,
        max_attempts = coalesce(v_run.max_attempts, st.max_attempts),
        vt = CASE WHEN v_run.sequential THEN 'infinity'::timestamptz ELSE v_now END,
        deadline = v_run.deadline,
        lane = CASE WHEN st.gated THEN qflow.lane(st.slug, qflow.limit_key(t.input, st.limit_key)) ELSE 0 END,
        limit_key = CASE WHEN st.gated THEN qflow.limit_key(t.input, st.limit_key)
                         WHEN v_flow.concurrency IS NOT NULL THEN '' END
    FROM qflow.steps st
    WHERE t.run_id = p_run AND t.status IN ('failed', 'cancelled')
      AND st.flow_id = t.flow_id AND st.idx = t.step_idx
      AND NOT EXISTS (SELECT 1 FROM qflow.step_states s
                      WHERE s.run_id = p_run AND s.step_idx = t.step_idx AND s.status = 'skipped');
    GET DIAGNOSTICS o_tasks = ROW_COUNT;

    WITH u AS (
        UPDATE qflow.step_states ss SET status = 'started', error = NULL, output = NULL, finished_at = NULL,
            remaining_tasks = (SELECT count(*) FROM qflow.step_tasks t
                               WHERE t.run_id = p_run AND t.step_idx = ss.step_idx AND t.status <> 'completed')
        WHERE ss.run_id = p_run AND ss.status IN ('failed', 'cancelled')
        RETURNING ss.step_idx
    )
    SELECT count(*), array_agg(qflow.ev('step_started', p_run, v_run.flow_slug, st.slug, NULL, 'started',
                                        NULL, NULL, NULL, NULL) ORDER BY u.step_idx)
    INTO o_steps, v_evs
    FROM u JOIN qflow.steps st ON st.flow_id = v_run.flow_id AND st.idx = u.step_idx;
    IF v_events THEN
        PERFORM qflow.publish(v_evs);
    END IF;
    IF o_tasks > 0 THEN
        v_queues := ARRAY[v_flow.queue_name];
        IF v_run.sequential THEN
            PERFORM qflow.next_turn(ARRAY[p_run]);
        END IF;
    END IF;

    -- Steps ready but never started.
    SELECT array_agg(st.idx ORDER BY st.idx) INTO v_ready
    FROM qflow.steps st
    WHERE st.flow_id = v_run.flow_id
      AND NOT EXISTS (SELECT 1 FROM qflow.step_states s WHERE s.run_id = p_run AND s.step_idx = st.idx)
      AND (SELECT count(*) FROM qflow.step_states s
           WHERE s.run_id = p_run AND s.step_idx = ANY (st.deps)
             AND s.status IN ('completed', 'skipped')) = st.dep_count;
    IF v_ready IS NOT NULL THEN
        SELECT * INTO v_st FROM qflow.start_steps(array_fill(p_run, ARRAY[cardinality(v_ready)]), v_ready);
        o_steps := o_steps + cardinality(v_ready);
        o_tasks := o_tasks + v_st.o_tasks;
        v_queues := v_queues || v_st.o_queues;
        IF v_st.o_runs IS NOT NULL THEN
            SELECT * INTO v_adv FROM qflow.advance(v_st.o_runs, v_st.o_steps, v_st.o_flows);
            o_tasks := o_tasks + v_adv.o_tasks;
            v_queues := v_queues || v_adv.o_queues;
        END IF;
    END IF;
    PERFORM qflow.wake(v_queues);
END $$;

-- Tasks: fail, expire leases, heartbeat, release ----------------------------------------

-- retry_delay_ms is the wait before attempt p_attempt + 1:
-- base × 2^(attempt−1), capped at 10 minutes, with ±20% jitter.
CREATE FUNCTION qflow.retry_delay_ms(p_base_ms bigint, p_attempt integer)
RETURNS bigint LANGUAGE sql VOLATILE AS $$
    SELECT (least(p_base_ms * power(2::numeric, greatest(p_attempt - 1, 0)), 600000)
            * (0.8 + random() * 0.4))::bigint
$$;

-- fail_tasks records failed attempts. A task with attempts left (and an
-- error not marked permanent) is queued again after the retry delay;
-- otherwise the task and its step fail, and so does the run, which cancels
-- everything else in it; or, when the step is optional, the task fails and
-- the step is skipped (skip_failed), and the run goes on. The error is
-- stored on the task and the step. A worker fails only its own attempts (p_worker NULL: the engine itself,
-- for an expired lease). Returns the number of attempts recorded.
--
-- A key whose p_snooze is not NULL is a snooze (runtime.Snooze), not a
-- failure: the task is queued again, visible after p_snooze milliseconds
-- (none when zero or less), and its attempt given back (attempts - 1), so
-- the next claim runs the same attempt again; nothing is stored as an
-- error, no statistics count it, and task_snoozed is published with the
-- time the task becomes visible (until). A snooze does not move the run's
-- deadline.
CREATE FUNCTION qflow.fail_tasks(p_worker uuid, p_keys qflow.task_key[], p_errors text[], p_permanent boolean[],
                                 p_snooze bigint[] DEFAULT NULL)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    r        record;
    v_n      integer := 0;
    v_ms     bigint;
    v_events boolean := qflow.events_on();
    v_failed qflow.failed_attempt[];
    v_until  timestamptz;
BEGIN
    PERFORM 1 FROM qflow.runs WHERE id IN (SELECT k.run_id FROM unnest(p_keys) k) ORDER BY id FOR NO KEY UPDATE;
    FOR r IN SELECT t.run_id, t.step_idx, t.task_index, t.flow_id, t.attempts, t.max_attempts, t.started_at,
                    x.err, coalesce(x.perm, false) AS perm, x.snooze, st.slug, st.base_delay_ms,
                    ru.events AND v_events AS events, ru.flow_slug, ru.sequential, st.optional
             FROM unnest(p_keys, p_errors, p_permanent, p_snooze) AS x(run_id, step_idx, task_index, err, perm, snooze)
             JOIN qflow.runs ru ON ru.id = x.run_id AND ru.status = 'started'
             JOIN qflow.step_tasks t ON t.run_id = x.run_id AND t.step_idx = x.step_idx AND t.task_index = x.task_index
             JOIN qflow.steps st ON st.flow_id = t.flow_id AND st.idx = t.step_idx
             WHERE t.status = 'started' AND (p_worker IS NULL OR t.worker_id = p_worker)
             ORDER BY t.run_id, t.step_idx, t.task_index LOOP
        -- An earlier failure in this loop may have failed the run, or
        -- skipped an optional step and cancelled its other tasks.
        CONTINUE WHEN NOT EXISTS (SELECT 1 FROM qflow.runs WHERE id = r.run_id AND status = 'started');
        CONTINUE WHEN r.optional AND NOT EXISTS (SELECT 1 FROM qflow.step_tasks
                                                 WHERE run_id = r.run_id AND step_idx = r.step_idx
                                                   AND task_index = r.task_index AND status = 'started');
        v_n := v_n + 1;
        v_ms := (extract(epoch FROM clock_timestamp() - r.started_at) * 1000)::bigint;
        IF r.snooze IS NOT NULL THEN
            v_until := clock_timestamp() + make_interval(secs => greatest(r.snooze, 0) / 1000.0);
            UPDATE qflow.step_tasks SET status = 'queued', worker_id = NULL, attempts = attempts - 1, vt = v_until
            WHERE run_id = r.run_id AND step_idx = r.step_idx AND task_index = r.task_index;
            IF r.events THEN
                PERFORM qflow.publish(ARRAY[qflow.ev('task_snoozed', r.run_id, r.flow_slug, r.slug, r.task_index, 'queued',
                                                     r.attempts, v_ms, NULL, NULL, NULL, v_until)]);
            END IF;
            CONTINUE;
        END IF;
        v_failed := v_failed || ROW(r.flow_id, r.step_idx, r.task_index, r.attempts,
                                    r.perm OR r.attempts >= r.max_attempts, r.err)::qflow.failed_attempt;
        UPDATE qflow.step_states SET error = r.err WHERE run_id = r.run_id AND step_idx = r.step_idx;
        IF NOT r.perm AND r.attempts < r.max_attempts THEN
            UPDATE qflow.step_tasks SET status = 'queued', error = r.err, worker_id = NULL,
                vt = clock_timestamp() + make_interval(secs => qflow.retry_delay_ms(r.base_delay_ms, r.attempts) / 1000.0)
            WHERE run_id = r.run_id AND step_idx = r.step_idx AND task_index = r.task_index;
            IF r.events THEN
                PERFORM qflow.publish(ARRAY[qflow.ev('task_failed', r.run_id, r.flow_slug, r.slug, r.task_index, 'queued',
                                                     r.attempts, v_ms, r.err, true)]);
            END IF;
        ELSE
            UPDATE qflow.step_tasks SET status = 'failed', error = r.err, finished_at = now()
            WHERE run_id = r.run_id AND step_idx = r.step_idx AND task_index = r.task_index;
            IF r.events THEN
                PERFORM qflow.publish(ARRAY[qflow.ev('task_failed', r.run_id, r.flow_slug, r.slug, r.task_index, 'failed',
                                                     r.attempts, v_ms, r.err, false)]);
            END IF;
            IF r.optional THEN
                PERFORM qflow.skip_failed(r.run_id, r.step_idx, r.err);
            ELSE
                PERFORM qflow.fail_run(r.run_id, r.step_idx, r.err);
            END IF;
        END IF;
    END LOOP;
    IF v_failed IS NOT NULL THEN
        PERFORM qflow.record_failures(v_failed); -- step statistics (0004_stats.sql)
    END IF;
    RETURN v_n;
END $$;

-- expire_leases fails the started tasks whose lease has expired with no
-- attempts left (their worker stopped heart-beating); tasks with attempts
-- left are simply claimed again. Returns how many it failed.
CREATE FUNCTION qflow.expire_leases()
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_keys qflow.task_key[];
BEGIN
    SELECT array_agg((t.run_id, t.step_idx, t.task_index)::qflow.task_key) INTO v_keys
    FROM (SELECT t.run_id, t.step_idx, t.task_index FROM qflow.step_tasks t
          WHERE t.finished_at IS NULL AND t.status = 'started' AND t.vt <= clock_timestamp()
            AND t.attempts >= t.max_attempts
          LIMIT 1000) t;
    IF v_keys IS NULL THEN
        RETURN 0;
    END IF;
    RETURN qflow.fail_tasks(NULL, v_keys,
        array_fill('lease expired: the worker running this task stopped heart-beating, and no attempts are left'::text,
                   ARRAY[cardinality(v_keys)]),
        array_fill(true, ARRAY[cardinality(v_keys)]));
END $$;

-- refresh_stats analyses the engine's busy tables that changed a lot since
-- they were last analysed (more than 10,000 rows and as many as the table
-- had then, so a growing table is analysed each time it doubles: an
-- analyse costs tens of milliseconds, and the plans need sizes right to a
-- factor, not a percent), and returns how many it analysed. Below 10,000
-- changes an analyse is not worth what follows it: every session plans
-- its cached statements again (several milliseconds each in a settle).
-- The exception is a table never analysed (no last_analyze nor
-- last_autoanalyze), which is analysed once it holds 1,000 rows: its
-- statements keep the generic plans made when it was nearly empty
-- (PostgreSQL then assumes ten pages), and those read the whole table
-- where a primary-key probe would do (finish_tasks' update scanned every
-- task to complete two: 0.50 ms a settle against 0.25 once analysed, over
-- a fresh database's first 2,000 chains). A fan-out of 1,000 tasks or
-- more is analysed at once by analyze_after_fanout. The
-- engine's plans depend on knowing how big the queue is: planned for an
-- empty table, a claim sorts the whole backlog instead of reading the ready
-- index in order. Where autovacuum is off or behind, workers keep the
-- statistics fresh through this (analysing also replaces the plans cached
-- for the old sizes). It waits for no lock: a table another session is
-- analysing or vacuuming (or holds from analyze_after_fanout until its
-- transaction ends, perhaps a caller's long one) is left for the next
-- time, so upkeep, which shares its worker's goroutine with heartbeats,
-- never waits on it. It runs as the schema's owner, so a least-privilege
-- role can call it; it analyses nothing else.
CREATE FUNCTION qflow.refresh_stats()
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r      record;
    v_n    integer := 0;
    v_lock text := current_setting('lock_timeout');
BEGIN
    FOR r IN SELECT s.relname FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
             WHERE s.schemaname = 'qflow' AND s.relname IN ('step_tasks', 'step_states', 'runs')
               AND (s.n_mod_since_analyze > greatest(10000, c.reltuples)
                    OR (s.last_analyze IS NULL AND s.last_autoanalyze IS NULL AND s.n_live_tup >= 1000)) LOOP
        PERFORM set_config('lock_timeout', '1ms', true);
        BEGIN
            EXECUTE format('ANALYZE qflow.%I', r.relname);
            v_n := v_n + 1;
        EXCEPTION WHEN lock_not_available THEN
            NULL;
        END;
        PERFORM set_config('lock_timeout', v_lock, true);
    END LOOP;
    RETURN v_n;
END $$;

-- analyze_after_fanout analyses the task and step tables in the calling
-- transaction when it has just added p_tasks tasks, at least 1,000 and more
-- than the statistics know the task table to hold (a map step's fan-out,
-- a large StartRuns). Statements keep generic plans made when a table
-- was small: a settle planned on a near-empty task table reads all of it
-- for each key (a 10,000-element map then took 6 to 10 s instead of 0.7).
-- Analysing here, rather than at the next upkeep, makes every session plan
-- again as soon as the fan-out commits (the analyse counts this
-- transaction's own rows). It waits for no lock: when another session is
-- analysing or vacuuming the table it leaves it to them. It runs as the
-- schema's owner, so a least-privilege role can call it.
CREATE FUNCTION qflow.analyze_after_fanout(p_tasks integer)
RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_lock text := current_setting('lock_timeout');
BEGIN
    IF p_tasks < 1000 OR p_tasks <= (SELECT c.reltuples FROM pg_class c WHERE c.oid = 'qflow.step_tasks'::regclass) THEN
        RETURN false;
    END IF;
    PERFORM set_config('lock_timeout', '1ms', true);
    BEGIN
        ANALYZE qflow.step_tasks, qflow.step_states, qflow.runs;
    EXCEPTION WHEN lock_not_available THEN
        PERFORM set_config('lock_timeout', v_lock, true);
        RETURN false;
    END;
    PERFORM set_config('lock_timeout', v_lock, true);
    RETURN true;
END $$;

-- The analysing functions run as the schema's owner: only roles granted
-- EXECUTE (the application role, docs/reliability.md) may call them.
REVOKE EXECUTE ON FUNCTION qflow.refresh_stats(), qflow.analyze_after_fanout(integer) FROM PUBLIC;

-- upkeep runs a worker's periodic chores: runs past their deadline are
-- cancelled, statistics are refreshed where they went stale, and, when
-- p_leases, tasks whose lease expired with no attempts left fail (that check
-- reads every unfinished task, so workers run it less often). Last, the
-- step statistics appended since the last upkeep are folded in, unless
-- another session is folding (0004_stats.sql).
CREATE FUNCTION qflow.upkeep(p_leases boolean, OUT o_runs_expired integer, OUT o_tasks_failed integer)
LANGUAGE plpgsql AS $$
BEGIN
    -- Statistics first: an analyse then holds no run lock (see the top
    -- of this file).
    PERFORM qflow.refresh_stats();
    o_runs_expired := qflow.expire_runs();
    PERFORM qflow.expire_waits(); -- 0006_signals.sql
    o_tasks_failed := CASE WHEN p_leases THEN qflow.expire_leases() ELSE 0 END;
    PERFORM qflow.fold_step_stats(false);
END $$;

-- heartbeat records that worker p_worker is alive, extends the lease of
-- the tasks it still runs by p_lease_ms, and returns those of p_keys it
-- must stop: tasks no longer started by it (cancelled, failed with their
-- run, or taken over after its lease expired). A task locked by a
-- transition in progress is passed over (its lease is extended at the next
-- beat), so a heartbeat never waits.
CREATE FUNCTION qflow.heartbeat(p_worker uuid, p_keys qflow.task_key[], p_lease_ms bigint)
RETURNS SETOF qflow.task_key LANGUAGE plpgsql AS $$
BEGIN
    UPDATE qflow.workers SET heartbeat_at = now() WHERE id = p_worker;
    IF cardinality(p_keys) > 0 THEN
        UPDATE qflow.step_tasks t SET vt = clock_timestamp() + make_interval(secs => p_lease_ms / 1000.0)
        WHERE t.ctid = ANY (ARRAY(
            SELECT t2.ctid FROM unnest(p_keys) k
            JOIN qflow.step_tasks t2 ON t2.run_id = k.run_id AND t2.step_idx = k.step_idx AND t2.task_index = k.task_index
            WHERE t2.status = 'started' AND t2.worker_id = p_worker
            FOR UPDATE OF t2 SKIP LOCKED));
    END IF;
    RETURN QUERY
    SELECT k.run_id, k.step_idx, k.task_index FROM unnest(p_keys) k
    LEFT JOIN qflow.step_tasks t ON t.run_id = k.run_id AND t.step_idx = k.step_idx AND t.task_index = k.task_index
    WHERE t.status IS DISTINCT FROM 'started' OR t.worker_id IS DISTINCT FROM p_worker;
END $$;

-- release_tasks returns tasks a stopping worker still holds to the queue at
-- once, without counting the attempt, so another worker can take them.
CREATE FUNCTION qflow.release_tasks(p_worker uuid, p_keys qflow.task_key[])
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_n integer;
BEGIN
    PERFORM 1 FROM qflow.runs WHERE id IN (SELECT k.run_id FROM unnest(p_keys) k) ORDER BY id FOR NO KEY UPDATE;
    WITH u AS (
        UPDATE qflow.step_tasks t
        SET status = 'queued', attempts = t.attempts - 1, worker_id = NULL, vt = clock_timestamp()
        FROM unnest(p_keys) k
        WHERE t.run_id = k.run_id AND t.step_idx = k.step_idx AND t.task_index = k.task_index
          AND t.status = 'started' AND t.worker_id = p_worker
        RETURNING t.flow_id
    )
    SELECT count(*) INTO v_n FROM u;
    PERFORM qflow.wake(ARRAY(SELECT f.queue_name FROM unnest(p_keys) k
                             JOIN qflow.runs r ON r.id = k.run_id JOIN qflow.flows f ON f.id = r.flow_id));
    RETURN v_n;
END $$;

-- Tasks: settle (complete, fail and claim in one round trip) --------------------------

-- claim reserves up to p_qty visible tasks of flow version p_flow_id for
-- worker p_worker for p_lease_ms and returns them with their inputs: one
-- statement reads the queue (an index scan of step_tasks_ready in claim
-- order), takes the lease and starts the tasks. A started task whose lease
-- expired is claimed again while it has attempts left; a task of a run
-- past its deadline is never handed out (upkeep cancels the run). It is
-- the claim of a version without limits (flows.limited false), whose tasks
-- are all in lane 0; settle claims for a version with limits through
-- claim_limited.
CREATE FUNCTION qflow.claim(p_flow_id integer, p_worker uuid, p_qty integer, p_lease_ms bigint)
RETURNS SETOF qflow.claimed_task LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
    v_got qflow.claimed_task[];
BEGIN
    WITH c AS (
        UPDATE qflow.step_tasks t
        SET status = 'started', attempts = t.attempts + 1, worker_id = p_worker, started_at = v_now,
            vt = v_now + make_interval(secs => p_lease_ms / 1000.0)
        WHERE t.ctid = ANY (ARRAY(
            SELECT q.ctid FROM qflow.step_tasks q
            WHERE q.flow_id = p_flow_id AND q.lane = 0 AND q.finished_at IS NULL AND q.vt <= v_now
              AND (q.status = 'queued' OR q.attempts < q.max_attempts)
              AND (q.deadline IS NULL OR q.deadline > v_now)
            ORDER BY q.priority DESC, q.seq
            LIMIT p_qty
            FOR UPDATE SKIP LOCKED))
        RETURNING t.seq, t.run_id, t.step_idx, t.task_index, t.attempts, t.input, t.priority, t.flow_id, t.events,
                  t.trace_context, t.deadline, t.sequential
    )
    SELECT array_agg(c::qflow.claimed_task ORDER BY c.priority DESC, c.seq) INTO v_got FROM c;
    IF v_got IS NULL THEN
        RETURN;
    END IF;
    IF qflow.events_on() THEN
        PERFORM qflow.publish_started(v_got);
    END IF;
    RETURN QUERY SELECT * FROM unnest(v_got);
END $$;

-- publish_started publishes task_started for the claimed tasks of runs with
-- events on. It is apart from claim so that its statement keeps a generic
-- plan while the claim's is made per call (planning this join on every
-- claim cost more than the claim itself).
CREATE FUNCTION qflow.publish_started(p_got qflow.claimed_task[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_ts text := qflow.ev_ts(clock_timestamp());
BEGIN
    -- The slugs of the first task's flow and step, read once, serve every
    -- task of that step (a claim's tasks are mostly of one step); only the
    -- others look theirs up. (Joining both tables for every task doubled
    -- the cost of the events of a large claim.)
    PERFORM (
        WITH one AS MATERIALIZED (
            SELECT f.id AS flow_id, st.idx AS step_idx, f.slug AS flow_slug, st.slug AS step_slug
            FROM qflow.flows f JOIN qflow.steps st ON st.flow_id = f.id
            WHERE f.id = (p_got[1]).flow_id AND st.idx = (p_got[1]).step_idx
        )
        SELECT qflow.publish(array_agg(qflow.ev('task_started', c.run_id,
                   CASE WHEN c.flow_id = one.flow_id THEN one.flow_slug
                        ELSE (SELECT f.slug FROM qflow.flows f WHERE f.id = c.flow_id) END,
                   CASE WHEN c.flow_id = one.flow_id AND c.step_idx = one.step_idx THEN one.step_slug
                        ELSE (SELECT st.slug FROM qflow.steps st WHERE st.flow_id = c.flow_id AND st.idx = c.step_idx) END,
                   c.task_index, 'started', c.attempt, NULL, NULL, NULL, p_ts => v_ts) ORDER BY c.seq))
        FROM unnest(p_got) c, one
        WHERE c.events HAVING count(*) > 0);
END $$;

-- lane_take is claim_limited's look at the gate of one lane's head task h
-- (its step and key): read without a lock, then, with room, locked and
-- read again. It returns how many of the head's step and key's tasks may
-- start now (room, at most p_room), with the gate as it was read (pass;
-- its step_slug is NULL when no gate was locked). A head whose step has no
-- limit any more (they changed since it was queued) has p_room without a
-- gate. hint: when the gate may next let a task start, when it lets none
-- now; busy: another claim held it.
CREATE TYPE qflow.lane_take AS (room integer, pass qflow.gate_pass, hint timestamptz, busy boolean);
CREATE FUNCTION qflow.lane_take(p_flow qflow.flows, h qflow.lane_head, p_room integer, p_now timestamptz)
RETURNS qflow.lane_take LANGUAGE plpgsql AS $$
DECLARE
    v_step  qflow.steps;
    g       qflow.gates;
    v_room  integer := p_room;
    v_int   double precision;
    o       qflow.lane_take;
BEGIN
    o.busy := false;
    o.room := 0;
    SELECT * INTO v_step FROM qflow.steps WHERE flow_id = p_flow.id AND idx = h.step_idx;
    IF v_step.gated THEN
        -- Look before locking: a gate with no room is passed over without
        -- a lock, so claims that only look at it do not keep one another
        -- out of it. With room, lock it and look again.
        SELECT * INTO g FROM qflow.gates
        WHERE flow_slug = p_flow.slug AND step_slug = v_step.slug AND key = h.limit_key;
        IF FOUND THEN
            v_room := qflow.gate_room(g, v_step, p_room, p_now);
            IF v_room <= 0 THEN
                o.hint := qflow.gate_next(g, v_step, p_now);
                RETURN o;
            END IF;
        END IF;
        g := qflow.lock_gate(p_flow.slug, v_step.slug, h.limit_key);
        IF g IS NULL THEN
            o.busy := true;
            RETURN o;
        END IF;
        IF v_step.concurrency IS NOT NULL AND cardinality(g.holders) + p_room > v_step.concurrency THEN
            g.holders := (qflow.live_holders(g.holders, p_now)).o_live;
        END IF;
        v_room := qflow.gate_room(g, v_step, p_room, p_now);
        IF v_room <= 0 THEN
            o.hint := qflow.gate_next(g, v_step, p_now);
            RETURN o;
        END IF;
        IF v_step.rate_n IS NOT NULL THEN
            v_int := v_step.rate_per_ms * 1000.0 / v_step.rate_n;
        END IF;
        o.pass := ROW(v_step.slug, h.limit_key, h.step_idx, h.lane, g.holders, g.tat, v_step.concurrency, v_int)::qflow.gate_pass;
    END IF;
    o.room := v_room;
    RETURN o;
END $$;

-- claim_limited is claim for a flow version with limits (flows.limited):
-- it hands out up to p_qty tasks, no more than each limit allows, highest
-- claim priority first as claim does, and tells the worker when held-back
-- work can next be claimed.
--
-- Tasks no step limit holds are read from lane 0 as claim reads them. The
-- others are found lane by lane: a loose scan of step_tasks_ready finds
-- the head (first claimable task) of up to p_qty + 16 lanes, from a random
-- lane on (so no lane waits behind the others for ever), and the lanes are
-- taken head first until the claim has candidates enough. For each, the
-- claim locks the head task's gate (lock_gate; a gate another claim holds
-- is passed over), counts the places left (the limit less the live
-- holders; the holders are looked at only when the places could run out)
-- and the starts the rate allows now, and takes that many of the gate's
-- claimable tasks as candidates. A limit on the whole flow caps the total
-- first, through its own gate. The best p_qty candidates are claimed in
-- one statement (skipping tasks another session holds), then each gate
-- records its new holders and moves its rate on by the starts it gave.
-- A claim that took nothing more from a gate leaves it untouched.
--
-- After the tasks it returns a row with neither seq nor run when work was
-- held back: attempt is in how many milliseconds to look again (the next
-- start a rate allows, the end of the earliest lease of a full limit's
-- holders, 10 ms when a gate was held by another claim, 0 when lanes were
-- left unread), and priority is 1 when a gate was held by another claim.
-- Held-back tasks are not touched: they cost no attempt.
CREATE FUNCTION qflow.claim_limited(p_flow_id integer, p_worker uuid, p_qty integer, p_lease_ms bigint)
RETURNS SETOF qflow.claimed_task LANGUAGE plpgsql AS $$
DECLARE
    v_now     timestamptz := clock_timestamp();
    v_flow    qflow.flows;
    v_room    integer := p_qty;
    v_hint    timestamptz;        -- when held-back work may next be claimable
    v_busy    boolean := false;   -- a gate was held by another claim
    v_fgate   qflow.gates;
    v_fheld   qflow.task_key[];
    v_live    record;
    v_budget  integer := p_qty + 16;
    v_start   integer := 1 + floor(random() * 2147483646)::integer;
    v_lo      integer;
    v_hi      integer;
    v_heads   qflow.lane_head[] := '{}';
    h         qflow.lane_head;
    v_take    qflow.lane_take;
    v_cands   tid[] := '{}';
    v_passes  qflow.gate_pass[] := '{}';
    p         qflow.gate_pass;
    v_got     qflow.claimed_task[];
    v_runs    uuid[];
    v_steps   smallint[];
    v_tasks   integer[];
    v_new     qflow.task_key[];
    v_lanes   integer[];
    v_lkeys   text[];
    v_n       integer;
BEGIN
    IF p_qty <= 0 THEN
        RETURN;
    END IF;
    SELECT * INTO v_flow FROM qflow.flows WHERE id = p_flow_id;

    -- The flow's own limit caps the whole claim.
    IF v_flow.concurrency IS NOT NULL THEN
        v_fgate := qflow.lock_gate(v_flow.slug, '', '');
        IF v_fgate IS NULL THEN
            v_busy := true;
            v_room := 0;
        ELSE
            v_fheld := v_fgate.holders;
            IF cardinality(v_fheld) + v_room > v_flow.concurrency THEN
                SELECT * INTO v_live FROM qflow.live_holders(v_fheld, v_now);
                v_fheld := v_live.o_live;
                v_room := least(v_room, v_flow.concurrency - cardinality(v_fheld));
                IF v_room <= 0 THEN
                    v_hint := v_live.o_until;
                END IF;
            END IF;
        END IF;
    END IF;

    -- The heads of the lanes with claimable tasks, from a random lane on.
    IF v_room > 0 THEN
        v_lo := v_start;
        v_hi := 2147483647;
        FOR i IN 1..2 LOOP
            v_heads := v_heads || ARRAY(
                WITH RECURSIVE l AS (
                    (SELECT ROW(q.lane, q.step_idx, q.limit_key, q.priority, q.seq)::qflow.lane_head AS h, 1 AS n
                     FROM qflow.step_tasks q
                     WHERE q.flow_id = p_flow_id AND q.lane >= v_lo AND q.lane <= v_hi
                       AND q.finished_at IS NULL AND q.vt <= v_now
                       AND (q.status = 'queued' OR q.attempts < q.max_attempts)
                       AND (q.deadline IS NULL OR q.deadline > v_now)
                     ORDER BY q.lane, q.priority DESC, q.seq LIMIT 1)
                    UNION ALL
                    SELECT nx.h, l.n + 1 FROM l CROSS JOIN LATERAL (
                        SELECT ROW(q.lane, q.step_idx, q.limit_key, q.priority, q.seq)::qflow.lane_head AS h
                        FROM qflow.step_tasks q
                        WHERE q.flow_id = p_flow_id AND q.lane > (l.h).lane AND q.lane <= v_hi
                          AND q.finished_at IS NULL AND q.vt <= v_now
                          AND (q.status = 'queued' OR q.attempts < q.max_attempts)
                          AND (q.deadline IS NULL OR q.deadline > v_now)
                        ORDER BY q.lane, q.priority DESC, q.seq LIMIT 1) nx
                    WHERE l.n < v_budget - cardinality(v_heads)
                )
                SELECT l.h FROM l);
            EXIT WHEN cardinality(v_heads) >= v_budget OR v_start = 1;
            v_lo := 1;
            v_hi := v_start - 1;
        END LOOP;
    END IF;

    -- Lane by lane, head first: each gate's places and starts.
    FOR h IN SELECT * FROM unnest(v_heads) x ORDER BY x.priority DESC, x.seq LOOP
        EXIT WHEN cardinality(v_cands) >= v_room;
        v_take := qflow.lane_take(v_flow, h, v_room, v_now);
        v_hint := least(v_hint, v_take.hint);
        v_busy := v_busy OR v_take.busy;
        CONTINUE WHEN v_take.room <= 0;
        v_cands := v_cands || ARRAY(
            SELECT q.ctid FROM qflow.step_tasks q
            WHERE q.flow_id = p_flow_id AND q.lane = h.lane AND q.step_idx = h.step_idx AND q.limit_key = h.limit_key
              AND q.finished_at IS NULL AND q.vt <= v_now
              AND (q.status = 'queued' OR q.attempts < q.max_attempts)
              AND (q.deadline IS NULL OR q.deadline > v_now)
            ORDER BY q.priority DESC, q.seq LIMIT v_take.room);
        IF (v_take.pass).step_slug IS NOT NULL THEN
            v_passes := v_passes || v_take.pass;
        END IF;
    END LOOP;

    IF v_room > 0 THEN
        -- Tasks no step limit holds.
        v_cands := v_cands || ARRAY(
            SELECT q.ctid FROM qflow.step_tasks q
            WHERE q.flow_id = p_flow_id AND q.lane = 0 AND q.finished_at IS NULL AND q.vt <= v_now
              AND (q.status = 'queued' OR q.attempts < q.max_attempts)
              AND (q.deadline IS NULL OR q.deadline > v_now)
            ORDER BY q.priority DESC, q.seq
            LIMIT v_room);
    END IF;

    IF cardinality(v_cands) > 0 THEN
        WITH c AS (
            UPDATE qflow.step_tasks t
            SET status = 'started', attempts = t.attempts + 1, worker_id = p_worker, started_at = v_now,
                vt = v_now + make_interval(secs => p_lease_ms / 1000.0)
            WHERE t.ctid = ANY (ARRAY(
                SELECT l.ctid FROM qflow.step_tasks l
                WHERE l.ctid = ANY (v_cands) AND l.flow_id = p_flow_id
                  AND l.finished_at IS NULL AND l.vt <= v_now
                  AND (l.status = 'queued' OR l.attempts < l.max_attempts)
                  AND (l.deadline IS NULL OR l.deadline > v_now)
                ORDER BY l.priority DESC, l.seq
                LIMIT v_room
                FOR UPDATE SKIP LOCKED))
            RETURNING t.seq, t.run_id, t.step_idx, t.task_index, t.attempts, t.input, t.priority, t.flow_id, t.events,
                      t.trace_context, t.deadline, t.sequential, t.lane, t.limit_key
        )
        SELECT array_agg(ROW(c.seq, c.run_id, c.step_idx, c.task_index, c.attempts, c.input, c.priority, c.flow_id,
                             c.events, c.trace_context, c.deadline, c.sequential)::qflow.claimed_task
                         ORDER BY c.priority DESC, c.seq),
               array_agg(c.run_id), array_agg(c.step_idx), array_agg(c.task_index), array_agg(c.lane),
               array_agg(c.limit_key)
        INTO v_got, v_runs, v_steps, v_tasks, v_lanes, v_lkeys FROM c;
    END IF;

    -- The gates record what went through them.
    FOREACH p IN ARRAY v_passes LOOP
        SELECT count(*)::integer,
               coalesce(array_agg(ROW(x.r, x.s, x.t)::qflow.task_key)
                        FILTER (WHERE NOT (ROW(x.r, x.s, x.t)::qflow.task_key = ANY (p.holders))), '{}')
        INTO v_n, v_new
        FROM unnest(v_runs, v_steps, v_tasks, v_lanes, v_lkeys) AS x(r, s, t, lane, lk)
        WHERE x.lane = p.lane AND x.s = p.step_idx AND x.lk = p.key;
        CONTINUE WHEN v_n = 0;
        UPDATE qflow.gates SET
            holders = CASE WHEN p.concurrency IS NOT NULL THEN p.holders || v_new ELSE holders END,
            tat = CASE WHEN p.interval_us IS NULL THEN tat
                       ELSE greatest(p.tat, v_now) + make_interval(secs => ceil(v_n * p.interval_us) / 1000000) END
        WHERE flow_slug = v_flow.slug AND step_slug = p.step_slug AND key = p.key;
    END LOOP;
    IF v_fgate IS NOT NULL AND v_got IS NOT NULL THEN
        UPDATE qflow.gates SET holders = v_fheld || ARRAY(
            SELECT ROW(c.run_id, c.step_idx, c.task_index)::qflow.task_key FROM unnest(v_got) c
            WHERE NOT (ROW(c.run_id, c.step_idx, c.task_index)::qflow.task_key = ANY (v_fheld)))
        WHERE flow_slug = v_flow.slug AND step_slug = '' AND key = '';
    END IF;

    IF v_got IS NOT NULL THEN
        IF qflow.events_on() THEN
            PERFORM qflow.publish_started(v_got);
        END IF;
        RETURN QUERY SELECT * FROM unnest(v_got);
    END IF;

    -- When to look again.
    IF v_busy THEN
        v_hint := least(v_hint, v_now + interval '10 milliseconds');
    END IF;
    IF cardinality(v_heads) >= v_budget AND coalesce(cardinality(v_got), 0) < p_qty THEN
        v_hint := v_now;
    END IF;
    IF v_hint IS NOT NULL THEN
        RETURN QUERY SELECT NULL::bigint, NULL::uuid, NULL::smallint, NULL::integer,
                            greatest(ceil(extract(epoch FROM v_hint - clock_timestamp()) * 1000), 0)::integer,
                            NULL::jsonb, CASE WHEN v_busy THEN 1 ELSE 0 END, NULL::integer, NULL::boolean, NULL::jsonb,
                            NULL::timestamptz, NULL::boolean;
    END IF;
END $$;

-- finish_tasks records finished tasks of runs the caller has locked:
-- completions (tasks still started become completed; a late or duplicate
-- completion changes nothing), steps with no tasks left complete (a single
-- step's output is its task's output, a map step's its tasks' outputs in
-- index order), the completion propagates to dependents and runs. A NULL
-- output records a skip: the step's condition was false (skip_tasks).
-- Failures go through fail_tasks (an optional step's last failure skips
-- it). p_direct are tasks of single steps recorded completed already
-- (record_inline) that follow these completions, with their events
-- (p_direct_events): they are counted in the statistics, their events
-- published after the completions' own, and their steps propagated with
-- the completed ones. p_now: the time to record (NULL: now). Returns the tasks created and their
-- queues, and the runs completed with their outputs (see advance).
CREATE FUNCTION qflow.finish_tasks(p_worker uuid,
                                   p_runs uuid[], p_steps smallint[], p_tasks integer[], p_outputs jsonb[],
                                   p_frun uuid[], p_fstep smallint[], p_ftask integer[], p_errors text[],
                                   p_permanent boolean[], p_snooze bigint[],
                                   p_direct qflow.done_task[], p_direct_events text[], p_now timestamptz,
                                   OUT o_tasks integer, OUT o_queues text[], OUT o_fin uuid[], OUT o_out jsonb[],
                                   OUT o_freed integer[])
LANGUAGE plpgsql AS $$
DECLARE
    v_now     timestamptz := coalesce(p_now, clock_timestamp());
    v_events  boolean := qflow.events_on();
    v_done    qflow.done_task[];
    v_evs     text[];
    v_cr      uuid[];
    v_cs      smallint[];
    v_cf      integer[];
    v_sequential uuid[];
    v_adv     record;
    v_skip    record;
    v_freed   integer[];
    v_ts      text;
    v_druns   uuid[] := '{}';
    v_dts     text;
BEGIN
    o_tasks := 0;
    IF cardinality(p_runs) > 0 THEN
        -- Skips first: the skipped tasks are no longer started, so the
        -- completions below leave them alone.
        IF array_position(p_outputs, NULL) IS NOT NULL THEN
            v_skip := qflow.skip_tasks(p_runs, p_steps, p_tasks, p_outputs);
            o_tasks := v_skip.o_tasks;
            o_queues := v_skip.o_queues;
            o_fin := v_skip.o_finished;
            o_out := v_skip.o_outputs;
        END IF;

        WITH u AS (
            UPDATE qflow.step_tasks t
            SET status = 'completed', output = coalesce(k.output, 'null'::jsonb), error = NULL,
                finished_at = v_now, vt = v_now
            FROM unnest(p_runs, p_steps, p_tasks, p_outputs) AS k(run_id, step_idx, task_index, output)
            WHERE t.run_id = k.run_id AND t.step_idx = k.step_idx AND t.task_index = k.task_index
              AND t.status = 'started'
            RETURNING t.run_id, t.step_idx, t.task_index, t.flow_id, t.attempts, t.started_at, t.output, t.events,
                      t.sequential, t.limit_key IS NOT NULL AS limited
        )
        SELECT array_agg(ROW(u.run_id, u.step_idx, u.task_index, u.flow_id, u.attempts, u.started_at, u.output,
                             u.events, u.sequential)::qflow.done_task ORDER BY u.run_id, u.step_idx, u.task_index),
               array_agg(DISTINCT u.flow_id) FILTER (WHERE u.limited)
        INTO v_done, v_freed FROM u;
    END IF;

    IF v_done IS NOT NULL OR p_direct IS NOT NULL THEN
        -- Step statistics (migrations/0004_stats.sql): one append, no shared row.
        PERFORM qflow.record_completions(coalesce(v_done, '{}') || coalesce(p_direct, '{}'), v_now);
        -- Count down each step's tasks; steps with none left complete.
        v_ts := qflow.ev_ts(clock_timestamp());
        -- The runs of record_inline's results: their completions' events
        -- carry p_now (before record_inline read the clock for theirs).
        IF p_direct IS NOT NULL THEN
            v_druns := ARRAY(SELECT d.run_id FROM unnest(p_direct) d);
            v_dts := qflow.ev_ts(v_now);
        END IF;
        WITH c AS (
            SELECT d.run_id, d.step_idx, d.flow_id, count(*)::integer AS n, (array_agg(d.output))[1] AS out
            FROM unnest(v_done) d GROUP BY 1, 2, 3
        ), u AS (
            UPDATE qflow.step_states ss
            SET remaining_tasks = ss.remaining_tasks - c.n,
                status = CASE WHEN ss.remaining_tasks = c.n THEN 'completed' ELSE ss.status END,
                finished_at = CASE WHEN ss.remaining_tasks = c.n THEN v_now END,
                error = CASE WHEN ss.remaining_tasks = c.n THEN NULL ELSE ss.error END,
                output = CASE WHEN ss.remaining_tasks <> c.n THEN NULL
                              WHEN st.kind = 'single' THEN c.out
                              ELSE (SELECT coalesce(jsonb_agg(t.output ORDER BY t.task_index), '[]'::jsonb)
                                    FROM qflow.step_tasks t
                                    WHERE t.run_id = ss.run_id AND t.step_idx = ss.step_idx) END
            FROM c, qflow.steps st
            WHERE ss.run_id = c.run_id AND ss.step_idx = c.step_idx AND ss.status = 'started'
              AND st.flow_id = c.flow_id AND st.idx = c.step_idx
            RETURNING ss.run_id, ss.step_idx, ss.flow_id, ss.status, ss.started_at, st.slug
        ), done_steps AS (
            SELECT * FROM u WHERE u.status = 'completed'
        ), one AS MATERIALIZED (
            -- The slugs of the first task's flow and step, read once for
            -- the events of every task of that step (see publish_started).
            SELECT f.id AS flow_id, st.idx AS step_idx, f.slug AS flow_slug, st.slug AS step_slug
            FROM qflow.flows f JOIN qflow.steps st ON st.flow_id = f.id
            WHERE v_events AND f.id = (v_done[1]).flow_id AND st.idx = (v_done[1]).step_idx
        ), evs AS (
            -- Per run: its tasks' events, then its steps'.
            SELECT array_agg(x.e ORDER BY x.run_id, x.kind, x.step_idx, x.task_index) AS e FROM (
                SELECT qflow.ev('task_completed', d.run_id,
                                CASE WHEN d.flow_id = one.flow_id THEN one.flow_slug
                                     ELSE (SELECT f.slug FROM qflow.flows f WHERE f.id = d.flow_id) END,
                                CASE WHEN d.flow_id = one.flow_id AND d.step_idx = one.step_idx THEN one.step_slug
                                     ELSE (SELECT st.slug FROM qflow.steps st
                                           WHERE st.flow_id = d.flow_id AND st.idx = d.step_idx) END,
                                d.task_index, 'completed',
                                d.attempts, (extract(epoch FROM v_now - d.started_at) * 1000)::bigint, NULL, NULL,
                                p_ts => CASE WHEN d.run_id = ANY (v_druns) THEN v_dts ELSE v_ts END) AS e,
                       d.run_id, 0 AS kind, d.step_idx, d.task_index
                FROM unnest(v_done) d, one
                WHERE d.events AND v_events
                UNION ALL
                SELECT qflow.ev('step_completed', s.run_id,
                                CASE WHEN s.flow_id = one.flow_id THEN one.flow_slug
                                     ELSE (SELECT f.slug FROM qflow.flows f WHERE f.id = s.flow_id) END,
                                s.slug, NULL, 'completed', NULL,
                                (extract(epoch FROM v_now - s.started_at) * 1000)::bigint, NULL, NULL,
                                p_ts => CASE WHEN s.run_id = ANY (v_druns) THEN v_dts ELSE v_ts END),
                       s.run_id, 1, s.step_idx, 0
                FROM done_steps s, one
                WHERE v_events AND (SELECT d.events FROM unnest(v_done) d WHERE d.run_id = s.run_id LIMIT 1)
            ) x
        )
        SELECT (SELECT array_agg(s.run_id ORDER BY s.run_id, s.step_idx) FROM done_steps s),
               (SELECT array_agg(s.step_idx ORDER BY s.run_id, s.step_idx) FROM done_steps s),
               (SELECT array_agg(s.flow_id ORDER BY s.run_id, s.step_idx) FROM done_steps s),
               (SELECT evs.e FROM evs)
        INTO v_cr, v_cs, v_cf, v_evs;
        PERFORM qflow.publish(v_evs || p_direct_events);
        IF p_direct IS NOT NULL THEN
            v_cr := v_cr || ARRAY(SELECT d.run_id FROM unnest(p_direct) d);
            v_cs := v_cs || ARRAY(SELECT d.step_idx FROM unnest(p_direct) d);
            v_cf := v_cf || ARRAY(SELECT d.flow_id FROM unnest(p_direct) d);
        END IF;

        IF v_cr IS NOT NULL THEN
            SELECT * INTO v_adv FROM qflow.advance(v_cr, v_cs, v_cf);
            o_tasks := o_tasks + v_adv.o_tasks;
            o_queues := o_queues || v_adv.o_queues;
            o_fin := o_fin || v_adv.o_finished;
            o_out := o_out || v_adv.o_outputs;
        END IF;
        -- Sequential runs: the next task takes its turn.
        SELECT array_agg(DISTINCT d.run_id) INTO v_sequential FROM unnest(v_done) d WHERE d.sequential;
        IF v_sequential IS NOT NULL THEN
            PERFORM qflow.next_turn(v_sequential);
        END IF;
    END IF;

    IF cardinality(p_frun) > 0 THEN
        v_freed := v_freed || ARRAY(
            SELECT DISTINCT t.flow_id FROM unnest(p_frun, p_fstep, p_ftask) AS x(r, s, t)
            JOIN qflow.step_tasks t ON t.run_id = x.r AND t.step_idx = x.s AND t.task_index = x.t
            WHERE t.status = 'started' AND t.worker_id = p_worker AND t.limit_key IS NOT NULL);
        -- A retried or snoozed task of a sequential run keeps its turn; a
        -- failed run needs none.
        PERFORM qflow.fail_tasks(p_worker,
            ARRAY(SELECT (r, s, t)::qflow.task_key FROM unnest(p_frun, p_fstep, p_ftask) AS x(r, s, t)),
            p_errors, p_permanent, p_snooze);
    END IF;
    o_freed := v_freed;
END $$;

-- record_inline records, without a task ever queued, the results of tasks
-- a worker ran inline (see settle) that succeeded, when they form one chain
-- after the one completion of their run in this settle: the first inline
-- step's sole dependency is a single step whose task 0 is that completion
-- (not a skip; still started: locked here, so that finish_tasks completes
-- it next), each next one's is the previous inline step, and every step of
-- the chain but the last has no other dependent. Runs with more than one
-- completion, or a failure, in this settle, and results given twice for a
-- step, are left to the general path, as is any step a chain may not run
-- (a map step, a start delay, a limit, a signal to wait for) and any run
-- not going, past its deadline or sequential. So the events come in the
-- order the general path gives them. For each, in one statement, the
-- step's state and its task are written completed (attempts 1, started
-- when the handler started, finished at p_now plus a microsecond per link,
-- after the dependency finish_tasks records at p_now), with the input the
-- task would have had, and the events a claim and a completion publish
-- (step_started, task_started, task_completed, step_completed) are
-- returned for finish_tasks to publish after the completions' own, with
-- the tasks (for the statistics and advance) and the ordinals of the
-- inline results placed. It writes the same rows and events as the
-- general path (start_steps, a claim by key and finish_tasks), without
-- their statements per step.
CREATE FUNCTION qflow.record_inline(p_worker uuid, p_now timestamptz,
                                    p_runs uuid[], p_steps smallint[], p_tasks integer[], p_outputs jsonb[],
                                    p_frun uuid[],
                                    p_irun uuid[], p_istep smallint[], p_itook integer[], p_ioutputs jsonb[],
                                    p_ierrors text[],
                                    OUT o_done qflow.done_task[], OUT o_placed integer[], OUT o_events text[])
LANGUAGE plpgsql AS $$
DECLARE
    v_events boolean := qflow.events_on();
    v_ts     text := qflow.ev_ts(clock_timestamp());
BEGIN
    -- One statement: the completions inline results may follow (locked),
    -- the inline results that may be recorded (each after its
    -- dependency), their rows, and what the caller needs of them.
    -- (Every table is reached by key from the small sets of keys: LATERAL
    -- probes; see the top of this file.)
    WITH RECURSIVE one AS ( -- runs with one completion in this settle, and no failure
        SELECT c.run_id, (array_agg(c.step_idx))[1] AS step_idx, (array_agg(c.task_index))[1] AS task_index,
               (array_agg(c.output))[1] AS output
        FROM unnest(p_runs, p_steps, p_tasks, p_outputs) AS c(run_id, step_idx, task_index, output)
        GROUP BY c.run_id HAVING count(*) = 1
    ), b AS (
        SELECT t.run_id, t.step_idx, c.output
        FROM qflow.step_tasks t, one c
        WHERE t.ctid = (SELECT q.ctid FROM qflow.step_tasks q
                        WHERE q.run_id = c.run_id AND q.step_idx = c.step_idx AND q.task_index = 0 LIMIT 1)
          AND c.task_index = 0 AND c.output IS NOT NULL AND c.run_id = ANY (p_irun) AND t.status = 'started'
          AND NOT c.run_id = ANY (coalesce(p_frun, '{}'))
        FOR UPDATE OF t
    ), k AS ( -- inline successes, each given once
        SELECT min(i) AS o, p_irun[i] AS run_id, p_istep[i] AS step_idx
        FROM generate_subscripts(p_irun, 1) AS i
        GROUP BY 2, 3
        HAVING count(*) = 1 AND bool_and(p_itook[i] >= 0 AND p_ierrors[i] IS NULL AND p_ioutputs[i] IS NOT NULL)
    ), e AS (
        SELECT k.o, k.run_id, k.step_idx, st.deps[1] AS dep
        FROM k
        CROSS JOIN LATERAL (SELECT r1.* FROM qflow.runs r1 WHERE r1.id = k.run_id LIMIT 1) ru
        CROSS JOIN LATERAL (SELECT f1.* FROM qflow.flows f1 WHERE f1.id = ru.flow_id LIMIT 1) f
        CROSS JOIN LATERAL (SELECT s1.* FROM qflow.steps s1 WHERE s1.flow_id = ru.flow_id AND s1.idx = k.step_idx LIMIT 1) st
        CROSS JOIN LATERAL (SELECT s2.* FROM qflow.steps s2 WHERE s2.flow_id = ru.flow_id AND s2.idx = st.deps[1] LIMIT 1) ds
        WHERE ru.status = 'started' AND NOT ru.sequential AND (ru.deadline IS NULL OR ru.deadline > p_now)
          AND f.concurrency IS NULL
          AND st.kind = 'single' AND st.dep_count = 1 AND st.start_delay_ms = 0 AND NOT st.gated
          AND st.wait_signal IS NULL AND ds.kind = 'single' AND cardinality(ds.dependents) = 1
          AND NOT EXISTS (SELECT 1 FROM qflow.step_states s WHERE s.run_id = k.run_id AND s.step_idx = k.step_idx)
    ), bm AS MATERIALIZED ( -- b as arrays, for ok's first term to look up in
        SELECT array_agg(b.run_id) AS runs, array_agg(b.step_idx) AS steps, array_agg(b.output) AS outputs FROM b
    ), ok AS (
        -- Each inline result after its dependency's completion, found by
        -- array_position in bm: a join of e with b is planned for the
        -- ten rows PostgreSQL assumes of a parameter's unnest, as a nested
        -- loop over both CTEs, which took 51 of the statement's 82 ms for a
        -- settle of 573 inline results. (b holds one row per run.)
        SELECT e.o, e.run_id, e.step_idx, bm.outputs[p.i] AS dep_out, 1 AS depth
        FROM e CROSS JOIN bm CROSS JOIN LATERAL (SELECT array_position(bm.runs, e.run_id) AS i) p
        WHERE bm.steps[p.i] = e.dep
        UNION ALL
        SELECT e.o, e.run_id, e.step_idx, p_ioutputs[ok.o], ok.depth + 1
        FROM ok JOIN e ON e.run_id = ok.run_id AND e.dep = ok.step_idx
    ), x AS (
        SELECT ok.o, ok.depth, ru.id AS run_id, st.idx AS step_idx, ru.flow_id, ru.flow_slug, st.slug,
               p_ioutputs[ok.o] AS output,
               p_now + make_interval(secs => ok.depth / 1000000.0) AS finished_at,
               p_now + make_interval(secs => ok.depth / 1000000.0 - p_itook[ok.o] / 1000.0) AS started_at,
               (CASE WHEN st.takes_input THEN jsonb_build_object('run', ru.input) ELSE '{}'::jsonb END)
                   || jsonb_build_object(st.dep_slugs[1], ok.dep_out) AS input,
               ru.events AND v_events AS events,
               qflow.task_priority(ru.priority, f.prioritized, st.priority) AS priority,
               coalesce(ru.max_attempts, st.max_attempts) AS max_attempts, ru.deadline, ru.trace_context
        FROM ok
        CROSS JOIN LATERAL (SELECT r1.* FROM qflow.runs r1 WHERE r1.id = ok.run_id LIMIT 1) ru
        CROSS JOIN LATERAL (SELECT f1.* FROM qflow.flows f1 WHERE f1.id = ru.flow_id LIMIT 1) f
        CROSS JOIN LATERAL (SELECT s1.* FROM qflow.steps s1 WHERE s1.flow_id = ru.flow_id AND s1.idx = ok.step_idx LIMIT 1) st
    ), new_states AS ( -- (not named t: FOR UPDATE OF t above would name it)
        INSERT INTO qflow.step_states (run_id, step_idx, flow_id, status, task_count, remaining_tasks, output,
                                       started_at, finished_at)
        SELECT x.run_id, x.step_idx, x.flow_id, 'completed', 1, 0, x.output, x.started_at, x.finished_at FROM x
    ), new_tasks AS (
        INSERT INTO qflow.step_tasks (run_id, step_idx, task_index, flow_id, priority, max_attempts, vt, deadline,
                                      events, sequential, input, trace_context, lane, status, attempts, output,
                                      worker_id, started_at, finished_at)
        SELECT x.run_id, x.step_idx, 0, x.flow_id, x.priority, x.max_attempts, x.finished_at, x.deadline, x.events,
               false, x.input, x.trace_context, 0, 'completed', 1, x.output, p_worker, x.started_at, x.finished_at
        FROM x ORDER BY x.run_id, x.depth
    )
    SELECT array_agg(ROW(x.run_id, x.step_idx, 0, x.flow_id, 1, x.started_at, x.output, x.events, false)::qflow.done_task
                     ORDER BY x.run_id, x.depth),
           array_agg(x.o ORDER BY x.o),
           -- (An array, not a LATERAL VALUES list: PostgreSQL prepares a
           -- VALUES list's expressions again for every outer row, which
           -- made these events cost twice as much; one qflow.ev call for
           -- the four kinds: see start_roots.)
           (SELECT array_agg(qflow.ev(v.type, y.run_id, y.flow_slug, y.slug,
                                      CASE WHEN v.type IN ('task_started', 'task_completed') THEN 0 END,
                                      CASE WHEN v.type IN ('step_started', 'task_started') THEN 'started'
                                           ELSE 'completed' END,
                                      CASE WHEN v.type IN ('task_started', 'task_completed') THEN 1 END,
                                      CASE WHEN v.type IN ('task_completed', 'step_completed')
                                           THEN (extract(epoch FROM y.finished_at - y.started_at) * 1000)::bigint END,
                                      NULL, NULL, p_ts => v_ts)
                             ORDER BY y.run_id, y.depth, v.k) FROM x y
            CROSS JOIN LATERAL unnest(ARRAY['step_started', 'task_started', 'task_completed', 'step_completed'])
                WITH ORDINALITY AS v(type, k)
            WHERE y.events)
    INTO o_done, o_placed, o_events FROM x;
END $$;

-- finish_chains is settle's fast path for runs it finishes whole, the
-- common end of a chain: a run with one completion in this settle (task 0
-- of a single step, still started, holding no limit's place, the run going,
-- within its deadline and not sequential) whose inline results, every one a
-- success given once, continue it as a chain under record_inline's
-- conditions to the flow's only leaf, with no other step left. For those
-- runs, in one statement, it writes what record_inline, finish_tasks and
-- advance would write (the completion, its step's state, each inline
-- step's state and task, the run completed with its leaf's output), then
-- appends the statistics and publishes the same events, in the same order
-- for each run: task_completed and step_completed of the completion, the
-- four events of each inline step, workflow_completed. It returns the runs
-- it finished with their outputs (NULL when over 8 kB), and how many inline
-- results it recorded; settle leaves every other result to the general
-- path. The caller has locked the runs and passes no failures. Each write
-- is joined to the completion's update, so a run whose task is no longer
-- started by the time it is updated is left to the general path whole.
CREATE FUNCTION qflow.finish_chains(p_worker uuid, p_now timestamptz,
                                    p_runs uuid[], p_steps smallint[], p_tasks integer[], p_outputs jsonb[],
                                    p_irun uuid[], p_istep smallint[], p_itook integer[], p_ioutputs jsonb[],
                                    p_ierrors text[],
                                    OUT o_runs uuid[], OUT o_out jsonb[], OUT o_inline integer)
LANGUAGE plpgsql AS $$
DECLARE
    v_events boolean := qflow.events_on();
    v_tsx    text := ',"ts":"' || qflow.ev_ts(clock_timestamp()) || '"}'; -- every event's end
    v_done   qflow.done_task[];
    v_evs    text[];
BEGIN
    WITH RECURSIVE one AS ( -- runs with one completion in this settle
        SELECT c.run_id, (array_agg(c.step_idx))[1] AS step_idx, (array_agg(c.task_index))[1] AS task_index,
               (array_agg(c.output))[1] AS output
        FROM unnest(p_runs, p_steps, p_tasks, p_outputs) AS c(run_id, step_idx, task_index, output)
        GROUP BY c.run_id HAVING count(*) = 1
    ), bad AS MATERIALIZED ( -- runs with an inline result that is not a success given once
        SELECT coalesce(array_agg(DISTINCT b.run_id), '{}') AS runs FROM (
            SELECT p_irun[i] AS run_id FROM generate_subscripts(p_irun, 1) AS i
            GROUP BY p_irun[i], p_istep[i]
            HAVING count(*) > 1 OR NOT bool_and(p_itook[i] >= 0 AND p_ierrors[i] IS NULL AND p_ioutputs[i] IS NOT NULL)) b
    ), k AS ( -- the other inline results, with how many the run has
        SELECT min(i) AS o, p_irun[i] AS run_id, p_istep[i] AS step_idx, count(*) OVER (PARTITION BY p_irun[i]) AS kn
        FROM generate_subscripts(p_irun, 1) AS i
        GROUP BY 2, 3
    ), r AS ( -- the completions that may begin a run's end, with their run, flow, step, task and state
        SELECT one.run_id, one.step_idx, one.output, ru.flow_id, ru.flow_slug, ru.input, ru.events AND v_events AS events,
               ru.priority, f.prioritized,
               ru.max_attempts, ru.deadline, ru.trace_context, ru.remaining_steps, ru.started_at AS run_started,
               st.slug, st.is_leaf, ss.started_at AS state_started, ru.r_ctid, t.t_ctid, ss.s_ctid
        FROM one CROSS JOIN bad
        CROSS JOIN LATERAL (SELECT r1.ctid AS r_ctid, r1.* FROM qflow.runs r1 WHERE r1.id = one.run_id LIMIT 1) ru
        CROSS JOIN LATERAL (SELECT f1.* FROM qflow.flows f1 WHERE f1.id = ru.flow_id LIMIT 1) f
        CROSS JOIN LATERAL (SELECT s1.* FROM qflow.steps s1 WHERE s1.flow_id = ru.flow_id AND s1.idx = one.step_idx LIMIT 1) st
        CROSS JOIN LATERAL (SELECT q.ctid AS t_ctid, q.status, q.limit_key FROM qflow.step_tasks q
                            WHERE q.run_id = one.run_id AND q.step_idx = one.step_idx AND q.task_index = 0 LIMIT 1) t
        CROSS JOIN LATERAL (SELECT s2.ctid AS s_ctid, s2.status, s2.remaining_tasks, s2.started_at FROM qflow.step_states s2
                            WHERE s2.run_id = one.run_id AND s2.step_idx = one.step_idx LIMIT 1) ss
        WHERE one.task_index = 0 AND one.output IS NOT NULL AND NOT one.run_id = ANY (bad.runs)
          AND ru.status = 'started' AND NOT ru.sequential AND (ru.deadline IS NULL OR ru.deadline > p_now)
          AND f.concurrency IS NULL AND st.kind = 'single' AND NOT st.gated
          AND t.status = 'started' AND t.limit_key IS NULL AND ss.status = 'started' AND ss.remaining_tasks = 1
          AND (SELECT count(*) FROM qflow.steps s3 WHERE s3.flow_id = ru.flow_id AND s3.is_leaf) = 1
    ), e AS ( -- inline steps a chain may run (record_inline's conditions)
        SELECT k.o, k.run_id, k.step_idx, k.kn, st.deps[1] AS dep, st.slug, st.is_leaf, st.takes_input,
               st.dep_slugs[1] AS dep_slug, st.priority AS step_priority, st.max_attempts AS step_max_attempts
        FROM k
        CROSS JOIN LATERAL (SELECT r1.flow_id FROM qflow.runs r1 WHERE r1.id = k.run_id LIMIT 1) ru
        CROSS JOIN LATERAL (SELECT s1.* FROM qflow.steps s1 WHERE s1.flow_id = ru.flow_id AND s1.idx = k.step_idx LIMIT 1) st
        CROSS JOIN LATERAL (SELECT s2.* FROM qflow.steps s2 WHERE s2.flow_id = ru.flow_id AND s2.idx = st.deps[1] LIMIT 1) ds
        WHERE st.kind = 'single' AND st.dep_count = 1 AND st.start_delay_ms = 0 AND NOT st.gated
          AND st.wait_signal IS NULL AND ds.kind = 'single' AND cardinality(ds.dependents) = 1
          AND NOT EXISTS (SELECT 1 FROM qflow.step_states s WHERE s.run_id = k.run_id AND s.step_idx = k.step_idx)
    ), ch AS ( -- each run's chain: depth 0 the completion, then its inline steps in order
        SELECT r.run_id, r.step_idx, NULL::integer AS o, r.output, NULL::jsonb AS dep_out, 0 AS depth, r.slug, r.is_leaf,
               NULL::bigint AS kn, false AS takes_input, NULL::text AS dep_slug, 0 AS step_priority,
               1 AS step_max_attempts, r.flow_id, r.flow_slug, r.input, r.events, r.priority, r.prioritized,
               r.max_attempts, r.deadline, r.trace_context, r.remaining_steps, r.run_started, r.state_started,
               r.r_ctid, r.t_ctid, r.s_ctid
        FROM r
        UNION ALL
        SELECT e.run_id, e.step_idx, e.o, p_ioutputs[e.o], ch.output, ch.depth + 1, e.slug, e.is_leaf,
               e.kn, e.takes_input, e.dep_slug, e.step_priority, e.step_max_attempts, ch.flow_id, ch.flow_slug,
               ch.input, ch.events, ch.priority, ch.prioritized, ch.max_attempts, ch.deadline, ch.trace_context,
               ch.remaining_steps, ch.run_started, ch.state_started, ch.r_ctid, ch.t_ctid, ch.s_ctid
        FROM ch JOIN e ON e.run_id = ch.run_id AND e.dep = ch.step_idx
    ), x AS ( -- the chains with their runs' counts
        SELECT ch.*, count(*) OVER w AS n, max(ch.kn) OVER w AS given, bool_or(ch.is_leaf) OVER w AS to_leaf
        FROM ch WINDOW w AS (PARTITION BY ch.run_id)
    ), fin AS MATERIALIZED ( -- the runs finished whole, a row per step with its run's columns
        -- (The flow's one leaf ends the chain if it is in it: a step before
        -- another in a chain has one dependent, the next.)
        SELECT x.*,
               p_now + make_interval(secs => x.depth / 1000000.0) AS finished_at,
               p_now + make_interval(secs => x.depth / 1000000.0 - coalesce(p_itook[x.o], 0) / 1000.0) AS started_at
        FROM x
        WHERE x.n - 1 = coalesce(x.given, 0) AND x.remaining_steps = x.n AND x.to_leaf
    ), ut AS ( -- the completions, by TID (the rows read above); every other write follows them
        UPDATE qflow.step_tasks t
        SET status = 'completed', output = fin.output, error = NULL, finished_at = p_now, vt = p_now
        FROM fin
        WHERE t.ctid = ANY (ARRAY(SELECT f2.t_ctid FROM fin f2 WHERE f2.depth = 0))
          AND fin.depth = 0 AND t.ctid = fin.t_ctid AND t.status = 'started' AND t.limit_key IS NULL
        RETURNING t.run_id, t.attempts, t.started_at, t.events
    ), y AS MATERIALIZED ( -- fin's rows of the runs whose completion was recorded
        -- (a_events: the completion's events as finish_tasks decides them,
        -- by its task's flag, set by the session that created it.)
        -- (evp, took: what its events share, see below.)
        SELECT fin.*, ut.attempts AS a_attempts, ut.started_at AS a_started, ut.events AND v_events AS a_events,
               CASE WHEN fin.events OR (ut.events AND v_events) THEN
                   '","run_id":"' || fin.run_id || '","flow":"' || fin.flow_slug || '","step":"' || fin.slug || '"'
               END AS evp,
               CASE WHEN fin.events AND fin.depth > 0 THEN
                   (extract(epoch FROM fin.finished_at - fin.started_at) * 1000)::bigint
               END AS took
        FROM fin JOIN ut ON ut.run_id = fin.run_id
    ), us AS ( -- the completion's step
        UPDATE qflow.step_states ss
        SET remaining_tasks = 0, status = 'completed', finished_at = p_now, error = NULL, output = y.output
        FROM y
        WHERE ss.ctid = ANY (ARRAY(SELECT y2.s_ctid FROM y y2 WHERE y2.depth = 0))
          AND y.depth = 0 AND ss.ctid = y.s_ctid AND ss.status = 'started'
    ), new_states AS (
        INSERT INTO qflow.step_states (run_id, step_idx, flow_id, status, task_count, remaining_tasks, output,
                                       started_at, finished_at)
        SELECT y.run_id, y.step_idx, y.flow_id, 'completed', 1, 0, y.output, y.started_at, y.finished_at
        FROM y WHERE y.depth > 0
    ), new_tasks AS (
        INSERT INTO qflow.step_tasks (run_id, step_idx, task_index, flow_id, priority, max_attempts, vt, deadline,
                                      events, sequential, input, trace_context, lane, status, attempts, output,
                                      worker_id, started_at, finished_at)
        SELECT y.run_id, y.step_idx, 0, y.flow_id, qflow.task_priority(y.priority, y.prioritized, y.step_priority),
               coalesce(y.max_attempts, y.step_max_attempts), y.finished_at, y.deadline, y.events, false,
               (CASE WHEN y.takes_input THEN jsonb_build_object('run', y.input) ELSE '{}'::jsonb END)
                   || jsonb_build_object(y.dep_slug, y.dep_out),
               y.trace_context, 0, 'completed', 1, y.output, p_worker, y.started_at, y.finished_at
        FROM y WHERE y.depth > 0 ORDER BY y.run_id, y.depth
    ), ur AS ( -- the runs, by TID, with their leaf's output
        UPDATE qflow.runs ru
        SET remaining_steps = 0, status = 'completed', finished_at = now(), output = jsonb_build_object(y.slug, y.output)
        FROM y
        WHERE ru.ctid = ANY (ARRAY(SELECT y2.r_ctid FROM y y2 WHERE y2.depth = y2.n - 1))
          AND y.depth = y.n - 1 AND ru.ctid = y.r_ctid AND ru.status = 'started'
        RETURNING ru.id, ru.output
    )
    SELECT (SELECT array_agg(ur.id ORDER BY ur.id) FROM ur),
           (SELECT array_agg(CASE WHEN pg_column_size(ur.output) <= 8192 THEN ur.output END ORDER BY ur.id) FROM ur),
           (SELECT count(*) FILTER (WHERE y.depth > 0) FROM y),
           (SELECT array_agg(ROW(y.run_id, y.step_idx, 0, y.flow_id, CASE WHEN y.depth = 0 THEN y.a_attempts ELSE 1 END,
                                 CASE WHEN y.depth = 0 THEN y.a_started ELSE y.started_at END, y.output, y.events,
                                 false)::qflow.done_task ORDER BY y.run_id, y.depth) FROM y),
           -- Per run, in the general path's order: one text for each row
           -- of y, its events joined (publish keeps an element whole, and a
           -- notification's array reads the same). Written out rather than
           -- through qflow.ev, field for field as it writes them, with the
           -- run, flow and step written once a row (evp, built in y):
           -- building W1b's 22,000 events of this kind took 30 ms instead
           -- of 50, measured alone, and publish has a quarter as many
           -- elements to join.
           (SELECT array_agg(z.t ORDER BY z.run_id, z.depth) FROM (
                SELECT y.run_id, y.depth, concat_ws(',',
                    CASE WHEN y.depth = 0 AND y.a_events THEN
                        '{"type":"task_completed' || y.evp || ',"task_index":0,"status":"completed"'
                        || coalesce(',"attempt":' || y.a_attempts, '')
                        || coalesce(',"duration_ms":' || (extract(epoch FROM p_now - y.a_started) * 1000)::bigint, '')
                        || v_tsx || ',{"type":"step_completed' || y.evp || ',"status":"completed"'
                        || coalesce(',"duration_ms":' || (extract(epoch FROM p_now - y.state_started) * 1000)::bigint, '')
                        || v_tsx
                    WHEN y.depth > 0 AND y.events THEN
                        '{"type":"step_started' || y.evp || ',"status":"started"' || v_tsx
                        || ',{"type":"task_started' || y.evp || ',"task_index":0,"status":"started","attempt":1' || v_tsx
                        || ',{"type":"task_completed' || y.evp || ',"task_index":0,"status":"completed","attempt":1'
                        || coalesce(',"duration_ms":' || y.took, '') || v_tsx
                        || ',{"type":"step_completed' || y.evp || ',"status":"completed"'
                        || coalesce(',"duration_ms":' || y.took, '') || v_tsx END,
                    CASE WHEN y.depth = y.n - 1 AND y.events THEN
                        '{"type":"workflow_completed","run_id":"' || y.run_id || '","flow":"' || y.flow_slug
                        || '","status":"completed"'
                        || coalesce(',"duration_ms":'
                                    || (extract(epoch FROM clock_timestamp() - y.run_started) * 1000)::bigint, '')
                        || v_tsx END) AS t
                FROM y) z
            WHERE z.t <> '')
    INTO o_runs, o_out, o_inline, v_done, v_evs;
    IF v_done IS NOT NULL THEN
        PERFORM qflow.record_completions(v_done, p_now);
        PERFORM qflow.publish(v_evs);
    END IF;
END $$;

-- settle records a worker's finished tasks and claims new ones in the same
-- transaction (one round trip). It locks the runs, in id order, and
-- records the results through finish_tasks. Then the results of tasks the
-- worker ran inline (p_i…: the next single step of a chain, run in the
-- worker's process before the step's task existed; p_ioutputs NULL and
-- p_ierrors set for a failure, and p_isnooze too for a snooze; p_itook the
-- handler's milliseconds): the successes that follow, as a chain, a
-- completion of this call are written completed at once (record_inline);
-- for the others (failures, snoozes, tasks still running), each
-- pass claims, by key, the inline tasks the previous pass (or the
-- completions) created in this transaction (task 0
-- of the step, queued and visible, its run still going and within its
-- deadline) for this worker, publishing task_started, and records their
-- results, until a pass claims none. An inline result whose task was not
-- created (the run failed or was cancelled meanwhile) is dropped. An
-- inline task still running (p_itook < 0: its chain ran past the worker's
-- window; -p_itook - 1 is how long it has run) is claimed the same way but
-- not finished, and returned first,
-- so that it runs on as the worker's task with a lease. Then,
-- when p_qty > 0, it claims up to p_qty tasks of flow p_flow_id, which may
-- include the steps this very call started, so a chain hop costs one
-- commit. Work this call created and did not claim wakes other workers.
-- Failures whose p_fsnooze is not NULL are snoozes: the task is queued
-- again after that many milliseconds without using an attempt (see
-- fail_tasks).
-- It returns the claimed tasks, then a row with a NULL seq for each run it
-- completed: the run's id and its output (NULL when over 8 kB), which the
-- worker hands to waiters in its own process.
CREATE FUNCTION qflow.settle(p_worker uuid,
                             p_runs uuid[], p_steps smallint[], p_tasks integer[], p_outputs jsonb[],
                             p_frun uuid[], p_fstep smallint[], p_ftask integer[], p_errors text[], p_permanent boolean[],
                             p_fsnooze bigint[],
                             p_irun uuid[], p_istep smallint[], p_itook integer[], p_ioutputs jsonb[],
                             p_ierrors text[], p_iperm boolean[], p_isnooze bigint[],
                             p_flow_id integer, p_qty integer, p_lease_ms bigint)
RETURNS SETOF qflow.claimed_task LANGUAGE plpgsql AS $$
DECLARE
    v_fin_r   record;
    v_tasks   integer := 0;
    v_queues  text[];
    v_claimed integer := 0;
    v_inline  integer := 0;
    v_fin     uuid[];
    v_out     jsonb[];
    v_got     qflow.claimed_task[];
    v_left    integer[]; -- inline results not placed yet (their ordinals)
    v_pass    integer[]; -- inline results this pass placed
    v_promoted qflow.claimed_task[] := '{}'; -- inline tasks still running, now claimed
    -- one pass's completions (v_c…) and failures (v_x…), as finish_tasks takes them
    v_cr uuid[]; v_cs smallint[]; v_ct integer[]; v_co jsonb[];
    v_xr uuid[]; v_xs smallint[]; v_xt integer[]; v_xe text[]; v_xp boolean[]; v_xz bigint[];
    v_frun    uuid[] := p_frun;
    v_fstep   smallint[] := p_fstep;
    v_ftask   integer[] := p_ftask;
    v_now     timestamptz;
    v_freed   integer[];  -- versions of finished tasks that held a limit's place
    v_limited boolean;
    v_busy    boolean := false;
    v_ddone   qflow.done_task[]; -- record_inline's: the tasks it recorded,
    v_dplaced integer[];         -- the ordinals of their inline results
    v_devs    text[];            -- and their events
    v_inline_done integer;       -- inline results finish_chains recorded
BEGIN
    IF coalesce(cardinality(p_runs), 0) <> coalesce(cardinality(p_outputs), 0)
       OR coalesce(cardinality(p_irun), 0) <> coalesce(cardinality(p_ioutputs), 0) THEN
        RAISE EXCEPTION 'qflow: settle: % keys but % outputs, % inline keys but % outputs',
            cardinality(p_runs), cardinality(p_outputs), cardinality(p_irun), cardinality(p_ioutputs)
            USING ERRCODE = '22023';
    END IF;
    IF cardinality(p_runs) > 0 OR cardinality(p_frun) > 0 THEN
        -- Lock the runs first, in id order (see the top of this file): the
        -- runs of the failures too, which fail_tasks would otherwise lock
        -- after this call's updates. Inline results are of the same runs
        -- as completions in p_runs (a chain starts with a completed task).
        PERFORM 1 FROM (SELECT DISTINCT y FROM unnest(coalesce(p_runs, '{}') || coalesce(p_frun, '{}') || coalesce(p_irun, '{}')) AS y
                        ORDER BY 1) y
        CROSS JOIN LATERAL (SELECT 1 FROM qflow.runs r WHERE r.id = y.y FOR NO KEY UPDATE) l;
    END IF;
    -- Runs whose chains end them here: one statement (finish_chains). The
    -- other results take the general path below; when finish_chains took
    -- them all, the general path is skipped. (Results of runs it took
    -- that reach the general path change nothing there: their tasks are
    -- no longer started.)
    IF cardinality(p_irun) > 0 AND cardinality(p_runs) > 0 AND coalesce(cardinality(p_frun), 0) = 0 THEN
        v_now := clock_timestamp();
        SELECT * INTO v_fin, v_out, v_inline_done
        FROM qflow.finish_chains(p_worker, v_now, p_runs, p_steps, p_tasks, p_outputs,
                                 p_irun, p_istep, p_itook, p_ioutputs, p_ierrors);
        v_now := NULL; -- the general path reads the clock again
        IF cardinality(v_fin) = cardinality(p_runs) AND v_inline_done = cardinality(p_irun) THEN
            p_runs := NULL;
            p_irun := NULL;
        END IF;
    END IF;
    IF cardinality(p_runs) > 0 OR cardinality(p_frun) > 0 THEN
        -- Inline successes that follow these completions: written
        -- completed before finish_tasks, so that it does not start their
        -- steps, and propagated by it with the completed steps.
        IF cardinality(p_irun) > 0 AND cardinality(p_runs) > 0 THEN
            v_now := clock_timestamp();
            SELECT * INTO v_ddone, v_dplaced, v_devs
            FROM qflow.record_inline(p_worker, v_now, p_runs, p_steps, p_tasks, p_outputs, p_frun,
                                     p_irun, p_istep, p_itook, p_ioutputs, p_ierrors);
        END IF;
        v_fin_r := qflow.finish_tasks(p_worker, p_runs, p_steps, p_tasks, p_outputs,
                                      p_frun, p_fstep, p_ftask, p_errors, p_permanent, p_fsnooze, v_ddone, v_devs,
                                      v_now);
        v_tasks := v_fin_r.o_tasks;
        v_queues := v_fin_r.o_queues;
        v_fin := v_fin || v_fin_r.o_fin;
        v_out := v_out || v_fin_r.o_out;
        v_freed := v_fin_r.o_freed;
    END IF;

    -- Other inline results, pass by pass.
    IF cardinality(p_irun) > 0 THEN
        SELECT array_agg(o) INTO v_left FROM generate_series(1, cardinality(p_irun)) AS o
        WHERE v_dplaced IS NULL OR o <> ALL (v_dplaced);
    END IF;
    WHILE v_left IS NOT NULL AND v_tasks > v_inline LOOP
        v_now := clock_timestamp();
        -- Each task by primary key (a LATERAL probe, then the row by TID;
        -- see the top of this file).
        WITH k AS (
            SELECT k.o, l.ctid FROM unnest(v_left) AS k(o)
            CROSS JOIN LATERAL (SELECT q.ctid FROM qflow.step_tasks q
                                WHERE q.run_id = p_irun[k.o] AND q.step_idx = p_istep[k.o] AND q.task_index = 0
                                LIMIT 1) l
        ), c AS (
            UPDATE qflow.step_tasks t
            SET status = 'started', attempts = t.attempts + 1, worker_id = p_worker,
                started_at = v_now - make_interval(secs => (CASE WHEN p_itook[k.o] < 0 THEN -p_itook[k.o] - 1
                                                                 ELSE p_itook[k.o] END) / 1000.0),
                vt = v_now + make_interval(secs => p_lease_ms / 1000.0)
            FROM k
            WHERE t.ctid = ANY (ARRAY(SELECT k.ctid FROM k)) AND t.ctid = k.ctid
              AND t.status = 'queued' AND t.attempts = 0 AND t.vt <= v_now AND t.lane = 0
              -- created by this transaction (queued_at is its start): not a
              -- task another worker's completion of the dependency created,
              -- from an output that may differ from the one this chain used
              AND t.queued_at = now()
              AND (t.deadline IS NULL OR t.deadline > v_now)
            RETURNING t.seq, t.run_id, t.step_idx, t.task_index, t.attempts, NULL::jsonb, t.priority, t.flow_id,
                      t.events, NULL::jsonb, t.deadline, t.sequential, k.o
        )
        SELECT array_agg(ROW(c.seq, c.run_id, c.step_idx, c.task_index, c.attempts, NULL, c.priority, c.flow_id,
                             c.events, NULL, c.deadline, c.sequential)::qflow.claimed_task ORDER BY c.o),
               array_agg(c.o ORDER BY c.o)
        INTO v_got, v_pass FROM c;
        EXIT WHEN v_got IS NULL;
        v_inline := v_inline + cardinality(v_got);
        IF qflow.events_on() THEN
            PERFORM qflow.publish_started(v_got);
        END IF;
        -- Tasks still running (p_itook < 0) become the worker's, with a
        -- lease; they have no result yet.
        v_promoted := v_promoted || ARRAY(SELECT v_got[i] FROM generate_subscripts(v_pass, 1) AS i
                                          WHERE p_itook[v_pass[i]] < 0 ORDER BY i);
        SELECT array_agg(o) INTO v_left FROM unnest(v_left) AS o WHERE o <> ALL (v_pass);
        SELECT array_agg(o) INTO v_pass FROM unnest(v_pass) AS o WHERE p_itook[o] >= 0;
        -- This pass's results, split into completions and failures.
        SELECT array_agg(p_irun[o] ORDER BY o) FILTER (WHERE p_ierrors[o] IS NULL),
               array_agg(p_istep[o] ORDER BY o) FILTER (WHERE p_ierrors[o] IS NULL),
               array_agg(0 ORDER BY o) FILTER (WHERE p_ierrors[o] IS NULL),
               array_agg(p_ioutputs[o] ORDER BY o) FILTER (WHERE p_ierrors[o] IS NULL),
               array_agg(p_irun[o] ORDER BY o) FILTER (WHERE p_ierrors[o] IS NOT NULL),
               array_agg(p_istep[o] ORDER BY o) FILTER (WHERE p_ierrors[o] IS NOT NULL),
               array_agg(0 ORDER BY o) FILTER (WHERE p_ierrors[o] IS NOT NULL),
               array_agg(p_ierrors[o] ORDER BY o) FILTER (WHERE p_ierrors[o] IS NOT NULL),
               array_agg(coalesce(p_iperm[o], false) ORDER BY o) FILTER (WHERE p_ierrors[o] IS NOT NULL),
               array_agg(p_isnooze[o] ORDER BY o) FILTER (WHERE p_ierrors[o] IS NOT NULL)
        INTO v_cr, v_cs, v_ct, v_co, v_xr, v_xs, v_xt, v_xe, v_xp, v_xz
        FROM unnest(v_pass) AS o;
        v_fin_r := qflow.finish_tasks(p_worker, v_cr, v_cs, v_ct, v_co, v_xr, v_xs, v_xt, v_xe, v_xp, v_xz, NULL, NULL,
                                      NULL);
        v_tasks := v_tasks + v_fin_r.o_tasks;
        v_queues := v_queues || v_fin_r.o_queues;
        v_fin := v_fin || v_fin_r.o_fin;
        v_out := v_out || v_fin_r.o_out;
        v_freed := v_freed || v_fin_r.o_freed;
        v_frun := v_frun || v_xr;
        v_fstep := v_fstep || v_xs;
        v_ftask := v_ftask || v_xt;
    END LOOP;

    RETURN QUERY SELECT * FROM unnest(v_promoted);
    IF p_qty > 0 THEN
        SELECT f.limited INTO v_limited FROM qflow.flows f WHERE f.id = p_flow_id;
        IF v_limited THEN
            -- Its tasks, then perhaps a row saying when to look again.
            v_got := ARRAY(SELECT c FROM qflow.claim_limited(p_flow_id, p_worker, p_qty, p_lease_ms) c);
            RETURN QUERY SELECT * FROM unnest(v_got);
            SELECT count(*) FILTER (WHERE c.seq IS NOT NULL), coalesce(bool_or(c.seq IS NULL AND c.priority = 1), false)
            INTO v_claimed, v_busy FROM unnest(v_got) c;
        -- The claim is planned on every call, which costs more than finding
        -- nothing: first a look through the ready index (a generic plan).
        ELSIF EXISTS (SELECT 1 FROM qflow.step_tasks q
                      WHERE q.flow_id = p_flow_id AND q.lane = 0 AND q.finished_at IS NULL
                        AND q.vt <= clock_timestamp() AND (q.status = 'queued' OR q.attempts < q.max_attempts)) THEN
            RETURN QUERY SELECT * FROM qflow.claim(p_flow_id, p_worker, p_qty, p_lease_ms);
            GET DIAGNOSTICS v_claimed = ROW_COUNT;
        END IF;
    END IF;

    -- Retried and snoozed tasks are queued with a delay: a row with neither seq nor
    -- run tells the worker when the first becomes visible (attempt: in how
    -- many milliseconds), so it looks for it then.
    IF cardinality(v_frun) > 0 THEN
        RETURN QUERY SELECT NULL::bigint, NULL::uuid, NULL::smallint, NULL::integer,
                            greatest(ceil(extract(epoch FROM min(t.vt) - clock_timestamp()) * 1000), 0)::integer,
                            NULL::jsonb, NULL::integer, NULL::integer, NULL::boolean, NULL::jsonb,
                            NULL::timestamptz, NULL::boolean
                     FROM unnest(v_frun, v_fstep, v_ftask) AS x(r, s, t)
                     JOIN qflow.step_tasks t ON t.run_id = x.r AND t.step_idx = x.s AND t.task_index = x.t
                     WHERE t.status = 'queued' AND t.worker_id IS NULL AND t.vt < 'infinity'
                     HAVING count(*) > 0;
    END IF;

    -- Wake other workers, but only for work left behind.
    IF v_tasks - v_inline > v_claimed
       OR (v_tasks > v_inline AND EXISTS (SELECT 1 FROM unnest(v_queues) AS q
                                   WHERE q <> (SELECT f.queue_name FROM qflow.flows f WHERE f.id = p_flow_id))) THEN
        PERFORM qflow.wake(v_queues);
    END IF;
    -- Places this call freed and its claim may have left to others.
    IF cardinality(v_freed) > 0
       AND (p_qty = 0 OR v_claimed >= p_qty OR v_busy OR EXISTS (SELECT 1 FROM unnest(v_freed) f WHERE f <> p_flow_id)) THEN
        PERFORM qflow.wake(ARRAY(SELECT f.queue_name FROM qflow.flows f WHERE f.id = ANY (v_freed)));
    END IF;

    -- The runs this call completed, for waiters in the worker's process.
    IF v_fin IS NOT NULL THEN
        RETURN QUERY SELECT NULL::bigint, f.id, NULL::smallint, NULL::integer, NULL::integer, f.output,
                            NULL::integer, NULL::integer, NULL::boolean, NULL::jsonb, NULL::timestamptz, NULL::boolean
                     FROM unnest(v_fin, v_out) AS f(id, output);
    END IF;
END $$;

-- Priorities ----------------------------------------------------------------------

-- set_step_priorities sets the priorities of the named steps of flow version
-- p_flow_id (steps not named keep theirs; the default is the definition's,
-- 0 unless it set one; see define_flow). When any step
-- of the version has a non-zero priority, its tasks carry their step's
-- priority from then on, and claims take ready tasks with the highest
-- priority first (FIFO among equals). Tasks already queued keep the
-- priority they were queued with.
CREATE FUNCTION qflow.set_step_priorities(p_flow_id integer, p_slugs text[], p_priorities integer[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_bad text;
BEGIN
    IF cardinality(p_slugs) IS DISTINCT FROM cardinality(p_priorities) THEN
        RAISE EXCEPTION 'qflow: set_step_priorities: % slugs but % priorities',
            coalesce(cardinality(p_slugs), 0), coalesce(cardinality(p_priorities), 0) USING ERRCODE = '22023';
    END IF;
    PERFORM 1 FROM qflow.flows WHERE id = p_flow_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'qflow: unknown flow id %', p_flow_id USING ERRCODE = 'QF404';
    END IF;
    SELECT string_agg(format('"%s"', x.slug), ', ') INTO v_bad
    FROM unnest(p_slugs, p_priorities) AS x(slug, prio)
    WHERE x.prio IS NULL
       OR NOT EXISTS (SELECT 1 FROM qflow.steps st WHERE st.flow_id = p_flow_id AND st.slug = x.slug);
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'qflow: set_step_priorities: flow id % has no step % (or its priority is null)', p_flow_id, v_bad
            USING ERRCODE = '22023';
    END IF;
    UPDATE qflow.steps st SET priority = x.prio
    FROM unnest(p_slugs, p_priorities) AS x(slug, prio)
    WHERE st.flow_id = p_flow_id AND st.slug = x.slug;
    UPDATE qflow.flows SET prioritized = EXISTS (SELECT 1 FROM qflow.steps WHERE flow_id = p_flow_id AND priority <> 0)
    WHERE id = p_flow_id;
END $$;

-- prune_gates deletes up to p_limit gates that hold nothing: no holder
-- still started and no rate ahead of now (a gate is made again, empty,
-- when next claimed through, which is the same). Gates a claim holds are
-- skipped. Returns how many it deleted.
CREATE FUNCTION qflow.prune_gates(p_limit integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_n integer;
BEGIN
    DELETE FROM qflow.gates g WHERE g.ctid = ANY (ARRAY(
        SELECT x.ctid FROM qflow.gates x
        WHERE x.tat <= now()
          AND NOT EXISTS (SELECT 1 FROM unnest(x.holders) AS h(run_id, step_idx, task_index)
                          JOIN qflow.step_tasks t ON t.run_id = h.run_id AND t.step_idx = h.step_idx
                                                 AND t.task_index = h.task_index
                          WHERE t.status = 'started')
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED));
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END $$;

-- Plans: the hot transitions run the same statements over small sets of
-- keys, so each statement is planned once per session and its generic plan
-- kept (under plan_cache_mode = auto, plpgsql would plan every call again
-- whenever the generic plan's estimate for an array of unknown length looks
-- dearer than a custom plan, at a cost of up to a millisecond or two a
-- statement). The statements are written so that their generic plans probe
-- primary keys (see the note at the top); no planner method is switched off.
ALTER FUNCTION qflow.start_runs_core(integer, jsonb[], jsonb, uuid, integer, bigint, boolean) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION qflow.start_runs_claim(integer, jsonb[], jsonb, uuid, integer, integer, bigint, boolean) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION qflow.start_steps(uuid[], smallint[], uuid, integer, bigint, boolean) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION qflow.advance(uuid[], smallint[], integer[]) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION qflow.finish_tasks(uuid, uuid[], smallint[], integer[], jsonb[], uuid[], smallint[], integer[], text[], boolean[], bigint[], qflow.done_task[], text[], timestamptz) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION qflow.settle(uuid, uuid[], smallint[], integer[], jsonb[], uuid[], smallint[], integer[], text[], boolean[], bigint[], uuid[], smallint[], integer[], jsonb[], text[], boolean[], bigint[], integer, integer, bigint) SET plan_cache_mode = force_generic_plan;
-- The claim is the exception: it is planned on every call (about 0.1 ms),
-- so the planner sees how many tasks are queued now. A plan made while the
-- queue was small (a bitmap scan, then a sort of every queued task) was kept
-- as the generic plan and made each claim sort the whole backlog once it
-- grew: a 100,000-element map took 40 times as long as a 10,000-element one.
-- Planned per call it reads the ready index in claim order and stops after
-- p_qty tasks.
ALTER FUNCTION qflow.claim(integer, uuid, integer, bigint) SET plan_cache_mode = force_custom_plan;
-- So is claim_limited, for the same reason (its scans read the lanes in
-- index order however long they are).
ALTER FUNCTION qflow.claim_limited(integer, uuid, integer, bigint) SET plan_cache_mode = force_custom_plan;
-- Its look at each gate keeps generic plans: probes by primary key.
ALTER FUNCTION qflow.lane_take(qflow.flows, qflow.lane_head, integer, timestamptz) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION qflow.lock_gate(text, text, text) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION qflow.publish_started(qflow.claimed_task[]) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION qflow.heartbeat(uuid, qflow.task_key[], bigint) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION qflow.fail_tasks(uuid, qflow.task_key[], text[], boolean[], bigint[]) SET plan_cache_mode = force_generic_plan;
