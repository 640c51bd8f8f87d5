package pgmq_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/quantumflow/qflow/internal/pgtest"
	"github.com/quantumflow/qflow/runtime/pgmq"
)

// Tests of pgmq 1.10 behaviour that QuantumFlow's SQL reproduces; each says
// which behaviour it checks.

func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// TestAcceptedNames: pgmq accepts any name without $, ;, -- or ' (hyphens,
// mixed case, spaces, quotes, dots, non-ASCII); every operation works on
// such a queue, its tables are pgmq."q_<lower(name)>" and "a_<...>", and
// nothing else in the database changes (the names are quoted everywhere).
func TestAcceptedNames(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE public.x (id int)`); err != nil {
		t.Fatal(err)
	}
	others := func() string {
		var s string
		if err := db.Pool.QueryRow(ctx, `SELECT string_agg(n.nspname || '.' || c.relname, ',' ORDER BY 1)
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'pgmq')`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := others()
	for _, name := range acceptedNames {
		step := func(what string, err error) {
			t.Helper()
			if err != nil {
				t.Errorf("%q: %s: %v", name, what, err)
			}
		}
		step("create", pgmq.Create(ctx, db.Pool, name))
		tbl, _ := pgmq.TableName(name)
		atbl, _ := pgmq.ArchiveTableName(name)
		var have int
		step("tables", db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'pgmq' AND tablename IN ($1, $2)`, tbl, atbl).Scan(&have))
		if have != 2 {
			t.Errorf("%q: tables %q and %q: found %d", name, tbl, atbl, have)
		}
		var serverTbl string
		step("format_table_name", db.Pool.QueryRow(ctx, `SELECT pgmq.format_table_name($1, 'q')`, name).Scan(&serverTbl))
		if !strings.HasPrefix(serverTbl, tbl) {
			t.Errorf("%q: server's table name %q, TableName %q", name, serverTbl, tbl)
		}
		id, err := pgmq.Send(ctx, db.Pool, name, raw(`{"n":1}`), &pgmq.SendOpts{Headers: raw(`{"x-pgmq-group":"g"}`)})
		step("send", err)
		ids2, err := pgmq.SendBatch(ctx, db.Pool, name, []json.RawMessage{raw(`2`), raw(`3`)}, nil)
		step("send_batch", err)
		msgs, err := pgmq.Read(ctx, db.Pool, name, time.Minute, 1, nil)
		step("read", err)
		if len(msgs) != 1 || msgs[0].ID != id {
			t.Errorf("%q: read %v", name, ids(msgs))
		}
		_, err = pgmq.SetVT(ctx, db.Pool, name, id, 0)
		step("set_vt", err)
		_, err = pgmq.ReadGrouped(ctx, db.Pool, name, time.Minute, 1)
		step("read_grouped", err)
		_, err = pgmq.Archive(ctx, db.Pool, name, id)
		step("archive", err)
		_, err = pgmq.Pop(ctx, db.Pool, name)
		step("pop", err)
		_, err = pgmq.Delete(ctx, db.Pool, name, ids2[len(ids2)-1])
		step("delete", err)
		m, err := pgmq.QueueMetrics(ctx, db.Pool, name)
		step("metrics", err)
		if m.QueueName != name || m.TotalMessages != 3 || m.QueueLength != 0 {
			t.Errorf("%q: metrics %+v", name, m)
		}
		if ch, _ := pgmq.NotifyChannel(name); len(ch) <= 63 {
			step("enable_notify_insert", pgmq.EnableNotifyInsert(ctx, db.Pool, name, 0))
			step("disable_notify_insert", pgmq.DisableNotifyInsert(ctx, db.Pool, name))
		} else if err := pgmq.EnableNotifyInsert(ctx, db.Pool, name, 0); sqlState(err) != "P0001" {
			t.Errorf("%q: enable_notify_insert with a %d-byte channel: %v; want P0001", name, len(ch), err)
		}
		step("create_fifo_index", pgmq.CreateFIFOIndex(ctx, db.Pool, name))
		_, err = pgmq.PurgeQueue(ctx, db.Pool, name)
		step("purge", err)
		dropped, err := pgmq.DropQueue(ctx, db.Pool, name)
		step("drop", err)
		if !dropped {
			t.Errorf("%q: not dropped", name)
		}
	}
	if after := others(); after != before {
		t.Errorf("relations outside pgmq changed:\n%s\nbefore:\n%s", after, before)
	}
	var left int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_class WHERE relnamespace = 'pgmq'::regnamespace AND relkind IN ('r', 'p') AND relname NOT IN ('meta', 'notify_insert_throttle')`).Scan(&left); err != nil || left != 0 {
		t.Errorf("%d queue tables left after dropping every queue (err %v)", left, err)
	}
}

// TestQueueNameLength: pgmq's create functions reject a name longer than 47
// characters with P0001 "queue name is too long, maximum length is 47
// characters" (47 fits every derived identifier); other functions just do
// not find such a queue (42P01), as pgmq's.
func TestQueueNameLength(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	for _, fn := range []string{"create", "create_non_partitioned", "create_unlogged", "create_partitioned"} {
		_, err := db.Pool.Exec(ctx, `SELECT pgmq.`+fn+`($1)`, strings.Repeat("a", 48))
		if sqlState(err) != "P0001" || !strings.Contains(err.Error(), "queue name is too long, maximum length is 47 characters") {
			t.Errorf("%s(48 characters): %v", fn, err)
		}
	}
	if _, err := db.Pool.Exec(ctx, `SELECT pgmq.create($1)`, strings.Repeat("a", 47)); err != nil {
		t.Errorf("create(47 characters): %v", err)
	}
	if _, err := db.Pool.Exec(ctx, `SELECT pgmq.send($1, '1'::jsonb)`, strings.Repeat("a", 48)); sqlState(err) != "42P01" {
		t.Errorf("send(48 characters): %v; want 42P01", err)
	}
}

// TestFormatTableName: pgmq's format_table_name lower-cases prefix_name and
// keeps every other character (the caller quotes it); NULL gives NULL.
func TestFormatTableName(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	for in, want := range map[[2]string]string{
		{"cat", "q"}: "q_cat", {"cat-dog", "a"}: "a_cat-dog", {"cat_dog", "q"}: "q_cat_dog", {"QueueCased", "q"}: "q_queuecased",
	} {
		var got string
		if err := db.Pool.QueryRow(ctx, `SELECT pgmq.format_table_name($1, $2)`, in[0], in[1]).Scan(&got); err != nil || got != want {
			t.Errorf("format_table_name(%q, %q) = %q, %v; want %q", in[0], in[1], got, err, want)
		}
	}
	var null *string
	if err := db.Pool.QueryRow(ctx, `SELECT pgmq.format_table_name(NULL, 'q')`).Scan(&null); err != nil || null != nil {
		t.Errorf("format_table_name(NULL) = %v, %v; want NULL", null, err)
	}
	if _, err := db.Pool.Exec(ctx, `SELECT pgmq.validate_queue_name('a$b')`); err != nil {
		t.Errorf("validate_queue_name checks only the length in pgmq: %v", err)
	}
}

// TestCaseCollision: names that differ only in case share pgmq's tables;
// creating the second one is refused with a clear error (42P07), the first
// keeps working, and creating the same name again stays a no-op.
func TestCaseCollision(t *testing.T) {
	t.Parallel()
	ctx, db, _ := setup(t)
	if err := pgmq.Create(ctx, db, "Mixed"); err != nil {
		t.Fatal(err)
	}
	err := pgmq.CreateUnlogged(ctx, db, "mIXED")
	if sqlState(err) != "42P07" || !strings.Contains(err.Error(), `queue "mIXED" conflicts with existing queue "Mixed"`) {
		t.Errorf("create of a case variant: %v", err)
	}
	if err := pgmq.Create(ctx, db, "Mixed"); err != nil {
		t.Errorf("create again: %v", err)
	}
	send(t, ctx, db, "Mixed", `1`)
}

// TestSendNullDelay: pgmq's send and send_batch with a NULL delay store a
// NULL vt, which its NOT NULL constraint refuses (SQLSTATE 23502).
func TestSendNullDelay(t *testing.T) {
	t.Parallel()
	ctx, db, q := setup(t)
	for _, sql := range []string{
		`SELECT pgmq.send($1, '1'::jsonb, NULL::integer)`,
		`SELECT pgmq.send($1, '1'::jsonb, NULL::timestamptz)`,
		`SELECT pgmq.send_batch($1, ARRAY['1']::jsonb[], NULL::integer)`,
	} {
		if _, err := db.Exec(ctx, sql, q); sqlState(err) != "23502" {
			t.Errorf("%s: %v; want 23502", sql, err)
		}
	}
}

// TestMetricsAsOfTransactionStart: pgmq's metrics measure at now(), the
// transaction's start: a message sent earlier in the same transaction is
// counted but not yet visible (its vt is the later clock_timestamp()), and
// scrape_time is now().
func TestMetricsAsOfTransactionStart(t *testing.T) {
	t.Parallel()
	ctx, db, q := setup(t)
	tx, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var start time.Time
	if err := tx.QueryRow(ctx, `SELECT now()`).Scan(&start); err != nil {
		t.Fatal(err)
	}
	send(t, ctx, tx, q, `1`)
	m, err := pgmq.QueueMetrics(ctx, tx, q)
	if err != nil {
		t.Fatal(err)
	}
	if m.QueueLength != 1 || m.VisibleLength != 0 || !m.ScrapeTime.Equal(start) {
		t.Errorf("metrics in the sending transaction: %+v; want length 1, visible 0, scrape time %v", m, start)
	}
	all, err := pgmq.MetricsAll(ctx, tx)
	if err != nil || len(all) != 1 || all[0].QueueName != q {
		t.Errorf("metrics_all: %+v, %v", all, err)
	}
}

func groupedQueue(t *testing.T) (context.Context, *pgxpool.Pool, string, map[string]int64) {
	ctx, db, q := setup(t)
	byBody := map[string]int64{}
	for _, m := range []struct{ body, group string }{{"a1", "A"}, {"a2", "A"}, {"b1", "B"}, {"b2", "B"}, {"n1", ""}, {"a3", "A"}} {
		var h json.RawMessage
		if m.group != "" {
			h = raw(fmt.Sprintf(`{%q: %q}`, pgmq.GroupHeader, m.group))
		}
		id, err := pgmq.Send(ctx, db, q, raw(fmt.Sprintf("%q", m.body)), &pgmq.SendOpts{Headers: h})
		if err != nil {
			t.Fatal(err)
		}
		byBody[m.body] = id
	}
	return ctx, db, q, byBody
}

func bodies(msgs []pgmq.Message) []string {
	var out []string
	for _, m := range msgs {
		var s string
		_ = json.Unmarshal(m.Message, &s)
		out = append(out, s)
	}
	return out
}

// TestReadGrouped: pgmq's read_grouped fills the batch from the group with
// the oldest visible message first, then the next group; a group is
// blocked while an earlier message of it is invisible; read_ct and
// last_read_at are set as by read.
func TestReadGrouped(t *testing.T) {
	t.Parallel()
	ctx, db, q, _ := groupedQueue(t)
	got, err := pgmq.ReadGrouped(ctx, db, q, time.Minute, 4)
	if err != nil {
		t.Fatal(err)
	}
	// Group A (a1, a2, a3) then B (b1), returned by ascending id.
	if diff := cmp.Diff([]string{"a1", "a2", "b1", "a3"}, bodies(got)); diff != "" {
		t.Errorf("first batch (-want +got):\n%s", diff)
	}
	for _, m := range got {
		if m.ReadCount != 1 || m.LastReadAt == nil {
			t.Errorf("message %d: read_ct %d, last_read_at %v", m.ID, m.ReadCount, m.LastReadAt)
		}
	}
	// A and B have messages in flight: only the default group is readable.
	got, err = pgmq.ReadGrouped(ctx, db, q, time.Minute, 4)
	if err != nil || !cmp.Equal([]string{"n1"}, bodies(got)) {
		t.Errorf("second batch: %v, %v; want [n1] (b2 waits for b1)", bodies(got), err)
	}
	got, err = pgmq.ReadGroupedWithPoll(ctx, db, q, time.Minute, 4, &pgmq.PollOpts{MaxPoll: time.Second, PollInterval: 50 * time.Millisecond})
	if err != nil || got != nil {
		t.Errorf("poll with every group blocked: %v, %v; want nothing after the wait", bodies(got), err)
	}
}

// TestReadGroupedRR: pgmq's read_grouped_rr takes the first message of
// every group whose oldest message is visible (oldest group first), then
// the second of each, and returns them in that order.
func TestReadGroupedRR(t *testing.T) {
	t.Parallel()
	ctx, db, q, byBody := groupedQueue(t)
	got, err := pgmq.ReadGroupedRR(ctx, db, q, time.Minute, 5)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"a1", "b1", "n1", "a2", "b2"}, bodies(got)); diff != "" {
		t.Errorf("round robin (-want +got):\n%s", diff)
	}
	// Group A's oldest message (a1) is invisible: A is left out.
	if _, err := pgmq.SetVTBatch(ctx, db, q, []int64{byBody["b1"], byBody["b2"], byBody["a2"]}, 0); err != nil {
		t.Fatal(err)
	}
	got, err = pgmq.ReadGroupedRRWithPoll(ctx, db, q, time.Minute, 5, nil)
	if err != nil || !cmp.Equal([]string{"b1", "b2"}, bodies(got)) {
		t.Errorf("with group A's head in flight: %v, %v; want [b1 b2]", bodies(got), err)
	}
}

// TestCreateFIFOIndex: pgmq's create_fifo_index adds a GIN index on headers
// named q_<name>_fifo_idx (idempotent); create_fifo_indexes_all does it for
// every queue.
func TestCreateFIFOIndex(t *testing.T) {
	t.Parallel()
	ctx, db, q := setup(t)
	if err := pgmq.Create(ctx, db, "Other-Q"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := pgmq.CreateFIFOIndex(ctx, db, q); err != nil {
			t.Fatal(err)
		}
	}
	if err := pgmq.CreateFIFOIndexesAll(ctx, db); err != nil {
		t.Fatal(err)
	}
	rows, err := db.Query(ctx, `SELECT indexname || ' ' || substring(indexdef from 'USING \w+ \(\w+\)') FROM pg_indexes
		WHERE schemaname = 'pgmq' AND indexname LIKE '%fifo_idx' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if diff := cmp.Diff([]string{"q_jobs_fifo_idx USING gin (headers)", "q_other-q_fifo_idx USING gin (headers)"}, got); err != nil || diff != "" {
		t.Errorf("fifo indexes (-want +got): %v\n%s", err, diff)
	}
}

