package pgmq

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// Create creates a queue with its archive (pgmq.create). Creating a queue
// that exists is a no-op.
func Create(ctx context.Context, db DBTX, queue string) error {
	return createWith(ctx, db, "create", `SELECT pgmq.create($1::text)`, queue)
}

// CreateNonPartitioned is Create (pgmq.create_non_partitioned).
func CreateNonPartitioned(ctx context.Context, db DBTX, queue string) error {
	return createWith(ctx, db, "create_non_partitioned", `SELECT pgmq.create_non_partitioned($1::text)`, queue)
}

// CreateUnlogged creates a queue whose live table is UNLOGGED
// (pgmq.create_unlogged): faster writes, but crash recovery empties it.
func CreateUnlogged(ctx context.Context, db DBTX, queue string) error {
	return createWith(ctx, db, "create_unlogged", `SELECT pgmq.create_unlogged($1::text)`, queue)
}

// CreatePartitionedOpts are the optional arguments of CreatePartitioned. The
// zero value uses pgmq's defaults.
type CreatePartitionedOpts struct {
	// PartitionInterval is pg_partman's partition size: a number of
	// messages ("10000"), which partitions by msg_id, or a time interval
	// ("1 day"), which partitions the queue by enqueued_at and its archive
	// by archived_at. Empty: "10000".
	PartitionInterval string
	// RetentionInterval is how much pg_partman's maintenance keeps, in the
	// same unit: older partitions are dropped. Empty: "100000".
	RetentionInterval string
}

// CreatePartitioned creates a queue whose tables pg_partman partitions
// (pgmq.create_partitioned). It needs the pg_partman extension in the
// database; without it the error (SQLSTATE P0001, as pgmq's) says
// "pg_partman is required for partitioned queues". A name containing a dot
// cannot be partitioned. opts may be nil.
func CreatePartitioned(ctx context.Context, db DBTX, queue string, opts *CreatePartitionedOpts) error {
	if err := ValidateQueueName(queue); err != nil {
		return err
	}
	o := partitionDefaults(opts)
	_, err := db.Exec(ctx, `SELECT pgmq.create_partitioned($1::text, $2::text, $3::text)`, queue, o.PartitionInterval, o.RetentionInterval)
	return wrap(ctx, db, "create_partitioned", queue, err)
}

func partitionDefaults(opts *CreatePartitionedOpts) CreatePartitionedOpts {
	var o CreatePartitionedOpts
	if opts != nil {
		o = *opts
	}
	if o.PartitionInterval == "" {
		o.PartitionInterval = "10000"
	}
	if o.RetentionInterval == "" {
		o.RetentionInterval = "100000"
	}
	return o
}

// ConvertArchivePartitioned makes an existing queue's archive a
// pg_partman-partitioned table (pgmq.convert_archive_partitioned), with the
// intervals of CreatePartitionedOpts (nil: pgmq's defaults). As in pgmq, the
// old archive is kept as table a_<name>_old and the new one starts empty;
// an archive that is already partitioned, or missing, is left alone. It
// needs pg_partman, like CreatePartitioned.
func ConvertArchivePartitioned(ctx context.Context, db DBTX, queue string, opts *CreatePartitionedOpts) error {
	if err := ValidateQueueName(queue); err != nil {
		return err
	}
	o := partitionDefaults(opts)
	_, err := db.Exec(ctx, `SELECT pgmq.convert_archive_partitioned($1::text, $2::text, $3::text)`, queue, o.PartitionInterval, o.RetentionInterval)
	return wrap(ctx, db, "convert_archive_partitioned", queue, err)
}

// DetachArchive is pgmq.detach_archive, deprecated in pgmq and a no-op
// there and here (the server sends a WARNING): archive tables are not
// extension members, so dropping the extension keeps them anyway.
func DetachArchive(ctx context.Context, db DBTX, queue string) error {
	return createWith(ctx, db, "detach_archive", `SELECT pgmq.detach_archive($1::text)`, queue)
}

// CreateFIFOIndex creates a GIN index on the queue's headers, which makes
// ReadGrouped and ReadGroupedRR faster on long queues
// (pgmq.create_fifo_index). It is a no-op when the index exists.
func CreateFIFOIndex(ctx context.Context, db DBTX, queue string) error {
	return createWith(ctx, db, "create_fifo_index", `SELECT pgmq.create_fifo_index($1::text)`, queue)
}

// CreateFIFOIndexesAll is CreateFIFOIndex for every queue
// (pgmq.create_fifo_indexes_all).
func CreateFIFOIndexesAll(ctx context.Context, db DBTX) error {
	_, err := db.Exec(ctx, `SELECT pgmq.create_fifo_indexes_all()`)
	return wrap(ctx, db, "create_fifo_indexes_all", "", err)
}

func createWith(ctx context.Context, db DBTX, op, sql, queue string) error {
	if err := ValidateQueueName(queue); err != nil {
		return err
	}
	_, err := db.Exec(ctx, sql, queue)
	return wrap(ctx, db, op, queue, err)
}

