package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/quantumflow/qflow/runtime/pgmq"
)

// MaxPayloadBytes is the longest payload NOTIFY accepts (PostgreSQL
// rejects 8000 bytes and more).
const MaxPayloadBytes = 7999

// MaxChannelLen is the longest channel name: PostgreSQL identifiers are at
// most 63 bytes.
const MaxChannelLen = 63

// ErrInvalidChannel is wrapped by the error of every function given an
// unusable channel name.
var ErrInvalidChannel = errors.New("notify: invalid channel name")

// ErrPayloadTooLarge is returned by NotifyOnly for a payload over
// MaxPayloadBytes.
var ErrPayloadTooLarge = errors.New("notify: payload over 7999 bytes")

// ValidateChannel reports whether name is a usable channel: 1 to 63 ASCII
// letters, digits and the characters _ . : - $, not starting with a digit.
// Channel names are case-sensitive (Listen quotes them), so "Jobs" and
// "jobs" are different channels.
func ValidateChannel(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty", ErrInvalidChannel)
	case len(name) > MaxChannelLen:
		return fmt.Errorf("%w %q: %d bytes, the maximum is %d", ErrInvalidChannel, name, len(name), MaxChannelLen)
	case '0' <= name[0] && name[0] <= '9':
		return fmt.Errorf("%w %q: starts with a digit", ErrInvalidChannel, name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == ':' || c == '-' || c == '$') {
			return fmt.Errorf("%w %q: only ASCII letters, digits and _ . : - $ are allowed", ErrInvalidChannel, name)
		}
	}
	return nil
}

// QueueChannel returns the channel SendWithNotify notifies for a queue:
// pgmq's own insert channel, "pgmq.q_<queue>.INSERT" (see
// pgmq.NotifyChannel), so one listener serves both SendWithNotify and
// queues with pgmq.EnableNotifyInsert.
func QueueChannel(queue string) (string, error) { return pgmq.NotifyChannel(queue) }

// Execer runs a statement: a *pgxpool.Pool, a *pgx.Conn or a pgx.Tx.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Beginner starts a transaction: a *pgxpool.Pool, a *pgx.Conn, or a pgx.Tx
// (which starts a savepoint, so the work becomes part of the caller's
// transaction).
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// NotifyOnly sends one notification with pg_notify, parameterised. On a
// transaction it is delivered when (and only if) the transaction commits;
// identical notifications (same channel and payload) in one transaction
// are delivered once.
func NotifyOnly(ctx context.Context, db Execer, channel, payload string) error {
	if err := ValidateChannel(channel); err != nil {
		return err
	}
	if len(payload) > MaxPayloadBytes {
		return fmt.Errorf("%w: %d bytes", ErrPayloadTooLarge, len(payload))
	}
	if _, err := db.Exec(ctx, `SELECT pg_notify($1::text, $2::text)`, channel, payload); err != nil {
		return fmt.Errorf("notify: notify %q: %w", channel, err)
	}
	return nil
}

// SendWithNotify sends msg to a pgmq queue and notifies QueueChannel(queue)
// with the new message's id as payload, in one transaction, and returns the
// message id. Both happen or neither: the notification is delivered only
// when the message is committed, and a rollback (of db, when it is a pgx.Tx)
// leaves neither.
func SendWithNotify(ctx context.Context, db Beginner, queue string, msg json.RawMessage) (int64, error) {
	channel, err := QueueChannel(queue)
	if err != nil {
		return 0, err
	}
	tx, err := db.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("notify: send to %q: %w", queue, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	id, err := pgmq.Send(ctx, tx, queue, msg, nil)
	if err != nil {
		return 0, err
	}
	if err := NotifyOnly(ctx, tx, channel, strconv.FormatInt(id, 10)); err != nil {
		return 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("notify: send to %q: %w", queue, err)
	}
	return id, nil
}
