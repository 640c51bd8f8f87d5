package runtime

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// The pump makes every round trip that changes this worker's tasks: one
// qflow.settle call records everything that finished since the last round
// trip and claims as many tasks as the worker has room for, in one
// transaction. While it is on its way, handlers keep running and finishing;
// their results go in the next round trip. A worker with nothing finished
// and no room, or with no sign of work, makes no round trip at all.

// claimedTask is one row of a claim.
type claimedTask struct {
	seq        int64
	key        taskKey
	attempt    int
	input      []byte
	priority   int32
	trace      []byte
	deadline   time.Time // the run's, zero for none
	sequential bool      // the run's
}

// A worker has two pumps. The primary makes every claim; the secondary only
// settles, and only while the primary's round trip is on its way, so the
// server works on one round trip while the other commits. They never settle
// tasks of the same run at once (see takeFinished), so they never wait on
// each other's run locks. A pile of results (half the slots or more)
// waiting when the primary sets off to claim is left to the secondary, so
// that the claim and the settle overlap, even for one big map's tasks; a
// few results ride the primary's claim (a chain's next step is claimed in
// the round trip that readies it), and so does any pile when the primary
// has nothing to claim.

// pump runs until ctx ends. Once the worker is stopping it claims nothing
// and only settles. The secondary pump (primary false) never claims.
func (w *Worker) pump(ctx context.Context, primary bool) {
	if primary {
		// Starts still waiting, or on their way here, go on their own.
		defer func() { w.runStarts(ctx, w.takeStarts(true)) }()
	}
	poll := time.NewTicker(w.opts.PollInterval)
	defer poll.Stop()
	kick := w.kick
	if !primary {
		kick = w.kick2
	}
	next := 0 // round-robin start over flows
	for ctx.Err() == nil {
		if p := w.paused.Load(); primary && p != nil { // tests
			<-*p
		}
		// A pile of results goes to the secondary pump while this pump's
		// claim is on its way, so that the two overlap (see pileForSecondary).
		var batch []*result
		var f *workerFlow
		want := 0
		claims := primary && !w.stopping.Load()
		handOff := claims && w.pileForSecondary()
		if handOff {
			if f = w.pickFlow(nil, &next); f != nil {
				want = w.reserve()
			}
			handOff = want > 0
		}
		if !handOff {
			batch = w.takeFinished(primary)
			if claims && f == nil { // (a flow picked above has no room now either)
				if f = w.pickFlow(batch, &next); f != nil {
					want = w.reserve()
				}
			}
		}
		var starts []*localStart
		if primary {
			starts = w.takeStarts(false)
		}
		if len(batch) == 0 && want == 0 && len(starts) > 0 {
			w.onTheWay(1)
			w.runStarts(ctx, starts)
			w.onTheWay(-1)
			continue
		}
		if len(batch) == 0 && want == 0 {
			select {
			case <-ctx.Done():
				return
			case <-w.abandon:
				return
			case <-kick:
			case <-poll.C:
				for _, fl := range w.flows {
					fl.wakes.Add(1)
				}
			}
			continue
		}
		if f == nil {
			f = batch[0].h.flow
		}
		signs := f.wakes.Load()
		// On its way and, for a hand-off, the pile left, in one step: the
		// secondary may not take the pile as an ordinary one in between
		// and leave the flag set with nothing to hand over.
		w.mu.Lock()
		w.inFlight++
		if handOff = handOff && !w.secondaryBusy && len(w.finished) > 0; handOff {
			w.handedOff = true
		}
		w.mu.Unlock()
		if handOff {
			signal(w.kick2)
		}
		if h := w.claimsHeld.Load(); primary && want > 0 && h != nil { // tests
			<-*h
		}
		claimed, err := w.settle(ctx, batch, f, want, starts)
		w.onTheWay(-1)
		switch {
		case want == 0 || err != nil:
		case len(claimed) == want: // a full claim: more may be waiting
			f.wakes.Add(1)
		default: // a short claim emptied the queue for now, unless a sign of new work arrived meanwhile
			f.wakes.CompareAndSwap(signs, 0)
		}
		w.accept(f, claimed, want, false)
		if !primary {
			w.mu.Lock()
			w.secondaryBusy = false
			w.mu.Unlock()
		}
		if len(batch) > 0 {
			w.doneSettling(batch)
			signal(w.settled)
			// Results of these runs may have been left for this pump.
			signal(w.kick)
		}
	}
}

