package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sort"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// The executor: claimed tasks wait in w.waiting until a slot is free, run
// in their own goroutine with their step's timeout, and leave their result
// in w.finished for the pump.

// accept takes claimed tasks into the worker and starts as many as slots
// allow. A task already held (its lease lapsed and this worker claimed it
// again while still running it) is not started twice.
// reserved is the room reserve (or, local, reserveUpTo) took for the
// claim, given back here.
func (w *Worker) accept(f *workerFlow, list []claimedTask, reserved int, local bool) {
	if len(list) == 0 && reserved == 0 {
		return
	}
	w.mu.Lock()
	if local {
		w.claimingLocal -= reserved
	} else {
		w.claiming -= reserved
	}
	for _, c := range list {
		if _, dup := w.held[c.key]; dup {
			continue
		}
		step := f.steps[c.key.StepIdx]
		h := &held{key: c.key, seq: c.seq, priority: c.priority, flow: f, trace: c.trace,
			task: &Task{RunID: c.key.RunID, Flow: f.def.Slug, Step: step.slug, Index: int(c.key.TaskIndex), Attempt: c.attempt, Input: c.input}}
		w.held[c.key] = h
		w.prioritized = w.prioritized || c.priority != 0
		// Waiting tasks start in claim order: higher priority first, then
		// first queued first, as the claim itself orders them; but tasks
		// of a step with a rate first of all, as their starts were counted
		// when they were claimed (see reserve).
		paced := step.paced
		i := sort.Search(len(w.waiting), func(i int) bool {
			x := w.waiting[i]
			if xp := x.flow.steps[x.key.StepIdx].paced; xp != paced {
				return paced
			}
			return x.priority < h.priority || (x.priority == h.priority && x.seq > h.seq)
		})
		w.waiting = slices.Insert(w.waiting, i, h)
	}
	w.dispatchLocked()
	w.mu.Unlock()
}

// dispatchLocked starts waiting tasks while slots are free. w.mu is held.
func (w *Worker) dispatchLocked() {
	for w.running < w.opts.Concurrency && len(w.waiting) > 0 && !w.stopping.Load() {
		h := w.waiting[0]
		w.waiting[0] = nil
		w.waiting = w.waiting[1:]
		ctx, cancel := context.WithCancelCause(context.Background())
		h.cancel = cancel
		w.running++
		go w.execute(ctx, h)
	}
}

// reserve takes room for the tasks the primary pump's round trip is about
// to claim. The room is the
// worker's slots, plus tasks claimed ahead so that the next ones are ready
// when slots free up, less what it already holds unstarted or running:
//   - none until a slot's worth of handlers has been timed, or once the
//     worker has seen prioritized tasks (a task of high priority must not
//     wait behind tasks claimed ahead of it);
//   - two batches while handlers average under 5ms (one runs while a round
//     trip settles the other): round trips, not handlers, are the limit;
//   - a slot's worth while they average under 50ms;
//   - none for slower handlers, which leave the rest to other workers.
//
// A task of a limit across workers claimed ahead counts against it while
// it waits here (a concurrency limit's place, a rate's start), for about
// one handler's time given these rules; a task of a step with a rate
// starts ahead of the others waiting (see accept), so its handler starts
// close to the moment its start was counted.
//
// The room taken is counted in w.claiming until accept gives it back.
// Claims for local starts (local.go) take room too, and the pump leaves
// it to them; they do not wait for the pump's room, so a worker may hold
// up to a batch more than this while both are on their way.
func (w *Worker) reserve() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := max(0, w.roomLocked()-w.claiming)
	w.claiming += n
	return n
}

// roomLocked is the room for claims, less what local starts are claiming
// now. w.mu is held.
func (w *Worker) roomLocked() int {
	limit := w.opts.Concurrency
	if w.timed >= w.opts.Concurrency && !w.prioritized {
		switch {
		case w.avgTook < 5*time.Millisecond:
			limit += 2 * w.opts.BatchSize
		case w.avgTook < 50*time.Millisecond:
			limit += w.opts.Concurrency
		}
	}
	return max(0, min(w.opts.BatchSize, limit-w.running-len(w.waiting)-w.claimingLocal))
}

