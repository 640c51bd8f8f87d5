package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// This file holds what generated typed run handles and views need beyond
// the untyped API: one *StartOptions out of a variadic argument, a run of
// a given flow by id, and a run's input, output and steps decoded into Go
// types with errors that name the step and the type.

// StartOptionsArg returns the options of a generated function's trailing
// opts ...*StartOptions: nil when none is given, the one given (which may
// itself be nil), and an error naming fn when more than one is, since
// which of them should win is not obvious.
func StartOptionsArg(fn string, opts []*StartOptions) (*StartOptions, error) {
	return optionsArg(fn, opts)
}

// optionsArg is the one options value of a trailing opts ...*T: nil when
// none is given, and an error naming fn when more than one is.
func optionsArg[T any](fn string, opts []*T) (*T, error) {
	switch len(opts) {
	case 0:
		return nil, nil
	case 1:
		return opts[0], nil
	}
	return nil, fmt.Errorf("qflow: %s: at most one %T, got %d", fn, (*T)(nil), len(opts))
}

// ResumeFlowRun resumes run id (see Client.ResumeRun) with the options of a
// generated function's trailing opts ...*ResumeOptions (at most one, which
// may be nil), checking the shape against def unless the options name a
// definition of their own. Generated Resume<Flow> functions call it.
func (c *Client) ResumeFlowRun(ctx context.Context, fn string, def FlowDef, id uuid.UUID, opts []*ResumeOptions) error {
	one, err := optionsArg(fn, opts)
	if err != nil {
		return err
	}
	var o ResumeOptions
	if one != nil {
		o = *one
	}
	if o.Flow == nil {
		o.Flow = &def
	}
	return c.ResumeRun(ctx, id, &o)
}

// RunLocalWith is RunLocal with options for the run: start is passed to
// StartFlow as is (nil means all defaults), opts configures the worker
// (nil means all defaults). Generated Run<Flow>Local functions call it.
func (c *Client) RunLocalWith(ctx context.Context, def FlowDef, handlers map[string]Handler, input any, start *StartOptions, opts *WorkerOptions) (json.RawMessage, error) {
	w := NewWorker(c.pool, opts)
	if err := w.Register(def, handlers); err != nil {
		return nil, err
	}
	h, err := c.StartFlow(ctx, def, input, start)
	if err != nil {
		return nil, err
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	out, err := h.Wait(ctx)
	stop()
	if werr := <-done; werr != nil && err == nil {
		err = werr
	}
	return out, err
}

// AttachRun returns a handle on run id, checking that it exists
// (ErrRunNotFound otherwise) and is a run of the flow with slug flow (an
// error matching ErrRunNotFound that names the run's flow otherwise).
// Generated <Flow>RunByID functions call it, so that a process other than
// the one that started a run can wait for it or cancel it.
func (c *Client) AttachRun(ctx context.Context, flow string, id uuid.UUID) (*RunHandle, error) {
	var slug string
	err := c.pool.QueryRow(ctx, `SELECT flow_slug FROM qflow.runs WHERE id = $1::uuid`, id).Scan(&slug)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", ErrRunNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("qflow: attach run %s: %w", id, err)
	}
	if slug != flow {
		return nil, fmt.Errorf("%w: run %s is of flow %q, not %q", ErrRunNotFound, id, slug, flow)
	}
	return &RunHandle{ID: id, Client: c}, nil
}

// GetFlowRun is GetRun for a run that must be of the flow with slug flow:
// a run of another flow is an error matching ErrRunNotFound that names the
// run's flow. Generated Get<Flow>Run functions call it.
func (c *Client) GetFlowRun(ctx context.Context, flow string, id uuid.UUID) (*Run, error) {
	r, err := c.GetRun(ctx, id)
	if err != nil {
		return nil, err
	}
	if r.Flow != flow {
		return nil, fmt.Errorf("%w: run %s is of flow %q, not %q", ErrRunNotFound, id, r.Flow, flow)
	}
	return r, nil
}

// RunInfo is a run's state without its input, output and steps: the part of
// a generated <Flow>RunView that does not depend on the flow's types.
type RunInfo struct {
	ID          uuid.UUID
	Flow        string // flow slug
	FlowVersion int
	Status      string // StatusStarted, StatusCompleted, StatusFailed or StatusCancelled
	Error       string // the failed step's last error, or the reason for cancellation
	FailedStep  string // the step that failed, if any
	StartedAt   time.Time
	FinishedAt  *time.Time // nil while the run is going
	// Unserved: the run is going but no live worker serves its flow
	// version (see Run.Unserved).
	Unserved bool
}

