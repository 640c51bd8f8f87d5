package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Message is what a Listener delivers: a notification, or a gap.
type Message struct {
	// Channel and Payload are the notification's; empty for a gap.
	Channel string
	Payload string
	// Event is the decoded event for a notification on EventsChannel whose
	// payload is an engine event; nil otherwise.
	Event *Event
	// Gap reports that notifications may have been missed just before this
	// message: the connection dropped and was re-established (Err says why
	// it dropped), or the consumer fell behind and Dropped notifications
	// were discarded. Consumers that track state from events should re-read
	// it from the database.
	Gap bool
	// Dropped counts the notifications the listener discarded because the
	// consumer did not keep up. After a reconnect (Err not nil) more may
	// have been lost: how many is unknown.
	Dropped int
	// Err is the error that broke the connection, for a reconnect gap.
	Err error
}

// ListenOptions configure a Listener. A nil *ListenOptions means all
// defaults.
type ListenOptions struct {
	// Buffer is the capacity of the listener's channel (default 1024). When
	// it is full, notifications are dropped and a gap is reported, so a slow
	// consumer never holds up the connection (and PostgreSQL's notification
	// queue).
	Buffer int
	// MinBackoff and MaxBackoff bound the wait between reconnection
	// attempts, which doubles from MinBackoff up to MaxBackoff, with jitter
	// (defaults 50ms and 5s).
	MinBackoff, MaxBackoff time.Duration
	// Logger receives a line per lost connection and reconnection (default
	// slog.Default()).
	Logger *slog.Logger
	// Types, when not empty, keeps only engine events of these types on
	// EventsChannel: the others are neither decoded nor delivered (not a
	// gap). A payload there that is not engine events, and notifications
	// on other channels, are delivered as they are (Message.Event nil).
	Types []EventType
}

// Listener receives notifications on a dedicated connection. Create one
// with Listen; stop it with Close. Its methods are safe for concurrent use.
type Listener struct {
	pool     *pgxpool.Pool
	channels []string
	opts     ListenOptions
	log      *slog.Logger

	out       chan Message
	keep      func(EventType) bool // from opts.Types; nil keeps every event
	cancel    context.CancelFunc
	done      chan struct{}
	connected atomic.Bool
	pid       atomic.Uint32
	closeOnce sync.Once
}

// Listen opens a dedicated connection from pool (acquired, then taken out of
// the pool), LISTENs on every channel and returns a listener that delivers
// what arrives on C. The first connection is made before Listen returns, so
// a wrong address or a bad channel name is an error here; later, a dropped
// connection is re-established with backoff and a gap is reported.
//
// The listener runs until ctx ends or Close is called; then C is closed.
// opts may be nil. Channel names are checked with ValidateChannel.
func Listen(ctx context.Context, pool *pgxpool.Pool, opts *ListenOptions, channels ...string) (*Listener, error) {
	if len(channels) == 0 {
		return nil, errors.New("notify: Listen needs at least one channel")
	}
	for _, ch := range channels {
		if err := ValidateChannel(ch); err != nil {
			return nil, err
		}
	}
	l := &Listener{pool: pool, channels: append([]string(nil), channels...), done: make(chan struct{})}
	if opts != nil {
		l.opts = *opts
	}
	if l.opts.Buffer <= 0 {
		l.opts.Buffer = 1024
	}
	if l.opts.MinBackoff <= 0 {
		l.opts.MinBackoff = 50 * time.Millisecond
	}
	if l.opts.MaxBackoff < l.opts.MinBackoff {
		l.opts.MaxBackoff = max(5*time.Second, l.opts.MinBackoff)
	}
	l.log = l.opts.Logger
	if l.log == nil {
		l.log = slog.Default()
	}
	if len(l.opts.Types) > 0 {
		types := append([]EventType(nil), l.opts.Types...)
		l.keep = func(t EventType) bool { return slices.Contains(types, t) }
	}
	conn, err := l.connect(ctx)
	if err != nil {
		return nil, err
	}
	l.out = make(chan Message, l.opts.Buffer)
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l.cancel = cancel
	stop := context.AfterFunc(ctx, cancel)
	go func() {
		defer stop()
		l.run(lctx, conn)
	}()
	return l, nil
}

// C returns the channel on which the listener delivers messages, in the
// order PostgreSQL delivered them (commit order). It is closed when the
// listener stops.
func (l *Listener) C() <-chan Message { return l.out }

