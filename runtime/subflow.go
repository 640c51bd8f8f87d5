package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/quantumflow/qflow/flowdef"
)

// DefaultSubflowPoll is how often a subflow step looks at its child run
// while the child runs (SubflowOptions.Poll).
const DefaultSubflowPoll = time.Second

// SubflowOptions configure a subflow step (see Subflow). The zero value
// (or nil) is the defaults.
type SubflowOptions struct {
	// Poll is how long the step snoozes between looks at its running
	// child; 0 means DefaultSubflowPoll. Each look is one short
	// transaction; no slot is held between looks.
	Poll time.Duration
	// Input picks the child run's input from the step's task (nil: the
	// step's one input; see Subflow). An error it returns fails the
	// attempt like a handler's.
	Input func(t *Task) (any, error)
	// Start sets the child run's StartOptions (its Timeout, Retries,
	// Priority, Sequential, Events); its Key and Keys are ignored, as the
	// step sets a key of its own. Nil: the defaults.
	Start *StartOptions
}

// ErrSubflowOutsideWorker is returned (permanently) by a Subflow handler
// called other than by a Worker: it needs the worker's database.
var ErrSubflowOutsideWorker = errors.New("qflow: subflow handler called outside a worker")

// Subflow returns a Handler that runs flow as a child run of the step's
// run and returns the child's output as the step's: register it as the
// handler of the step (the code generator does so for a step declared
// with subflow=). The child's flow must be defined (a worker registered
// it, or DefineFlow) and served by some worker, which may be the same one.
//
// The child's input is the step's one input: for a map step the element;
// for a step with one dependency that dependency's output; for a step with
// none the flow input. A step with more dependencies needs
// SubflowOptions.Input.
//
// The handler starts the child and links it to the task (Run.ParentRunID,
// ParentStep; the parent's Run.Children; a subflow_started event), then
// snoozes (see Snooze) while the child runs, looking again every
// SubflowOptions.Poll: no slot is held and no attempt is used meanwhile.
// When the child completed, the step completes with the child's output.
// When it failed, the attempt fails with the child's error, so the step's
// retries apply (the next attempt starts a new child) and an optional
// step is skipped once they are used up; a child that was cancelled fails
// the step at once (a permanent error), without retries.
//
// Crash safety: the start and the link are one transaction, taken under a
// lock on the parent's task, and a task that runs again (after a snooze, a
// worker killed or a lease lost, a hedge) finds the child it linked
// before: each attempt has at most one child, a child started by an
// attempt whose worker died is adopted by the next attempt rather than
// started again, and a child's completed output is never lost.
//
// Cancelling the parent run, its timeout, or its failure cancels its
// started children, and theirs, in the same transaction. Resuming the
// parent (ResumeRun) starts a new child for a subflow step whose child
// failed or was cancelled; a completed child's output is kept.
func Subflow(flow string, opts *SubflowOptions) Handler {
	var o SubflowOptions
	if opts != nil {
		o = *opts
	}
	if o.Poll <= 0 {
		o.Poll = DefaultSubflowPoll
	}
	return func(ctx context.Context, t *Task) (json.RawMessage, error) {
		hc, _ := ctx.Value(workerCtxKey{}).(*handlerCtx)
		if hc == nil || hc.w.starter == nil {
			return nil, Permanent(fmt.Errorf("%w: flow %q step %q", ErrSubflowOutsideWorker, t.Flow, t.Step))
		}
		return hc.w.subflow(ctx, flow, &o, hc.step, t)
	}
}

// workerCtxKey keys the handlerCtx in a handler's context.
type workerCtxKey struct{}

// handlerCtx is what a handler's context carries for Subflow.
type handlerCtx struct {
	w    *Worker
	step *StepDef
}

// withWorker returns ctx carrying the worker and the definition of the
// step whose task it runs.
func withWorker(ctx context.Context, w *Worker, step *StepDef) context.Context {
	return context.WithValue(ctx, workerCtxKey{}, &handlerCtx{w: w, step: step})
}

// subflowInput picks a child's input by Subflow's default rule.
func subflowInput(step *StepDef, t *Task) (any, error) {
	if step == nil || step.Map {
		return t.Input, nil
	}
	key := flowdef.InputKey
	switch len(step.DependsOn) {
	case 0:
	case 1:
		key = step.DependsOn[0]
	default:
		return nil, Permanent(fmt.Errorf("qflow: flow %q step %q: a subflow step with %d dependencies needs SubflowOptions.Input",
			t.Flow, t.Step, len(step.DependsOn)))
	}
	var in map[string]json.RawMessage
	if err := json.Unmarshal(t.Input, &in); err != nil {
		return nil, Permanent(fmt.Errorf("qflow: flow %q step %q: decode input: %w", t.Flow, t.Step, err))
	}
	v, ok := in[key]
	if !ok {
		return nil, Permanent(fmt.Errorf("qflow: flow %q step %q: the task input has no %q for the subflow", t.Flow, t.Step, key))
	}
	return v, nil
}

