package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// WorkChannel is the NOTIFY channel on which the engine announces new work;
// the payload is the queue name.
const WorkChannel = "qflow_work"

// Worker claims and executes tasks of the flows registered with it. Any
// number of workers, in any number of processes, may share a database.
type Worker struct {
	pool *pgxpool.Pool
	opts WorkerOptions
	log  *slog.Logger
	id   uuid.UUID

	flows   []*workerFlow
	byQueue map[string]*workerFlow

	mu        sync.Mutex
	inflight  map[taskKey]*running
	running   int // slots in use: handlers executing, plus reservations
	unflushed int // results handed to the completer and not yet written
	stopping  atomic.Bool

	wake    chan struct{} // work may be waiting (coalesced)
	results chan *result
	freed   chan struct{} // a slot became free (coalesced)
	flushed chan struct{} // the completer wrote a batch (coalesced)

	abandon chan struct{} // tests: stop without touching the database
}

type workerFlow struct {
	def      FlowDef
	handlers map[string]Handler
	id       int
	queue    string
}

type taskKey struct {
	RunID     uuid.UUID
	StepIdx   int16
	TaskIndex int32
}

type running struct {
	cancel context.CancelCauseFunc
}

type result struct {
	key       taskKey
	msgID     int64
	flow      *workerFlow
	task      *Task
	output    json.RawMessage
	err       error
	permanent bool
	took      time.Duration
}

// errShuttingDown cancels the handlers still running when a worker's
// ShutdownTimeout ends; their tasks are released, not failed.
var errShuttingDown = errors.New("qflow: worker shutting down")

var errCancelledByEngine = errors.New("qflow: task no longer belongs to this worker (run cancelled or finished, or lease lost)")

// NewWorker returns a worker on pool. opts may be nil.
func NewWorker(pool *pgxpool.Pool, opts *WorkerOptions) *Worker {
	w := &Worker{
		pool:     pool,
		id:       uuid.New(),
		byQueue:  map[string]*workerFlow{},
		inflight: map[taskKey]*running{},
		wake:     make(chan struct{}, 1),
		results:  make(chan *result, 1024),
		freed:    make(chan struct{}, 1),
		flushed:  make(chan struct{}, 1),
		abandon:  make(chan struct{}),
	}
	if opts != nil {
		w.opts = *opts
	}
	o := &w.opts
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 32
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	if o.Lease <= 0 {
		o.Lease = 30 * time.Second
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 30 * time.Second
	}
	w.log = o.Logger
	if w.log == nil {
		w.log = slog.Default()
	}
	return w
}

// ID returns the worker's id, as stored in qflow.workers and on the tasks
// it runs.
func (w *Worker) ID() uuid.UUID { return w.id }

// Register adds a flow and a handler for each of its steps. It must be
// called before Run. Every step needs a handler, and every handler a step.
func (w *Worker) Register(def FlowDef, handlers map[string]Handler) error {
	if err := def.Validate(); err != nil {
		return err
	}
	var missing, extra []string
	for _, s := range def.Steps {
		if handlers[s.Slug] == nil {
			missing = append(missing, s.Slug)
		}
	}
	for slug := range handlers {
		found := false
		for _, s := range def.Steps {
			found = found || s.Slug == slug
		}
		if !found {
			extra = append(extra, slug)
		}
	}
	sort.Strings(extra)
	if len(missing) > 0 || len(extra) > 0 {
		return fmt.Errorf("qflow: register flow %q: steps without a handler %v, handlers without a step %v", def.Slug, missing, extra)
	}
	for _, f := range w.flows {
		if f.def.Slug == def.Slug {
			return fmt.Errorf("qflow: register flow %q: already registered with this worker", def.Slug)
		}
	}
	w.flows = append(w.flows, &workerFlow{def: def, handlers: handlers})
	return nil
}