// TestDetachArchive: in pgmq 1.10 detach_archive is deprecated, warns and
// does nothing (archive tables are no longer extension members); it still
// rejects invalid names.
func TestDetachArchive(t *testing.T) {
	t.Parallel()
	ctx, db, q := setup(t)
	var warned string
	cfg := db.Config().ConnConfig.Copy()
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { warned = n.Severity + ": " + n.Message }
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if err := pgmq.DetachArchive(ctx, c, q); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(warned, "WARNING: detach_archive(queue_name) is deprecated and is a no-op") {
		t.Errorf("notice %q", warned)
	}
	if err := pgmq.DetachArchive(ctx, c, "missing"); err != nil {
		t.Errorf("detach_archive of an unknown queue: %v; pgmq does nothing", err)
	}
	if _, err := c.Exec(ctx, `SELECT pgmq.detach_archive('a;b')`); sqlState(err) != "P0001" {
		t.Errorf("detach_archive('a;b'): %v; want P0001", err)
	}
	send(t, ctx, db, q, `1`)
}

// TestPartitionedWithoutPartman: pgmq needs pg_partman for partitioned
// queues and says so (P0001 "pg_partman is required for partitioned
// queues"); nothing is created. This database never has pg_partman, so the
// test runs whether the server offers it or not.
func TestPartitionedWithoutPartman(t *testing.T) {
	t.Parallel()
	ctx, db, q := setup(t)
	err := pgmq.CreatePartitioned(ctx, db, "parted", &pgmq.CreatePartitionedOpts{PartitionInterval: "1 day", RetentionInterval: "7 days"})
	if sqlState(err) != "P0001" || !strings.Contains(err.Error(), "pg_partman is required for partitioned queues") {
		t.Errorf("create_partitioned: %v", err)
	}
	err = pgmq.ConvertArchivePartitioned(ctx, db, q, nil)
	if sqlState(err) != "P0001" || !strings.Contains(err.Error(), "pg_partman is required for partitioned queues") {
		t.Errorf("convert_archive_partitioned: %v", err)
	}
	qs, err := pgmq.ListQueues(ctx, db)
	if err != nil || len(qs) != 1 || qs[0].Name != q {
		t.Errorf("queues after the failures: %+v, %v", qs, err)
	}
	var kind string
	if err := db.QueryRow(ctx, `SELECT relkind::text FROM pg_class WHERE oid = 'pgmq.a_jobs'::regclass`).Scan(&kind); err != nil || kind != "r" {
		t.Errorf("a_jobs relkind %q, %v; want an unchanged table", kind, err)
	}
}

