package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/quantumflow/qflow/runtime/notify"
)

// WorkChannel is the NOTIFY channel on which the engine announces new work;
// the payload is the flow version's queue name (see notify.WorkChannel).
const WorkChannel = notify.WorkChannel

// Worker claims and executes tasks of the flows registered with it. Any
// number of workers, in any number of processes, may share a database.
//
// Inside, a worker is a few parts with one job each:
//   - two pumps (worker_pump.go) make every round trip that changes tasks:
//     the primary settles finished tasks and claims new ones in the same
//     statement, carrying everything finished since its last round trip;
//     the secondary settles other runs' results while the primary's round
//     trip is on its way;
//   - the executor (worker_exec.go) runs handlers in at most Concurrency
//     slots, starting claimed tasks as slots free up;
//   - the keeper (worker_keep.go) heartbeats the leases of held tasks, stops
//     handlers whose tasks are no longer this worker's, and runs upkeep;
//   - wake-ups come from notify.Listen on WorkChannel.
type Worker struct {
	pool *pgxpool.Pool
	// local is the pool the worker was created with, by which clients in
	// this process find it (local.go); from Run on, pool is its own
	// (ownPool), closed once Run returns.
	local *pgxpool.Pool
	opts  WorkerOptions
	log   *slog.Logger
	id    uuid.UUID

	flows   []*workerFlow
	byQueue map[string]*workerFlow

	mu            sync.Mutex
	held          map[taskKey]*held  // claimed and not yet settled or released
	waiting       []*held            // claimed, waiting for a slot
	running       int                // handlers executing
	inFlight      int                // pumps' round trips on their way
	claiming      int                // room reserved by the pump's claim on its way (see reserve)
	claimingLocal int                // room reserved by local starts' claims on their way (local.go)
	promotions    int                // promote round trips on their way (worker_exec.go)
	timed         int                // handlers timed (see avgTook)
	settling      map[uuid.UUID]bool // runs whose results a pump is settling
	handedOff     bool               // the primary left a pile of results to the secondary (see pump)
	secondaryBusy bool               // the secondary pump is settling
	finished      []*result          // waiting for the pump to settle them
	starts        []*localStart      // local starts waiting for the primary pump's next round trip (local.go)
	startsClosed  bool               // the primary pump has stopped: local starts go on their own
	avgTook       time.Duration      // moving average of handler durations
	// prioritized: a registered flow has step priorities, or a claimed task
	// had one (see reserve).
	prioritized bool
	stopping    atomic.Bool // no more claims, no more starts

	// wakeTimer makes the pump look for work at wakeAt (see wakeIn).
	wakeMu    sync.Mutex
	wakeTimer *time.Timer
	wakeAt    time.Time

	kick      chan struct{} // the primary pump has something to do (coalesced)
	kick2     chan struct{} // the secondary pump may have results to settle (coalesced)
	slotFreed chan struct{} // a handler finished (coalesced)
	settled   chan struct{} // the pump settled a batch (coalesced)

	// leaseFloor is when the leases of every held task were last known to
	// run for a whole Lease: the last successful heartbeat, or the start of
	// Run (a task claimed since then has a later lease still).
	leaseFloor atomic.Int64

	abandon chan struct{}                 // tests: stop without touching the database
	paused  atomic.Pointer[chan struct{}] // tests: set, the primary pump takes nothing new until it is closed
	// tests: set, the primary pump's round trips that claim wait, on their
	// way, until it is closed
	claimsHeld atomic.Pointer[chan struct{}]
	inlined    atomic.Int64 // tests: tasks run inline (see WorkerOptions.ChainWindow)

	// Schedules (schedule.go): those declared with Worker.Schedule, the
	// client that starts their runs, and a test hook run inside the
	// transaction that fires a tick, before it commits.
	schedules []declaredSchedule
	starter   *Client
	fireHook  func(ctx context.Context, tx pgx.Tx, schedule string, tick time.Time) error

	// OpenTelemetry (otel.go); all nil unless configured.
	tracer trace.Tracer
	meter  metric.Meter
	met    *workerMetrics
	depth  depthCache
}

type workerFlow struct {
	def      FlowDef
	handlers map[string]Handler
	id       int
	queue    string
	steps    []flowStep // by step index
	// wakes counts signs that work may be waiting in this flow's queue
	// (notifications, polls, full claims) since a claim last found it
	// empty; the pump clears it only if no sign arrived during that claim.
	wakes atomic.Int64
	// tuned holds what WorkerOptions.Optimize learned for the handlers,
	// by step index (nil: nothing learned); tunedInDB, that the version
	// carries tuning (qflow.step_tuning) when the worker last looked.
	tuned     atomic.Pointer[[]stepTune]
	tunedInDB bool
}