// Run claims and executes tasks until ctx ends, then shuts down gracefully:
// it stops claiming, lets in-flight handlers finish within
// ShutdownTimeout, records their results, and releases what is left for
// other workers. It returns nil after a graceful shutdown.
func (w *Worker) Run(ctx context.Context) error {
	if len(w.flows) == 0 {
		return errors.New("qflow: worker has no registered flows")
	}
	if w.opts.DisableEvents {
		p, err := eventsOffPool(ctx, w.pool)
		if err != nil {
			return err
		}
		orig := w.pool
		w.pool = p
		defer func() { w.pool = orig; p.Close() }()
	}
	var queues []string
	for _, f := range w.flows {
		id, err := defineFlow(ctx, w.pool, f.def, f.def.ShapeHash())
		if err != nil {
			return err
		}
		if err := w.pool.QueryRow(ctx, `SELECT queue_name FROM qflow.flows WHERE id = $1::integer`, id).Scan(&f.queue); err != nil {
			return err
		}
		f.id = id
		w.byQueue[f.queue] = f
		queues = append(queues, f.queue)
	}
	host, _ := os.Hostname()
	if _, err := w.pool.Exec(ctx, sqlRegisterWorker, w.id, queues, host, os.Getpid()); err != nil {
		return fmt.Errorf("qflow: register worker: %w", err)
	}
	w.log.Info("qflow worker started", "worker_id", w.id, "queues", queues, "concurrency", w.opts.Concurrency)

	bg := context.WithoutCancel(ctx)
	stopAux, auxCancel := context.WithCancel(bg)
	var aux sync.WaitGroup
	aux.Add(3)
	go func() { defer aux.Done(); w.listen(stopAux) }()
	go func() { defer aux.Done(); w.heartbeatLoop(stopAux) }()
	go func() { defer aux.Done(); w.completer(stopAux) }()

	w.claimLoop(ctx)
	w.stopping.Store(true) // from now on nothing claims, the completer included

	select {
	case <-w.abandon:
		auxCancel()
		aux.Wait()
		return errors.New("qflow: worker abandoned")
	default:
	}

	// Graceful shutdown: wait for handlers, then release the rest.
	deadline := time.NewTimer(w.opts.ShutdownTimeout)
	defer deadline.Stop()
	for w.busy() > 0 {
		select {
		case <-deadline.C:
			w.cancelAll(errShuttingDown)
			goto release
		case <-w.freed:
		case <-time.After(50 * time.Millisecond):
		}
	}
release:
	// Let the completer write what finished, then release what did not.
	w.waitFlushed(2 * time.Second)
	if keys := w.heldKeys(); len(keys) > 0 {
		var n int
		if err := w.pool.QueryRow(bg, sqlRelease, keyArgs(w.id, keys)...).Scan(&n); err != nil {
			w.log.Error("qflow: release tasks on shutdown", "worker_id", w.id, "error", err)
		} else if n > 0 {
			w.log.Info("qflow worker released tasks", "worker_id", w.id, "tasks", n)
		}
	}
	auxCancel()
	aux.Wait()
	if _, err := w.pool.Exec(bg, sqlStopWorker, w.id); err != nil {
		w.log.Warn("qflow: mark worker stopped", "worker_id", w.id, "error", err)
	}
	w.log.Info("qflow worker stopped", "worker_id", w.id)
	return nil
}

func (w *Worker) busy() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.running
}