// Info returns r without its input, output and steps.
func (r *Run) Info() RunInfo {
	return RunInfo{
		ID: r.ID, Flow: r.Flow, FlowVersion: r.FlowVersion, Status: r.Status, Error: r.Error,
		FailedStep: r.FailedStep, StartedAt: r.StartedAt, FinishedAt: r.FinishedAt, Unserved: r.Unserved,
	}
}

// StepInfo is one step of a run without its output: its state and a
// summary of its tasks (a map step has one task per element, other steps
// one).
type StepInfo struct {
	Step        string // step slug
	Status      string // StatusCreated, StatusStarted, StatusCompleted, StatusFailed, StatusCancelled or StatusSkipped
	TaskCount   int    // the step's tasks; 0 until it starts
	TasksDone   int    // of which completed
	TasksFailed int    // of which failed
	// Attempts is the number of attempts made over all the step's tasks,
	// first ones included (so Attempts > TaskCount means retries).
	Attempts   int
	Error      string // the step's error, when it failed (or, skipped, when it is an optional step that failed)
	StartedAt  *time.Time
	FinishedAt *time.Time
	// Tasks is each task's state, with its JSON output.
	Tasks []TaskState
}

// StepView is one step of a run with its output decoded into T, the step
// function's result type ([]T for a map step returning T). Output is T's
// zero value until the step completes, and stays zero when the step is
// skipped (Status is then StatusSkipped).
type StepView[T any] struct {
	StepInfo
	Output T
}

// ViewStepInfo fills dst with step slug of r. Generated Get<Flow>Run
// functions call it for steps without output.
func ViewStepInfo(r *Run, slug string, dst *StepInfo) error {
	s, err := findStep(r, slug)
	if err != nil {
		return err
	}
	*dst = stepInfo(s)
	return nil
}

// ViewStep fills dst with step slug of r and, once the step has completed,
// its output decoded into T. An output that does not decode is an error
// naming the run, the step and T. Generated Get<Flow>Run functions call it.
func ViewStep[T any](r *Run, slug string, dst *StepView[T]) error {
	s, err := findStep(r, slug)
	if err != nil {
		return err
	}
	*dst = StepView[T]{StepInfo: stepInfo(s)}
	if s.Status != StatusCompleted || s.Output == nil {
		return nil
	}
	if err := json.Unmarshal(s.Output, &dst.Output); err != nil {
		return fmt.Errorf("qflow: run %s of flow %q: step %q: decode output as %s: %w", r.ID, r.Flow, slug, reflect.TypeFor[T](), err)
	}
	return nil
}

// stepInfo summarises s.
func stepInfo(s *StepState) StepInfo {
	info := StepInfo{
		Step: s.Step, Status: s.Status, Error: s.Error,
		StartedAt: s.StartedAt, FinishedAt: s.FinishedAt, Tasks: s.Tasks,
	}
	if s.TaskCount != nil {
		info.TaskCount = *s.TaskCount
	}
	for _, t := range s.Tasks {
		info.Attempts += t.Attempts
		switch t.Status {
		case StatusCompleted:
			info.TasksDone++
		case StatusFailed:
			info.TasksFailed++
		}
	}
	return info
}

// ViewRunInput decodes r's input into *dst, with an error naming the run and
// the type when it does not decode.
func ViewRunInput[T any](r *Run, dst *T) error {
	if err := json.Unmarshal(r.Input, dst); err != nil {
		return fmt.Errorf("qflow: run %s of flow %q: decode input as %s: %w", r.ID, r.Flow, reflect.TypeFor[T](), err)
	}
	return nil
}

// ViewRunOutput sets *dst to r's output decoded into T once the run has
// completed, and to nil before.
func ViewRunOutput[T any](r *Run, dst **T) error {
	*dst = nil
	if r.Status != StatusCompleted {
		return nil
	}
	out := new(T)
	if err := json.Unmarshal(r.Output, out); err != nil {
		return fmt.Errorf("qflow: run %s of flow %q: decode output as %s: %w", r.ID, r.Flow, reflect.TypeFor[T](), err)
	}
	*dst = out
	return nil
}

// findStep returns step slug of r, or an error saying the run has no such
// step (a run of another version of the flow).
func findStep(r *Run, slug string) (*StepState, error) {
	for i := range r.Steps {
		if r.Steps[i].Step == slug {
			return &r.Steps[i], nil
		}
	}
	return nil, fmt.Errorf("qflow: run %s of flow %q (version %d) has no step %q: it was started by a version of the flow with other steps; read it with Client.GetRun", r.ID, r.Flow, r.FlowVersion, slug)
}