type flowStep struct {
	slug       string
	timeout    time.Duration
	when       Condition // the step's condition (StepDef.When), nil for none
	takesInput bool
	// next is the step a slot may run in process right after this one
	// (see WorkerOptions.ChainWindow), -1 for none.
	next int16
	// limited: a limit across workers holds the step's tasks (the step's
	// Concurrency or Rate, or the flow's Concurrency, as the database had
	// them when the worker started; flowdef.FlowDef.Limited tells the
	// same from a definition). Such a task may start only through the
	// engine's claim, which counts it against its limits: never by a path
	// that bypasses the claim (so never in a chain).
	limited bool
	// paced: the step has a rate; its claimed tasks start ahead of others
	// waiting for a slot (see reserve).
	paced bool
	met   stepMetrics // set when the worker records metrics
	def   *StepDef    // the step's definition (for Subflow)
}

// stepTune is what the optimiser set for a step's handlers; zero fields
// leave the step as it is.
type stepTune struct {
	timeout time.Duration // basic: instead of the step's own
	hedge   time.Duration // aggressive: start a second copy after this
}

type taskKey struct {
	RunID     uuid.UUID
	StepIdx   int16
	TaskIndex int32
}

// held is a task this worker holds: claimed, running, or finished and not
// yet settled.
type held struct {
	key        taskKey
	seq        int64
	priority   int32
	flow       *workerFlow
	task       *Task
	trace      []byte                  // the run's trace context (JSON), if any
	deadline   time.Time               // the run's deadline, zero for none
	sequential bool                    // the run is sequential
	cancel     context.CancelCauseFunc // nil until the handler starts
	// inline: a task of a chain (see WorkerOptions.ChainWindow), run before
	// its task existed; it is not in Worker.held.
	inline bool
	// promoting: the chain this task heads is being recorded by promote
	// (w.mu): the heartbeat may find it finished, but the chain's handler
	// still running shares its context and must not be stopped.
	promoting bool
}

type result struct {
	h         *held
	output    json.RawMessage
	err       error
	permanent bool
	snooze    *SnoozeError // err holds a snooze: the task is queued again without using an attempt
	skip      bool         // the step's condition was false: settled with a NULL output
	took      time.Duration
	cut       bool // the handler was running when the task's context ended
	// promote: no result; the inline task is still running and is to
	// become this worker's task (see Worker.promote).
	promote bool
}

// errShuttingDown cancels the handlers still running when a worker's
// ShutdownTimeout ends; their tasks are released, not failed.
var errShuttingDown = errors.New("qflow: worker shutting down")

var errCancelledByEngine = errors.New("qflow: task no longer belongs to this worker (run cancelled or finished, or lease lost)")

