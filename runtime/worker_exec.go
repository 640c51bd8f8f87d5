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
			deadline: c.deadline, sequential: c.sequential,
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

// execute runs a task's handler, then, while the chain rules allow (see
// next), the handlers of its run's next steps in the same slot, and leaves
// their results for the pump, together. An inline handler still running
// when the chain window closes is promoted (see promote): the results
// before it are recorded, and it runs on as a task of this worker.
func (w *Worker) execute(ctx context.Context, h *held) {
	began := time.Now()
	cur := h // the task of the chain that is in w.held
	res := w.run(ctx, h, nil)
	chain := []*result{res}
	for {
		nh := w.next(ctx, res, began, len(chain))
		if nh == nil {
			break
		}
		nhBegan := time.Now()
		promote := func() bool {
			switch w.promote(ctx, chain, nh, time.Since(nhBegan)) {
			case promoted:
				chain, cur = chain[:0], nh
			case lost:
				cur.cancel(errCancelledByEngine)
			case notNow: // the worker is stopping: the chain ends with it
			case deferred:
				return false
			}
			return true
		}
		w.inlined.Add(1)
		res = w.run(ctx, nh, &chainTimer{at: began.Add(w.opts.ChainWindow), promote: promote})
		chain = append(chain, res)
	}

	// A handler stopped because the task is no longer ours (its run was
	// cancelled or its lease lost) has no result to record, nor has the
	// chain; one stopped because the worker is shutting down is released
	// to other workers, while what its chain finished before it is
	// recorded.
	cause := context.Cause(ctx)
	w.mu.Lock()
	w.running--
	for _, r := range chain {
		w.avgTook = (w.avgTook*7 + r.took) / 8
		w.timed++
	}
	switch {
	case errors.Is(cause, errCancelledByEngine):
		if w.held[cur.key] == cur {
			delete(w.held, cur.key)
		}
	case errors.Is(cause, errShuttingDown):
		if last := chain[len(chain)-1]; last.cut {
			chain = chain[:len(chain)-1]
		}
		w.finished = append(w.finished, chain...)
	default:
		w.finished = append(w.finished, chain...)
	}
	w.dispatchLocked()
	w.mu.Unlock()
	signal(w.slotFreed)
	signal(w.kick)
	signal(w.kick2)
}

// chainTimer is when an inline task's chain window closes, and what to do
// then if its handler still runs.
type chainTimer struct {
	at      time.Time
	promote func() bool // false: deferred (see maxPromotions); tried again a window later
}

// maxPromotions bounds a worker's promotions on their way at once. The
// others wait (their handlers run on meanwhile, and most finish before
// their turn, which costs no round trip at all): on a busy machine many
// chains outrun the window together, and their promotions, each a round
// trip of its own, on a connection of its own, where every statement of
// settle is planned again, made the machine busier still (W1b at 64 slots
// took 1.0–1.7 s in one run in five, against 0.4 s).
const maxPromotions = 2

// promotion is what became of a chain's task that promote tried to
// make the worker's own.
type promotion int

const (
	promoted promotion = iota // claimed for this worker; it runs on as a held task
	lost                      // not claimed: the run finished or was cancelled, or the database was out of reach
	notNow                    // not tried: the worker is stopping
	deferred                  // not tried now: maxPromotions are on their way
)

