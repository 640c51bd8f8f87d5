package pgmq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// SendOpts are the optional arguments of Send. The zero value sends a
// message without headers that is visible at once.
type SendOpts struct {
	// Headers is stored in the message's headers column; nil stores NULL.
	Headers json.RawMessage
	// Delay hides the message for this long after sending. pgmq counts
	// whole seconds, so it is rounded up.
	Delay time.Duration
	// VisibleAt hides the message until this instant (microsecond
	// precision). Set Delay or VisibleAt, not both.
	VisibleAt time.Time
}

// Send sends one message and returns its id (pgmq.send). opts may be nil;
// it picks the overload: send(queue_name, msg[, headers][, delay]), where
// delay is integer seconds (Delay) or a timestamptz (VisibleAt).
func Send(ctx context.Context, db DBTX, queue string, msg json.RawMessage, opts *SendOpts) (int64, error) {
	if err := ValidateQueueName(queue); err != nil {
		return 0, err
	}
	var o SendOpts
	if opts != nil {
		o = *opts
	}
	sql, args, err := sendSQL("send", queue, jsonArg(msg), "jsonb", o.Headers != nil, jsonArg(o.Headers), o.Delay, o.VisibleAt)
	if err != nil {
		return 0, wrap(ctx, db, "send", queue, err)
	}
	var id int64
	err = db.QueryRow(ctx, sql, args...).Scan(&id)
	return id, wrap(ctx, db, "send", queue, err)
}

// SendBatchOpts are the optional arguments of SendBatch. The zero value
// sends messages without headers that are visible at once.
type SendBatchOpts struct {
	// Headers, when not nil, holds one headers value per message (a nil
	// element stores NULL).
	Headers []json.RawMessage
	// Delay hides the messages for this long, rounded up to whole seconds.
	Delay time.Duration
	// VisibleAt hides the messages until this instant. Set Delay or
	// VisibleAt, not both.
	VisibleAt time.Time
}

// SendBatch sends messages in one statement and returns their ids in the
// order of msgs (pgmq.send_batch). opts may be nil; it picks the overload
// as in Send. Sending no messages returns nil without a round trip.
func SendBatch(ctx context.Context, db DBTX, queue string, msgs []json.RawMessage, opts *SendBatchOpts) ([]int64, error) {
	if err := ValidateQueueName(queue); err != nil {
		return nil, err
	}
	var o SendBatchOpts
	if opts != nil {
		o = *opts
	}
	if o.Headers != nil && len(o.Headers) != len(msgs) {
		return nil, wrap(ctx, db, "send_batch", queue, fmt.Errorf("%d headers for %d messages", len(o.Headers), len(msgs)))
	}
	if len(msgs) == 0 {
		return nil, nil
	}
	var headers any
	if o.Headers != nil {
		headers = jsonArray(o.Headers)
	}
	sql, args, err := sendSQL("send_batch", queue, jsonArray(msgs), "jsonb[]", o.Headers != nil, headers, o.Delay, o.VisibleAt)
	if err != nil {
		return nil, wrap(ctx, db, "send_batch", queue, err)
	}
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return nil, wrap(ctx, db, "send_batch", queue, err)
	}
	ids, err := collectIDs(rows)
	return ids, wrap(ctx, db, "send_batch", queue, err)
}

// sendSQL builds the call of the send or send_batch overload that matches
// the options. Only the function (a constant), casts and placeholders vary;
// every value is a parameter.
func sendSQL(fn, queue string, msg any, msgType string, withHeaders bool, headers any, delay time.Duration, at time.Time) (string, []any, error) {
	if delay != 0 && !at.IsZero() {
		return "", nil, errors.New("set Delay or VisibleAt, not both")
	}
	sql := "SELECT * FROM pgmq." + fn + "($1::text, $2::" + msgType
	args := []any{queue, msg}
	if withHeaders {
		args = append(args, headers)
		sql += fmt.Sprintf(", $%d::%s", len(args), msgType)
	}
	switch {
	case !at.IsZero():
		args = append(args, at)
		sql += fmt.Sprintf(", $%d::timestamptz", len(args))
	case delay != 0:
		s, err := seconds("delay", delay)
		if err != nil {
			return "", nil, err
		}
		args = append(args, s)
		sql += fmt.Sprintf(", $%d::integer", len(args))
	}
	return sql + ")", args, nil
}

// ReadOpts are the optional arguments of Read.
type ReadOpts struct {
	// Conditional, when not nil, keeps only messages whose body contains
	// it (jsonb @>), for example {"kind": "email"}.
	Conditional json.RawMessage
}

