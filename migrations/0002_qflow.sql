-- QuantumFlow engine schema: flow definitions, run state, workers, and the
-- transitions between states. Every transition is one function call, hence
-- one transaction. Tasks travel through one pgmq queue per flow version
-- (pgmq.q_<slug>_<version>), which the engine reads and writes set-based.

CREATE SCHEMA IF NOT EXISTS qflow;

-- Definitions ---------------------------------------------------------------

CREATE TABLE qflow.flows (
    id         integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slug       text NOT NULL CHECK (slug ~ '^[a-z][a-z0-9_]{0,39}$'),
    version    integer NOT NULL CHECK (version > 0),
    shape_hash text NOT NULL,
    queue_name text NOT NULL UNIQUE,
    step_count integer NOT NULL CHECK (step_count > 0),
    definition jsonb NOT NULL,
    -- prioritized: some step has a non-zero priority, so claims of this
    -- version prefer higher-priority tasks (see set_step_priorities).
    prioritized boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (slug, version),
    UNIQUE (slug, shape_hash)
);

CREATE TABLE qflow.steps (
    flow_id        integer NOT NULL REFERENCES qflow.flows ON DELETE CASCADE,
    idx            smallint NOT NULL CHECK (idx >= 0),
    slug           text NOT NULL CHECK (slug ~ '^[a-z][a-z0-9_]{0,62}$' AND slug <> 'run'),
    kind           text NOT NULL CHECK (kind IN ('single', 'map')),
    takes_input    boolean NOT NULL,
    max_attempts   integer NOT NULL CHECK (max_attempts >= 1),
    base_delay_ms  bigint NOT NULL CHECK (base_delay_ms >= 0),
    timeout_ms     bigint NOT NULL CHECK (timeout_ms > 0),
    start_delay_ms bigint NOT NULL CHECK (start_delay_ms >= 0),
    dep_count      integer NOT NULL CHECK (dep_count >= 0),
    is_leaf        boolean NOT NULL,
    priority       integer NOT NULL DEFAULT 0,
    PRIMARY KEY (flow_id, idx),
    UNIQUE (flow_id, slug),
    CHECK (kind = 'single' OR dep_count <= 1)
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

CREATE TABLE qflow.runs (
    id              uuid PRIMARY KEY,
    flow_id         integer NOT NULL REFERENCES qflow.flows,
    flow_slug       text NOT NULL,
    status          text NOT NULL DEFAULT 'started'
                    CHECK (status IN ('started', 'completed', 'failed', 'cancelled')),
    input           jsonb NOT NULL,
    output          jsonb,
    remaining_steps integer NOT NULL CHECK (remaining_steps >= 0),
    error           text,
    failed_step     text,
    events          boolean NOT NULL DEFAULT true,
    sequential      boolean NOT NULL DEFAULT false,
    max_attempts    integer CHECK (max_attempts >= 1),
    deadline        timestamptz,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    CHECK ((status = 'started') = (finished_at IS NULL)),
    CHECK (status <> 'completed' OR (output IS NOT NULL AND remaining_steps = 0))
);
CREATE INDEX runs_list ON qflow.runs (flow_slug, status, started_at DESC, id);
CREATE INDEX runs_started_at ON qflow.runs (started_at DESC, id);
CREATE INDEX runs_deadline ON qflow.runs (deadline) WHERE status = 'started' AND deadline IS NOT NULL;

CREATE TABLE qflow.step_states (
    run_id          uuid NOT NULL REFERENCES qflow.runs ON DELETE CASCADE,
    step_idx        smallint NOT NULL,
    flow_id         integer NOT NULL,
    status          text NOT NULL DEFAULT 'created'
                    CHECK (status IN ('created', 'started', 'completed', 'failed', 'cancelled')),
    remaining_deps  integer NOT NULL CHECK (remaining_deps >= 0),
    task_count      integer CHECK (task_count >= 0),
    remaining_tasks integer CHECK (remaining_tasks >= 0),
    output          jsonb,
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    PRIMARY KEY (run_id, step_idx),
    FOREIGN KEY (flow_id, step_idx) REFERENCES qflow.steps,
    CHECK (status <> 'completed' OR (output IS NOT NULL AND remaining_tasks = 0)),
    CHECK (status = 'created' OR remaining_deps = 0 OR status = 'cancelled')
);

CREATE TABLE qflow.step_tasks (
    run_id      uuid NOT NULL,
    step_idx    smallint NOT NULL,
    task_index  integer NOT NULL CHECK (task_index >= 0),
    flow_id     integer NOT NULL,
    status      text NOT NULL DEFAULT 'queued'
                CHECK (status IN ('queued', 'started', 'completed', 'failed', 'cancelled')),
    attempts    integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    message_id  bigint,
    input       jsonb,
    output      jsonb,
    error       text,
    worker_id   uuid,
    queued_at   timestamptz NOT NULL DEFAULT now(),
    started_at  timestamptz,
    finished_at timestamptz,
    PRIMARY KEY (run_id, step_idx, task_index),
    FOREIGN KEY (run_id, step_idx) REFERENCES qflow.step_states ON DELETE CASCADE,
    CHECK (status <> 'completed' OR output IS NOT NULL),
    CHECK (status <> 'started' OR attempts > 0)
);

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
CREATE TYPE qflow.step_key AS (run_id uuid, step_idx smallint);
CREATE TYPE qflow.task_key AS (run_id uuid, step_idx smallint, task_index integer);
CREATE TYPE qflow.done_task AS (
    run_id uuid, step_idx smallint, task_index integer, flow_id integer, message_id bigint,
    attempts integer, started_at timestamptz
);
CREATE TYPE qflow.ready_step AS (
    run_id uuid, step_idx smallint, flow_id integer, kind text, queue_name text,
    start_delay_ms bigint, arr jsonb, n integer, step_slug text, flow_slug text, events boolean,
    priority integer -- NULL unless the flow is prioritized
);

-- Events ----------------------------------------------------------------------

-- Long errors: when an error's JSON encoding exceeds 4000 bytes, the event
-- carries its first 600 characters followed by " …[truncated]" and
-- error_truncated = true. 600 characters encode to at most 3600 bytes (a
-- control character becomes \u00XX, 6 bytes; others take at most 4), so with
-- the other fields (slugs are at most 40 and 63 characters) a payload stays
-- far below the 8000 bytes pg_notify accepts. The full error is kept on the
-- task and the step.

-- emit publishes one event on channel qflow_events, unless the session
-- turned events off with the setting qflow.events = 'off' (workers started
-- with WorkerOptions.DisableEvents open their connections that way). Runs
-- started with events off never reach emit: the engine checks runs.events
-- first. NULL fields are left out of the payload; ts is the clock time of
-- the transition in UTC. It is plpgsql, not SQL, on purpose: a SQL function
-- that cannot be inlined is parsed and planned again by every statement that
-- calls it, while plpgsql caches its plan for the session.
CREATE FUNCTION qflow.emit(p_type text, p_run uuid, p_flow text, p_step text, p_task integer,
                           p_status text, p_attempt integer, p_duration_ms bigint,
                           p_error text, p_will_retry boolean)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_error text := p_error;
    v_cut   boolean;
BEGIN
    IF current_setting('qflow.events', true) = 'off' THEN
        RETURN;
    END IF;
    IF p_error IS NOT NULL AND octet_length(p_error) > 600 AND octet_length(to_json(p_error)::text) > 4000 THEN
        v_error := left(p_error, 600) || ' …[truncated]';
        v_cut := true;
    END IF;
    PERFORM pg_notify('qflow_events', json_strip_nulls(json_build_object(
        'type', p_type, 'run_id', p_run, 'flow', p_flow, 'step', p_step,
        'task_index', p_task, 'status', p_status, 'attempt', p_attempt,
        'will_retry', p_will_retry, 'duration_ms', p_duration_ms,
        'error', v_error, 'error_truncated', v_cut,
        'ts', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')))::text);
END $$;

-- Definitions: define_flow ------------------------------------------------------

-- define_flow stores a flow definition (the JSON of runtime.FlowDef) and
-- returns its id. It is idempotent: the same slug and shape hash return the
-- existing row; a different shape under an existing slug becomes the next
-- version (runs keep the version they started on). Each version has its
-- own pgmq queue, created here.
CREATE FUNCTION qflow.define_flow(p_slug text, p_shape_hash text, p_def jsonb)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_id      integer;
    v_version integer;
    v_queue   text;
    v_bad     text;
    v_n       integer;
    v_ns      constant double precision := 1e6; -- Go durations are nanoseconds
BEGIN
    IF p_slug IS NULL OR p_slug !~ '^[a-z][a-z0-9_]{0,39}$' THEN
        RAISE EXCEPTION 'qflow: invalid flow slug "%": use a lowercase letter, then lowercase letters, digits or underscores, at most 40 characters', p_slug
            USING ERRCODE = '22023';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('qflow.define_flow:' || p_slug, 0));
    SELECT id INTO v_id FROM qflow.flows WHERE slug = p_slug AND shape_hash = p_shape_hash;
    IF FOUND THEN
        RETURN v_id;
    END IF;
    v_n := jsonb_array_length(coalesce(p_def->'steps', '[]'));
    IF v_n = 0 THEN
        RAISE EXCEPTION 'qflow: flow "%" has no steps', p_slug USING ERRCODE = '22023';
    END IF;
    SELECT coalesce(max(version), 0) + 1 INTO v_version FROM qflow.flows WHERE slug = p_slug;
    v_queue := p_slug || '_' || v_version;
    INSERT INTO qflow.flows (slug, version, shape_hash, queue_name, step_count, definition)
    VALUES (p_slug, v_version, p_shape_hash, v_queue, v_n, p_def)
    RETURNING id INTO v_id;

    INSERT INTO qflow.steps (flow_id, idx, slug, kind, takes_input, max_attempts, base_delay_ms,
                             timeout_ms, start_delay_ms, dep_count, is_leaf)
    SELECT v_id, (o - 1)::smallint, s->>'slug',
           CASE WHEN coalesce((s->>'map')::boolean, false) THEN 'map' ELSE 'single' END,
           coalesce((s->>'takes_input')::boolean, false),
           coalesce(nullif((s->'options'->>'max_attempts')::integer, 0),
                    nullif((p_def->'options'->>'max_attempts')::integer, 0), 3),
           (coalesce(nullif((s->'options'->>'base_delay')::bigint, 0),
                     nullif((p_def->'options'->>'base_delay')::bigint, 0), 1000000000) / v_ns)::bigint,
           greatest(1, (coalesce(nullif((s->'options'->>'timeout')::bigint, 0),
                     nullif((p_def->'options'->>'timeout')::bigint, 0), 60000000000) / v_ns)::bigint),
           (coalesce((s->'options'->>'start_delay')::bigint, 0) / v_ns)::bigint,
           jsonb_array_length(coalesce(s->'depends_on', '[]')),
           false
    FROM jsonb_array_elements(p_def->'steps') WITH ORDINALITY AS t(s, o);

    SELECT string_agg(format('step "%s" depends on unknown step "%s"', st.slug, d.dep), '; ')
    INTO v_bad
    FROM jsonb_array_elements(p_def->'steps') AS t(s)
    JOIN qflow.steps st ON st.flow_id = v_id AND st.slug = t.s->>'slug'
    CROSS JOIN LATERAL jsonb_array_elements_text(coalesce(t.s->'depends_on', '[]')) AS d(dep)
    WHERE NOT EXISTS (SELECT 1 FROM qflow.steps x WHERE x.flow_id = v_id AND x.slug = d.dep);
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'qflow: flow "%": %', p_slug, v_bad USING ERRCODE = '22023';
    END IF;

    INSERT INTO qflow.deps (flow_id, step_idx, dep_idx, position)
    SELECT v_id, st.idx, dp.idx, (d.o - 1)::smallint
    FROM jsonb_array_elements(p_def->'steps') AS t(s)
    JOIN qflow.steps st ON st.flow_id = v_id AND st.slug = t.s->>'slug'
    CROSS JOIN LATERAL jsonb_array_elements_text(coalesce(t.s->'depends_on', '[]')) WITH ORDINALITY AS d(dep, o)
    JOIN qflow.steps dp ON dp.flow_id = v_id AND dp.slug = d.dep;

    -- Reject cycles: a step that can reach itself.
    WITH RECURSIVE reach(start_idx, idx, depth) AS (
        SELECT step_idx, dep_idx, 1 FROM qflow.deps WHERE flow_id = v_id
        UNION
        SELECT r.start_idx, d.dep_idx, r.depth + 1
        FROM reach r JOIN qflow.deps d ON d.flow_id = v_id AND d.step_idx = r.idx
        WHERE r.depth <= v_n
    )
    SELECT st.slug INTO v_bad FROM reach r JOIN qflow.steps st ON st.flow_id = v_id AND st.idx = r.start_idx
    WHERE r.start_idx = r.idx LIMIT 1;
    IF v_bad IS NOT NULL THEN
        RAISE EXCEPTION 'qflow: flow "%": step "%" is part of a dependency cycle', p_slug, v_bad USING ERRCODE = '22023';
    END IF;

    UPDATE qflow.steps st SET is_leaf = NOT EXISTS (
        SELECT 1 FROM qflow.deps d WHERE d.flow_id = v_id AND d.dep_idx = st.idx)
    WHERE st.flow_id = v_id;

    IF NOT EXISTS (SELECT 1 FROM pgmq.meta WHERE queue_name = v_queue) THEN
        PERFORM pgmq.create(v_queue);
    END IF;
    RETURN v_id;
END $$;

-- Runs: start -------------------------------------------------------------------

-- start_runs starts one run per input of flow p_flow_id and returns their
-- ids in input order. p_opts: {"events": bool, "sequential": bool,
-- "max_attempts": int, "timeout_ms": int}.
CREATE FUNCTION qflow.start_runs(p_flow_id integer, p_inputs jsonb[], p_opts jsonb DEFAULT '{}')
RETURNS SETOF uuid LANGUAGE plpgsql AS $$
DECLARE
    v_flow qflow.flows;
    v_ids  uuid[];
    v_bad  integer;
BEGIN
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
    IF EXISTS (SELECT 1 FROM qflow.steps WHERE flow_id = p_flow_id AND kind = 'map' AND dep_count = 0) THEN
        SELECT min(o) INTO v_bad FROM unnest(p_inputs) WITH ORDINALITY AS i(v, o) WHERE jsonb_typeof(v) <> 'array';
        IF v_bad IS NOT NULL THEN
            RAISE EXCEPTION 'qflow: flow "%" starts with a map step, so its input must be a JSON array; input % is a JSON %',
                v_flow.slug, v_bad, jsonb_typeof(p_inputs[v_bad]) USING ERRCODE = 'QF400';
        END IF;
    END IF;
    SELECT array_agg(gen_random_uuid()) INTO v_ids FROM unnest(p_inputs);

    INSERT INTO qflow.runs (id, flow_id, flow_slug, input, remaining_steps, events, sequential,
                            max_attempts, deadline)
    SELECT r.id, p_flow_id, v_flow.slug, r.input, v_flow.step_count,
           coalesce((p_opts->>'events')::boolean, true),
           coalesce((p_opts->>'sequential')::boolean, false),
           nullif((p_opts->>'max_attempts')::integer, 0),
           now() + make_interval(secs => nullif((p_opts->>'timeout_ms')::bigint, 0) / 1000.0)
    FROM unnest(v_ids, p_inputs) AS r(id, input);

    INSERT INTO qflow.step_states (run_id, step_idx, flow_id, remaining_deps)
    SELECT r.id, s.idx, p_flow_id, s.dep_count
    FROM unnest(v_ids) AS r(id) CROSS JOIN qflow.steps s
    WHERE s.flow_id = p_flow_id;

    IF coalesce((p_opts->>'events')::boolean, true) THEN
        PERFORM qflow.emit('workflow_started', r.id, v_flow.slug, NULL, NULL, 'started', NULL, NULL, NULL, NULL)
        FROM unnest(v_ids) AS r(id);
    END IF;

    PERFORM qflow.start_ready_steps(v_ids);
    RETURN QUERY SELECT unnest(v_ids);
END $$;

-- start_ready_steps starts every created step of these runs whose
-- dependencies have all completed: it creates the step's tasks (one, or
-- one per element for a map step) and sends their messages to the flow's
-- queue, in one statement per queue. An empty map completes at once with []
-- and cascades; a map over a non-array fails the run.
CREATE FUNCTION qflow.start_ready_steps(p_run_ids uuid[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_ready qflow.ready_step[];
    v_empty qflow.step_key[];
    v_queue text;
    v_seq   regclass;
    v_ids   bigint[];
    v_vts   timestamptz[];
    v_msgs  jsonb[];
    v_hdrs  jsonb[];
    r       record;
BEGIN
    -- One pass is enough: steps that an empty map makes ready are started by
    -- the steps_completed call that cascades it.
    SELECT array_agg(x) INTO v_ready FROM (
        SELECT ROW(ss.run_id, ss.step_idx, ss.flow_id, st.kind, f.queue_name, st.start_delay_ms, src.arr,
               CASE WHEN st.kind = 'single' THEN 1
                    WHEN jsonb_typeof(src.arr) = 'array' THEN jsonb_array_length(src.arr)
                    ELSE -1 END,
               st.slug, f.slug, ru.events,
               CASE WHEN f.prioritized THEN st.priority END)::qflow.ready_step AS x
        FROM qflow.step_states ss
        JOIN qflow.runs ru ON ru.id = ss.run_id AND ru.status = 'started'
        JOIN qflow.steps st ON st.flow_id = ss.flow_id AND st.idx = ss.step_idx
        JOIN qflow.flows f ON f.id = ss.flow_id
        CROSS JOIN LATERAL (
            SELECT CASE WHEN st.kind = 'single' THEN NULL
                        WHEN st.dep_count = 0 THEN ru.input
                        ELSE (SELECT ds.output FROM qflow.deps d
                              JOIN qflow.step_states ds ON ds.run_id = ss.run_id AND ds.step_idx = d.dep_idx
                              WHERE d.flow_id = ss.flow_id AND d.step_idx = ss.step_idx)
                   END AS arr
        ) src
        WHERE ss.run_id = ANY (p_run_ids) AND ss.status = 'created' AND ss.remaining_deps = 0
        ORDER BY ss.run_id, ss.step_idx
        FOR UPDATE OF ss
    ) sub;
    IF v_ready IS NULL THEN
        RETURN;
    END IF;

    -- A map over something that is not an array fails its run.
    FOR r IN SELECT q.*, (SELECT st.slug FROM qflow.deps d
                          JOIN qflow.steps st ON st.flow_id = d.flow_id AND st.idx = d.dep_idx
                          WHERE d.flow_id = q.flow_id AND d.step_idx = q.step_idx) AS dep_slug
             FROM unnest(v_ready) q WHERE q.n < 0 LOOP
        PERFORM qflow.fail_run(r.run_id, r.step_idx,
            format('map step "%s" needs a JSON array from %s, got a JSON %s', r.step_slug,
                   coalesce('step "' || r.dep_slug || '"', 'the flow input'), coalesce(jsonb_typeof(r.arr), 'null')));
    END LOOP;
    -- A run that just failed starts nothing more: drop all of its steps.
    IF EXISTS (SELECT 1 FROM unnest(v_ready) q WHERE q.n < 0) THEN
        SELECT array_agg(q) INTO v_ready FROM unnest(v_ready) q
        WHERE q.run_id NOT IN (SELECT b.run_id FROM unnest(v_ready) b WHERE b.n < 0);
        IF v_ready IS NULL THEN
            RETURN;
        END IF;
    END IF;

    -- Steps with tasks: start them, create the tasks, send the messages.
    UPDATE qflow.step_states ss
    SET status = 'started', task_count = q.n, remaining_tasks = q.n, started_at = now()
    FROM unnest(v_ready) q
    WHERE ss.run_id = q.run_id AND ss.step_idx = q.step_idx AND q.n > 0;

    FOR v_queue IN SELECT DISTINCT q.queue_name FROM unnest(v_ready) q WHERE q.n > 0 LOOP
        -- Message ids come from the queue's own identity sequence, so the
        -- tasks are written by a static (plan-cached) statement and the
        -- dynamic one, planned on every call, is a trivial INSERT.
        v_seq := pg_get_serial_sequence(format('pgmq.%I', 'q_' || v_queue), 'msg_id')::regclass;
        WITH t AS MATERIALIZED (
            SELECT nextval(v_seq) AS msg_id, o.*
            FROM (SELECT q.run_id, q.step_idx, q.flow_id, (e.o - 1)::integer AS task_index, e.v AS input,
                         clock_timestamp() + make_interval(secs => q.start_delay_ms / 1000.0) AS vt,
                         CASE WHEN q.priority IS NOT NULL THEN jsonb_build_object('priority', q.priority) END AS headers
                  FROM unnest(v_ready) q
                  CROSS JOIN LATERAL (
                      SELECT x.v, x.o FROM jsonb_array_elements(q.arr) WITH ORDINALITY AS x(v, o)
                      WHERE q.kind = 'map'
                      UNION ALL
                      SELECT NULL::jsonb, 1::bigint WHERE q.kind = 'single'
                  ) e
                  WHERE q.queue_name = v_queue AND q.n > 0
                  ORDER BY q.run_id, q.step_idx, e.o) o
        ), ins AS (
            INSERT INTO qflow.step_tasks (run_id, step_idx, task_index, flow_id, message_id, input)
            SELECT t.run_id, t.step_idx, t.task_index, t.flow_id, t.msg_id, t.input FROM t
        )
        SELECT array_agg(t.msg_id), array_agg(t.vt),
               array_agg(jsonb_build_object('run_id', t.run_id, 'step_idx', t.step_idx, 'task_index', t.task_index)),
               array_agg(t.headers)
        INTO v_ids, v_vts, v_msgs, v_hdrs FROM t;
        EXECUTE format('INSERT INTO pgmq.%I (msg_id, vt, message, headers) OVERRIDING SYSTEM VALUE
                        SELECT * FROM unnest($1, $2, $3, $4)', 'q_' || v_queue)
        USING v_ids, v_vts, v_msgs, v_hdrs;
        -- Wake idle workers; identical notifications in one transaction
        -- are delivered once, so a batch costs one.
        PERFORM pg_notify('qflow_work', v_queue);
    END LOOP;

    PERFORM qflow.emit('step_started', q.run_id, q.flow_slug, q.step_slug, NULL, 'started', NULL, NULL, NULL, NULL)
    FROM unnest(v_ready) q WHERE q.n > 0 AND q.events;

    -- Empty maps complete at once with [] and cascade.
    IF EXISTS (SELECT 1 FROM unnest(v_ready) q WHERE q.n = 0) THEN
        WITH e AS (
            UPDATE qflow.step_states ss
            SET status = 'completed', task_count = 0, remaining_tasks = 0, output = '[]',
                started_at = now(), finished_at = now()
            FROM unnest(v_ready) q
            WHERE ss.run_id = q.run_id AND ss.step_idx = q.step_idx AND q.n = 0
            RETURNING ss.run_id, ss.step_idx
        )
        SELECT array_agg((e.run_id, e.step_idx)::qflow.step_key) INTO v_empty FROM e;
        PERFORM qflow.emit('step_completed', q.run_id, q.flow_slug, q.step_slug, NULL, 'completed', NULL, 0, NULL, NULL)
        FROM unnest(v_ready) q WHERE q.n = 0 AND q.events;
        IF v_empty IS NOT NULL THEN
            PERFORM qflow.steps_completed(v_empty);
        END IF;
    END IF;
END $$;

-- steps_completed propagates completed steps: dependents lose a pending
-- dependency, runs lose a remaining step, runs with none left complete, and
-- steps that became ready are started.
CREATE FUNCTION qflow.steps_completed(p_steps qflow.step_key[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_runs uuid[];
    v_n    integer;
BEGIN
    -- Lock dependents in a fixed order, then decrement.
    WITH c AS (
        SELECT d.step_idx, k.run_id, count(*)::integer AS n
        FROM unnest(p_steps) k
        JOIN qflow.step_states s ON s.run_id = k.run_id AND s.step_idx = k.step_idx
        JOIN qflow.deps d ON d.flow_id = s.flow_id AND d.dep_idx = k.step_idx
        GROUP BY 1, 2
    ), locked AS (
        SELECT ss.run_id, ss.step_idx, c.n FROM qflow.step_states ss
        JOIN c ON ss.run_id = c.run_id AND ss.step_idx = c.step_idx
        ORDER BY ss.run_id, ss.step_idx
        FOR UPDATE OF ss
    )
    UPDATE qflow.step_states ss SET remaining_deps = ss.remaining_deps - l.n
    FROM locked l WHERE ss.run_id = l.run_id AND ss.step_idx = l.step_idx AND ss.status = 'created';

    WITH c AS (
        SELECT k.run_id, count(*)::integer AS n FROM unnest(p_steps) k GROUP BY 1
    ), locked AS (
        SELECT r.id, c.n FROM qflow.runs r JOIN c ON r.id = c.run_id
        WHERE r.status = 'started'
        ORDER BY r.id FOR UPDATE OF r
    ), u AS (
        UPDATE qflow.runs r SET remaining_steps = r.remaining_steps - l.n
        FROM locked l WHERE r.id = l.id
        RETURNING r.id
    )
    SELECT array_agg(id) INTO v_runs FROM u;
    IF v_runs IS NULL THEN
        RETURN;
    END IF;

    -- Runs with nothing left complete; their output is their leaf steps' outputs.
    WITH done AS (
        UPDATE qflow.runs r
        SET status = 'completed', finished_at = now(),
            output = (SELECT jsonb_object_agg(st.slug, ss.output)
                      FROM qflow.step_states ss
                      JOIN qflow.steps st ON st.flow_id = ss.flow_id AND st.idx = ss.step_idx
                      WHERE ss.run_id = r.id AND st.is_leaf)
        WHERE r.id = ANY (v_runs) AND r.remaining_steps = 0 AND r.status = 'started'
        RETURNING r.id, r.flow_slug, r.events, r.started_at
    )
    SELECT count(qflow.emit('workflow_completed', id, flow_slug, NULL, NULL, 'completed', NULL,
                            (extract(epoch FROM clock_timestamp() - started_at) * 1000)::bigint, NULL, NULL))
    INTO v_n FROM done WHERE events;

    PERFORM qflow.start_ready_steps(v_runs);
END $$;

-- fail_run marks a run failed because of step p_step_idx, cancels its other
-- unfinished steps and tasks and removes their queued messages.
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
    IF v_run.events THEN
        PERFORM qflow.emit('step_failed', p_run, v_run.flow_slug, v_slug, NULL, 'failed', NULL, NULL, p_error, NULL);
        PERFORM qflow.emit('workflow_failed', p_run, v_run.flow_slug, v_slug, NULL, 'failed', NULL,
                           (extract(epoch FROM clock_timestamp() - v_run.started_at) * 1000)::bigint, p_error, NULL);
    END IF;
END $$;

-- cancel_unfinished cancels a finished run's unfinished steps and tasks and
-- deletes their queue messages.
CREATE FUNCTION qflow.cancel_unfinished(p_run uuid)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_msgs  bigint[];
    v_queue text;
BEGIN
    UPDATE qflow.step_states SET status = 'cancelled', finished_at = now()
    WHERE run_id = p_run AND status IN ('created', 'started');
    WITH c AS (
        UPDATE qflow.step_tasks SET status = 'cancelled', finished_at = now()
        WHERE run_id = p_run AND status IN ('queued', 'started')
        RETURNING message_id
    )
    SELECT array_agg(message_id) INTO v_msgs FROM c;
    IF v_msgs IS NOT NULL THEN
        SELECT f.queue_name INTO v_queue FROM qflow.flows f JOIN qflow.runs r ON r.flow_id = f.id WHERE r.id = p_run;
        EXECUTE format('DELETE FROM pgmq.%I WHERE msg_id = ANY ($1)', 'q_' || v_queue) USING v_msgs;
    END IF;
END $$;

-- cancel_run cancels a started run: the run and its unfinished steps and
-- tasks become cancelled and queued messages are removed. Workers running
-- its tasks learn it at their next heartbeat and cancel the handlers'
-- contexts. Returns false when the run had already finished.
CREATE FUNCTION qflow.cancel_run(p_run uuid, p_reason text DEFAULT 'cancelled')
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_run qflow.runs;
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
    PERFORM qflow.cancel_unfinished(p_run);
    IF v_run.events THEN
        PERFORM qflow.emit('workflow_cancelled', p_run, v_run.flow_slug, NULL, NULL, 'cancelled', NULL,
                           (extract(epoch FROM clock_timestamp() - v_run.started_at) * 1000)::bigint, p_reason, NULL);
    END IF;
    RETURN true;
END $$;

-- expire_runs cancels started runs whose whole-run deadline has passed and
-- returns how many it cancelled. Workers call it as part of their upkeep.
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

-- Tasks: claim, complete, fail, heartbeat ---------------------------------------

-- claim reserves up to p_qty visible tasks of one flow version's queue for
-- worker p_worker for p_lease_ms, marks them started and returns them with
-- their inputs, in one statement per concern. Messages whose task already
-- finished are deleted; a task whose lease expired with no attempts left
-- fails instead of running again.
CREATE FUNCTION qflow.claim(p_flow_id integer, p_worker uuid, p_qty integer, p_lease_ms bigint)
RETURNS TABLE (msg_id bigint, run_id uuid, step_idx smallint, task_index integer, attempt integer,
               step_slug text, timeout_ms bigint, input jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v_queue text;
    v_prio  boolean;
    v_keys  qflow.task_key[];
    v_msgs  bigint[];
    v_got   bigint[];
    v_claimed qflow.done_task[];
    v_failed  boolean := false;
    r       record;
BEGIN
    SELECT f.queue_name, f.prioritized INTO v_queue, v_prio FROM qflow.flows f WHERE f.id = p_flow_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'qflow: unknown flow id %', p_flow_id USING ERRCODE = 'QF404';
    END IF;
    EXECUTE format($q$
        WITH m AS (
            SELECT q.msg_id FROM pgmq.%1$I q
            WHERE q.vt <= clock_timestamp()
            ORDER BY %2$s q.msg_id LIMIT $1
            FOR UPDATE SKIP LOCKED
        ), u AS (
            UPDATE pgmq.%1$I q
            SET vt = clock_timestamp() + make_interval(secs => $2 / 1000.0),
                read_ct = q.read_ct + 1, last_read_at = clock_timestamp()
            FROM m WHERE q.msg_id = m.msg_id
            RETURNING q.msg_id, q.message
        )
        SELECT array_agg(u.msg_id ORDER BY u.msg_id),
               array_agg(((u.message->>'run_id')::uuid, (u.message->>'step_idx')::smallint,
                          (u.message->>'task_index')::integer)::qflow.task_key ORDER BY u.msg_id)
        FROM u
    $q$, 'q_' || v_queue,
        -- Prioritized flows: higher priority first (served by the expression
        -- index set_step_priorities creates); others: plain FIFO.
        CASE WHEN v_prio THEN 'coalesce((q.headers->>''priority'')::integer, 0) DESC,' ELSE '' END)
    USING p_qty, p_lease_ms INTO v_msgs, v_keys;
    IF v_msgs IS NULL THEN
        RETURN;
    END IF;

    -- Sequential runs (at most one task at a time): lock them, then admit
    -- one task per run, and only when none of its other tasks is running.
    PERFORM 1 FROM qflow.runs ru
    WHERE ru.id IN (SELECT k.run_id FROM unnest(v_keys) k) AND ru.sequential
    ORDER BY ru.id FOR UPDATE;

    -- Every lookup below is driven by the claimed keys through primary
    -- keys. Run columns come with the keys (k), never from a join of runs
    -- with step_tasks: a plan may then scan step_tasks by run_id alone, and
    -- a 10,000-task map would make every claim scan all of its tasks.
    WITH k AS MATERIALIZED (
        SELECT k.msg_id, k.run_id, k.step_idx, k.task_index,
               ru.status AS run_status, ru.max_attempts AS run_max_attempts, ru.sequential
        FROM unnest(v_msgs, v_keys) AS k(msg_id, run_id, step_idx, task_index)
        JOIN qflow.runs ru ON ru.id = k.run_id
    ), c AS (
        UPDATE qflow.step_tasks t
        SET status = 'started', attempts = t.attempts + 1, started_at = now(), worker_id = p_worker
        FROM k, qflow.steps st
        WHERE t.run_id = k.run_id AND t.step_idx = k.step_idx AND t.task_index = k.task_index
          AND st.flow_id = t.flow_id AND st.idx = t.step_idx
          AND k.run_status = 'started'
          AND (t.status = 'queued'
               OR (t.status = 'started' AND t.attempts < coalesce(k.run_max_attempts, st.max_attempts)))
          AND (NOT k.sequential OR (
                k.msg_id = (SELECT min(k2.msg_id) FROM k k2 WHERE k2.run_id = k.run_id)
                AND NOT EXISTS (SELECT 1 FROM qflow.step_tasks o
                                WHERE o.run_id = t.run_id AND o.status = 'started'
                                  AND (o.step_idx, o.task_index) <> (t.step_idx, t.task_index))))
        RETURNING t.run_id, t.step_idx, t.task_index, t.flow_id, k.msg_id, t.attempts, t.started_at
    )
    SELECT array_agg(c.msg_id), array_agg(c::qflow.done_task ORDER BY c.msg_id) INTO v_got, v_claimed FROM c;

    -- Messages not claimed: stale ones are deleted; a task whose worker
    -- vanished with no attempts left fails; a task of a sequential run that
    -- must wait for its turn is looked at again shortly.
    FOR r IN SELECT k.msg_id, k.run_id, k.step_idx, k.task_index, t.status, t.attempts,
                    coalesce(ru.max_attempts, st.max_attempts) AS max_attempts, ru.status AS run_status
             FROM unnest(v_msgs, v_keys) AS k(msg_id, run_id, step_idx, task_index)
             LEFT JOIN qflow.step_tasks t ON t.run_id = k.run_id AND t.step_idx = k.step_idx
                                          AND t.task_index = k.task_index
             LEFT JOIN qflow.runs ru ON ru.id = t.run_id
             LEFT JOIN qflow.steps st ON st.flow_id = t.flow_id AND st.idx = t.step_idx
             WHERE (v_got IS NULL OR NOT (k.msg_id = ANY (v_got)))
               AND cardinality(v_got) IS DISTINCT FROM cardinality(v_msgs) LOOP
        IF r.run_status = 'started' AND r.status = 'started' AND r.attempts >= r.max_attempts THEN
            PERFORM qflow.fail_tasks(NULL, ARRAY[(r.run_id, r.step_idx, r.task_index)::qflow.task_key],
                ARRAY['lease expired: the worker running this task stopped heart-beating, and no attempts are left'],
                ARRAY[true]);
            v_failed := true;
        ELSIF r.run_status = 'started' AND r.status IN ('queued', 'started') THEN
            EXECUTE format('UPDATE pgmq.%I SET vt = clock_timestamp() + interval ''100 milliseconds'', read_ct = read_ct - 1 WHERE msg_id = $1',
                           'q_' || v_queue) USING r.msg_id;
        ELSE
            EXECUTE format('DELETE FROM pgmq.%I WHERE msg_id = $1', 'q_' || v_queue) USING r.msg_id;
        END IF;
    END LOOP;
    IF v_got IS NULL THEN
        RETURN;
    END IF;
    -- Failing a task fails its run and cancels the run's other tasks: do
    -- not hand out tasks this very call just cancelled.
    IF v_failed THEN
        SELECT array_agg(d ORDER BY d.message_id) INTO v_claimed FROM unnest(v_claimed) d
        WHERE (SELECT t.status FROM qflow.step_tasks t
               WHERE t.run_id = d.run_id AND t.step_idx = d.step_idx AND t.task_index = d.task_index) = 'started';
        IF v_claimed IS NULL THEN
            RETURN;
        END IF;
    END IF;

    RETURN QUERY
    SELECT d.message_id, d.run_id, d.step_idx, d.task_index, d.attempts, st.slug, st.timeout_ms,
           CASE WHEN st.kind = 'map'
                THEN (SELECT t.input FROM qflow.step_tasks t
                      WHERE t.run_id = d.run_id AND t.step_idx = d.step_idx AND t.task_index = d.task_index)
                ELSE (CASE WHEN st.takes_input
                           THEN jsonb_build_object('run', (SELECT ru.input FROM qflow.runs ru WHERE ru.id = d.run_id))
                           ELSE '{}'::jsonb END)
                     || coalesce((SELECT jsonb_object_agg(dst.slug, ds.output)
                                  FROM qflow.deps dp
                                  JOIN qflow.steps dst ON dst.flow_id = dp.flow_id AND dst.idx = dp.dep_idx
                                  JOIN qflow.step_states ds ON ds.run_id = d.run_id AND ds.step_idx = dp.dep_idx
                                  WHERE dp.flow_id = d.flow_id AND dp.step_idx = d.step_idx), '{}'::jsonb)
           END
    FROM unnest(v_claimed) d
    JOIN qflow.steps st ON st.flow_id = d.flow_id AND st.idx = d.step_idx
    ORDER BY d.message_id;

    PERFORM qflow.emit('task_started', d.run_id, ru.flow_slug, st.slug, d.task_index, 'started', d.attempts, NULL, NULL, NULL)
    FROM unnest(v_claimed) d
    JOIN qflow.steps st ON st.flow_id = d.flow_id AND st.idx = d.step_idx
    JOIN qflow.runs ru ON ru.id = d.run_id
    WHERE ru.events;
END $$;

-- complete_tasks records the outputs of finished tasks in one transaction:
-- tasks still started become completed (a late or duplicate completion of
-- a finished task changes nothing), their messages are deleted, steps with
-- no tasks left complete (a map step's output is its tasks' outputs in
-- index order), and the completion propagates to dependents and runs.
-- Returns the number of tasks it completed.
CREATE FUNCTION qflow.complete_tasks(p_worker uuid, p_keys qflow.task_key[], p_outputs jsonb[])
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_tasks qflow.done_task[];
    v_done  qflow.step_key[];
    v_queue text;
    v_n     integer;
BEGIN
    -- Lock the runs first, in id order, as cancel_run and fail_run do: every
    -- transition then takes run → step → task locks in the same order, so
    -- completions, failures and cancellations of one run cannot deadlock.
    PERFORM 1 FROM qflow.runs WHERE id IN (SELECT k.run_id FROM unnest(p_keys) k) ORDER BY id FOR NO KEY UPDATE;
    IF cardinality(p_keys) IS DISTINCT FROM cardinality(p_outputs) THEN
        RAISE EXCEPTION 'qflow: complete_tasks: % keys but % outputs', cardinality(p_keys), cardinality(p_outputs)
            USING ERRCODE = '22023';
    END IF;
    WITH k AS (
        SELECT x.run_id, x.step_idx, x.task_index, x.output
        FROM unnest(p_keys, p_outputs) AS x(run_id, step_idx, task_index, output)
    ), locked AS (
        SELECT t.run_id, t.step_idx, t.task_index, k.output FROM qflow.step_tasks t
        JOIN k ON t.run_id = k.run_id AND t.step_idx = k.step_idx AND t.task_index = k.task_index
        WHERE t.status = 'started'
        ORDER BY 1, 2, 3
        FOR UPDATE OF t
    ), u AS (
        UPDATE qflow.step_tasks t
        SET status = 'completed', output = coalesce(l.output, 'null'::jsonb), error = NULL, finished_at = now()
        FROM locked l
        WHERE t.run_id = l.run_id AND t.step_idx = l.step_idx AND t.task_index = l.task_index
        RETURNING t.run_id, t.step_idx, t.task_index, t.flow_id, t.message_id, t.attempts, t.started_at
    )
    SELECT array_agg(u::qflow.done_task) INTO v_tasks FROM u;
    IF v_tasks IS NULL THEN
        RETURN 0;
    END IF;

    FOR v_queue IN SELECT DISTINCT f.queue_name FROM unnest(v_tasks) d JOIN qflow.flows f ON f.id = d.flow_id LOOP
        EXECUTE format('DELETE FROM pgmq.%I WHERE msg_id = ANY ($1)', 'q_' || v_queue)
        USING (SELECT array_agg(d.message_id) FROM unnest(v_tasks) d JOIN qflow.flows f ON f.id = d.flow_id
               WHERE f.queue_name = v_queue);
    END LOOP;

    PERFORM qflow.emit('task_completed', d.run_id, ru.flow_slug, st.slug, d.task_index, 'completed', d.attempts,
                       (extract(epoch FROM clock_timestamp() - d.started_at) * 1000)::bigint, NULL, NULL)
    FROM unnest(v_tasks) d
    JOIN qflow.runs ru ON ru.id = d.run_id
    JOIN qflow.steps st ON st.flow_id = d.flow_id AND st.idx = d.step_idx
    WHERE ru.events;

    -- Count down each step's remaining tasks, rows locked in a fixed order.
    WITH c AS (
        SELECT d.run_id, d.step_idx, count(*)::integer AS n FROM unnest(v_tasks) d GROUP BY 1, 2
    ), locked AS (
        SELECT ss.run_id, ss.step_idx, c.n FROM qflow.step_states ss
        JOIN c ON ss.run_id = c.run_id AND ss.step_idx = c.step_idx
        WHERE ss.status = 'started'
        ORDER BY 1, 2
        FOR UPDATE OF ss
    ), u AS (
        UPDATE qflow.step_states ss SET remaining_tasks = ss.remaining_tasks - l.n
        FROM locked l WHERE ss.run_id = l.run_id AND ss.step_idx = l.step_idx
        RETURNING ss.run_id, ss.step_idx, ss.remaining_tasks
    )
    SELECT array_agg((u.run_id, u.step_idx)::qflow.step_key) INTO v_done FROM u WHERE u.remaining_tasks = 0;

    IF v_done IS NOT NULL THEN
        WITH u AS (
            UPDATE qflow.step_states ss
            SET status = 'completed', finished_at = now(), error = NULL,
                output = CASE WHEN st.kind = 'single'
                              THEN (SELECT t.output FROM qflow.step_tasks t
                                    WHERE t.run_id = ss.run_id AND t.step_idx = ss.step_idx AND t.task_index = 0)
                              ELSE (SELECT coalesce(jsonb_agg(t.output ORDER BY t.task_index), '[]'::jsonb)
                                    FROM qflow.step_tasks t
                                    WHERE t.run_id = ss.run_id AND t.step_idx = ss.step_idx)
                         END
            FROM unnest(v_done) k, qflow.steps st
            WHERE ss.run_id = k.run_id AND ss.step_idx = k.step_idx
              AND st.flow_id = ss.flow_id AND st.idx = ss.step_idx
            RETURNING ss.run_id, st.slug, ss.started_at
        )
        SELECT count(qflow.emit('step_completed', u.run_id, ru.flow_slug, u.slug, NULL, 'completed', NULL,
                                (extract(epoch FROM clock_timestamp() - u.started_at) * 1000)::bigint, NULL, NULL))
        INTO v_n FROM u JOIN qflow.runs ru ON ru.id = u.run_id WHERE ru.events;
        PERFORM qflow.steps_completed(v_done);
    END IF;
    RETURN cardinality(v_tasks);
END $$;

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
-- everything else in it. The error is stored on the task and the step.
CREATE FUNCTION qflow.fail_tasks(p_worker uuid, p_keys qflow.task_key[], p_errors text[], p_permanent boolean[])
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    r       record;
    v_n     integer := 0;
    v_delay bigint;
    v_ms    bigint;
BEGIN
    -- Lock the runs first, in id order, as cancel_run and fail_run do: every
    -- transition then takes run → step → task locks in the same order, so
    -- completions, failures and cancellations of one run cannot deadlock.
    PERFORM 1 FROM qflow.runs WHERE id IN (SELECT k.run_id FROM unnest(p_keys) k) ORDER BY id FOR NO KEY UPDATE;
    -- Run columns come with the keys (x), never from a join of runs with
    -- step_tasks, so tasks are found by primary key (see claim).
    FOR r IN WITH x AS MATERIALIZED (
                 SELECT x.run_id, x.step_idx, x.task_index, x.err, x.perm,
                        ru.max_attempts AS run_max_attempts, ru.events, ru.flow_slug, ru.status AS run_status
                 FROM unnest(p_keys, p_errors, p_permanent) AS x(run_id, step_idx, task_index, err, perm)
                 JOIN qflow.runs ru ON ru.id = x.run_id
             )
             SELECT t.run_id, t.step_idx, t.task_index, t.attempts, t.message_id, t.started_at,
                    x.err, coalesce(x.perm, false) AS perm, st.slug, st.base_delay_ms,
                    coalesce(x.run_max_attempts, st.max_attempts) AS max_attempts,
                    x.events, x.flow_slug, f.queue_name
             FROM x
             JOIN qflow.step_tasks t ON t.run_id = x.run_id AND t.step_idx = x.step_idx
                                     AND t.task_index = x.task_index
             JOIN qflow.steps st ON st.flow_id = t.flow_id AND st.idx = t.step_idx
             JOIN qflow.flows f ON f.id = t.flow_id
             WHERE t.status = 'started' AND x.run_status = 'started'
               -- A worker fails only its own attempt: one whose lease lapsed
               -- must not fail the attempt another worker took over. (The
               -- engine itself passes NULL for an expired lease.)
               AND (p_worker IS NULL OR t.worker_id = p_worker)
             ORDER BY t.run_id, t.step_idx, t.task_index
             FOR UPDATE OF t LOOP
        v_n := v_n + 1;
        v_ms := (extract(epoch FROM clock_timestamp() - r.started_at) * 1000)::bigint;
        UPDATE qflow.step_states SET error = r.err WHERE run_id = r.run_id AND step_idx = r.step_idx;
        IF NOT r.perm AND r.attempts < r.max_attempts THEN
            v_delay := qflow.retry_delay_ms(r.base_delay_ms, r.attempts);
            UPDATE qflow.step_tasks SET status = 'queued', error = r.err, worker_id = NULL
            WHERE run_id = r.run_id AND step_idx = r.step_idx AND task_index = r.task_index;
            EXECUTE format('UPDATE pgmq.%I SET vt = clock_timestamp() + make_interval(secs => $2 / 1000.0) WHERE msg_id = $1',
                           'q_' || r.queue_name) USING r.message_id, v_delay;
            IF r.events THEN
                PERFORM qflow.emit('task_failed', r.run_id, r.flow_slug, r.slug, r.task_index, 'queued', r.attempts,
                                   v_ms, r.err, true);
            END IF;
        ELSE
            UPDATE qflow.step_tasks SET status = 'failed', error = r.err, finished_at = now()
            WHERE run_id = r.run_id AND step_idx = r.step_idx AND task_index = r.task_index;
            EXECUTE format('DELETE FROM pgmq.%I WHERE msg_id = $1', 'q_' || r.queue_name) USING r.message_id;
            IF r.events THEN
                PERFORM qflow.emit('task_failed', r.run_id, r.flow_slug, r.slug, r.task_index, 'failed', r.attempts,
                                   v_ms, r.err, false);
            END IF;
            PERFORM qflow.fail_run(r.run_id, r.step_idx, r.err);
        END IF;
    END LOOP;
    RETURN v_n;
END $$;

-- heartbeat records that worker p_worker is alive, extends the lease of
-- the tasks it still runs by p_lease_ms, and returns those of p_keys it
-- must stop: tasks no longer started by it (cancelled, failed with their
-- run, or taken over after its lease expired).
CREATE FUNCTION qflow.heartbeat(p_worker uuid, p_keys qflow.task_key[], p_lease_ms bigint)
RETURNS SETOF qflow.task_key LANGUAGE plpgsql AS $$
DECLARE
    v_queue text;
BEGIN
    UPDATE qflow.workers SET heartbeat_at = now() WHERE id = p_worker;
    FOR v_queue IN SELECT DISTINCT f.queue_name FROM unnest(p_keys) k
                   JOIN qflow.step_tasks t ON t.run_id = k.run_id AND t.step_idx = k.step_idx AND t.task_index = k.task_index
                   JOIN qflow.flows f ON f.id = t.flow_id
                   WHERE t.status = 'started' AND t.worker_id = p_worker LOOP
        EXECUTE format('UPDATE pgmq.%I SET vt = clock_timestamp() + make_interval(secs => $2 / 1000.0) WHERE msg_id = ANY ($1)',
                       'q_' || v_queue)
        USING (SELECT array_agg(t.message_id) FROM unnest(p_keys) k
               JOIN qflow.step_tasks t ON t.run_id = k.run_id AND t.step_idx = k.step_idx AND t.task_index = k.task_index
               JOIN qflow.flows f ON f.id = t.flow_id
               WHERE t.status = 'started' AND t.worker_id = p_worker AND f.queue_name = v_queue),
              p_lease_ms;
    END LOOP;
    RETURN QUERY
    SELECT k.run_id, k.step_idx, k.task_index FROM unnest(p_keys) k
    LEFT JOIN qflow.step_tasks t ON t.run_id = k.run_id AND t.step_idx = k.step_idx AND t.task_index = k.task_index
    WHERE t.status IS DISTINCT FROM 'started' OR t.worker_id IS DISTINCT FROM p_worker;
END $$;

-- release returns tasks a stopping worker still holds to the queue at once,
-- without counting the attempt, so another worker can take them.
CREATE FUNCTION qflow.release_tasks(p_worker uuid, p_keys qflow.task_key[])
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    r   record;
    v_n integer := 0;
BEGIN
    FOR r IN SELECT t.run_id, t.step_idx, t.task_index, t.message_id, f.queue_name
             FROM unnest(p_keys) k
             JOIN qflow.step_tasks t ON t.run_id = k.run_id AND t.step_idx = k.step_idx AND t.task_index = k.task_index
             JOIN qflow.flows f ON f.id = t.flow_id
             WHERE t.status = 'started' AND t.worker_id = p_worker
             ORDER BY 1, 2, 3 FOR UPDATE OF t LOOP
        UPDATE qflow.step_tasks SET status = 'queued', attempts = attempts - 1, worker_id = NULL
        WHERE run_id = r.run_id AND step_idx = r.step_idx AND task_index = r.task_index;
        EXECUTE format('UPDATE pgmq.%I SET vt = clock_timestamp() WHERE msg_id = $1', 'q_' || r.queue_name)
        USING r.message_id;
        PERFORM pg_notify('qflow_work', r.queue_name);
        v_n := v_n + 1;
    END LOOP;
    RETURN v_n;
END $$;

-- settle records a worker's finished tasks and claims new ones in the same
-- transaction (one round trip): completions and failures first, so the
-- steps they make ready can be claimed at once, without a wake-up.
CREATE FUNCTION qflow.settle(p_worker uuid, p_done qflow.task_key[], p_outputs jsonb[],
                             p_failed qflow.task_key[], p_errors text[], p_permanent boolean[],
                             p_flow_id integer, p_qty integer, p_lease_ms bigint)
RETURNS TABLE (msg_id bigint, run_id uuid, step_idx smallint, task_index integer, attempt integer,
               step_slug text, timeout_ms bigint, input jsonb)
LANGUAGE plpgsql AS $$
BEGIN
    IF cardinality(p_done) > 0 THEN
        PERFORM qflow.complete_tasks(p_worker, p_done, p_outputs);
    END IF;
    IF cardinality(p_failed) > 0 THEN
        PERFORM qflow.fail_tasks(p_worker, p_failed, p_errors, p_permanent);
    END IF;
    IF p_qty > 0 THEN
        RETURN QUERY SELECT * FROM qflow.claim(p_flow_id, p_worker, p_qty, p_lease_ms);
    END IF;
END $$;

-- Priorities ----------------------------------------------------------------------

-- set_step_priorities sets the priorities of the named steps of flow version
-- p_flow_id (steps not named keep theirs; the default is 0). When any step
-- of the version has a non-zero priority, its tasks carry their step's
-- priority in the message headers ({"priority": n}) from then on, and claims
-- of that version take ready tasks with the highest priority first (FIFO
-- among equals). The queue gets an expression index on that order the first
-- time; flows without priorities keep the plain FIFO claim. Tasks already
-- queued keep the priority they were sent with.
CREATE FUNCTION qflow.set_step_priorities(p_flow_id integer, p_slugs text[], p_priorities integer[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_queue text;
    v_bad   text;
    v_prio  boolean;
BEGIN
    IF cardinality(p_slugs) IS DISTINCT FROM cardinality(p_priorities) THEN
        RAISE EXCEPTION 'qflow: set_step_priorities: % slugs but % priorities',
            coalesce(cardinality(p_slugs), 0), coalesce(cardinality(p_priorities), 0) USING ERRCODE = '22023';
    END IF;
    SELECT queue_name INTO v_queue FROM qflow.flows WHERE id = p_flow_id FOR UPDATE;
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
    v_prio := EXISTS (SELECT 1 FROM qflow.steps WHERE flow_id = p_flow_id AND priority <> 0);
    UPDATE qflow.flows SET prioritized = v_prio WHERE id = p_flow_id;
    IF v_prio THEN
        -- The claim's order for prioritized flows. Not partial: every message
        -- takes part in the order (those sent before priorities were set count as 0).
        EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON pgmq.%I ((coalesce((headers->>''priority'')::integer, 0)) DESC, msg_id)',
                       'q_' || v_queue || '_prio_idx', 'q_' || v_queue);
    END IF;
END $$;

-- Plans: every transition runs the same few statements over small sets of
-- keys; generic plans (built once per session) probe indexes and skip
-- re-planning on every call.
ALTER FUNCTION qflow.start_runs(integer, jsonb[], jsonb) SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off;
ALTER FUNCTION qflow.start_ready_steps(uuid[]) SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off;
ALTER FUNCTION qflow.steps_completed(qflow.step_key[]) SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off;
ALTER FUNCTION qflow.complete_tasks(uuid, qflow.task_key[], jsonb[]) SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off;
ALTER FUNCTION qflow.fail_tasks(uuid, qflow.task_key[], text[], boolean[]) SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off;
ALTER FUNCTION qflow.claim(integer, uuid, integer, bigint) SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off;
ALTER FUNCTION qflow.settle(uuid, qflow.task_key[], jsonb[], qflow.task_key[], text[], boolean[], integer, integer, bigint) SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off;