// Channels returns the channels the listener listens on.
func (l *Listener) Channels() []string { return append([]string(nil), l.channels...) }

// Connected reports whether the listener is listening right now (false
// while it reconnects and after it stopped).
func (l *Listener) Connected() bool { return l.connected.Load() }

// BackendPID returns the process id of the server backend serving the
// listener's connection, 0 while it has none. Useful for monitoring (and to
// test reconnection with pg_terminate_backend).
func (l *Listener) BackendPID() uint32 { return l.pid.Load() }

// Close stops listening: it closes the dedicated connection (which ends
// every LISTEN of the session) and then C. It waits for the listener's
// goroutine and is idempotent. It always returns nil.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() { l.cancel() })
	<-l.done
	return nil
}

// connect takes a connection out of the pool and LISTENs on it.
func (l *Listener) connect(ctx context.Context) (*pgx.Conn, error) {
	pc, err := l.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("notify: listen: %w", err)
	}
	// The connection carries LISTEN state: it never goes back to the pool.
	conn := pc.Hijack()
	for _, ch := range l.channels {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			conn.Close(context.Background())
			return nil, fmt.Errorf("notify: listen on %q: %w", ch, err)
		}
	}
	l.pid.Store(conn.PgConn().PID())
	l.connected.Store(true)
	return conn, nil
}

func (l *Listener) run(ctx context.Context, conn *pgx.Conn) {
	defer close(l.done)
	defer close(l.out)
	var pending *Message // a gap not yet delivered
	for {
		cause := l.receive(ctx, conn, &pending)
		l.connected.Store(false)
		l.pid.Store(0)
		conn.Close(context.Background())
		if ctx.Err() != nil {
			return
		}
		l.log.Warn("qflow notify: listener lost its connection; reconnecting", "channels", l.channels, "error", cause)
		backoff := l.opts.MinBackoff
		for {
			// Full jitter over the upper half keeps many listeners from
			// reconnecting in lockstep after a server restart.
			d := backoff/2 + rand.N(backoff/2+1)
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
			var err error
			conn, err = l.connect(ctx)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			l.log.Warn("qflow notify: reconnect failed", "channels", l.channels, "error", err, "retry_in", backoff)
			backoff = min(backoff*2, l.opts.MaxBackoff)
		}
		l.log.Info("qflow notify: listener reconnected; notifications sent meanwhile may be lost", "channels", l.channels)
		gap := Message{Gap: true, Err: cause}
		if gap.Err == nil {
			gap.Err = errLost
		}
		if pending != nil {
			gap.Dropped = pending.Dropped
		}
		pending = &gap
		l.flush(&pending)
	}
}

// errLost is the Err of a reconnect gap when the cause is not known.
var errLost = errors.New("notify: connection lost")

// receive delivers notifications until the connection fails or ctx ends.
func (l *Listener) receive(ctx context.Context, conn *pgx.Conn, pending **Message) error {
	for {
		wctx, cancel := ctx, context.CancelFunc(func() {})
		if *pending != nil {
			// Retry delivering the gap soon even if nothing else arrives.
			wctx, cancel = context.WithTimeout(ctx, 50*time.Millisecond)
		}
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil && wctx.Err() != nil && !conn.IsClosed() {
				l.flush(pending)
				continue
			}
			return err
		}
		for _, m := range messages(n.Channel, n.Payload, l.keep) {
			if !l.flush(pending) {
				(*pending).Dropped++
				continue
			}
			select {
			case l.out <- m:
			default:
				*pending = &Message{Gap: true, Dropped: 1}
			}
		}
	}
}

// messages turns one notification into the messages it carries: one per
// event for a batch of engine events (see ParseEvents), else one.
func messages(channel, payload string, keep func(EventType) bool) []Message {
	if channel == EventsChannel {
		if evs, err := parseEvents(payload, keep); err == nil {
			out := make([]Message, len(evs))
			for i := range evs {
				out[i] = Message{Channel: channel, Payload: payload, Event: &evs[i]}
			}
			return out
		}
	}
	return []Message{{Channel: channel, Payload: payload}}
}

// flush tries to deliver a pending gap without blocking; it reports whether
// nothing is pending any more.
func (l *Listener) flush(pending **Message) bool {
	if *pending == nil {
		return true
	}
	select {
	case l.out <- **pending:
		*pending = nil
		return true
	default:
		return false
	}
}
