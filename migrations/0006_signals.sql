-- Signals (runtime.Client.Signal, //qflow:step wait=NAME).
--
-- A step that waits for a signal (steps.wait_signal) starts only once its
-- run has received the signal: when start_steps would start it and the
-- signal is not there yet, hold_waits gives it a state of status 'created'
-- (waiting) and no task, and records its wait (qflow.waits, with the
-- deadline of its wait timeout). qflow.signal stores a run's signal
-- (qflow.signals: one per run and name, so a second one is refused) and
-- starts the steps waiting for it; a signal sent before the run reaches
-- its step is kept, and the step starts at once when it is reached. The
-- step's task input carries the payload under the key "signal". A wait
-- whose deadline passes (expire_waits, from upkeep) skips its step when
-- the step is optional and fails the run otherwise. Everything is in the
-- database: a worker killed while a run waits loses nothing.

ALTER TABLE qflow.steps
    ADD COLUMN wait_signal     text CHECK (wait_signal ~ '^[a-z][a-z0-9_]{0,39}$'),
    ADD COLUMN wait_timeout_ms bigint CHECK (wait_timeout_ms > 0);

CREATE TABLE qflow.signals (
    run_id  uuid NOT NULL REFERENCES qflow.runs ON DELETE CASCADE,
    name    text NOT NULL,
    payload jsonb NOT NULL,
    sent_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, name)
);

CREATE TABLE qflow.waits (
    run_id   uuid NOT NULL REFERENCES qflow.runs ON DELETE CASCADE,
    step_idx smallint NOT NULL,
    name     text NOT NULL,
    since    timestamptz NOT NULL,
    deadline timestamptz,
    PRIMARY KEY (run_id, step_idx)
);
CREATE INDEX waits_deadline ON qflow.waits (deadline) WHERE deadline IS NOT NULL;

-- define_waits records which steps of new flow version p_flow_id wait for
-- a signal (define_flow; the normalised steps' "wait" and
-- "wait_timeout_ms").
CREATE FUNCTION qflow.define_waits(p_flow_id integer, p_steps jsonb)
RETURNS void LANGUAGE sql AS $$
    UPDATE qflow.steps st SET wait_signal = e.v->>'wait',
        wait_timeout_ms = nullif((e.v->>'wait_timeout_ms')::bigint, 0)
    FROM jsonb_array_elements(p_steps) WITH ORDINALITY AS e(v, o)
    WHERE st.flow_id = p_flow_id AND st.idx = e.o - 1 AND e.v ? 'wait'
$$;

-- hold_waits is start_steps' hook: of the steps about to start, those that
-- wait for a signal their run has not received are held (a state of
-- status 'created', a qflow.waits row, a step_waiting event whose until is
-- the wait's deadline) and left out of the result; those whose signal is
-- there get its payload in their input under "signal". The others are
-- returned as they are.
CREATE FUNCTION qflow.hold_waits(p_ready qflow.ready_step[], p_now timestamptz)
RETURNS qflow.ready_step[] LANGUAGE plpgsql AS $$
DECLARE
    v_out qflow.ready_step[];
    r     qflow.ready_step;
    v_sig text;
    v_ms  bigint;
    v_pay jsonb;
    v_dl  timestamptz;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM unnest(p_ready) q
                   JOIN qflow.steps st ON st.flow_id = q.flow_id AND st.idx = q.step_idx
                   WHERE st.wait_signal IS NOT NULL) THEN
        RETURN p_ready;
    END IF;
    FOREACH r IN ARRAY p_ready LOOP
        SELECT st.wait_signal, st.wait_timeout_ms INTO v_sig, v_ms
        FROM qflow.steps st WHERE st.flow_id = r.flow_id AND st.idx = r.step_idx;
        IF v_sig IS NULL THEN
            v_out := v_out || r;
            CONTINUE;
        END IF;
        SELECT sg.payload INTO v_pay FROM qflow.signals sg WHERE sg.run_id = r.run_id AND sg.name = v_sig;
        IF FOUND THEN
            r.src := r.src || jsonb_build_object('signal', v_pay);
            v_out := v_out || r;
            CONTINUE;
        END IF;
        v_dl := p_now + make_interval(secs => v_ms / 1000.0);
        INSERT INTO qflow.step_states (run_id, step_idx, flow_id, status)
        VALUES (r.run_id, r.step_idx, r.flow_id, 'created');
        INSERT INTO qflow.waits (run_id, step_idx, name, since, deadline)
        VALUES (r.run_id, r.step_idx, v_sig, p_now, v_dl)
        ON CONFLICT (run_id, step_idx) DO UPDATE SET name = excluded.name, since = excluded.since,
            deadline = excluded.deadline;
        IF r.events THEN
            PERFORM qflow.publish(ARRAY[qflow.ev('step_waiting', r.run_id, r.flow_slug, r.step_slug, NULL, 'waiting',
                                                 NULL, NULL, NULL, NULL, NULL, v_dl)]);
        END IF;
    END LOOP;
    RETURN v_out;
END $$;