// promote records the finished results of a chain and claims its inline
// task nh, running for ran so far, for this worker, in one settle; nh
// becomes a task this worker holds, with a lease, whose result is recorded
// as any other. When nh could not be claimed its handler is to be stopped
// (lost). A worker that is stopping promotes nothing (notNow): the
// handler is stopped by the shutdown and the results before it recorded
// with the rest. If the settle's outcome is unknown (an error after the
// server may have committed), the task's row tells.
func (w *Worker) promote(ctx context.Context, chain []*result, nh *held, ran time.Duration) promotion {
	select {
	case <-w.abandon: // tests: the worker no longer touches the database
		return lost
	default:
	}
	w.mu.Lock()
	if w.stopping.Load() {
		w.mu.Unlock()
		return notNow
	}
	if w.promotions >= maxPromotions {
		w.mu.Unlock()
		return deferred
	}
	w.promotions++
	for _, r := range chain {
		r.h.promoting = true
	}
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.promotions--
		w.mu.Unlock()
	}()
	batch := append(slices.Clip(chain), &result{h: nh, promote: true, took: ran})
	claimed, err := w.settle(ctx, batch, nh.flow, 0, nil)
	seq, found := int64(0), false
	for _, c := range claimed {
		if c.key == nh.key {
			seq, found = c.seq, true
		}
	}
	if err != nil {
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.opts.Lease)
		found = w.pool.QueryRow(qctx, sqlHeldBy, nh.key.RunID, nh.key.StepIdx, w.id).Scan(&seq) == nil
		cancel()
	}
	if !found {
		return lost
	}
	w.mu.Lock()
	nh.seq, nh.inline = seq, false
	w.held[nh.key] = nh
	w.mu.Unlock()
	return promoted
}

// maxChain bounds the tasks of one chain (see next).
const maxChain = 32

// next returns the task a slot runs in process after res, or nil: the
// next step of res's step (flowStep.next) when res succeeded (not skipped), within the
// chain window counted from began, in a run that is neither sequential nor
// past its deadline, while the worker is not stopping and has no
// prioritized tasks, and when the step's input can be built here (a step
// that takes the flow input needs it in the completed task's input).
func (w *Worker) next(ctx context.Context, res *result, began time.Time, n int) *held {
	h := res.h
	step := &h.flow.steps[h.key.StepIdx]
	if res.err != nil || res.skip || step.next < 0 || ctx.Err() != nil || n >= maxChain || w.opts.ChainWindow < 0 ||
		h.sequential || time.Since(began) >= w.opts.ChainWindow || w.stopping.Load() {
		return nil
	}
	if !h.deadline.IsZero() && !time.Now().Before(h.deadline) {
		return nil
	}
	w.mu.Lock()
	prioritized := w.prioritized
	w.mu.Unlock()
	if prioritized {
		return nil
	}
	nextStep := &h.flow.steps[step.next]
	var in []byte
	if nextStep.takesInput {
		run := runInput(h.task.Input)
		if run == nil {
			return nil
		}
		in = append(append(append(in, `{"run":`...), run...), ',')
	} else {
		in = append(in, '{')
	}
	// Slugs are [a-z][a-z0-9_]*: no escaping needed.
	in = append(append(append(append(in, '"'), step.slug...), `":`...), res.output...)
	in = append(in, '}')
	t := h.task
	return &held{key: taskKey{RunID: h.key.RunID, StepIdx: step.next}, priority: h.priority, flow: h.flow,
		trace: h.trace, deadline: h.deadline, inline: true, cancel: h.cancel,
		task: &Task{RunID: t.RunID, Flow: t.Flow, Step: nextStep.slug, Attempt: 1, Input: in}}
}

// runInput returns the flow input held in a task's input (under InputKey),
// or nil when it has none.
func runInput(input json.RawMessage) json.RawMessage {
	var m struct {
		Run json.RawMessage `json:"run"`
	}
	if json.Unmarshal(input, &m) != nil {
		return nil
	}
	return m.Run
}