// partmanDB returns a migrated database with pg_partman installed. When the
// server does not offer pg_partman the test is skipped, unless
// QFLOW_REQUIRE_PARTMAN=1 (set by .ci/run), which makes it fail.
func partmanDB(t *testing.T) (context.Context, *pgxpool.Pool, string) {
	t.Helper()
	db := pgtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	var offered bool
	if err := db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_partman')`).Scan(&offered); err != nil {
		t.Fatal(err)
	}
	if !offered {
		if os.Getenv("QFLOW_REQUIRE_PARTMAN") == "1" {
			t.Fatal("QFLOW_REQUIRE_PARTMAN=1 but the server does not offer pg_partman (install postgresql-<version>-partman)")
		}
		t.Skip("the server does not offer pg_partman; set QFLOW_REQUIRE_PARTMAN=1 to fail instead")
	}
	if _, err := db.Pool.Exec(ctx, `CREATE SCHEMA partman; CREATE EXTENSION pg_partman SCHEMA partman`); err != nil {
		t.Fatal(err)
	}
	var version string
	if err := db.Pool.QueryRow(ctx, `SELECT extversion FROM pg_extension WHERE extname = 'pg_partman'`).Scan(&version); err != nil {
		t.Fatal(err)
	}
	return ctx, db.Pool, version
}

