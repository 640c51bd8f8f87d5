-- Subflows (runtime.Subflow, issue 16 item 4): a step that runs another
-- flow as a child run and takes the child's output as its own.
--
-- A child run records the task that started it: parent_run_id, the step's
-- slug (parent_step), its task index (parent_task) and the attempt
-- (parent_attempt). The subflow handler starts the child and links it in
-- one transaction (link_child), under an advisory lock on the parent task,
-- so however many times the handler runs (snoozes, a worker killed and the
-- task claimed again, hedging) an attempt has at most one child.
--
-- A parent that fails or is cancelled cancels its started children, and
-- theirs in turn (the trigger runs_cancel_children): every path that ends a
-- run that way (CancelRun, the run's timeout, a failed step) goes through an
-- UPDATE of runs.status, so no existing function needs to know about it.

ALTER TABLE qflow.runs
    ADD COLUMN parent_run_id  uuid,
    ADD COLUMN parent_step    text,
    ADD COLUMN parent_task    integer,
    ADD COLUMN parent_attempt integer;

CREATE INDEX runs_parent ON qflow.runs (parent_run_id, parent_step, parent_task)
    WHERE parent_run_id IS NOT NULL;

-- link_child makes p_child a child of the task (p_parent, p_step, p_task)
-- at attempt p_attempt and publishes subflow_started on the parent run:
-- {"type":"subflow_started","run_id":parent,"flow":parent's flow,"step",
-- "task_index","attempt","child_run_id","child_flow","ts"}. A run that
-- already has a parent is left alone (returns false).
CREATE FUNCTION qflow.link_child(p_child uuid, p_parent uuid, p_step text, p_task integer, p_attempt integer)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_child  qflow.runs;
    v_parent qflow.runs;
BEGIN
    UPDATE qflow.runs SET parent_run_id = p_parent, parent_step = p_step, parent_task = p_task,
                          parent_attempt = p_attempt
    WHERE id = p_child AND parent_run_id IS NULL
    RETURNING * INTO v_child;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    SELECT * INTO v_parent FROM qflow.runs WHERE id = p_parent;
    IF v_parent.events AND qflow.events_on() THEN
        PERFORM qflow.publish(ARRAY[jsonb_build_object(
            'type', 'subflow_started', 'run_id', p_parent, 'flow', v_parent.flow_slug, 'step', p_step,
            'task_index', p_task, 'attempt', p_attempt, 'child_run_id', p_child, 'child_flow', v_child.flow_slug,
            'ts', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))::text]);
    END IF;
    RETURN true;
END $$;

-- cancel_children cancels the started children of a run that just failed
-- or was cancelled; cancel_run's own UPDATE fires it again for theirs.
CREATE FUNCTION qflow.cancel_children()
RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT id FROM qflow.runs WHERE parent_run_id = NEW.id AND status = 'started' ORDER BY id LOOP
        PERFORM qflow.cancel_run(r.id, format('parent run %s %s', NEW.id, NEW.status));
    END LOOP;
    RETURN NULL;
END $$;

CREATE TRIGGER runs_cancel_children AFTER UPDATE OF status ON qflow.runs
    FOR EACH ROW WHEN (OLD.status = 'started' AND NEW.status IN ('failed', 'cancelled'))
    EXECUTE FUNCTION qflow.cancel_children();