// subflow is one look of a subflow step at its child: start it if the
// attempt has none, return its output or error if it finished, else snooze.
func (w *Worker) subflow(ctx context.Context, flow string, o *SubflowOptions, step *StepDef, t *Task) (json.RawMessage, error) {
	var (
		out json.RawMessage
		res error
	)
	err := pgx.BeginFunc(ctx, w.pool, func(tx pgx.Tx) error {
		out, res = nil, nil
		lock := fmt.Sprintf("qflow-subflow:%s:%s:%d", t.RunID, t.Step, t.Index)
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1::text, 0))`, lock); err != nil {
			return err
		}
		var (
			resumes   int
			id        uuid.UUID
			status    string
			output    json.RawMessage
			errText   *string
			failed    *string
			attempt   int
			childFlow string
		)
		// The newest child of the task, but not one that failed or was
		// cancelled before the parent's last resume (ResumeRun gives the
		// task fresh attempts, which start a fresh child).
		if err := tx.QueryRow(ctx, `SELECT resumes FROM qflow.runs WHERE id = $1::uuid`, t.RunID).Scan(&resumes); err != nil {
			return err
		}
		err := tx.QueryRow(ctx, `
			SELECT c.id, c.status, c.output, c.error, c.failed_step, c.parent_attempt, c.flow_slug
			FROM qflow.runs c JOIN qflow.runs p ON p.id = c.parent_run_id
			WHERE c.parent_run_id = $1::uuid AND c.parent_step = $2::text AND c.parent_task = $3::integer
			  AND (c.status IN ('started', 'completed') OR p.resumed_at IS NULL OR c.started_at >= p.resumed_at)
			ORDER BY c.started_at DESC, c.parent_attempt DESC LIMIT 1`, t.RunID, t.Step, t.Index).
			Scan(&id, &status, &output, &errText, &failed, &attempt, &childFlow)
		found := err == nil
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if found {
			switch {
			case status == StatusStarted:
				res = Snooze(o.Poll)
				return nil
			case status == StatusCompleted:
				out = output
				return nil
			case attempt >= t.Attempt:
				re := &RunError{RunID: id, Status: status, Step: deref(failed), Message: deref(errText)}
				res = fmt.Errorf("qflow: subflow %q: %w", childFlow, re)
				if status == StatusCancelled {
					res = Permanent(res)
				}
				return nil
			}
			// The child of an earlier attempt failed: this attempt starts its own.
		}
		var input any
		var err2 error
		if o.Input != nil {
			input, err2 = o.Input(t)
		} else {
			input, err2 = subflowInput(step, t)
		}
		if err2 != nil {
			res = err2
			return nil
		}
		var so StartOptions
		if o.Start != nil {
			so = *o.Start
		}
		so.Keys = nil
		so.Key = fmt.Sprintf("qflow-subflow:%s:%s:%d:%d", t.RunID, t.Step, t.Index, t.Attempt)
		if resumes > 0 {
			so.Key += fmt.Sprintf(":r%d", resumes)
		}
		child, err := w.starter.StartRunTx(ctx, tx, flow, input, &so)
		if err != nil {
			if errors.Is(err, ErrBadInput) {
				res = Permanent(fmt.Errorf("qflow: subflow %q: %w", flow, err))
				return nil
			}
			return fmt.Errorf("start subflow %q: %w", flow, err)
		}
		if _, err := tx.Exec(ctx, `SELECT qflow.link_child($1::uuid, $2::uuid, $3::text, $4::integer, $5::integer)`,
			child, t.RunID, t.Step, t.Index, t.Attempt); err != nil {
			return err
		}
		w.log.Debug("qflow subflow started", "type", "subflow_started", "run_id", t.RunID, "step", t.Step,
			"task_index", t.Index, "attempt", t.Attempt, "child_run_id", child, "child_flow", flow)
		res = Snooze(o.Poll)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("qflow: flow %q step %q: subflow %q: %w", t.Flow, t.Step, flow, err)
	}
	return out, res
}

// ChildRun is a run started by a subflow step of another run (see
// Subflow), as Run.Children lists it.
type ChildRun struct {
	ID      uuid.UUID `json:"id"`
	Flow    string    `json:"flow"`
	Status  string    `json:"status"`
	Step    string    `json:"step"`    // the parent's step that started it
	Index   int       `json:"index"`   // the parent's task index
	Attempt int       `json:"attempt"` // the parent task's attempt that started it
}

// runTree fills r's ParentRunID, ParentStep and Children.
func (c *Client) runTree(ctx context.Context, r *Run) error {
	var step *string
	if err := c.pool.QueryRow(ctx, `SELECT parent_run_id, parent_step FROM qflow.runs WHERE id = $1::uuid`, r.ID).
		Scan(&r.ParentRunID, &step); err != nil {
		return fmt.Errorf("qflow: get run %s: %w", r.ID, err)
	}
	r.ParentStep = deref(step)
	rows, err := c.pool.Query(ctx, `
		SELECT id, flow_slug, status, parent_step, parent_task, parent_attempt FROM qflow.runs
		WHERE parent_run_id = $1::uuid ORDER BY started_at, id`, r.ID)
	if err != nil {
		return fmt.Errorf("qflow: get run %s: %w", r.ID, err)
	}
	children, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (ChildRun, error) {
		var ch ChildRun
		err := row.Scan(&ch.ID, &ch.Flow, &ch.Status, &ch.Step, &ch.Index, &ch.Attempt)
		return ch, err
	})
	if err != nil {
		return fmt.Errorf("qflow: get run %s: %w", r.ID, err)
	}
	r.Children = children
	return nil
}