// onTheWay counts a pump's round trip on its way: +1 as it leaves, -1
// once it is back (see takeFinished).
func (w *Worker) onTheWay(d int) {
	w.mu.Lock()
	w.inFlight += d
	w.mu.Unlock()
}

// takeFinished takes the results waiting to be settled, except those of
// runs another pump is settling right now, and marks their runs as being
// settled. The secondary pump takes results only when the primary left it
// a pile (w.handedOff: then all it may take, however few by now), or while
// the primary's round trip is on its way and results pile up (half a
// worker's slots or more): a lone result is better left to the primary,
// which claims what its settle readies in the same round trip. Whichever
// pump takes results clears w.handedOff.
func (w *Worker) takeFinished(primary bool) []*result {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !primary && !w.handedOff && (w.inFlight == 0 || len(w.finished) < w.pile()) {
		return nil
	}
	var take, keep []*result
	for _, r := range w.finished {
		if w.settling[r.h.key.RunID] {
			keep = append(keep, r)
		} else {
			take = append(take, r)
		}
	}
	for _, r := range take {
		w.settling[r.h.key.RunID] = true
	}
	if len(take) > 0 {
		w.handedOff = false // taken, by either pump
		w.secondaryBusy = w.secondaryBusy || !primary
	}
	w.finished = keep
	return take
}

// pileForSecondary reports whether the results waiting make a pile the
// secondary pump should settle while the primary claims: as many as make
// the secondary settle on its own, none of them left to it already, and
// the secondary idle.
func (w *Worker) pileForSecondary() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return !w.handedOff && !w.secondaryBusy && len(w.finished) >= w.pile()
}

// pile is how many waiting results make a pile for the secondary pump:
// half the worker's slots, at least 2.
func (w *Worker) pile() int { return max(2, w.opts.Concurrency/2) }

// doneSettling clears the marks takeFinished set for batch.
func (w *Worker) doneSettling(batch []*result) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range batch {
		delete(w.settling, r.h.key.RunID)
	}
}

// pickFlow chooses the flow to claim for: the flow of the first result
// (its next steps are likely ready now, made so by this very round trip),
// else the next flow in turn that may have work; nil when none may.
func (w *Worker) pickFlow(batch []*result, next *int) *workerFlow {
	if len(batch) > 0 {
		return batch[0].h.flow
	}
	for i := range w.flows {
		f := w.flows[(*next+i)%len(w.flows)]
		if f.wakes.Load() != 0 {
			*next = (*next + i + 1) % len(w.flows)
			return f
		}
	}
	return nil
}