// DropQueue drops a queue, its archive and its notify setting
// (pgmq.drop_queue). It reports false, with no error, when the queue did
// not exist.
func DropQueue(ctx context.Context, db DBTX, queue string) (bool, error) {
	if err := ValidateQueueName(queue); err != nil {
		return false, err
	}
	var dropped bool
	err := db.QueryRow(ctx, `SELECT pgmq.drop_queue($1::text)`, queue).Scan(&dropped)
	return dropped, wrap(ctx, db, "drop_queue", queue, err)
}

// PurgeQueue deletes every message in a queue, leaving its archive alone,
// and returns how many it deleted (pgmq.purge_queue).
func PurgeQueue(ctx context.Context, db DBTX, queue string) (int64, error) {
	if err := ValidateQueueName(queue); err != nil {
		return 0, err
	}
	var n int64
	err := db.QueryRow(ctx, `SELECT pgmq.purge_queue($1::text)`, queue).Scan(&n)
	return n, wrap(ctx, db, "purge_queue", queue, err)
}

// ListQueues returns every queue (pgmq.list_queues), in the order the
// server keeps them (as pgmq: no ORDER BY, in practice creation order); nil
// when there are none.
func ListQueues(ctx context.Context, db DBTX) ([]QueueInfo, error) {
	rows, err := db.Query(ctx, `SELECT queue_name::text, is_partitioned, is_unlogged, created_at FROM pgmq.list_queues()`)
	if err != nil {
		return nil, wrap(ctx, db, "list_queues", "", err)
	}
	var out []QueueInfo
	for rows.Next() {
		var q QueueInfo
		if err := rows.Scan(&q.Name, &q.IsPartitioned, &q.IsUnlogged, &q.CreatedAt); err != nil {
			rows.Close()
			return nil, wrap(ctx, db, "list_queues", "", err)
		}
		out = append(out, q)
	}
	return out, wrap(ctx, db, "list_queues", "", rows.Err())
}

const metricsColumns = `queue_name, queue_length, newest_msg_age_sec, oldest_msg_age_sec, total_messages, scrape_time, queue_visible_length`

func scanMetrics(row pgx.Row) (Metrics, error) {
	var m Metrics
	err := row.Scan(&m.QueueName, &m.QueueLength, &m.NewestMsgAge, &m.OldestMsgAge, &m.TotalMessages, &m.ScrapeTime, &m.VisibleLength)
	return m, err
}

// QueueMetrics returns a snapshot of one queue (pgmq.metrics).
func QueueMetrics(ctx context.Context, db DBTX, queue string) (Metrics, error) {
	if err := ValidateQueueName(queue); err != nil {
		return Metrics{}, err
	}
	m, err := scanMetrics(db.QueryRow(ctx, `SELECT `+metricsColumns+` FROM pgmq.metrics($1::text)`, queue))
	return m, wrap(ctx, db, "metrics", queue, err)
}

// MetricsAll returns a snapshot of every queue (pgmq.metrics_all), in
// ListQueues' order.
func MetricsAll(ctx context.Context, db DBTX) ([]Metrics, error) {
	rows, err := db.Query(ctx, `SELECT `+metricsColumns+` FROM pgmq.metrics_all()`)
	if err != nil {
		return nil, wrap(ctx, db, "metrics_all", "", err)
	}
	var out []Metrics
	for rows.Next() {
		m, err := scanMetrics(rows)
		if err != nil {
			rows.Close()
			return nil, wrap(ctx, db, "metrics_all", "", err)
		}
		out = append(out, m)
	}
	return out, wrap(ctx, db, "metrics_all", "", rows.Err())
}

// EnableNotifyInsert makes every statement that inserts into the queue send
// NOTIFY on NotifyChannel(queue), at most once per throttle
// (pgmq.enable_notify_insert). A zero throttle notifies on every insert;
// it is rounded up to whole milliseconds. Calling it again replaces the
// throttle. Notifications are hints: keep polling as a fallback.
func EnableNotifyInsert(ctx context.Context, db DBTX, queue string, throttle time.Duration) error {
	if err := ValidateQueueName(queue); err != nil {
		return err
	}
	if throttle < 0 {
		return wrap(ctx, db, "enable_notify_insert", queue, errors.New("throttle must not be negative"))
	}
	ms := (throttle + time.Millisecond - 1) / time.Millisecond
	if ms > 1<<31-1 {
		return wrap(ctx, db, "enable_notify_insert", queue, errors.New("throttle out of range"))
	}
	_, err := db.Exec(ctx, `SELECT pgmq.enable_notify_insert($1::text, $2::integer)`, queue, int32(ms))
	return wrap(ctx, db, "enable_notify_insert", queue, err)
}

// DisableNotifyInsert stops the notifications EnableNotifyInsert started
// (pgmq.disable_notify_insert). It is a no-op when they are off.
func DisableNotifyInsert(ctx context.Context, db DBTX, queue string) error {
	if err := ValidateQueueName(queue); err != nil {
		return err
	}
	_, err := db.Exec(ctx, `SELECT pgmq.disable_notify_insert($1::text)`, queue)
	return wrap(ctx, db, "disable_notify_insert", queue, err)
}
