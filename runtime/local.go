package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Local handoff: a Client and a Worker built on the same pool in one
// process skip the database's wake-up for a run's first tasks. StartRun
// (and StartRuns, StartFlow; not the …Tx forms, whose commit is the
// caller's) claims the new runs' first tasks for that worker in the
// starting transaction itself, and hands them over in memory once it
// commits. Nothing else changes: the tasks are claimed with the worker's
// lease like any other claim, so if the process dies before they run,
// their leases expire and any worker takes them again.

// A local start does not make a round trip of its own: it waits for the
// worker's primary pump, whose next round trip sends it in one pipeline
// with its settle, so both share one transaction and one commit (and a
// start that finds the pump idle goes at once). The runs' started_at is
// the transaction's start, which is before the start statement ran by as
// long as the settle ahead of it took (and still after StartRun was
// called). Should the server refuse that transaction, nothing of it was
// written: the settle goes again at once and the starts after it on their
// own, so each statement meets only its own errors. The pump never waits
// for a start for long: a start with many inputs goes on its own from the
// start, and one that waits for a lock (rideLockTimeout) goes back to its
// caller, which sends it on its own. So does every start while the worker
// publishes no events (its sessions have qflow.events off, and the
// client's may publish).

// The other way, a worker whose settle completed runs hands their outputs
// to the waiters of those runs in its process (WaitRun on a client of the
// same pool) as soon as the settle has committed, ahead of the
// workflow_completed event, which stays the path for every other process.

// Counters for tests.
var localOutputsTaken, startRoundTrips atomic.Int64

// poolRegistry lists this process's parts of one kind (running workers,
// wait hubs with waiters) by the pool they were created with. A list it
// returns is never changed afterwards: add and remove build new ones.
type poolRegistry[T comparable] struct {
	mu     sync.Mutex
	byPool map[*pgxpool.Pool][]T
}

func (r *poolRegistry[T]) add(pool *pgxpool.Pool, x T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byPool == nil {
		r.byPool = map[*pgxpool.Pool][]T{}
	}
	r.byPool[pool] = append(r.byPool[pool][:len(r.byPool[pool]):len(r.byPool[pool])], x)
}

func (r *poolRegistry[T]) remove(pool *pgxpool.Pool, x T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	list := slices.DeleteFunc(slices.Clone(r.byPool[pool]), func(y T) bool { return y == x })
	if len(list) == 0 {
		delete(r.byPool, pool)
	} else {
		r.byPool[pool] = list
	}
}

func (r *poolRegistry[T]) list(pool *pgxpool.Pool) []T {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byPool[pool]
}

var (
	localWorkers poolRegistry[*Worker]  // running workers
	localHubs    poolRegistry[*waitHub] // wait hubs with waiters
	localNext    atomic.Uint64          // round-robin start among a pool's workers
)

// localClaim is room a local worker reserved for a start's first tasks.
type localClaim struct {
	w    *Worker
	f    *workerFlow
	room int
}

// reserveLocal finds a running worker on pool that serves flow slug and
// has room, and reserves up to want tasks' room in it; nil when none does.
func reserveLocal(pool *pgxpool.Pool, slug string, want int) *localClaim {
	list := localWorkers.list(pool)
	start := int(localNext.Add(1) % uint64(max(len(list), 1)))
	for i := range list {
		w := list[(start+i)%len(list)]
		for _, f := range w.flows {
			if f.def.Slug != slug {
				continue
			}
			if n := w.reserveUpTo(want); n > 0 {
				return &localClaim{w: w, f: f, room: n}
			}
		}
	}
	return nil
}

// reserveUpTo reserves room for up to n tasks, as reserve does for the
// pump; none once the worker is stopping.
func (w *Worker) reserveUpTo(n int) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopping.Load() {
		return 0
	}
	n = max(0, min(n, w.roomLocked()))
	w.claimingLocal += n
	return n
}

// startLocal runs the start statement that also claims for lc's worker,
// hands the claimed tasks over, and returns the runs' ids (and, for a
// keyed start, which of them existed). The reserved room is given back
// whatever happens.
func (c *Client) startLocal(ctx context.Context, lc *localClaim, slug string, flowID int, docs []string, opts []byte) ([]uuid.UUID, []bool, error) {
	w := lc.w
	// Whatever happens below (an error, even a panic a caller recovers),
	// the room goes back once; accept gives it back with the tasks.
	accepted := false
	defer func() {
		if !accepted {
			w.accept(lc.f, nil, lc.room, true)
		}
	}()
	// The statement claims for the worker: once the server may have
	// committed it, the tasks must reach the worker, so it does not end
	// with the caller's context (as settle's round trip does not).
	args := []any{docs, opts, w.id, lc.f.id, lc.room, w.opts.Lease.Milliseconds(), !w.opts.DisableEvents}
	q := sqlStartRunsClaimByID
	if flowID != 0 {
		args = append([]any{flowID}, args...)
	} else {
		args = append([]any{slug}, args...)
		q = sqlStartRunsClaimBySlug
	}
	ls := &localStart{q: q, args: args, done: make(chan struct{})}
	alone := func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.opts.Lease)
		defer cancel()
		rows, err := c.pool.Query(sctx, q, args...)
		if err == nil {
			ls.res, err = scanStart(rows)
		}
		ls.err = err
	}
	// Alone when the worker's connections publish no events (the client's
	// may), when the start is a long one, or when the pump has stopped.
	if w.opts.DisableEvents || len(docs) > maxRideInputs || !w.queueStart(ls) {
		alone()
	} else {
		<-ls.done
		if errors.Is(ls.err, errStartBlocked) { // it waited for a lock
			alone()
		}
	}
	if ls.err != nil {
		return nil, nil, mapError(fmt.Errorf("qflow: start %q: %w", slug, ls.err))
	}
	ids, existing := ls.res.ids, ls.res.existing
	accepted = true
	w.accept(lc.f, ls.res.claimed, lc.room, true)
	if !ls.res.found {
		return nil, nil, fmt.Errorf("%w %q", ErrUnknownFlow, slug)
	}
	return ids, existing, nil
}