func partitions(t *testing.T, ctx context.Context, db pgmq.DBTX, table string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM pg_inherits WHERE inhparent = to_regclass($1)`, "pgmq."+pgx.Identifier{table}.Sanitize()).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestPartitionedNumeric: with pg_partman, pgmq's create_partitioned with a
// number partitions the queue and its archive by msg_id, every operation
// works on it, list_queues reports it partitioned, pg_partman's maintenance
// drops partitions older than the retention, and drop_queue removes its
// pg_partman configuration.
func TestPartitionedNumeric(t *testing.T) {
	t.Parallel()
	ctx, db, version := partmanDB(t)
	const q = "Num-Part"
	if err := pgmq.CreatePartitioned(ctx, db, q, &pgmq.CreatePartitionedOpts{PartitionInterval: "10", RetentionInterval: "20"}); err != nil {
		t.Fatalf("pg_partman %s: %v", version, err)
	}
	if err := pgmq.CreatePartitioned(ctx, db, q, &pgmq.CreatePartitionedOpts{PartitionInterval: "10", RetentionInterval: "20"}); err != nil {
		t.Errorf("create_partitioned again: %v; want a no-op", err)
	}
	var control, acontrol string
	if err := db.QueryRow(ctx, `SELECT (SELECT control FROM partman.part_config WHERE parent_table = 'pgmq.q_num-part'),
		(SELECT control FROM partman.part_config WHERE parent_table = 'pgmq.a_num-part')`).Scan(&control, &acontrol); err != nil || control != "msg_id" || acontrol != "msg_id" {
		t.Errorf("partitioned by %q/%q (%v); want msg_id", control, acontrol, err)
	}
	msgs := make([]json.RawMessage, 45)
	for i := range msgs {
		msgs[i] = raw(fmt.Sprint(i))
	}
	sent, err := pgmq.SendBatch(ctx, db, q, msgs, nil)
	if err != nil || len(sent) != 45 {
		t.Fatalf("send_batch: %v, %v", sent, err)
	}
	read, err := pgmq.Read(ctx, db, q, time.Minute, 2, nil)
	if err != nil || !cmp.Equal([]int64{1, 2}, ids(read)) {
		t.Errorf("read: %v, %v", ids(read), err)
	}
	if ok, err := pgmq.Archive(ctx, db, q, 1); err != nil || !ok {
		t.Errorf("archive: %v, %v", ok, err)
	}
	if ok, err := pgmq.Delete(ctx, db, q, 2); err != nil || !ok {
		t.Errorf("delete: %v, %v", ok, err)
	}
	if m, err := pgmq.Pop(ctx, db, q); err != nil || m == nil || m.ID != 3 {
		t.Errorf("pop: %+v, %v", m, err)
	}
	if m, err := pgmq.SetVT(ctx, db, q, 4, time.Hour); err != nil || m == nil {
		t.Errorf("set_vt: %+v, %v", m, err)
	}
	qs, err := pgmq.ListQueues(ctx, db)
	if err != nil || len(qs) != 1 || !qs[0].IsPartitioned || qs[0].Name != q {
		t.Errorf("list_queues: %+v, %v", qs, err)
	}
	m, err := pgmq.QueueMetrics(ctx, db, q)
	if err != nil || m.QueueLength != 42 || m.TotalMessages != 45 || m.VisibleLength != 41 {
		t.Errorf("metrics: %+v, %v", m, err)
	}

	// Retention 20: maintenance drops the partitions entirely below
	// 45 - 20 (ids 0-9 and 10-19) and keeps the rest.
	before := partitions(t, ctx, db, "q_num-part")
	if _, err := db.Exec(ctx, `SELECT partman.run_maintenance('pgmq.q_num-part')`); err != nil {
		t.Fatal(err)
	}
	var minID int64
	var left int
	if err := db.QueryRow(ctx, `SELECT min(msg_id), count(*) FROM pgmq."q_num-part"`).Scan(&minID, &left); err != nil {
		t.Fatal(err)
	}
	if minID < 20 || left != 26 {
		t.Errorf("after maintenance: min id %d, %d messages; want ids 20-45 kept", minID, left)
	}
	if after := partitions(t, ctx, db, "q_num-part"); after == before {
		t.Errorf("maintenance left %d partitions", after)
	}

	if dropped, err := pgmq.DropQueue(ctx, db, q); err != nil || !dropped {
		t.Fatalf("drop_queue: %v, %v", dropped, err)
	}
	var configs, templates int
	if err := db.QueryRow(ctx, `SELECT (SELECT count(*) FROM partman.part_config),
		(SELECT count(*) FROM pg_tables WHERE schemaname = 'partman' AND tablename LIKE 'template%')`).Scan(&configs, &templates); err != nil || configs != 0 || templates != 0 {
		t.Errorf("after drop_queue: %d part_config rows, %d template tables (%v); want none", configs, templates, err)
	}
	if err := pgmq.CreatePartitioned(ctx, db, q, nil); err != nil {
		t.Errorf("create_partitioned after drop: %v", err)
	}
}

// TestPartitionedTime: pgmq's create_partitioned with a time interval
// partitions the queue by enqueued_at and its archive by archived_at, with
// the retention given; a name pg_partman cannot take (a dot) is refused
// with P0001 before anything is created.
func TestPartitionedTime(t *testing.T) {
	t.Parallel()
	ctx, db, _ := partmanDB(t)
	const q = "QueueCasedPart"
	if err := pgmq.CreatePartitioned(ctx, db, q, &pgmq.CreatePartitionedOpts{PartitionInterval: "1 hour", RetentionInterval: "2 days"}); err != nil {
		t.Fatal(err)
	}
	rows, err := db.Query(ctx, `SELECT parent_table || ' ' || control || ' ' || retention FROM partman.part_config ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	want := []string{"pgmq.a_queuecasedpart archived_at 2 days", "pgmq.q_queuecasedpart enqueued_at 2 days"}
	if diff := cmp.Diff(want, got); err != nil || diff != "" {
		t.Errorf("part_config (-want +got): %v\n%s", err, diff)
	}
	id := send(t, ctx, db, q, `{"hello":"world"}`)
	if msgs, err := pgmq.Read(ctx, db, q, time.Minute, 1, nil); err != nil || len(msgs) != 1 {
		t.Errorf("read: %v, %v", msgs, err)
	}
	if ok, err := pgmq.Archive(ctx, db, q, id); err != nil || !ok {
		t.Errorf("archive: %v, %v", ok, err)
	}
	if n := partitions(t, ctx, db, "a_queuecasedpart"); n < 2 {
		t.Errorf("archive has %d partitions", n)
	}
	err = pgmq.CreatePartitioned(ctx, db, "a.b", nil)
	if sqlState(err) != "P0001" || !strings.Contains(err.Error(), `must not contain "."`) {
		t.Errorf("create_partitioned(a.b): %v", err)
	}
	if _, err := pgmq.QueueMetrics(ctx, db, "a.b"); !errors.Is(err, pgmq.ErrQueueNotFound) {
		t.Errorf("a.b exists after the refusal: %v", err)
	}
}