// Read claims up to qty visible messages, oldest first, and hides them for
// vt (rounded up to whole seconds) so no other reader gets them; each read
// increments ReadCount (pgmq.read). A message that is neither deleted nor
// archived before vt passes is delivered again. It returns nil when nothing
// is visible. opts may be nil.
func Read(ctx context.Context, db DBTX, queue string, vt time.Duration, qty int, opts *ReadOpts) ([]Message, error) {
	if err := ValidateQueueName(queue); err != nil {
		return nil, err
	}
	vts, err := seconds("vt", vt)
	if err != nil {
		return nil, wrap(ctx, db, "read", queue, err)
	}
	cond := json.RawMessage(`{}`)
	if opts != nil && opts.Conditional != nil {
		cond = opts.Conditional
	}
	rows, err := db.Query(ctx, `SELECT `+messageColumns+` FROM pgmq.read($1::text, $2::integer, $3::integer, $4::jsonb)`,
		queue, vts, int32(qty), jsonArg(cond))
	if err != nil {
		return nil, wrap(ctx, db, "read", queue, err)
	}
	msgs, err := collectMessages(rows)
	return msgs, wrap(ctx, db, "read", queue, err)
}

// PollOpts are the optional arguments of ReadWithPoll. The zero value uses
// pgmq's defaults.
type PollOpts struct {
	// MaxPoll is how long to wait for a message, rounded up to whole
	// seconds. Zero: 5s.
	MaxPoll time.Duration
	// PollInterval is the pause between reads, rounded up to whole
	// milliseconds. Zero: 100ms.
	PollInterval time.Duration
	// Conditional is as in ReadOpts.
	Conditional json.RawMessage
}

// ReadWithPoll is Read that waits up to MaxPoll for a message to become
// visible, reading again every PollInterval (pgmq.read_with_poll). It
// returns as soon as a read finds messages, and nil when MaxPoll passes
// without any. It holds a connection for the whole wait; cancelling ctx
// cancels the wait. opts may be nil.
func ReadWithPoll(ctx context.Context, db DBTX, queue string, vt time.Duration, qty int, opts *PollOpts) ([]Message, error) {
	if err := ValidateQueueName(queue); err != nil {
		return nil, err
	}
	var o PollOpts
	if opts != nil {
		o = *opts
	}
	if o.MaxPoll == 0 {
		o.MaxPoll = 5 * time.Second
	}
	if o.PollInterval == 0 {
		o.PollInterval = 100 * time.Millisecond
	}
	if o.Conditional == nil {
		o.Conditional = json.RawMessage(`{}`)
	}
	vts, err := seconds("vt", vt)
	if err != nil {
		return nil, wrap(ctx, db, "read_with_poll", queue, err)
	}
	maxPoll, err := seconds("max poll", o.MaxPoll)
	if err != nil {
		return nil, wrap(ctx, db, "read_with_poll", queue, err)
	}
	ms := (o.PollInterval + time.Millisecond - 1) / time.Millisecond
	if ms < 1 || ms > 1<<31-1 {
		return nil, wrap(ctx, db, "read_with_poll", queue, fmt.Errorf("poll interval %v out of range", o.PollInterval))
	}
	rows, err := db.Query(ctx, `SELECT `+messageColumns+` FROM pgmq.read_with_poll($1::text, $2::integer, $3::integer, $4::integer, $5::integer, $6::jsonb)`,
		queue, vts, int32(qty), maxPoll, int32(ms), jsonArg(o.Conditional))
	if err != nil {
		return nil, wrap(ctx, db, "read_with_poll", queue, err)
	}
	msgs, err := collectMessages(rows)
	return msgs, wrap(ctx, db, "read_with_poll", queue, err)
}

// GroupHeader is the header that puts a message in a FIFO group for
// ReadGrouped and ReadGroupedRR, as in {"x-pgmq-group": "customer-42"}.
// Messages without it form one default group.
const GroupHeader = "x-pgmq-group"

// ReadGrouped reads up to qty messages FIFO by group, like SQS FIFO queues
// batch them (pgmq.read_grouped): within a group (GroupHeader) messages are
// delivered in order and only while no earlier message of the group is
// being processed (invisible); the batch is filled from the group with the
// oldest visible message first, then from the next. Each message is hidden
// for vt (rounded up to whole seconds) as in Read. The messages are
// returned by ascending id.
func ReadGrouped(ctx context.Context, db DBTX, queue string, vt time.Duration, qty int) ([]Message, error) {
	return readGrouped(ctx, db, "read_grouped", queue, vt, qty, nil)
}