// waitFlushed waits until every finished task's result is written (or d passes).
func (w *Worker) waitFlushed(d time.Duration) {
	limit := time.After(d)
	for {
		if w.unsettled() == 0 {
			return
		}
		select {
		case <-w.flushed:
		case <-limit:
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// held snapshots the tasks this worker holds.
func (w *Worker) held() map[taskKey]*running {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := make(map[taskKey]*running, len(w.inflight))
	for k, r := range w.inflight {
		m[k] = r
	}
	return m
}

func (w *Worker) heldKeys() []taskKey {
	w.mu.Lock()
	defer w.mu.Unlock()
	keys := make([]taskKey, 0, len(w.inflight))
	for k := range w.inflight {
		keys = append(keys, k)
	}
	return keys
}

func (w *Worker) cancelAll(cause error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range w.inflight {
		r.cancel(cause)
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// claimLoop claims work whenever slots are free, until ctx ends.
func (w *Worker) claimLoop(ctx context.Context) {
	poll := time.NewTimer(w.opts.PollInterval)
	defer poll.Stop()
	next := 0 // round-robin start over flows
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.abandon:
			return
		default:
		}
		if w.unsettled() > 0 {
			// Results are on their way to the database: the completer claims
			// with them, in the same round trip, so wait for it rather than
			// claiming a few tasks at a time here (a round trip per handler).
			select {
			case <-ctx.Done():
				return
			case <-w.abandon:
				return
			case <-w.flushed:
			case <-poll.C:
			}
		}
		more := false // some claim came back full: more may be ready
		free := 0
		for i := 0; i < len(w.flows); i++ {
			want := w.reserve(w.opts.BatchSize)
			if want == 0 {
				break
			}
			f := w.flows[(next+i)%len(w.flows)]
			// The claim must not be cut off by ctx: the server could commit it
			// after the worker stopped listening, leaving tasks claimed by
			// nobody until their leases expire.
			if ctx.Err() != nil {
				w.unreserve(want)
				break
			}
			qctx, qcancel := context.WithTimeout(context.WithoutCancel(ctx), w.opts.Lease)
			list, err := w.claim(qctx, w.pool, f, want)
			qcancel()
			w.startAll(f, list, want)
			if err != nil {
				if ctx.Err() == nil {
					w.log.Error("qflow: claim", "worker_id", w.id, "queue", f.queue, "error", err)
				}
				break
			}
			more = more || len(list) == want
		}
		free = w.opts.Concurrency - w.busy()
		next++
		if more && free > 0 {
			continue
		}
		if !poll.Stop() {
			select {
			case <-poll.C:
			default:
			}
		}
		poll.Reset(w.opts.PollInterval)
		if free > 0 {
			// Idle: wait for a notification or the fallback poll.
			select {
			case <-ctx.Done():
				return
			case <-w.abandon:
				return
			case <-w.wake:
			case <-poll.C:
			}
			continue
		}
		// Every slot busy: wait for one to free up.
		select {
		case <-ctx.Done():
			return
		case <-w.abandon:
			return
		case <-w.freed:
		}
	}
}

// unsettled is the number of finished tasks whose results the completer
// has not yet written.
func (w *Worker) unsettled() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.unflushed
}

// reserve takes up to n free slots and returns how many it took.
func (w *Worker) reserve(n int) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n = min(n, w.opts.Concurrency-w.running)
	if n < 0 {
		n = 0
	}
	w.running += n
	return n
}

// unreserve gives back n reserved slots that found no task.
func (w *Worker) unreserve(n int) {
	if n <= 0 {
		return
	}
	w.mu.Lock()
	w.running -= n
	w.mu.Unlock()
	signal(w.freed)
}

// claimedTask is one row of a claim.
type claimedTask struct {
	msgID     int64
	key       taskKey
	attempt   int
	step      string
	timeoutMS int64
	input     []byte
}

// claim fetches up to n tasks of flow f in one statement on db.
func (w *Worker) claim(ctx context.Context, db DB, f *workerFlow, n int) ([]claimedTask, error) {
	rows, err := db.Query(ctx, sqlClaim, f.id, w.id, n, w.opts.Lease.Milliseconds())
	if err != nil {
		return nil, err
	}
	return collectClaims(rows)
}

// collectClaims reads the rows of a claim.
func collectClaims(rows pgx.Rows) ([]claimedTask, error) {
	var list []claimedTask
	for rows.Next() {
		var c claimedTask
		if err := rows.Scan(&c.msgID, &c.key.RunID, &c.key.StepIdx, &c.key.TaskIndex, &c.attempt, &c.step, &c.timeoutMS, &c.input); err != nil {
			rows.Close()
			return nil, err
		}
		list = append(list, c)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return list, nil
}

// startAll starts claimed tasks in the slots reserved for them and gives
// back the slots left over.
func (w *Worker) startAll(f *workerFlow, list []claimedTask, reserved int) {
	for _, c := range list {
		t := &Task{RunID: c.key.RunID, Flow: f.def.Slug, Step: c.step, Index: int(c.key.TaskIndex), Attempt: c.attempt, Input: c.input}
		w.start(f, c.key, c.msgID, t, time.Duration(c.timeoutMS)*time.Millisecond)
	}
	w.unreserve(reserved - len(list))
}

// start runs one task's handler in its own goroutine with the step's
// timeout; the result goes to the completer.
func (w *Worker) start(f *workerFlow, key taskKey, msgID int64, t *Task, timeout time.Duration) {
	ctx, cancel := context.WithCancelCause(context.Background())
	w.mu.Lock()
	if _, dup := w.inflight[key]; dup {
		// Already running here (lease extended but redelivered): skip.
		w.mu.Unlock()
		cancel(nil)
		w.unreserve(1)
		return
	}
	w.inflight[key] = &running{cancel: cancel}
	w.mu.Unlock()
	w.log.Debug("qflow task started", "type", "task_started", "worker_id", w.id, "queue", f.queue, "msg_id", msgID, "run_id", t.RunID, "flow", t.Flow, "step", t.Step, "task_index", t.Index, "attempt", t.Attempt)

	go func() {
		began := time.Now()
		tctx, tcancel := context.WithTimeoutCause(ctx, timeout, fmt.Errorf("step %q timed out after %s", t.Step, timeout))
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
			o.output, o.err = f.handlers[t.Step](tctx, t)
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
		res := &result{key: key, msgID: msgID, flow: f, task: t, output: o.output, err: o.err, took: time.Since(began)}
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
		w.mu.Lock()
		w.running--
		// A handler stopped because the task is no longer ours (its run
		// was cancelled or its lease lost), or because the worker is
		// shutting down, has no result to record: the first is none of our
		// business any more, the second is released to other workers.
		cause := context.Cause(ctx)
		drop := errors.Is(cause, errCancelledByEngine) || errors.Is(cause, errShuttingDown)
		if errors.Is(cause, errCancelledByEngine) {
			delete(w.inflight, key)
		}
		if !drop {
			w.unflushed++
		}
		w.mu.Unlock()
		signal(w.freed)
		if !drop {
			w.results <- res
		}
	}()
}

// completer writes finished tasks in batches: everything that finished
// since its last round trip goes in one transaction.
func (w *Worker) completer(ctx context.Context) {
	for {
		var batch []*result
		select {
		case <-ctx.Done():
			select {
			case <-w.abandon:
				return // a dead worker records nothing
			default:
			}
			// Drain what is left before stopping.
			for {
				select {
				case r := <-w.results:
					batch = append(batch, r)
					continue
				default:
				}
				break
			}
			if len(batch) > 0 {
				w.flush(context.WithoutCancel(ctx), batch)
			}
			return
		case r := <-w.results:
			batch = append(batch, r)
		}
	more:
		for len(batch) < 256 {
			select {
			case r := <-w.results:
				batch = append(batch, r)
			default:
				break more
			}
		}
		w.flush(ctx, batch)
	}
}

func (w *Worker) flush(ctx context.Context, batch []*result) {
	var okKeys, failKeys []taskKey
	var outputs []string
	var errs []string
	var perms []bool
	for _, r := range batch {
		if r.err == nil {
			okKeys = append(okKeys, r.key)
			outputs = append(outputs, string(r.output))
		} else {
			failKeys = append(failKeys, r.key)
			errs = append(errs, errorText(r.err))
			perms = append(perms, r.permanent)
		}
	}
	// Claim for the flow of the first result: its next steps are likely
	// ready now, made so by this very transaction.
	f := batch[0].flow
	want := 0
	if !w.stopping.Load() && ctx.Err() == nil {
		want = w.reserve(w.opts.BatchSize)
	}
	// Retry while the leases of these tasks can still be ours (the heartbeat
	// keeps extending them while they are in flight): giving up early would
	// make other workers run them again after a mere connection blip.
	var claimed []claimedTask
	began, backoff := time.Now(), 20*time.Millisecond
	for attempt := 1; ; attempt++ {
		args := keyArgs(w.id, okKeys, outputs)
		args = append(args, keyArgs(w.id, failKeys, errs, perms)[1:]...)
		args = append(args, f.id, want, w.opts.Lease.Milliseconds())
		rows, err := w.pool.Query(ctx, sqlSettle, args...)
		if err == nil {
			claimed, err = collectClaims(rows)
		}
		if err == nil {
			break
		}
		if ctx.Err() != nil || time.Since(began)+backoff > w.opts.Lease {
			w.log.Error("qflow: record task results; leases will expire and the tasks run again", "worker_id", w.id, "tasks", len(batch), "attempts", attempt, "error", err)
			break
		}
		w.log.Warn("qflow: record task results; retrying", "worker_id", w.id, "attempt", attempt, "error", err)
		select {
		case <-ctx.Done():
		case <-w.abandon:
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, time.Second)
	}
	// The batch is settled: forget it before starting what was claimed (a
	// retried task may come straight back).
	w.mu.Lock()
	for _, r := range batch {
		delete(w.inflight, r.key)
	}
	w.unflushed -= len(batch)
	w.mu.Unlock()
	w.startAll(f, claimed, want)
	for _, r := range batch {
		t := r.task
		if r.err == nil {
			w.log.Info("qflow task completed", "type", "task_completed", "worker_id", w.id, "queue", r.flow.queue, "msg_id", r.msgID, "run_id", t.RunID, "flow", t.Flow, "step", t.Step, "task_index", t.Index, "attempt", t.Attempt, "duration_ms", r.took.Milliseconds())
		} else {
			w.log.Warn("qflow task failed", "type", "task_failed", "worker_id", w.id, "queue", r.flow.queue, "msg_id", r.msgID, "run_id", t.RunID, "flow", t.Flow, "step", t.Step, "task_index", t.Index, "attempt", t.Attempt, "duration_ms", r.took.Milliseconds(), "permanent", r.permanent, "error", r.err)
		}
	}
	signal(w.flushed)
}

// errorText is what is stored for a failed attempt.
func errorText(err error) string {
	s := err.Error()
	if len(s) > 64<<10 {
		s = s[:64<<10] + " …[truncated]"
	}
	return strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "?")
}

// heartbeatLoop extends the leases of tasks this worker holds, notices
// tasks it must stop (cancelled runs, lost leases), and expires runs past
// their deadline.
func (w *Worker) heartbeatLoop(ctx context.Context) {
	interval := min(time.Second, w.opts.Lease/3)
	t := time.NewTicker(interval)
	defer t.Stop()
	var lastExpire, lastBeat time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.abandon:
			return
		case <-t.C:
		}
		held := w.held()
		keys := make([]taskKey, 0, len(held))
		for k := range held {
			keys = append(keys, k)
		}
		var err error
		// An idle worker only marks itself alive now and then: it must not
		// query faster than its poll interval.
		if len(keys) > 0 || time.Since(lastBeat) >= max(w.opts.Lease/3, w.opts.PollInterval) {
			lastBeat = time.Now()
			err = w.beat(ctx, held, keys)
		}
		if err != nil && ctx.Err() == nil {
			w.log.Warn("qflow: heartbeat", "worker_id", w.id, "error", err)
		}
		if time.Since(lastExpire) >= w.opts.PollInterval {
			lastExpire = time.Now()
			var n int
			if err := w.pool.QueryRow(ctx, sqlExpireRuns).Scan(&n); err == nil && n > 0 {
				w.log.Info("qflow runs timed out", "worker_id", w.id, "runs", n)
			}
		}
	}
}

