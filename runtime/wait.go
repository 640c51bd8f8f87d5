package runtime

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/quantumflow/qflow/runtime/notify"
)

// EventsChannel is the NOTIFY channel on which the engine publishes run,
// step and task events (see package runtime/notify for the payload).
const EventsChannel = notify.EventsChannel

// waitHub lets any number of WaitRun calls share one listening connection:
// a notify.Listener on EventsChannel, started by the first waiter, that
// wakes the waiters of a run when its terminal event arrives and every
// waiter after a gap (a reconnect, or events dropped), so each re-checks
// its run. Waiters also re-check on a slow timer, so a missed event or a
// run started with events off cannot hang them.
//
// Workers in this process on the same pool hand runs they complete to the
// hub directly (local.go), with their outputs when small: a waiter takes
// its run's output from results instead of reading the run.
type waitHub struct {
	pool   *pgxpool.Pool
	log    *slog.Logger
	events bool // listen for events (else only local handoffs and polls wake waiters)

	mu      sync.Mutex
	subs    map[uuid.UUID][]chan struct{}
	results map[uuid.UUID]json.RawMessage // outputs handed over for runs with waiters
	local   bool                          // listed in localHubs
	started bool
	cancel  context.CancelFunc
	done    chan struct{}
	lis     *notify.Listener // nil while not listening
}

func newWaitHub(pool *pgxpool.Pool, log *slog.Logger, events bool) *waitHub {
	return &waitHub{pool: pool, log: log, events: events, subs: map[uuid.UUID][]chan struct{}{},
		results: map[uuid.UUID]json.RawMessage{}}
}

func (h *waitHub) subscribe(id uuid.UUID) chan struct{} {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.subs[id] = append(h.subs[id], ch)
	if !h.local {
		h.local = true
		localHubs.add(h.pool, h)
	}
	if h.events && !h.started {
		h.started = true
		ctx, cancel := context.WithCancel(context.Background())
		h.cancel = cancel
		h.done = make(chan struct{})
		go h.listen(ctx)
	}
	return ch
}

func (h *waitHub) unsubscribe(id uuid.UUID, ch chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	list := h.subs[id]
	for i, c := range list {
		if c == ch {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(h.subs, id)
		delete(h.results, id)
		if len(h.subs) == 0 && h.local { // nothing to hand over until the next waiter
			h.local = false
			localHubs.remove(h.pool, h)
		}
	} else {
		h.subs[id] = list
	}
}

// healthy reports whether terminal events are being received right now.
func (h *waitHub) healthy() bool {
	h.mu.Lock()
	l := h.lis
	h.mu.Unlock()
	return l != nil && l.Connected()
}

// completed takes runs a local worker completed: waiters of those runs
// wake, and find the run's output in results when it came along.
func (h *waitHub) completed(done []runDone) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, d := range done {
		list := h.subs[d.id]
		if len(list) == 0 {
			continue
		}
		if d.output != nil {
			h.results[d.id] = d.output
		}
		signalAll(list)
	}
}

// result returns the output a local worker handed over for run id, if any.
func (h *waitHub) result(id uuid.UUID) (json.RawMessage, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	out, ok := h.results[id]
	return out, ok
}

func (h *waitHub) close() {
	h.mu.Lock()
	if h.local {
		h.local = false
		localHubs.remove(h.pool, h)
	}
	cancel, done := h.cancel, h.done
	h.started = false
	h.cancel, h.done = nil, nil
	h.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// wake wakes the waiters of run id, or every waiter when all is true.
func (h *waitHub) wake(id uuid.UUID, all bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !all {
		signalAll(h.subs[id])
		return
	}
	for _, list := range h.subs {
		signalAll(list)
	}
}

func signalAll(list []chan struct{}) {
	for _, ch := range list {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// listen keeps a listener open until ctx ends. The listener reconnects by
// itself; listen only retries when it cannot connect at all.
func (h *waitHub) listen(ctx context.Context) {
	defer close(h.done)
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		// Only the terminal events wake waiters: the others are not decoded.
		l, err := notify.Listen(ctx, h.pool, &notify.ListenOptions{Logger: h.log,
			Types: []notify.EventType{notify.WorkflowCompleted, notify.WorkflowFailed, notify.WorkflowCancelled}}, EventsChannel)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			h.log.Warn("qflow: event listener cannot connect; waiters poll meanwhile", "error", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		h.mu.Lock()
		h.lis = l
		h.mu.Unlock()
		h.wake(uuid.Nil, true) // anything that ended before we listened
		for m := range l.C() {
			switch {
			case m.Gap:
				h.wake(uuid.Nil, true)
			case m.Event != nil && m.Event.Type.Terminal():
				h.wake(m.Event.RunID, false)
			}
		}
		// C closed: ctx ended.
		h.mu.Lock()
		h.lis = nil
		h.mu.Unlock()
		l.Close()
	}
}