// ReadGroupedRR is ReadGrouped's round-robin form (pgmq.read_grouped_rr):
// only groups whose oldest message is visible take part, and the batch
// takes the first message of each group (oldest group first), then the
// second of each, and so on, returned in that order.
func ReadGroupedRR(ctx context.Context, db DBTX, queue string, vt time.Duration, qty int) ([]Message, error) {
	return readGrouped(ctx, db, "read_grouped_rr", queue, vt, qty, nil)
}

// ReadGroupedWithPoll is ReadGrouped that waits like ReadWithPoll
// (pgmq.read_grouped_with_poll); opts.Conditional must be nil. opts may be
// nil.
func ReadGroupedWithPoll(ctx context.Context, db DBTX, queue string, vt time.Duration, qty int, opts *PollOpts) ([]Message, error) {
	return readGrouped(ctx, db, "read_grouped_with_poll", queue, vt, qty, pollDefaults(opts))
}

// ReadGroupedRRWithPoll is ReadGroupedRR that waits like ReadWithPoll
// (pgmq.read_grouped_rr_with_poll); opts.Conditional must be nil. opts may
// be nil.
func ReadGroupedRRWithPoll(ctx context.Context, db DBTX, queue string, vt time.Duration, qty int, opts *PollOpts) ([]Message, error) {
	return readGrouped(ctx, db, "read_grouped_rr_with_poll", queue, vt, qty, pollDefaults(opts))
}

func pollDefaults(opts *PollOpts) *PollOpts {
	var o PollOpts
	if opts != nil {
		o = *opts
	}
	if o.MaxPoll == 0 {
		o.MaxPoll = 5 * time.Second
	}
	if o.PollInterval == 0 {
		o.PollInterval = 100 * time.Millisecond
	}
	return &o
}

// readGrouped calls fn, one of the grouped reads (a constant), with poll's
// waiting when poll is not nil.
func readGrouped(ctx context.Context, db DBTX, fn, queue string, vt time.Duration, qty int, poll *PollOpts) ([]Message, error) {
	if err := ValidateQueueName(queue); err != nil {
		return nil, err
	}
	vts, err := seconds("vt", vt)
	if err != nil {
		return nil, wrap(ctx, db, fn, queue, err)
	}
	sql := `SELECT ` + messageColumns + ` FROM pgmq.` + fn + `($1::text, $2::integer, $3::integer)`
	args := []any{queue, vts, int32(qty)}
	if poll != nil {
		if poll.Conditional != nil {
			return nil, wrap(ctx, db, fn, queue, errors.New("grouped reads take no Conditional"))
		}
		maxPoll, err := seconds("max poll", poll.MaxPoll)
		if err != nil {
			return nil, wrap(ctx, db, fn, queue, err)
		}
		ms := (poll.PollInterval + time.Millisecond - 1) / time.Millisecond
		if ms < 1 || ms > 1<<31-1 {
			return nil, wrap(ctx, db, fn, queue, fmt.Errorf("poll interval %v out of range", poll.PollInterval))
		}
		sql = `SELECT ` + messageColumns + ` FROM pgmq.` + fn + `($1::text, $2::integer, $3::integer, $4::integer, $5::integer)`
		args = append(args, maxPoll, int32(ms))
	}
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return nil, wrap(ctx, db, fn, queue, err)
	}
	msgs, err := collectMessages(rows)
	return msgs, wrap(ctx, db, fn, queue, err)
}

// Pop claims and deletes the oldest visible message in one step
// (pgmq.pop(queue_name)): at-most-once delivery. ReadCount is not
// incremented. It returns nil when nothing is visible.
func Pop(ctx context.Context, db DBTX, queue string) (*Message, error) {
	if err := ValidateQueueName(queue); err != nil {
		return nil, err
	}
	rows, err := db.Query(ctx, `SELECT `+messageColumns+` FROM pgmq.pop($1::text)`, queue)
	if err != nil {
		return nil, wrap(ctx, db, "pop", queue, err)
	}
	msgs, err := collectMessages(rows)
	if err != nil || len(msgs) == 0 {
		return nil, wrap(ctx, db, "pop", queue, err)
	}
	return &msgs[0], nil
}