-- signal delivers signal p_name with payload p_payload to run p_run, with
-- the run locked first: it is stored, and the steps waiting for it resume
-- (step_resumed, then start_steps queues their tasks and publishes
-- step_started). Returns 'resumed' when a step resumed, 'kept' when none
-- waits yet (the step starts at once when the run reaches it), and, with
-- nothing changed: 'unknown_run', 'finished' (the run is not started),
-- 'unknown_signal' (no step of the run's flow version waits for p_name),
-- 'duplicate' (the run has this signal already).
CREATE FUNCTION qflow.signal(p_run uuid, p_name text, p_payload jsonb)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_run qflow.runs;
    v_rs  smallint[];
    v_st  record;
BEGIN
    SELECT * INTO v_run FROM qflow.runs WHERE id = p_run FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'unknown_run';
    END IF;
    IF v_run.status <> 'started' THEN
        RETURN 'finished';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM qflow.steps WHERE flow_id = v_run.flow_id AND wait_signal = p_name) THEN
        RETURN 'unknown_signal';
    END IF;
    INSERT INTO qflow.signals (run_id, name, payload) VALUES (p_run, p_name, p_payload)
    ON CONFLICT (run_id, name) DO NOTHING;
    IF NOT FOUND THEN
        RETURN 'duplicate';
    END IF;
    WITH d AS (
        DELETE FROM qflow.step_states ss USING qflow.steps st
        WHERE ss.run_id = p_run AND ss.status = 'created'
          AND st.flow_id = ss.flow_id AND st.idx = ss.step_idx AND st.wait_signal = p_name
        RETURNING ss.step_idx
    )
    SELECT array_agg(d.step_idx ORDER BY d.step_idx) INTO v_rs FROM d;
    IF v_rs IS NULL THEN
        RETURN 'kept';
    END IF;
    DELETE FROM qflow.waits WHERE run_id = p_run AND step_idx = ANY (v_rs);
    IF v_run.events AND qflow.events_on() THEN
        PERFORM qflow.publish(array_agg(qflow.ev('step_resumed', p_run, v_run.flow_slug, st.slug, NULL, 'started',
                                                 NULL, NULL, NULL, NULL) ORDER BY st.idx))
        FROM qflow.steps st WHERE st.flow_id = v_run.flow_id AND st.idx = ANY (v_rs);
    END IF;
    v_st := qflow.start_steps(array_fill(p_run, ARRAY[cardinality(v_rs)]), v_rs);
    PERFORM qflow.wake(v_st.o_queues);
    RETURN 'resumed';
END $$;

-- expire_waits ends the waits whose deadline has passed (upkeep): the
-- step is skipped when it is optional (skip_steps, with the timeout as its
-- error) and fails its run otherwise. A run another transaction holds is
-- left for the next upkeep; waits of runs that finished are dropped.
-- Returns the number of waits it ended.
CREATE FUNCTION qflow.expire_waits()
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_n   integer := 0;
    w     record;
    v_err text;
    v_sk  record;
BEGIN
    FOR w IN SELECT wt.run_id, wt.step_idx, wt.name, wt.since, wt.deadline FROM qflow.waits wt
             WHERE wt.deadline IS NOT NULL AND wt.deadline <= now() ORDER BY wt.deadline LIMIT 1000 LOOP
        PERFORM 1 FROM qflow.runs WHERE id = w.run_id AND status = 'started' FOR UPDATE SKIP LOCKED;
        IF NOT FOUND THEN
            DELETE FROM qflow.waits wt WHERE wt.run_id = w.run_id AND wt.step_idx = w.step_idx
              AND NOT EXISTS (SELECT 1 FROM qflow.runs r WHERE r.id = w.run_id AND r.status = 'started');
            CONTINUE;
        END IF;
        DELETE FROM qflow.waits wt WHERE wt.run_id = w.run_id AND wt.step_idx = w.step_idx AND wt.deadline <= now();
        IF NOT FOUND OR NOT EXISTS (SELECT 1 FROM qflow.step_states ss
                                    WHERE ss.run_id = w.run_id AND ss.step_idx = w.step_idx AND ss.status = 'created') THEN
            CONTINUE;
        END IF;
        v_err := format('timed out after %s waiting for signal "%s"', w.deadline - w.since, w.name);
        v_n := v_n + 1;
        IF EXISTS (SELECT 1 FROM qflow.steps st JOIN qflow.step_states ss ON ss.flow_id = st.flow_id AND ss.step_idx = st.idx
                   WHERE ss.run_id = w.run_id AND ss.step_idx = w.step_idx AND st.optional) THEN
            UPDATE qflow.step_states SET status = 'started', started_at = now(), task_count = 0, remaining_tasks = 0
            WHERE run_id = w.run_id AND step_idx = w.step_idx;
            SELECT * INTO v_sk FROM qflow.skip_steps(ARRAY[w.run_id], ARRAY[w.step_idx], ARRAY[v_err]);
            PERFORM qflow.wake(v_sk.o_queues);
        ELSE
            PERFORM qflow.fail_run(w.run_id, w.step_idx, v_err);
        END IF;
    END LOOP;
    RETURN v_n;
END $$;
