package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/quantumflow/qflow/flowdef"
)

// ResumeRun resumes a failed or cancelled run under the same id. In one
// transaction, with the run locked first (as every transition does), it
// queues again only what did not complete: tasks that failed or were
// cancelled get a fresh attempt budget (the completed elements of a map
// step keep their outputs), their steps start again, and steps that never
// started start as their dependencies complete. Every completed task's
// output is reused, and skipped steps stay skipped (a false condition, or
// an optional step that failed: dependents may have run without them). The run keeps its flow version and input, counts the
// resume (Run.Resumes) and publishes workflow_resumed; WaitRun then waits
// for its new outcome. A crash before the commit changes nothing.
//
// Errors, with nothing changed: ErrRunNotFound for an unknown id,
// ErrRunNotResumable for a run that is running or completed,
// ErrUnknownFlow when the run's flow version has lost its definition,
// ErrShapeMismatch when opts.Flow differs from the run's version in the
// part to re-run (see ResumeOptions.Flow), ErrBadInput for negative
// options. opts may be nil.
func (c *Client) ResumeRun(ctx context.Context, id uuid.UUID, opts *ResumeOptions) error {
	if opts == nil {
		opts = &ResumeOptions{}
	}
	if opts.Retries < NoRetries || opts.Timeout < 0 {
		return fmt.Errorf("%w: ResumeOptions: Retries must not be below NoRetries, nor Timeout negative", ErrBadInput)
	}
	if opts.Flow != nil {
		if err := opts.Flow.Validate(); err != nil {
			return err
		}
	}
	o := map[string]any{}
	if opts.Retries != 0 {
		o["max_attempts"] = flowdef.Attempts(opts.Retries)
	}
	if opts.Timeout > 0 {
		o["timeout_ms"] = max(1, opts.Timeout.Milliseconds())
	}
	optsJSON, _ := json.Marshal(o)
	var steps, tasks int
	err := pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		if opts.Flow != nil {
			if err := checkResumeShape(ctx, tx, id, *opts.Flow); err != nil {
				return err
			}
		}
		return tx.QueryRow(ctx, sqlResumeRun, id, optsJSON).Scan(&steps, &tasks)
	})
	if err != nil {
		return mapError(fmt.Errorf("qflow: resume run %s: %w", id, err))
	}
	c.log.Info("qflow run resumed", "run_id", id, "steps", steps, "tasks", tasks)
	return nil
}

// Resume resumes the run (see Client.ResumeRun).
func (h *RunHandle) Resume(ctx context.Context, opts *ResumeOptions) error {
	return h.Client.ResumeRun(ctx, h.ID, opts)
}

// checkResumeShape locks run id and compares def with the run's flow
// version in the part a resume re-runs.
func checkResumeShape(ctx context.Context, tx pgx.Tx, id uuid.UUID, def FlowDef) error {
	var status, slug, hash string
	var version int
	var raw []byte
	var open []string
	err := tx.QueryRow(ctx, sqlLockRunForResume, id).Scan(&status, &slug, &version, &hash, &raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w: %s", ErrRunNotFound, id)
	}
	if err != nil {
		return err
	}
	if status != StatusFailed && status != StatusCancelled {
		return nil // resume_run says why
	}
	if def.Slug != slug {
		return fmt.Errorf("%w: run %s is a run of flow %q, not %q", ErrShapeMismatch, id, slug, def.Slug)
	}
	if def.ShapeHash() == hash {
		return nil
	}
	if err := tx.QueryRow(ctx, sqlOpenSteps, id).Scan(&open); err != nil {
		return err
	}
	var stored FlowDef
	if err := json.Unmarshal(raw, &stored); err != nil {
		return fmt.Errorf("%w: flow %q version %d: stored definition: %v", ErrUnknownFlow, slug, version, err)
	}
	if diffs := resumeDiff(stored, def, open); len(diffs) > 0 {
		return fmt.Errorf("%w: run %s of flow %q version %d cannot be resumed with this definition: %s",
			ErrShapeMismatch, id, slug, version, strings.Join(diffs, "; "))
	}
	return nil
}

// resumeDiff lists how def differs from stored in the part a resume
// re-runs: the steps in open (those that neither completed nor were
// skipped) and all their dependencies, transitively, must be defined the
// same (dependencies, map and input flags, effective options, condition,
// optional flag and the skips they take), and the open steps must have the
// same dependents. Empty when they agree.
func resumeDiff(stored, def FlowDef, open []string) []string {
	get := func(f FlowDef, slug string) (StepDef, bool) {
		for _, s := range f.Steps {
			if s.Slug == slug {
				return s, true
			}
		}
		return StepDef{}, false
	}
	dependents := func(f FlowDef, slug string) []string {
		var out []string
		for _, s := range f.Steps {
			if slices.Contains(s.DependsOn, slug) {
				out = append(out, s.Slug)
			}
		}
		slices.Sort(out)
		return out
	}
	// The part to re-run: open steps and their ancestors, in stored order.
	in := map[string]bool{}
	var walk func(string)
	walk = func(slug string) {
		if in[slug] {
			return
		}
		in[slug] = true
		if s, ok := get(stored, slug); ok {
			for _, d := range s.DependsOn {
				walk(d)
			}
		}
	}
	for _, slug := range open {
		walk(slug)
	}
	var diffs []string
	for _, want := range stored.Steps {
		if !in[want.Slug] {
			continue
		}
		got, ok := get(def, want.Slug)
		if !ok {
			diffs = append(diffs, fmt.Sprintf("step %q is missing", want.Slug))
			continue
		}
		if !slices.Equal(want.DependsOn, got.DependsOn) {
			diffs = append(diffs, fmt.Sprintf("step %q depends on %v, was %v", want.Slug, got.DependsOn, want.DependsOn))
		}
		if want.Map != got.Map {
			diffs = append(diffs, fmt.Sprintf("step %q map=%v, was %v", want.Slug, got.Map, want.Map))
		}
		if want.TakesInput != got.TakesInput {
			diffs = append(diffs, fmt.Sprintf("step %q takes the flow input=%v, was %v", want.Slug, got.TakesInput, want.TakesInput))
		}
		if w, g := stored.Effective(want), def.Effective(got); w != g {
			diffs = append(diffs, fmt.Sprintf("step %q options %+v, were %+v", want.Slug, g, w))
		}
		if w, g := want.When != nil, got.When != nil; w != g {
			diffs = append(diffs, fmt.Sprintf("step %q has a condition=%v, was %v", want.Slug, g, w))
		}
		if want.Optional != got.Optional {
			diffs = append(diffs, fmt.Sprintf("step %q optional=%v, was %v", want.Slug, got.Optional, want.Optional))
		}
		if w, g := sorted(want.AcceptsSkipped), sorted(got.AcceptsSkipped); !slices.Equal(w, g) {
			diffs = append(diffs, fmt.Sprintf("step %q accepts the skip of %v, accepted %v", want.Slug, g, w))
		}
		if slices.Contains(open, want.Slug) {
			if w, g := dependents(stored, want.Slug), dependents(def, want.Slug); !slices.Equal(w, g) {
				diffs = append(diffs, fmt.Sprintf("step %q feeds %v, fed %v", want.Slug, g, w))
			}
		}
	}
	return diffs
}

// sorted returns a sorted copy of s.
func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}