// beat extends the leases of the tasks this worker holds and cancels the
// handlers of those it must stop.
func (w *Worker) beat(ctx context.Context, held map[taskKey]*running, keys []taskKey) error {
	rows, err := w.pool.Query(ctx, sqlHeartbeat, keyArgs(w.id, keys, w.opts.Lease.Milliseconds())...)
	if err != nil {
		return err
	}
	stop, err := pgx.CollectRows(rows, pgx.RowToStructByPos[taskKey])
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, k := range stop {
		// Only the attempt the heartbeat asked about: a newer attempt of the
		// same task (retried and claimed again meanwhile) is not stale.
		if r := w.inflight[k]; r != nil && r == held[k] {
			r.cancel(errCancelledByEngine)
		}
	}
	return nil
}

// listen wakes the claim loop when the engine announces work on one of
// this worker's queues. It reconnects with backoff; polling covers gaps.
func (w *Worker) listen(ctx context.Context) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		err := w.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		w.log.Warn("qflow: worker listener lost its connection; reconnecting", "worker_id", w.id, "error", err)
		signal(w.wake)
		select {
		case <-ctx.Done():
			return
		case <-w.abandon:
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (w *Worker) listenOnce(ctx context.Context) error {
	conn, err := w.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	c := conn.Hijack()
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, "LISTEN "+WorkChannel); err != nil {
		return err
	}
	signal(w.wake)
	for {
		n, err := c.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if w.byQueue[n.Payload] != nil {
			signal(w.wake)
		}
	}
}

// keyArgs lays out statement arguments as the engine's SQL expects task
// keys: the worker id, then the keys as three parallel arrays, then rest.
func keyArgs(worker uuid.UUID, keys []taskKey, rest ...any) []any {
	runs := make([]uuid.UUID, len(keys))
	steps := make([]int16, len(keys))
	tasks := make([]int32, len(keys))
	for i, k := range keys {
		runs[i], steps[i], tasks[i] = k.RunID, k.StepIdx, k.TaskIndex
	}
	return append([]any{worker, runs, steps, tasks}, rest...)
}
