package pgmq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DBTX is what every function in this package runs its SQL on: a
// *pgxpool.Pool, a *pgx.Conn or a pgx.Tx all satisfy it. Running a call on
// a transaction makes it part of that transaction.
type DBTX interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// MaxQueueNameLen is the longest queue name, in characters, that pgmq's
// create functions accept.
const MaxQueueNameLen = 47

// ErrInvalidQueueName is wrapped by the error ValidateQueueName returns, and
// so by every function given an invalid name.
var ErrInvalidQueueName = errors.New("invalid queue name")

// ErrQueueNotFound is wrapped by the error of a call that names a queue that
// does not exist. The underlying *pgconn.PgError (SQLSTATE 42P01) is wrapped
// too.
var ErrQueueNotFound = errors.New("queue does not exist")

// ValidateQueueName reports whether name is a queue name pgmq accepts: 1 to
// 47 characters of valid UTF-8, none of them NUL, and none of $, ; and '
// nor the sequence --. Hyphens, spaces, dots and upper case are allowed:
// every identifier is quoted. (pgmq also accepts the empty name, as table
// "q_"; this package and QuantumFlow's SQL do not.) The error wraps
// ErrInvalidQueueName and says what is wrong. Every function in this package
// calls it before touching the database; the SQL checks again and raises
// SQLSTATE P0001, as pgmq does.
//
// Queue table names are lower-cased (pgmq.q_<lower(name)>), so names that
// differ only in case would share tables; QuantumFlow's SQL refuses to
// create the second one (SQLSTATE 42P07).
func ValidateQueueName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("pgmq: %w: must not be empty", ErrInvalidQueueName)
	case !utf8.ValidString(name):
		return fmt.Errorf("pgmq: %w %q: not valid UTF-8", ErrInvalidQueueName, name)
	case utf8.RuneCountInString(name) > MaxQueueNameLen:
		return fmt.Errorf("pgmq: %w %q: %d characters, the maximum is %d", ErrInvalidQueueName, name, utf8.RuneCountInString(name), MaxQueueNameLen)
	case strings.ContainsAny(name, "$;'") || strings.Contains(name, "--"):
		return fmt.Errorf("pgmq: %w %q: contains $, ;, -- or '", ErrInvalidQueueName, name)
	case strings.ContainsRune(name, 0):
		return fmt.Errorf("pgmq: %w %q: contains a NUL character", ErrInvalidQueueName, name)
	}
	return nil
}

// TableName returns the unqualified name of a queue's live table
// (q_<name>, lower-cased, cut to PostgreSQL's 63 bytes as the server cuts
// identifiers); the table is in schema pgmq. It returns an error for an
// invalid name. Letters outside ASCII are lower-cased by Go's rules; the
// server's lower() follows the database's locale, which may differ for
// them (SELECT pgmq.format_table_name(name, 'q') asks the server).
func TableName(queue string) (string, error) {
	return tableName(queue, "q_")
}

// ArchiveTableName returns the unqualified name of a queue's archive table
// (a_<name>, lower-cased, cut as in TableName) in schema pgmq.
func ArchiveTableName(queue string) (string, error) {
	return tableName(queue, "a_")
}

func tableName(queue, prefix string) (string, error) {
	if err := ValidateQueueName(queue); err != nil {
		return "", err
	}
	t := prefix + strings.ToLower(queue)
	for len(t) > 63 { // PostgreSQL keeps whole characters within 63 bytes
		_, size := utf8.DecodeLastRuneInString(t)
		t = t[:len(t)-size]
	}
	return t, nil
}

// NotifyChannel returns the channel that EnableNotifyInsert makes inserts
// notify: "pgmq.q_<name>.INSERT". It contains dots, so quote it when you
// LISTEN: conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()).
func NotifyChannel(queue string) (string, error) {
	t, err := TableName(queue)
	if err != nil {
		return "", err
	}
	return "pgmq." + t + ".INSERT", nil
}