// run runs one task's handler with the step's timeout and returns its
// result; for an inline task, ct says when to promote it if it still runs.
func (w *Worker) run(ctx context.Context, h *held, ct *chainTimer) *result {
	t := h.task
	step := &h.flow.steps[h.key.StepIdx]
	timeout := step.timeout
	var hedge time.Duration
	if tuned := h.flow.tuned.Load(); tuned != nil {
		tu := (*tuned)[h.key.StepIdx]
		if tu.timeout > 0 {
			timeout = tu.timeout
		}
		hedge = tu.hedge
	}
	w.log.Debug("qflow task started", "type", "task_started", "worker_id", w.id, "queue", h.flow.queue, "seq", h.seq, "run_id", t.RunID, "flow", t.Flow, "step", t.Step, "task_index", t.Index, "attempt", t.Attempt, "inline", h.inline)
	began := time.Now()
	// The handler's context: ctx with the worker (for Subflow), and the
	// task's span when tracing.
	hctx := withWorker(ctx, w, step.def)
	var span trace.Span
	if w.tracer != nil {
		hctx, span = w.tracer.Start(remoteParent(hctx, h.trace), "qflow.task "+t.Flow+"/"+t.Step,
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
		skip   bool
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
		if step.when != nil {
			run, err := step.when(tctx, t.Input)
			if err != nil {
				o.err = fmt.Errorf("condition of step %q: %w", t.Step, err)
				return
			}
			if !run {
				o.skip = true
				return
			}
		}
		handler := h.flow.handlers[t.Step]
		if hedge > 0 {
			o.output, o.err = Hedge(tctx, hedge, func(ctx context.Context) (json.RawMessage, error) { return handler(ctx, t) }, func() {
				w.log.Debug("qflow task hedged", "type", "task_hedged", "worker_id", w.id, "run_id", t.RunID, "flow", t.Flow, "step", t.Step, "task_index", t.Index, "attempt", t.Attempt, "after", hedge)
				if w.met != nil {
					w.met.hedged.Add(ctx, 1, step.met.attrs)
				}
			})
			return
		}
		o.output, o.err = handler(tctx, t)
	}()
	var o outcome
	var window <-chan time.Time
	var tm *time.Timer
	if ct != nil {
		tm = time.NewTimer(time.Until(ct.at))
		defer tm.Stop()
		window = tm.C
	}
	for waiting := true; waiting; {
		select {
		case o = <-done:
			waiting = false
		case <-window:
			window = nil
			if !ct.promote() {
				tm.Reset(w.opts.ChainWindow)
				window = tm.C
			}
		case <-tctx.Done():
			// Give the handler a moment to notice; then stop waiting for it.
			select {
			case o = <-done:
			case <-time.After(time.Second):
				o = outcome{err: context.Cause(tctx)}
				w.log.Warn("qflow handler ignored its context; abandoning it", "run_id", t.RunID, "step", t.Step, "task_index", t.Index)
			}
			waiting = false
		}
	}
	res := &result{h: h, output: o.output, err: o.err, skip: o.skip && o.err == nil, took: time.Since(began), cut: ctx.Err() != nil}
	if cause := context.Cause(tctx); tctx.Err() != nil && ctx.Err() == nil {
		// The step's deadline passed: the attempt timed out, whatever the handler returned.
		if res.err == nil || !errors.Is(res.err, cause) {
			res.err, res.skip = cause, false
		}
	} else if ctx.Err() != nil && res.err == nil {
		res.err, res.skip = context.Cause(ctx), false
	}
	tcancel()
	if res.err != nil {
		if res.snooze = snoozed(res.err); res.snooze == nil {
			res.permanent = IsPermanent(res.err)
		}
	} else if res.skip {
		res.output = nil // a skip is settled as a NULL output (qflow.skip_tasks)
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
		if res.snooze != nil {
			span.SetAttributes(attrSnoozed.Bool(true))
		}
		if res.skip {
			span.SetAttributes(attrSkipped.Bool(true))
		}
		if res.snooze != nil {
			span.End() // not an error: the task runs again
		} else {
			endSpan(span, res.err)
		}
	}
	cause := context.Cause(ctx)
	if w.met != nil && !errors.Is(cause, errCancelledByEngine) && !errors.Is(cause, errShuttingDown) {
		if res.skip {
			w.met.duration.Record(ctx, res.took.Seconds(), step.met.skip)
		} else if res.snooze != nil {
			// Neither a completion nor a failure: the task runs again.
		} else if res.err == nil {
			w.met.completed.Add(ctx, 1, step.met.attrs)
			w.met.duration.Record(ctx, res.took.Seconds(), step.met.ok)
		} else {
			w.met.failed.Add(ctx, 1, step.met.attrs)
			w.met.duration.Record(ctx, res.took.Seconds(), step.met.fail)
		}
	}
	return res
}