// execute runs one task's handler with the step's timeout and leaves its
// result for the pump.
func (w *Worker) execute(ctx context.Context, h *held) {
	t := h.task
	step := &h.flow.steps[h.key.StepIdx]
	timeout := step.timeout
	w.log.Debug("qflow task started", "type", "task_started", "worker_id", w.id, "queue", h.flow.queue, "seq", h.seq, "run_id", t.RunID, "flow", t.Flow, "step", t.Step, "task_index", t.Index, "attempt", t.Attempt)
	began := time.Now()
	hctx := ctx // the handler's context: ctx, with the task's span when tracing
	var span trace.Span
	if w.tracer != nil {
		hctx, span = w.tracer.Start(remoteParent(ctx, h.trace), "qflow.task "+t.Flow+"/"+t.Step,
			trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(attrFlow.String(t.Flow), attrStep.String(t.Step), attrTaskIndex.Int(t.Index),
				attrAttempt.Int(t.Attempt), attrRunID.String(t.RunID.String())))
	}
	if w.met != nil {
		w.met.started.Add(ctx, 1, step.met.attrs)
	}
	tctx, tcancel := context.WithTimeoutCause(hctx, timeout, fmt.Errorf("step %q timed out after %s", t.Step, timeout))
	type outcome struct {
		output json.RawMessage
		err    error
	}
	done := make(chan outcome, 1)
	go func() {
		var o outcome
		defer func() {
			if p := recover(); p != nil {
				o.err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
			}
			done <- o
		}()
		o.output, o.err = h.flow.handlers[t.Step](tctx, t)
	}()
	var o outcome
	select {
	case o = <-done:
	case <-tctx.Done():
		// Give the handler a moment to notice; then stop waiting for it.
		select {
		case o = <-done:
		case <-time.After(time.Second):
			o = outcome{err: context.Cause(tctx)}
			w.log.Warn("qflow handler ignored its context; abandoning it", "run_id", t.RunID, "step", t.Step, "task_index", t.Index)
		}
	}
	res := &result{h: h, output: o.output, err: o.err, took: time.Since(began)}
	if cause := context.Cause(tctx); tctx.Err() != nil && ctx.Err() == nil {
		// The step's deadline passed: the attempt timed out, whatever the handler returned.
		if res.err == nil || !errors.Is(res.err, cause) {
			res.err = cause
		}
	} else if ctx.Err() != nil && res.err == nil {
		res.err = context.Cause(ctx)
	}
	tcancel()
	if res.err != nil {
		res.permanent = IsPermanent(res.err)
	} else if len(res.output) == 0 {
		res.output = json.RawMessage("null")
	} else if !json.Valid(res.output) {
		res.err = Permanent(fmt.Errorf("step %q returned invalid JSON", t.Step))
		res.permanent = true
	} else if err := w.opts.Limits.checkOutput(t.Step, res.output); err != nil {
		res.err, res.permanent = err, true // see limits.go
	}

	if span != nil {
		if res.permanent {
			span.SetAttributes(attrPermanent.Bool(true))
		}
		endSpan(span, res.err)
	}

	// A handler stopped because the task is no longer ours (its run was
	// cancelled or its lease lost), or because the worker is shutting
	// down, has no result to record: the first is none of our business any
	// more, the second is released to other workers.
	cause := context.Cause(ctx)
	if w.met != nil && !errors.Is(cause, errCancelledByEngine) && !errors.Is(cause, errShuttingDown) {
		if res.err == nil {
			w.met.completed.Add(ctx, 1, step.met.attrs)
			w.met.duration.Record(ctx, res.took.Seconds(), step.met.ok)
		} else {
			w.met.failed.Add(ctx, 1, step.met.attrs)
			w.met.duration.Record(ctx, res.took.Seconds(), step.met.fail)
		}
	}
	w.mu.Lock()
	w.running--
	w.avgTook = (w.avgTook*7 + res.took) / 8
	w.timed++
	switch {
	case errors.Is(cause, errCancelledByEngine):
		delete(w.held, h.key)
	case errors.Is(cause, errShuttingDown):
	default:
		w.finished = append(w.finished, res)
	}
	w.dispatchLocked()
	w.mu.Unlock()
	signal(w.slotFreed)
	signal(w.kick)
	signal(w.kick2)
}
