-- Events: a per-session switch and a payload that can never exceed NOTIFY's
-- limit. Replaces qflow.emit from 0002 (same signature, so every caller
-- picks it up); the payload is documented field by field in runtime/notify.

-- event_error is the error text an event carries: the error itself when its
-- JSON encoding fits in 4000 bytes, else its first 600 characters followed
-- by " …[truncated]". 600 characters encode to at most 3600 bytes (a control
-- character becomes \u00XX, 6 bytes; other characters take at most 4), so
-- with the other fields (slugs are at most 40 and 63 characters) a payload
-- stays far below the 8000 bytes pg_notify accepts. The full error is kept
-- on the task and the step.
CREATE FUNCTION qflow.event_error(p_error text, OUT error text, OUT truncated boolean)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN cut THEN left(p_error, 600) || ' …[truncated]' ELSE p_error END, cut
    FROM (SELECT p_error IS NOT NULL AND octet_length(p_error) > 600
                 AND octet_length(to_json(p_error)::text) > 4000 AS cut) c
$$;

-- emit publishes one event on channel qflow_events, unless the session
-- turned events off with the setting qflow.events = 'off' (workers started
-- with WorkerOptions.DisableEvents open their connections that way). Runs
-- started with events off never reach emit: the engine checks runs.events
-- first. NULL fields are left out of the payload; ts is the clock time of
-- the transition in UTC.
CREATE OR REPLACE FUNCTION qflow.emit(p_type text, p_run uuid, p_flow text, p_step text, p_task integer,
                                      p_status text, p_attempt integer, p_duration_ms bigint,
                                      p_error text, p_will_retry boolean)
RETURNS void LANGUAGE sql AS $$
    SELECT pg_notify('qflow_events', json_strip_nulls(json_build_object(
        'type', p_type, 'run_id', p_run, 'flow', p_flow, 'step', p_step,
        'task_index', p_task, 'status', p_status, 'attempt', p_attempt,
        'will_retry', p_will_retry, 'duration_ms', p_duration_ms,
        'error', e.error, 'error_truncated', CASE WHEN e.truncated THEN true END,
        'ts', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')))::text)
    FROM qflow.event_error(p_error) e
    WHERE current_setting('qflow.events', true) IS DISTINCT FROM 'off'
$$;