// localStart is a start statement (start_runs_claim) waiting for, or
// riding, a pump's round trip.
type localStart struct {
	q    string
	args []any
	res  startResult
	err  error
	done chan struct{} // closed once res or err is set
}

// startResult is what a start_runs_claim statement returned.
type startResult struct {
	ids      []uuid.UUID
	existing []bool
	claimed  []claimedTask
	found    bool // the flow exists
}

// finishStarts hands each start its result, or err.
func finishStarts(starts []*localStart, err error) {
	for _, s := range starts {
		if err != nil {
			s.err = err
		}
		close(s.done)
	}
}

// queueStart leaves s for the primary pump's next round trip, unless the
// pump has stopped.
func (w *Worker) queueStart(s *localStart) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.startsClosed {
		return false
	}
	w.starts = append(w.starts, s)
	signal(w.kick)
	return true
}

// takeStarts takes the starts waiting for the primary pump; closing, when
// the pump stops, makes later starts go on their own.
func (w *Worker) takeStarts(closing bool) []*localStart {
	w.mu.Lock()
	defer w.mu.Unlock()
	starts := w.starts
	w.starts = nil
	w.startsClosed = w.startsClosed || closing
	return starts
}

// runStarts sends starts on a round trip of their own: in one pipeline
// (one transaction) and, if the server refuses it, each on its own, so
// every start gets the error its own statement causes. Starts that wait
// for a lock longer than rideLockTimeout go back to their callers
// (errStartBlocked), so that a pump never waits on a lock for long.
func (w *Worker) runStarts(ctx context.Context, starts []*localStart) {
	if len(starts) == 0 {
		return
	}
	select {
	case <-w.abandon: // tests: the worker no longer touches the database
		finishStarts(starts, errors.New("qflow: worker abandoned"))
		return
	default:
	}
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.opts.Lease)
	_, err := w.roundTrip(qctx, nil, starts)
	cancel()
	switch {
	case err != nil && lockTimedOut(err):
		finishStarts(starts, errStartBlocked)
	case err != nil && len(starts) > 1 && rolledBack(err):
		for _, s := range starts {
			w.runStarts(ctx, []*localStart{s})
		}
	default:
		finishStarts(starts, err)
	}
}

// rideLockTimeout bounds the lock waits of starts a pump sends: a start
// does not wait on a lock (the foreign key to its flow's row waits only
// while another transaction holds that row FOR UPDATE), and one that
// would goes back to its caller rather than hold up the worker's settles
// and claims.
const rideLockTimeout = "100ms"

// maxRideInputs is the most inputs a start may have and still ride a
// pump's round trip: a larger one goes on its own, so that no settle waits
// for a long start.
const maxRideInputs = 256

// errStartBlocked: a start the pump sent waited for a lock; its caller
// sends it on its own.
var errStartBlocked = errors.New("qflow: start waited for a lock")

// lockTimedOut reports whether err is the server's lock_timeout.
func lockTimedOut(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "55P03"
}

// scanStart reads the row of a start_runs_claim statement.
func scanStart(rows pgx.Rows) (startResult, error) {
	var r startResult
	var seq []int64
	var runs []uuid.UUID
	var steps []int16
	var tasks, attempts, prios []int32
	var inputs, traces []*string
	var deadlines []*time.Time
	var sequential []bool
	for rows.Next() {
		r.found = true
		if err := rows.Scan(&r.ids, &seq, &runs, &steps, &tasks, &attempts, &inputs, &prios, &traces, &r.existing, &deadlines, &sequential); err != nil {
			rows.Close()
			return startResult{}, err
		}
	}
	if err := rows.Err(); err != nil {
		return startResult{}, err
	}
	r.claimed = make([]claimedTask, len(seq))
	for i := range r.claimed {
		t := claimedTask{seq: seq[i], key: taskKey{RunID: runs[i], StepIdx: steps[i], TaskIndex: tasks[i]},
			attempt: int(attempts[i]), priority: prios[i], sequential: sequential[i]}
		if deadlines[i] != nil {
			t.deadline = *deadlines[i]
		}
		if inputs[i] != nil {
			t.input = []byte(*inputs[i])
		}
		if traces[i] != nil {
			t.trace = []byte(*traces[i])
		}
		r.claimed[i] = t
	}
	return r, nil
}

// runDone is a run a settle completed, with its output when small enough
// to carry (nil otherwise).
type runDone struct {
	id     uuid.UUID
	output json.RawMessage
}

// finishedLocal hands completed runs to the wait hubs on pool.
func finishedLocal(pool *pgxpool.Pool, done []runDone) {
	for _, h := range localHubs.list(pool) {
		h.completed(done)
	}
}