// TestConvertArchivePartitioned: pgmq's convert_archive_partitioned renames
// the archive to a_<name>_old (keeping its rows) and creates a partitioned,
// empty archive, by msg_id for a number and by archived_at for a time
// interval; an archive already partitioned, or missing, is left alone with
// a NOTICE. Unlike pgmq it also works for a 47-character name (pgmq's
// renamed index collides with the new one there).
func TestConvertArchivePartitioned(t *testing.T) {
	t.Parallel()
	ctx, db, _ := partmanDB(t)
	long := "long_queue_name_1234567890123456789012345678901"
	for _, tc := range []struct{ queue, interval, control string }{
		{"conv-num", "", "msg_id"}, {"conv-time", "1 hour", "archived_at"}, {long, "", "msg_id"},
	} {
		if err := pgmq.Create(ctx, db, tc.queue); err != nil {
			t.Fatal(err)
		}
		id := send(t, ctx, db, tc.queue, `1`)
		if _, err := pgmq.Archive(ctx, db, tc.queue, id); err != nil {
			t.Fatal(err)
		}
		opts := &pgmq.CreatePartitionedOpts{PartitionInterval: tc.interval}
		if tc.interval != "" {
			opts.RetentionInterval = "2 hours"
		}
		for i := 0; i < 2; i++ { // the second call finds it partitioned
			if err := pgmq.ConvertArchivePartitioned(ctx, db, tc.queue, opts); err != nil {
				t.Fatalf("%s: convert %d: %v", tc.queue, i, err)
			}
		}
		atbl, _ := pgmq.ArchiveTableName(tc.queue)
		var kind, control string
		var oldRows, newRows int
		err := db.QueryRow(ctx, `SELECT c.relkind::text, p.control,
			(SELECT count(*) FROM pg_inherits WHERE inhparent = c.oid)
			FROM pg_class c JOIN partman.part_config p ON p.parent_table = 'pgmq.' || c.relname
			WHERE c.relnamespace = 'pgmq'::regnamespace AND c.relname = $1`, atbl).Scan(&kind, &control, &newRows)
		if err != nil || kind != "p" || control != tc.control || newRows == 0 {
			t.Errorf("%s: archive relkind %q, control %q, %d partitions (%v)", tc.queue, kind, control, newRows, err)
		}
		if err := db.QueryRow(ctx, `SELECT count(*) FROM pgmq.`+pgx.Identifier{atbl + "_old"}.Sanitize()).Scan(&oldRows); err != nil || oldRows != 1 {
			t.Errorf("%s: %d rows in the old archive (%v)", tc.queue, oldRows, err)
		}
		id = send(t, ctx, db, tc.queue, `2`)
		if ok, err := pgmq.Archive(ctx, db, tc.queue, id); err != nil || !ok {
			t.Errorf("%s: archive into the partitioned archive: %v, %v", tc.queue, ok, err)
		}
	}
	if err := pgmq.ConvertArchivePartitioned(ctx, db, "missing", nil); err != nil {
		t.Errorf("convert of a missing queue: %v; pgmq only notices", err)
	}
}