// NewWorker returns a worker on pool. opts may be nil. While Run runs, the
// worker makes its statements on a pool of its own with pool's
// configuration, so that the application's queries on pool and the
// worker's round trips never wait for each other's connections; clients
// on pool in this process still hand work to it in memory.
func NewWorker(pool *pgxpool.Pool, opts *WorkerOptions) *Worker {
	w := &Worker{
		pool:      pool,
		local:     pool,
		id:        uuid.New(),
		byQueue:   map[string]*workerFlow{},
		held:      map[taskKey]*held{},
		settling:  map[uuid.UUID]bool{},
		kick:      make(chan struct{}, 1),
		kick2:     make(chan struct{}, 1),
		slotFreed: make(chan struct{}, 1),
		settled:   make(chan struct{}, 1),
		abandon:   make(chan struct{}),
	}
	if opts != nil {
		w.opts = *opts
	}
	o := &w.opts
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	if o.Lease <= 0 {
		o.Lease = 30 * time.Second
	}
	if o.ChainWindow == 0 {
		o.ChainWindow = DefaultChainWindow
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 30 * time.Second
	}
	w.log = o.Logger
	if w.log == nil {
		w.log = slog.Default()
	}
	w.tracer = tracerFrom(o.TracerProvider)
	if w.meter = meterFrom(o.MeterProvider); w.meter != nil {
		var err error
		if w.met, err = newWorkerMetrics(w.meter); err != nil {
			w.log.Warn("qflow: create metrics; recording none", "error", err)
			w.meter, w.met = nil, nil
		}
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
	if r := w.opts.Retention; r != nil {
		o := *r
		if err := o.check(); err != nil {
			return err
		}
		w.opts.Retention = &o
	}
	if err := w.opts.Optimize.check(); err != nil {
		return err
	}
	w.opts.Learning = w.opts.Learning.WithDefaults()
	own, err := ownPool(ctx, w.local, w.opts.DisableEvents)
	if err != nil {
		return err
	}
	// w.pool is not set back when Run returns: a handler that outlives Run
	// (it ignored its context past ShutdownTimeout or its step's timeout)
	// may still read it (Subflow), and must neither race with a write nor
	// reach the application's pool (whose sessions may publish events);
	// it finds the worker's pool closed.
	w.pool = own
	defer own.Close()
	var queues []string
	for _, f := range w.flows {
		if err := w.defineFlow(ctx, f); err != nil {
			return err
		}
		queues = append(queues, f.queue)
	}
	// Tuned before the first claim, so the first tasks run tuned.
	w.tuneAll(ctx)
	if w.met != nil {
		reg, err := w.meter.RegisterCallback(w.observeDepth, w.met.depth)
		if err != nil {
			w.log.Warn("qflow: register the queue depth gauge", "worker_id", w.id, "error", err)
		} else {
			defer reg.Unregister()
		}
	}
	w.starter = NewClient(w.pool, &ClientOptions{Logger: w.log, DisableEvents: w.opts.DisableEvents})
	defer w.starter.Close()
	if err := w.declareSchedules(ctx); err != nil {
		return err
	}
	host, _ := os.Hostname()
	if _, err := w.pool.Exec(ctx, sqlRegisterWorker, w.id, queues, host, os.Getpid()); err != nil {
		return fmt.Errorf("qflow: register worker: %w", err)
	}
	w.log.Info("qflow worker started", "worker_id", w.id, "queues", queues, "concurrency", w.opts.Concurrency)
	w.leaseFloor.Store(time.Now().UnixNano())
	for _, f := range w.flows {
		f.wakes.Add(1)
	}

	bg := context.WithoutCancel(ctx)
	auxCtx, auxCancel := context.WithCancel(bg)
	pumpCtx, pumpCancel := context.WithCancel(bg)
	var aux, pump sync.WaitGroup
	aux.Add(3)
	go func() { defer aux.Done(); w.listen(auxCtx) }()
	go func() { defer aux.Done(); w.keep(auxCtx) }()
	go func() { defer aux.Done(); w.cronLoop(auxCtx) }()
	if w.opts.Retention != nil {
		aux.Add(1)
		go func() { defer aux.Done(); w.retain(auxCtx) }()
	}
	if w.opts.Optimize > OptimizeOff {
		aux.Add(1)
		go func() { defer aux.Done(); w.retune(auxCtx) }()
	}
	pump.Add(2)
	go func() { defer pump.Done(); w.pump(pumpCtx, true) }()
	go func() { defer pump.Done(); w.pump(pumpCtx, false) }()

	localWorkers.add(w.local, w)
	select {
	case <-ctx.Done():
	case <-w.abandon:
	}
	localWorkers.remove(w.local, w)
	w.mu.Lock()
	w.stopping.Store(true) // from now on nothing claims or starts (reserveUpTo checks under w.mu)
	w.mu.Unlock()
	signal(w.kick)

	select {
	case <-w.abandon:
		pumpCancel()
		auxCancel()
		pump.Wait()
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
			w.cancelRunning(errShuttingDown)
			goto release
		case <-w.slotFreed:
		case <-time.After(50 * time.Millisecond):
		}
	}
release:
	// Let the pump write what finished, then release what did not,
	// including tasks local starts claimed for this worker while it was
	// stopping (their statements are waited for).
	w.waitSettled(2 * time.Second)
	pumpCancel()
	pump.Wait()
	w.waitLocalClaims(w.opts.Lease)
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

// defineFlow stores f's definition and loads what the worker needs of it:
// its id, queue, and each step's slug and timeout by index, with the
// step's condition from f's definition.
func (w *Worker) defineFlow(ctx context.Context, f *workerFlow) error {
	id, err := defineFlow(ctx, w.pool, f.def, f.def.ShapeHash())
	if err != nil {
		return err
	}
	rows, err := w.pool.Query(ctx, sqlFlowSteps, id)
	if err != nil {
		return fmt.Errorf("qflow: load flow %q: %w", f.def.Slug, err)
	}
	defer rows.Close()
	when := map[string]Condition{}
	optional := map[string]bool{}
	defs := map[string]*StepDef{}
	for i, s := range f.def.Steps {
		defs[s.Slug] = &f.def.Steps[i]
		when[s.Slug] = s.When
		// A step that waits for a signal never runs inline: its task
		// exists only once the signal is there.
		optional[s.Slug] = s.Optional || s.Wait != ""
	}
	f.steps = f.steps[:0]
	var single, delayed []bool
	var deps, dependents [][]int16
	f.tunedInDB = false
	for rows.Next() {
		var s flowStep
		var ms int64
		var prio, one, delay, tuned bool
		var dep, dependent []int16
		if err := rows.Scan(&f.queue, &prio, &s.slug, &ms, &one, &s.takesInput, &delay, &dep, &dependent, &tuned,
			&s.limited, &s.paced); err != nil {
			return fmt.Errorf("qflow: load flow %q: %w", f.def.Slug, err)
		}
		single, delayed = append(single, one), append(delayed, delay)
		deps, dependents = append(deps, dep), append(dependents, dependent)
		s.timeout = time.Duration(ms) * time.Millisecond
		s.when = when[s.slug]
		s.def = defs[s.slug]
		if w.met != nil {
			s.met = newStepMetrics(f.def.Slug, s.slug)
		}
		f.steps = append(f.steps, s)
		f.tunedInDB = f.tunedInDB || tuned
		w.prioritized = w.prioritized || prio // no other goroutine runs yet
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("qflow: load flow %q: %w", f.def.Slug, err)
	}
	// A step's next in a chain: its first dependent that is a single step
	// with no start delay, no condition, not optional, waiting for no
	// signal, under no limit and
	// with no other dependency, when no dependent is a map step (whose start can fail the
	// run: then no dependent may have run).
	for i := range f.steps {
		f.steps[i].next = -1
		if !single[i] || slices.ContainsFunc(dependents[i], func(d int16) bool { return !single[d] }) {
			continue
		}
		for _, d := range dependents[i] {
			if int(d) < len(f.steps) && single[d] && !delayed[d] && len(deps[d]) == 1 && int(deps[d][0]) == i &&
				f.steps[d].when == nil && !optional[f.steps[d].slug] && !f.steps[d].limited {
				f.steps[i].next = d
				break
			}
		}
	}
	f.id = id
	w.byQueue[f.queue] = f
	return nil
}

func (w *Worker) busy() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.running
}