// settle writes batch and claims up to want tasks of flow f in one round
// trip, which also carries starts (see local.go). It retries a failed
// round trip while the leases of the batch's tasks can still be this
// worker's (counted from the last moment they were known to run a whole
// Lease), so a connection blip or a server restart shorter than the lease
// does not make other workers run them again. The batch is forgotten
// afterwards, written or not.
func (w *Worker) settle(ctx context.Context, batch []*result, f *workerFlow, want int, starts []*localStart) ([]claimedTask, error) {
	var okKeys, failKeys []taskKey
	var outputs []json.RawMessage
	var errs []string
	var perms []bool
	var snoozes []*int64 // per failure: milliseconds to wait for a snooze, nil for a failure
	// Results of tasks run inline (see WorkerOptions.ChainWindow).
	var iRuns []uuid.UUID
	var iSteps []int16
	var iTook []int32
	var iOutputs []json.RawMessage
	var iErrs []*string
	var iPerms []bool
	var iSnoozes []*int64
	now := time.Now()
	snoozeMS := func(r *result) *int64 {
		if r.snooze == nil {
			return nil
		}
		ms := r.snooze.wait(now).Milliseconds()
		return &ms
	}
	for _, r := range batch {
		if r.h.inline {
			iRuns = append(iRuns, r.h.key.RunID)
			iSteps = append(iSteps, r.h.key.StepIdx)
			iTook = append(iTook, int32(min(r.took.Milliseconds(), 1<<30)))
			iPerms = append(iPerms, r.permanent)
			iSnoozes = append(iSnoozes, snoozeMS(r))
			if r.promote { // still running: -1 - how long so far
				iTook[len(iTook)-1] = -1 - iTook[len(iTook)-1]
			}
			if r.err == nil {
				iOutputs, iErrs = append(iOutputs, r.output), append(iErrs, nil)
			} else {
				e := errorText(r.err)
				iOutputs, iErrs = append(iOutputs, nil), append(iErrs, &e)
			}
			continue
		}
		if r.err == nil {
			okKeys = append(okKeys, r.h.key)
			outputs = append(outputs, r.output) // nil for a skip: NULL
		} else {
			failKeys = append(failKeys, r.h.key)
			errs = append(errs, errorText(r.err))
			perms = append(perms, r.permanent)
			snoozes = append(snoozes, snoozeMS(r))
		}
	}
	okRuns, okSteps, okTasks := splitKeys(okKeys)
	fRuns, fSteps, fTasks := splitKeys(failKeys)
	args := []any{w.id, okRuns, okSteps, okTasks, outputs, fRuns, fSteps, fTasks, errs, perms, snoozes,
		iRuns, iSteps, iTook, iOutputs, iErrs, iPerms, iSnoozes, f.id, want, w.opts.Lease.Milliseconds()}

	var claimed []claimedTask
	var err error
	backoff := 20 * time.Millisecond
	for attempt := 1; ; attempt++ {
		// The statement must not be cut off by a cancelled context: the
		// server could commit it after the worker stopped listening, leaving
		// tasks claimed by nobody until their leases expire.
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.opts.Lease)
		claimed, err = w.roundTrip(qctx, args, starts)
		cancel()
		if len(starts) > 0 {
			if err != nil && rolledBack(err) {
				// Nothing was written: the settle goes again at once, and
				// the starts after it on their own.
				defer w.runStarts(ctx, starts)
				starts = nil
				attempt--
				continue
			}
			finishStarts(starts, err)
			starts = nil
		}
		if err == nil {
			break
		}
		left := time.Until(time.Unix(0, w.leaseFloor.Load()).Add(w.opts.Lease))
		if len(batch) == 0 || left <= 0 || !transient(err) {
			w.log.Error("qflow: settle and claim", "worker_id", w.id, "tasks", len(batch), "attempts", attempt, "error", err)
			break
		}
		w.log.Warn("qflow: record task results; retrying while the leases last", "worker_id", w.id, "attempt", attempt, "lease_left", left, "error", err)
		select {
		case <-w.abandon:
			return nil, err
		case <-time.After(min(backoff, left)):
		}
		backoff = min(backoff*2, time.Second)
	}
	w.mu.Lock()
	for _, r := range batch {
		if w.held[r.h.key] == r.h { // an inline task is not held
			delete(w.held, r.h.key)
		}
	}
	w.mu.Unlock()
	for _, r := range batch {
		t := r.h.task
		if r.promote {
			continue
		}
		if r.skip {
			w.log.Info("qflow task skipped: its step's condition was false", "type", "task_skipped", "worker_id", w.id, "queue", r.h.flow.queue, "seq", r.h.seq, "run_id", t.RunID, "flow", t.Flow, "step", t.Step, "task_index", t.Index, "attempt", t.Attempt, "duration_ms", r.took.Milliseconds())
		} else if r.snooze != nil {
			w.log.Info("qflow task snoozed", "type", "task_snoozed", "worker_id", w.id, "queue", r.h.flow.queue, "seq", r.h.seq, "run_id", t.RunID, "flow", t.Flow, "step", t.Step, "task_index", t.Index, "attempt", t.Attempt, "duration_ms", r.took.Milliseconds(), "snooze", r.snooze.wait(now))
		} else if r.err == nil {
			w.log.Info("qflow task completed", "type", "task_completed", "worker_id", w.id, "queue", r.h.flow.queue, "seq", r.h.seq, "run_id", t.RunID, "flow", t.Flow, "step", t.Step, "task_index", t.Index, "attempt", t.Attempt, "duration_ms", r.took.Milliseconds())
		} else {
			w.log.Warn("qflow task failed", "type", "task_failed", "worker_id", w.id, "queue", r.h.flow.queue, "seq", r.h.seq, "run_id", t.RunID, "flow", t.Flow, "step", t.Step, "task_index", t.Index, "attempt", t.Attempt, "duration_ms", r.took.Milliseconds(), "permanent", r.permanent, "error", r.err)
		}
	}
	return claimed, err
}

// roundTrip runs one settle statement (none when args is nil) and starts,
// in one pipeline and so one transaction, and reads the tasks the settle
// claimed and the starts' results. Only once all has committed do the runs
// it completed go to waiters in this process, and the starts get their
// results (the caller hands them over).
func (w *Worker) roundTrip(ctx context.Context, args []any, starts []*localStart) ([]claimedTask, error) {
	var st settleResult
	var err error
	if len(starts) == 0 {
		var rows pgx.Rows
		if rows, err = w.pool.Query(ctx, sqlSettle, args...); err == nil {
			st, err = scanSettle(rows)
		}
	} else {
		st, err = w.sendBatch(ctx, args, starts)
	}
	if err != nil {
		return nil, err
	}
	if len(st.done) > 0 {
		finishedLocal(w.local, st.done)
	}
	if st.retryIn >= 0 {
		time.AfterFunc(st.retryIn, w.wakeAll)
	}
	if st.heldIn >= 0 {
		w.wakeIn(st.heldIn)
	}
	return st.claimed, nil
}