// PopBatch is Pop for up to qty messages (pgmq.pop(queue_name, qty)).
func PopBatch(ctx context.Context, db DBTX, queue string, qty int) ([]Message, error) {
	if err := ValidateQueueName(queue); err != nil {
		return nil, err
	}
	rows, err := db.Query(ctx, `SELECT `+messageColumns+` FROM pgmq.pop($1::text, $2::integer)`, queue, int32(qty))
	if err != nil {
		return nil, wrap(ctx, db, "pop", queue, err)
	}
	msgs, err := collectMessages(rows)
	return msgs, wrap(ctx, db, "pop", queue, err)
}

// Archive moves a message to the queue's archive table (pgmq.archive). It
// reports false when the message is not in the queue.
func Archive(ctx context.Context, db DBTX, queue string, id int64) (bool, error) {
	return oneID(ctx, db, "archive", `SELECT pgmq.archive($1::text, $2::bigint)`, queue, id)
}

// ArchiveBatch moves messages to the archive table and returns the ids it
// moved, ascending; ids not in the queue are left out (pgmq.archive with
// msg_ids).
func ArchiveBatch(ctx context.Context, db DBTX, queue string, ids []int64) ([]int64, error) {
	return manyIDs(ctx, db, "archive", `SELECT * FROM pgmq.archive($1::text, $2::bigint[])`, queue, ids)
}

// Delete deletes a message (pgmq.delete). It reports false when the message
// is not in the queue.
func Delete(ctx context.Context, db DBTX, queue string, id int64) (bool, error) {
	return oneID(ctx, db, "delete", `SELECT pgmq.delete($1::text, $2::bigint)`, queue, id)
}

// DeleteBatch deletes messages and returns the ids it deleted, ascending;
// ids not in the queue are left out (pgmq.delete with msg_ids).
func DeleteBatch(ctx context.Context, db DBTX, queue string, ids []int64) ([]int64, error) {
	return manyIDs(ctx, db, "delete", `SELECT * FROM pgmq.delete($1::text, $2::bigint[])`, queue, ids)
}

func oneID(ctx context.Context, db DBTX, op, sql, queue string, id int64) (bool, error) {
	if err := ValidateQueueName(queue); err != nil {
		return false, err
	}
	var ok bool
	err := db.QueryRow(ctx, sql, queue, id).Scan(&ok)
	return ok, wrap(ctx, db, op, queue, err)
}

func manyIDs(ctx context.Context, db DBTX, op, sql, queue string, ids []int64) ([]int64, error) {
	if err := ValidateQueueName(queue); err != nil {
		return nil, err
	}
	if ids == nil {
		ids = []int64{}
	}
	rows, err := db.Query(ctx, sql, queue, ids)
	if err != nil {
		return nil, wrap(ctx, db, op, queue, err)
	}
	out, err := collectIDs(rows)
	return out, wrap(ctx, db, op, queue, err)
}

// SetVT makes a message visible vt from now, rounded up to whole seconds
// (pgmq.set_vt), and returns it; nil when it is not in the queue. A zero vt
// makes it visible at once.
func SetVT(ctx context.Context, db DBTX, queue string, id int64, vt time.Duration) (*Message, error) {
	if err := ValidateQueueName(queue); err != nil {
		return nil, err
	}
	vts, err := seconds("vt", vt)
	if err != nil {
		return nil, wrap(ctx, db, "set_vt", queue, err)
	}
	rows, err := db.Query(ctx, `SELECT `+messageColumns+` FROM pgmq.set_vt($1::text, $2::bigint, $3::integer)`, queue, id, vts)
	if err != nil {
		return nil, wrap(ctx, db, "set_vt", queue, err)
	}
	msgs, err := collectMessages(rows)
	if err != nil || len(msgs) == 0 {
		return nil, wrap(ctx, db, "set_vt", queue, err)
	}
	return &msgs[0], nil
}

// SetVTBatch is SetVT for several messages (pgmq.set_vt with msg_ids). It
// returns the messages it changed, by ascending id.
func SetVTBatch(ctx context.Context, db DBTX, queue string, ids []int64, vt time.Duration) ([]Message, error) {
	if err := ValidateQueueName(queue); err != nil {
		return nil, err
	}
	vts, err := seconds("vt", vt)
	if err != nil {
		return nil, wrap(ctx, db, "set_vt", queue, err)
	}
	if ids == nil {
		ids = []int64{}
	}
	rows, err := db.Query(ctx, `SELECT `+messageColumns+` FROM pgmq.set_vt($1::text, $2::bigint[], $3::integer)`, queue, ids, vts)
	if err != nil {
		return nil, wrap(ctx, db, "set_vt", queue, err)
	}
	msgs, err := collectMessages(rows)
	return msgs, wrap(ctx, db, "set_vt", queue, err)
}