// unsettled is the number of finished tasks whose results are not written yet.
func (w *Worker) unsettled() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.finished)
}

// waitSettled waits until every finished task's result is written (or d passes).
func (w *Worker) waitSettled(d time.Duration) {
	limit := time.After(d)
	for w.unsettled() > 0 {
		signal(w.kick)
		select {
		case <-w.settled:
		case <-limit:
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// waitLocalClaims waits (at most d) until no local start's claim for this
// worker, and no promotion of a chain's task, is on its way.
func (w *Worker) waitLocalClaims(d time.Duration) {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		w.mu.Lock()
		n := w.claimingLocal + w.promotions
		w.mu.Unlock()
		if n == 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// heldKeys lists the tasks this worker holds.
func (w *Worker) heldKeys() []taskKey {
	w.mu.Lock()
	defer w.mu.Unlock()
	keys := make([]taskKey, 0, len(w.held))
	for k := range w.held {
		keys = append(keys, k)
	}
	return keys
}

// cancelRunning cancels every running handler with cause.
func (w *Worker) cancelRunning(cause error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, h := range w.held {
		if h.cancel != nil {
			h.cancel(cause)
		}
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// listen wakes the pump when the engine announces work on one of this
// worker's queues, and after a gap in the notifications (a reconnect),
// when work may have been announced unheard. notify.Listen reconnects by
// itself; the pump's poll covers the time it needs.
func (w *Worker) listen(ctx context.Context) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		l, err := notify.Listen(ctx, w.pool, &notify.ListenOptions{Logger: w.log}, WorkChannel)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			w.log.Warn("qflow: worker cannot listen for work; polling meanwhile", "worker_id", w.id, "error", err)
			select {
			case <-ctx.Done():
				return
			case <-w.abandon:
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		w.wakeAll()
		for m := range l.C() {
			if m.Gap {
				w.wakeAll()
			} else if f := w.byQueue[m.Payload]; f != nil {
				f.wakes.Add(1)
				signal(w.kick)
			}
		}
		l.Close()
	}
}

// wakeAll marks every flow's queue as possibly holding work and wakes the pump.
func (w *Worker) wakeAll() {
	for _, f := range w.flows {
		f.wakes.Add(1)
	}
	signal(w.kick)
}

// keyArgs lays out statement arguments as the engine's SQL expects task
// keys: the worker id, then the keys as three parallel arrays, then rest.
func keyArgs(worker uuid.UUID, keys []taskKey, rest ...any) []any {
	runs, steps, tasks := splitKeys(keys)
	return append([]any{worker, runs, steps, tasks}, rest...)
}

// splitKeys turns keys into three parallel arrays.
func splitKeys(keys []taskKey) ([]uuid.UUID, []int16, []int32) {
	runs := make([]uuid.UUID, len(keys))
	steps := make([]int16, len(keys))
	tasks := make([]int32, len(keys))
	for i, k := range keys {
		runs[i], steps[i], tasks[i] = k.RunID, k.StepIdx, k.TaskIndex
	}
	return runs, steps, tasks
}
