package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/quantumflow/qflow/runtime/notify"
)

// hub shares one notify listener among the live streams. It starts on the
// first subscription and stops at close.
type hub struct {
	pool *pgxpool.Pool
	log  *slog.Logger

	mu     sync.Mutex
	subs   map[*sub]struct{}
	cancel context.CancelFunc
	closed bool
	done   chan struct{} // closed by close: ends every stream
}

type sub struct {
	keep func(notify.Event) bool
	ch   chan notify.Message
}

func newHub(pool *pgxpool.Pool, log *slog.Logger) *hub {
	return &hub{pool: pool, log: log, subs: map[*sub]struct{}{}, done: make(chan struct{})}
}

// subscribe registers a stream; keep filters events (gaps always pass).
func (h *hub) subscribe(ctx context.Context, keep func(notify.Event) bool) (*sub, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, fmt.Errorf("dashboard: closed")
	}
	if h.cancel == nil {
		lctx, cancel := context.WithCancel(context.Background())
		l, err := notify.Listen(lctx, h.pool, &notify.ListenOptions{Logger: h.log}, notify.EventsChannel)
		if err != nil {
			cancel()
			return nil, err
		}
		h.cancel = cancel
		go h.fanOut(l)
	}
	s := &sub{keep: keep, ch: make(chan notify.Message, 256)}
	h.subs[s] = struct{}{}
	return s, nil
}

func (h *hub) unsubscribe(s *sub) {
	h.mu.Lock()
	delete(h.subs, s)
	h.mu.Unlock()
}

func (h *hub) fanOut(l *notify.Listener) {
	for m := range l.C() {
		h.mu.Lock()
		for s := range h.subs {
			if !m.Gap && (m.Event == nil || !s.keep(*m.Event)) {
				continue
			}
			select {
			case s.ch <- m:
			default: // a slow browser: tell it to re-read
				select {
				case s.ch <- notify.Message{Gap: true, Dropped: 1}:
				default:
				}
			}
		}
		h.mu.Unlock()
	}
}

func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	if h.cancel != nil {
		h.cancel()
	}
	close(h.done)
}

// events streams the engine's events as server-sent events: "event: qflow"
// with the event's JSON, "event: gap" when some may have been missed (the
// page then re-reads the state). ?run=ID or ?flow=SLUG filter.
func (h *Handler) events(w http.ResponseWriter, r *http.Request) {
	keep := func(notify.Event) bool { return true }
	if s := r.URL.Query().Get("run"); s != "" {
		id, err := uuid.Parse(s)
		if err != nil {
			h.fail(w, r, http.StatusBadRequest, fmt.Errorf("run: not a run id"))
			return
		}
		keep = notify.ForRun(id)
	} else if f := r.URL.Query().Get("flow"); f != "" {
		keep = notify.ForFlow(f)
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		h.fail(w, r, http.StatusInternalServerError, fmt.Errorf("streaming unsupported"))
		return
	}
	s, err := h.live.subscribe(r.Context(), keep)
	if err != nil {
		h.fail(w, r, http.StatusServiceUnavailable, err)
		return
	}
	defer h.live.unsubscribe(s)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 2000\n: connected\n\n")
	flusher.Flush()
	ping := time.NewTicker(15 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-h.live.done:
			return
		case <-ping.C:
			fmt.Fprint(w, ": ping\n\n")
		case m := <-s.ch:
			if m.Gap {
				fmt.Fprint(w, "event: gap\ndata: {}\n\n")
			} else {
				b, _ := json.Marshal(m.Event)
				fmt.Fprintf(w, "event: qflow\ndata: %s\n\n", b)
			}
		}
		flusher.Flush()
	}
}
