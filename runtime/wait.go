package runtime

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
)

// EventsChannel is the NOTIFY channel on which the engine publishes run,
// step and task events.
const EventsChannel = "qflow_events"

// waitHub lets any number of WaitRun calls share one listening connection:
// it LISTENs on EventsChannel and wakes the waiters of a run when a
// terminal event for it arrives.
type waitHub struct {
	pool *pgxpool.Pool
	log  *slog.Logger

	mu      sync.Mutex
	subs    map[uuid.UUID][]chan struct{}
	started bool
	cancel  context.CancelFunc
	done    chan struct{}
	ok      atomic.Bool // listening right now
}

func newWaitHub(pool *pgxpool.Pool, log *slog.Logger) *waitHub {
	return &waitHub{pool: pool, log: log, subs: map[uuid.UUID][]chan struct{}{}}
}

func (h *waitHub) subscribe(id uuid.UUID) chan struct{} {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.subs[id] = append(h.subs[id], ch)
	if !h.started {
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
	} else {
		h.subs[id] = list
	}
}

func (h *waitHub) healthy() bool { return h.ok.Load() }

func (h *waitHub) close() {
	h.mu.Lock()
	cancel, done := h.cancel, h.done
	h.started = false
	h.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// wakeAll wakes every waiter, so each re-checks its run after a gap in
// the event stream.
func (h *waitHub) wakeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, list := range h.subs {
		for _, ch := range list {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}

func (h *waitHub) listen(ctx context.Context) {
	defer close(h.done)
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		err := h.listenOnce(ctx)
		h.ok.Store(false)
		if ctx.Err() != nil {
			return
		}
		h.log.Warn("qflow: event listener lost its connection; reconnecting", "error", err, "backoff", backoff)
		h.wakeAll()
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		if backoff *= 2; backoff > 5*time.Second {
			backoff = 5 * time.Second
		}
	}
}

func (h *waitHub) listenOnce(ctx context.Context) error {
	conn, err := h.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// The connection carries LISTEN state: never return it to the pool.
	c := conn.Hijack()
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, "LISTEN "+EventsChannel); err != nil {
		return err
	}
	h.ok.Store(true)
	h.wakeAll() // anything that ended before we listened
	for {
		n, err := c.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		var ev struct {
			Type  string    `json:"type"`
			RunID uuid.UUID `json:"run_id"`
		}
		if json.Unmarshal([]byte(n.Payload), &ev) != nil {
			continue
		}
		switch ev.Type {
		case "workflow_completed", "workflow_failed", "workflow_cancelled":
		default:
			continue
		}
		h.mu.Lock()
		for _, ch := range h.subs[ev.RunID] {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
		h.mu.Unlock()
	}
}
