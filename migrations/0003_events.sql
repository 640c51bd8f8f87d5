-- Events: a per-session switch and a payload that can never exceed NOTIFY's
-- limit. Replaces qflow.emit from 0002 (same signature, so every caller
-- picks it up); the payload is documented field by field in runtime/notify.

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
CREATE OR REPLACE FUNCTION qflow.emit(p_type text, p_run uuid, p_flow text, p_step text, p_task integer,
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