// sendBatch sends a settle (none when args is nil) and starts in one
// pipeline, and so one transaction, and sets the starts' results once it
// has committed.
func (w *Worker) sendBatch(ctx context.Context, args []any, starts []*localStart) (settleResult, error) {
	b := &pgx.Batch{}
	if args != nil {
		b.Queue(sqlSettle, args...)
	}
	b.Queue(sqlRideLockTimeout, rideLockTimeout) // for the starts only (see local.go)
	for _, s := range starts {
		b.Queue(s.q, s.args...)
	}
	br := w.pool.SendBatch(ctx, b)
	st := settleResult{retryIn: -1, heldIn: -1}
	var err error
	if args != nil {
		var rows pgx.Rows
		if rows, err = br.Query(); err == nil {
			st, err = scanSettle(rows)
		}
	}
	if err == nil {
		_, err = br.Exec()
	}
	res := make([]startResult, len(starts))
	for i := 0; err == nil && i < len(starts); i++ {
		var rows pgx.Rows
		if rows, err = br.Query(); err == nil {
			res[i], err = scanStart(rows)
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return settleResult{}, err
	}
	for i, s := range starts {
		s.res = res[i]
	}
	return st, nil
}

// settleResult is what a settle statement returned.
type settleResult struct {
	claimed []claimedTask
	done    []runDone     // runs it completed
	retryIn time.Duration // retries become visible in this long; -1 for none
	heldIn  time.Duration // tasks limits hold back may be claimable in this long; -1 for none
}

// scanSettle reads the rows of a settle statement.
func scanSettle(rows pgx.Rows) (settleResult, error) {
	st := settleResult{retryIn: -1, heldIn: -1}
	var c claimedTask
	var seq *int64
	var run *uuid.UUID
	var step *int16
	var task, attempt, prio *int32
	var deadline *time.Time
	var sequential *bool
	_, err := pgx.ForEachRow(rows, []any{&seq, &run, &step, &task, &attempt, &c.input, &prio, &c.trace, &deadline, &sequential}, func() error {
		switch {
		case seq != nil: // a claimed task
			c.seq, c.key, c.attempt, c.priority = *seq, taskKey{RunID: *run, StepIdx: *step, TaskIndex: *task}, int(*attempt), *prio
			c.deadline, c.sequential = time.Time{}, sequential != nil && *sequential
			if deadline != nil {
				c.deadline = *deadline
			}
			st.claimed = append(st.claimed, c)
		case run != nil: // a run this call completed
			st.done = append(st.done, runDone{id: *run, output: c.input})
		case attempt != nil && prio == nil: // retries become visible in this many milliseconds
			st.retryIn = time.Duration(*attempt) * time.Millisecond
		case attempt != nil:
			// Tasks held back by limits may be claimable in this many
			// milliseconds (claim_limited): look again then, for the
			// earliest. Every claim that meets the limit says so again.
			if d := time.Duration(*attempt) * time.Millisecond; st.heldIn < 0 || d < st.heldIn {
				st.heldIn = d
			}
		}
		c.input, c.trace = nil, nil
		return nil
	})
	return st, err
}

// errorText is what is stored for a failed attempt.
func errorText(err error) string {
	s := err.Error()
	if len(s) > 64<<10 {
		s = s[:64<<10] + " …[truncated]"
	}
	return strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "?")
}

// wakeIn makes the pump look for work of every flow after d, unless a look
// is already due sooner: claims held back by limits say when to look again
// on every round trip, so one timer serves them all (a retry's delay is
// told once, and keeps a timer of its own).
func (w *Worker) wakeIn(d time.Duration) {
	now := time.Now()
	at := now.Add(d)
	w.wakeMu.Lock()
	defer w.wakeMu.Unlock()
	if w.wakeTimer != nil && w.wakeAt.After(now) && !w.wakeAt.After(at) {
		return
	}
	if w.wakeTimer != nil {
		w.wakeTimer.Stop()
	}
	w.wakeAt = at
	w.wakeTimer = time.AfterFunc(d, w.wakeAll)
}
