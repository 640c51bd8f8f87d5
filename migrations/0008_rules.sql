-- The rules of qflow.runs, qflow.step_states and qflow.step_tasks (the
-- status values, counters never negative, status in step with finished_at,
-- outputs and counters) are kept by the engine's functions, not by CHECK
-- constraints: PostgreSQL reads and plans a table's CHECK expressions again
-- on every statement that writes the table (see 0002_qflow.sql). A database
-- migrated before they were dropped from 0002 loses them here; on one
-- migrated since, there are none to drop.
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN SELECT conrelid::regclass AS rel, conname FROM pg_constraint
             WHERE contype = 'c'
               AND conrelid IN ('qflow.runs'::regclass, 'qflow.step_states'::regclass, 'qflow.step_tasks'::regclass)
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', c.rel, c.conname);
    END LOOP;
END $$;

-- invariant_violations returns one line for each row of runs, step_states
-- and step_tasks that breaks the rules the engine keeps (see above; a rule
-- whose columns are NULL holds, as a CHECK's would), naming the table, the
-- row's key and its status. None is the only right answer.
CREATE FUNCTION qflow.invariant_violations() RETURNS SETOF text LANGUAGE sql STABLE AS $$
    SELECT format('runs %s: status %s', r.id, r.status) FROM qflow.runs r
    WHERE (r.status IN ('started', 'completed', 'failed', 'cancelled') AND r.remaining_steps >= 0
           AND r.max_attempts >= 1 AND octet_length(r.idempotency_key) BETWEEN 1 AND 255 AND r.resumes >= 0
           AND (r.status = 'started') = (r.finished_at IS NULL)
           AND (r.status <> 'completed' OR (r.output IS NOT NULL AND r.remaining_steps = 0))) IS FALSE
    UNION ALL
    SELECT format('step_states %s/%s: status %s', s.run_id, s.step_idx, s.status) FROM qflow.step_states s
    WHERE (s.status IN ('created', 'started', 'completed', 'failed', 'cancelled', 'skipped')
           AND s.task_count >= 0 AND s.remaining_tasks >= 0
           AND (s.status <> 'completed' OR (s.output IS NOT NULL AND s.remaining_tasks = 0))) IS FALSE
    UNION ALL
    SELECT format('step_tasks %s/%s/%s: status %s', t.run_id, t.step_idx, t.task_index, t.status)
    FROM qflow.step_tasks t
    WHERE (t.status IN ('queued', 'started', 'completed', 'failed', 'cancelled', 'skipped')
           AND t.task_index >= 0 AND t.attempts >= 0 AND t.max_attempts >= 1
           AND (t.status <> 'completed' OR t.output IS NOT NULL)
           AND (t.status <> 'started' OR t.attempts > 0)
           AND (t.finished_at IS NULL) = (t.status IN ('queued', 'started'))) IS FALSE
$$;