// Message is one message as pgmq returns it (pgmq.message_record).
type Message struct {
	ID         int64           // msg_id, increasing within a queue
	ReadCount  int             // read_ct: how many times read has claimed it
	EnqueuedAt time.Time       // enqueued_at: when it was sent
	LastReadAt *time.Time      // last_read_at: the last read, nil if never read
	VisibleAt  time.Time       // vt: when it is (or becomes) visible to read
	Message    json.RawMessage // message: the body; nil if it is SQL NULL
	Headers    json.RawMessage // headers: nil when sent without headers
}

// QueueInfo describes one queue (pgmq.queue_record).
type QueueInfo struct {
	Name          string
	IsPartitioned bool
	IsUnlogged    bool
	CreatedAt     time.Time
}

// Metrics is a snapshot of one queue (pgmq.metrics_result).
type Metrics struct {
	QueueName string
	// QueueLength counts the messages in the queue, visible or not.
	QueueLength int64
	// NewestMsgAge and OldestMsgAge are the ages of the newest and oldest
	// messages in whole seconds, nil when the queue is empty.
	NewestMsgAge *int
	OldestMsgAge *int
	// TotalMessages counts every message ever sent to the queue.
	TotalMessages int64
	// ScrapeTime is when the snapshot was taken (server clock).
	ScrapeTime time.Time
	// VisibleLength counts the messages a read could claim right now.
	VisibleLength int64
}

// seconds converts d to the whole seconds pgmq's integer arguments take,
// rounding up so that nothing becomes visible earlier than asked.
func seconds(what string, d time.Duration) (int32, error) {
	s := math.Ceil(d.Seconds())
	if s > math.MaxInt32 || s < math.MinInt32 {
		return 0, fmt.Errorf("pgmq: %s %v out of range", what, d)
	}
	return int32(s), nil
}

// wrap adds the operation and queue to err and classifies it: an unknown
// queue (SQLSTATE 42P01, or P0001 "Queue ... does not exist" from
// enable_notify_insert, as pgmq raises it) wraps ErrQueueNotFound, a missing pgmq schema
// (3F000) ErrNotInstalled, and a column or function the database's pgmq
// lacks (42703, 42883) ErrIncompatible, through diagnose, which may look at
// the database once to say what is installed.
func wrap(ctx context.Context, db DBTX, op, queue string, err error) error {
	if err == nil {
		return nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "42P01":
			return fmt.Errorf("pgmq: %s %q: %w: %w", op, queue, ErrQueueNotFound, err)
		case "P0001":
			// pgmq's enable_notify_insert reports an unknown queue so.
			if strings.HasPrefix(pgErr.Message, "Queue ") && strings.Contains(pgErr.Message, " does not exist") {
				return fmt.Errorf("pgmq: %s %q: %w: %w", op, queue, ErrQueueNotFound, err)
			}
		case "3F000":
			err = notInstalled(err)
		case "42703", "42883":
			err = diagnose(ctx, db, err)
		}
	}
	if queue == "" {
		return fmt.Errorf("pgmq: %s: %w", op, err)
	}
	return fmt.Errorf("pgmq: %s %q: %w", op, queue, err)
}

// messageColumns are pgmq.message_record's columns, named so that the
// result does not depend on column order.
const messageColumns = `msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers`

func collectMessages(rows pgx.Rows) ([]Message, error) {
	var out []Message
	for rows.Next() {
		var m Message
		if err := rows.Scan(&m.ID, &m.ReadCount, &m.EnqueuedAt, &m.LastReadAt, &m.VisibleAt, &m.Message, &m.Headers); err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

func collectIDs(rows pgx.Rows) ([]int64, error) {
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

// jsonArray turns messages into a value pgx sends as jsonb[]. A nil element
// becomes SQL NULL.
func jsonArray(msgs []json.RawMessage) []*string {
	out := make([]*string, len(msgs))
	for i, m := range msgs {
		if m != nil {
			s := string(m)
			out[i] = &s
		}
	}
	return out
}

// jsonArg turns a message into a value pgx sends as jsonb; nil is SQL NULL.
func jsonArg(m json.RawMessage) *string {
	if m == nil {
		return nil
	}
	s := string(m)
	return &s
}
