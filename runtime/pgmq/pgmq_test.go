package pgmq_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/quantumflow/qflow/internal/pgtest"
	"github.com/quantumflow/qflow/runtime/pgmq"
)

// jsonEq compares JSON by value: the server normalises jsonb text.
var jsonEq = cmp.Transformer("json", func(m json.RawMessage) any {
	if m == nil {
		return nil
	}
	var v any
	if err := json.Unmarshal(m, &v); err != nil {
		return "invalid JSON: " + string(m)
	}
	return v
})

// ignoreTimes drops the server-assigned timestamps from Message comparisons.
var ignoreTimes = cmpopts.IgnoreFields(pgmq.Message{}, "EnqueuedAt", "LastReadAt", "VisibleAt")

func raw(s string) json.RawMessage { return json.RawMessage(s) }

// setup gives the test its own migrated database and a queue named q.
func setup(t *testing.T) (context.Context, *pgxpool.Pool, string) {
	t.Helper()
	db := pgtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	const q = "jobs"
	if err := pgmq.Create(ctx, db.Pool, q); err != nil {
		t.Fatal(err)
	}
	return ctx, db.Pool, q
}

func send(t *testing.T, ctx context.Context, db pgmq.DBTX, q, body string) int64 {
	t.Helper()
	id, err := pgmq.Send(ctx, db, q, raw(body), nil)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func serverNow(t *testing.T, ctx context.Context, db pgmq.DBTX) time.Time {
	t.Helper()
	var now time.Time
	if err := db.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&now); err != nil {
		t.Fatal(err)
	}
	return now
}

func ids(msgs []pgmq.Message) []int64 {
	var out []int64
	for _, m := range msgs {
		out = append(out, m.ID)
	}
	return out
}

// TestAPISurface pins the SQL API to pgmq 1.10's: every public function of
// pgmq 1.10 with its argument names, defaults, overloads and result types
// (the internal helpers, named with a leading underscore, are not listed).
func TestAPISurface(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	rows, err := db.Pool.Query(context.Background(), `
		SELECT p.proname || '(' || pg_get_function_arguments(p.oid) || ') ' || pg_get_function_result(p.oid)
		FROM pg_proc p
		WHERE p.pronamespace = 'pgmq'::regnamespace AND p.proname NOT LIKE '\_%'
		ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"acquire_queue_lock(queue_name text) void",
		"archive(queue_name text, msg_id bigint) boolean",
		"archive(queue_name text, msg_ids bigint[]) SETOF bigint",
		"convert_archive_partitioned(table_name text, partition_interval text DEFAULT '10000'::text, retention_interval text DEFAULT '100000'::text, leading_partition integer DEFAULT 10) void",
		"create(queue_name text) void",
		"create_fifo_index(queue_name text) void",
		"create_fifo_indexes_all() void",
		"create_non_partitioned(queue_name text) void",
		"create_partitioned(queue_name text, partition_interval text DEFAULT '10000'::text, retention_interval text DEFAULT '100000'::text) void",
		"create_unlogged(queue_name text) void",
		"delete(queue_name text, msg_id bigint) boolean",
		"delete(queue_name text, msg_ids bigint[]) SETOF bigint",
		"detach_archive(queue_name text) void",
		"disable_notify_insert(queue_name text) void",
		"drop_queue(queue_name text) boolean",
		"drop_queue(queue_name text, partitioned boolean) boolean",
		"enable_notify_insert(queue_name text, throttle_interval_ms integer DEFAULT 250) void",
		"format_table_name(queue_name text, prefix text) text",
		"list_queues() SETOF pgmq.queue_record",
		"metrics(queue_name text) pgmq.metrics_result",
		"metrics_all() SETOF pgmq.metrics_result",
		"notify_queue_listeners() trigger",
		"pop(queue_name text, qty integer DEFAULT 1) SETOF pgmq.message_record",
		"purge_queue(queue_name text) bigint",
		"read(queue_name text, vt integer, qty integer, conditional jsonb DEFAULT '{}'::jsonb) SETOF pgmq.message_record",
		"read_grouped(queue_name text, vt integer, qty integer) SETOF pgmq.message_record",
		"read_grouped_rr(queue_name text, vt integer, qty integer) SETOF pgmq.message_record",
		"read_grouped_rr_with_poll(queue_name text, vt integer, qty integer, max_poll_seconds integer DEFAULT 5, poll_interval_ms integer DEFAULT 100) SETOF pgmq.message_record",
		"read_grouped_with_poll(queue_name text, vt integer, qty integer, max_poll_seconds integer DEFAULT 5, poll_interval_ms integer DEFAULT 100) SETOF pgmq.message_record",
		"read_with_poll(queue_name text, vt integer, qty integer, max_poll_seconds integer DEFAULT 5, poll_interval_ms integer DEFAULT 100, conditional jsonb DEFAULT '{}'::jsonb) SETOF pgmq.message_record",
		"send(queue_name text, msg jsonb) SETOF bigint",
		"send(queue_name text, msg jsonb, delay integer) SETOF bigint",
		"send(queue_name text, msg jsonb, delay timestamp with time zone) SETOF bigint",
		"send(queue_name text, msg jsonb, headers jsonb) SETOF bigint",
		"send(queue_name text, msg jsonb, headers jsonb, delay integer) SETOF bigint",
		"send(queue_name text, msg jsonb, headers jsonb, delay timestamp with time zone) SETOF bigint",
		"send_batch(queue_name text, msgs jsonb[]) SETOF bigint",
		"send_batch(queue_name text, msgs jsonb[], delay integer) SETOF bigint",
		"send_batch(queue_name text, msgs jsonb[], delay timestamp with time zone) SETOF bigint",
		"send_batch(queue_name text, msgs jsonb[], headers jsonb[]) SETOF bigint",
		"send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay integer) SETOF bigint",
		"send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay timestamp with time zone) SETOF bigint",
		"set_vt(queue_name text, msg_id bigint, vt integer) SETOF pgmq.message_record",
		"set_vt(queue_name text, msg_id bigint, vt timestamp with time zone) SETOF pgmq.message_record",
		"set_vt(queue_name text, msg_ids bigint[], vt integer) SETOF pgmq.message_record",
		"set_vt(queue_name text, msg_ids bigint[], vt timestamp with time zone) SETOF pgmq.message_record",
		"validate_queue_name(queue_name text) void",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("pgmq functions (-want +got):\n%s", diff)
	}

	// The record types' columns, in order: the engine and other clients
	// rely on them.
	rows, err = db.Pool.Query(context.Background(), `
		SELECT t.typname || ': ' || string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum)
		FROM pg_type t JOIN pg_attribute a ON a.attrelid = t.typrelid AND a.attnum > 0
		WHERE t.typnamespace = 'pgmq'::regnamespace AND t.typtype = 'c' AND t.typname LIKE '%\_re%'
		GROUP BY t.typname ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	gotTypes, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	wantTypes := []string{
		"message_record: msg_id bigint, read_ct integer, enqueued_at timestamp with time zone, last_read_at timestamp with time zone, vt timestamp with time zone, message jsonb, headers jsonb",
		"metrics_result: queue_name text, queue_length bigint, newest_msg_age_sec integer, oldest_msg_age_sec integer, total_messages bigint, scrape_time timestamp with time zone, queue_visible_length bigint",
		"queue_record: queue_name character varying, is_partitioned boolean, is_unlogged boolean, created_at timestamp with time zone",
	}
	if diff := cmp.Diff(wantTypes, gotTypes); diff != "" {
		t.Errorf("pgmq record types (-want +got):\n%s", diff)
	}
}

func tableColumns(t *testing.T, ctx context.Context, db pgmq.DBTX, table string) string {
	t.Helper()
	var cols string
	err := db.QueryRow(ctx, `
		SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
		                  || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
		                  || CASE WHEN a.attidentity = 'a' THEN ' identity' ELSE '' END
		                  || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), ''), ', ' ORDER BY a.attnum)
		FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
		WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped`, "pgmq."+table).Scan(&cols)
	if err != nil {
		t.Fatal(err)
	}
	return cols
}

func TestCreateListDrop(t *testing.T) {
	t.Parallel()
	ctx, db, q := setup(t)

	// Table layout: the engine works on these tables directly.
	if diff := cmp.Diff(
		"msg_id bigint not null identity, read_ct integer not null default 0, enqueued_at timestamp with time zone not null default now(), "+
			"last_read_at timestamp with time zone, vt timestamp with time zone not null, message jsonb, headers jsonb",
		tableColumns(t, ctx, db, "q_jobs")); diff != "" {
		t.Errorf("q_jobs columns (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(
		"msg_id bigint not null, read_ct integer not null default 0, enqueued_at timestamp with time zone not null default now(), "+
			"last_read_at timestamp with time zone, archived_at timestamp with time zone not null default now(), vt timestamp with time zone not null, message jsonb, headers jsonb",
		tableColumns(t, ctx, db, "a_jobs")); diff != "" {
		t.Errorf("a_jobs columns (-want +got):\n%s", diff)
	}
	var vtIndexed bool
	if err := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_indexes WHERE schemaname = 'pgmq' AND tablename = 'q_jobs' AND indexdef LIKE '%(vt)')`).Scan(&vtIndexed); err != nil || !vtIndexed {
		t.Errorf("no index on q_jobs(vt) (err %v)", err)
	}

	if err := pgmq.Create(ctx, db, q); err != nil {
		t.Fatalf("create is not idempotent: %v", err)
	}
	if err := pgmq.CreateNonPartitioned(ctx, db, "Plain_2"); err != nil {
		t.Fatal(err)
	}
	if err := pgmq.CreateUnlogged(ctx, db, "fast"); err != nil {
		t.Fatal(err)
	}
	var persistence string
	if err := db.QueryRow(ctx, `SELECT relpersistence::text FROM pg_class WHERE oid = 'pgmq.q_fast'::regclass`).Scan(&persistence); err != nil || persistence != "u" {
		t.Errorf("q_fast relpersistence %q (err %v), want u", persistence, err)
	}
	if err := db.QueryRow(ctx, `SELECT relpersistence::text FROM pg_class WHERE oid = 'pgmq.q_plain_2'::regclass`).Scan(&persistence); err != nil || persistence != "p" {
		t.Errorf("q_plain_2 relpersistence %q (err %v), want p (and a lower-cased table name)", persistence, err)
	}

	err := pgmq.Create(ctx, db, "JOBS")
	if err == nil || !strings.Contains(err.Error(), `conflicts with existing queue "jobs"`) {
		t.Errorf("Create(JOBS) next to jobs: %v, want a conflict error", err)
	}

	before := serverNow(t, ctx, db)
	got, err := pgmq.ListQueues(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	// pgmq lists queues in pgmq.meta's order (no ORDER BY): creation order.
	want := []pgmq.QueueInfo{
		{Name: "jobs"},
		{Name: "Plain_2"},
		{Name: "fast", IsUnlogged: true},
	}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(pgmq.QueueInfo{}, "CreatedAt")); diff != "" {
		t.Errorf("ListQueues (-want +got):\n%s", diff)
	}
	for _, qi := range got {
		if qi.CreatedAt.IsZero() || qi.CreatedAt.After(before) {
			t.Errorf("queue %s CreatedAt %v, want set and before %v", qi.Name, qi.CreatedAt, before)
		}
	}

	send(t, ctx, db, q, `{}`)
	if err := pgmq.EnableNotifyInsert(ctx, db, q, 0); err != nil {
		t.Fatal(err)
	}
	dropped, err := pgmq.DropQueue(ctx, db, q)
	if err != nil || !dropped {
		t.Fatalf("DropQueue: %v, %v; want true", dropped, err)
	}
	var left int
	if err := db.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_tables WHERE schemaname = 'pgmq' AND tablename IN ('q_jobs', 'a_jobs'))
		+ (SELECT count(*) FROM pgmq.meta WHERE queue_name = 'jobs') + (SELECT count(*) FROM pgmq.notify_insert_throttle)`).Scan(&left); err != nil || left != 0 {
		t.Errorf("after drop: %d tables/rows left (err %v), want 0", left, err)
	}
	dropped, err = pgmq.DropQueue(ctx, db, q)
	if err != nil || dropped {
		t.Errorf("DropQueue of a dropped queue: %v, %v; want false, nil", dropped, err)
	}
	// pgmq 1.10's deprecated drop_queue(name, partitioned) drops the queue
	// and returns true, even when there was none to drop.
	for _, name := range []string{"fast", "fast"} {
		var deprecated bool
		if err := db.QueryRow(ctx, `SELECT pgmq.drop_queue($1::text, false)`, name).Scan(&deprecated); err != nil || !deprecated {
			t.Errorf("drop_queue(%s, partitioned): %v, %v; want true", name, deprecated, err)
		}
	}
	if _, err := pgmq.QueueMetrics(ctx, db, "fast"); !errors.Is(err, pgmq.ErrQueueNotFound) {
		t.Errorf("after drop_queue(fast, false): %v; want the queue gone", err)
	}
}

func TestSendOverloads(t *testing.T) {
	t.Parallel()
	ctx, db, q := setup(t)
	at := time.Date(2100, 1, 2, 3, 4, 5, 123456000, time.UTC)
	cases := []struct {
		name     string
		opts     *pgmq.SendOpts
		headers  json.RawMessage
		delaySec float64 // vt - enqueued_at, when VisibleAt is not used
		at       time.Time
	}{
		{name: "send(q,msg)", opts: nil},
		{name: "send(q,msg,headers)", opts: &pgmq.SendOpts{Headers: raw(`{"h":1}`)}, headers: raw(`{"h":1}`)},
		{name: "send(q,msg,delay int)", opts: &pgmq.SendOpts{Delay: 1500 * time.Millisecond}, delaySec: 2},
		{name: "send(q,msg,delay timestamptz)", opts: &pgmq.SendOpts{VisibleAt: at}, at: at},
		{name: "send(q,msg,headers,delay int)", opts: &pgmq.SendOpts{Headers: raw(`{"h":2}`), Delay: 30 * time.Second}, headers: raw(`{"h":2}`), delaySec: 30},
		{name: "send(q,msg,headers,delay timestamptz)", opts: &pgmq.SendOpts{Headers: raw(`{"h":3}`), VisibleAt: at}, headers: raw(`{"h":3}`), at: at},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := raw(fmt.Sprintf(`{"case":%d}`, i))
			id, err := pgmq.Send(ctx, db, q, body, c.opts)
			if err != nil {
				t.Fatal(err)
			}
			var m pgmq.Message
			err = db.QueryRow(ctx, `SELECT msg_id, read_ct, enqueued_at, vt, message, headers FROM pgmq.q_jobs WHERE msg_id = $1`, id).
				Scan(&m.ID, &m.ReadCount, &m.EnqueuedAt, &m.VisibleAt, &m.Message, &m.Headers)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(pgmq.Message{ID: id, Message: body, Headers: c.headers}, m, jsonEq, ignoreTimes); diff != "" {
				t.Errorf("stored message (-want +got):\n%s", diff)
			}
			if !c.at.IsZero() {
				if !m.VisibleAt.Equal(c.at) {
					t.Errorf("vt %v, want exactly %v", m.VisibleAt, c.at)
				}
				return
			}
			// enqueued_at is the transaction start, vt the clock a moment
			// later: allow that moment, generously.
			d := m.VisibleAt.Sub(m.EnqueuedAt).Seconds()
			if d < c.delaySec || d > c.delaySec+2 {
				t.Errorf("vt - enqueued_at = %.3fs, want %vs", d, c.delaySec)
			}
		})
	}
	// Only the undelayed messages are readable now.
	got, err := pgmq.Read(ctx, db, q, time.Minute, 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int64{1, 2}, ids(got)); diff != "" {
		t.Errorf("readable after sends (-want +got):\n%s", diff)
	}
	if _, err := pgmq.Send(ctx, db, q, raw(`{}`), &pgmq.SendOpts{Delay: time.Second, VisibleAt: at}); err == nil {
		t.Error("Send with Delay and VisibleAt: no error")
	}
}

func TestSendBatchOverloads(t *testing.T) {
	t.Parallel()
	ctx, db, q := setup(t)
	at := time.Date(2100, 1, 2, 3, 4, 5, 0, time.UTC)
	hdrs := []json.RawMessage{raw(`{"h":"a"}`), nil}
	cases := []struct {
		name     string
		opts     *pgmq.SendBatchOpts
		headers  []json.RawMessage
		delaySec float64
		at       time.Time
	}{
		{name: "send_batch(q,msgs)"},
		{name: "send_batch(q,msgs,headers)", opts: &pgmq.SendBatchOpts{Headers: hdrs}, headers: hdrs},
		{name: "send_batch(q,msgs,delay int)", opts: &pgmq.SendBatchOpts{Delay: 20 * time.Second}, delaySec: 20},
		{name: "send_batch(q,msgs,delay timestamptz)", opts: &pgmq.SendBatchOpts{VisibleAt: at}, at: at},
		{name: "send_batch(q,msgs,headers,delay int)", opts: &pgmq.SendBatchOpts{Headers: hdrs, Delay: 10 * time.Second}, headers: hdrs, delaySec: 10},
		{name: "send_batch(q,msgs,headers,delay timestamptz)", opts: &pgmq.SendBatchOpts{Headers: hdrs, VisibleAt: at}, headers: hdrs, at: at},
	}
	var all []int64
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msgs := []json.RawMessage{raw(fmt.Sprintf(`{"case":%d,"n":0}`, i)), raw(fmt.Sprintf(`{"case":%d,"n":1}`, i))}
			got, err := pgmq.SendBatch(ctx, db, q, msgs, c.opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 2 || got[1] != got[0]+1 {
				t.Fatalf("ids %v, want two consecutive ids", got)
			}
			all = append(all, got...)
			for j, id := range got {
				var m pgmq.Message
				err = db.QueryRow(ctx, `SELECT msg_id, enqueued_at, vt, message, headers FROM pgmq.q_jobs WHERE msg_id = $1`, id).
					Scan(&m.ID, &m.EnqueuedAt, &m.VisibleAt, &m.Message, &m.Headers)
				if err != nil {
					t.Fatal(err)
				}
				want := pgmq.Message{ID: id, Message: msgs[j]}
				if c.headers != nil {
					want.Headers = c.headers[j]
				}
				if diff := cmp.Diff(want, m, jsonEq, ignoreTimes); diff != "" {
					t.Errorf("message %d (-want +got):\n%s", j, diff)
				}
				if !c.at.IsZero() {
					if !m.VisibleAt.Equal(c.at) {
						t.Errorf("vt %v, want %v", m.VisibleAt, c.at)
					}
				} else if d := m.VisibleAt.Sub(m.EnqueuedAt).Seconds(); d < c.delaySec || d > c.delaySec+2 {
					t.Errorf("vt - enqueued_at = %.3fs, want %vs", d, c.delaySec)
				}
			}
		})
	}
	got, err := pgmq.Read(ctx, db, q, time.Minute, 100, nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(all[:4], ids(got)); diff != "" {
		t.Errorf("readable after batches (-want +got):\n%s", diff)
	}

	// Mismatched headers: the client refuses, and so does the SQL, with the
	// error class and message of pgmq 1.11 (pgmq 1.10 padded with NULLs).
	if _, err := pgmq.SendBatch(ctx, db, q, []json.RawMessage{raw(`1`)}, &pgmq.SendBatchOpts{Headers: hdrs}); err == nil {
		t.Error("SendBatch with 2 headers for 1 message: no error")
	}
	_, err = db.Exec(ctx, `SELECT pgmq.send_batch('jobs', ARRAY['1']::jsonb[], ARRAY['{}', '{}']::jsonb[])`)
	if err == nil || !strings.Contains(err.Error(), "headers array length (2) must match msgs array length (1) (SQLSTATE P0001)") {
		t.Errorf("SQL send_batch with mismatched headers: %v", err)
	}
	if got, err := pgmq.SendBatch(ctx, db, q, nil, nil); err != nil || got != nil {
		t.Errorf("SendBatch of nothing: %v, %v", got, err)
	}
}

func TestReadAndConditional(t *testing.T) {
	t.Parallel()
	ctx, db, q := setup(t)
	for i := range 5 {
		send(t, ctx, db, q, fmt.Sprintf(`{"n":%d,"kind":"%s"}`, i, map[bool]string{true: "even", false: "odd"}[i%2 == 0]))
	}
	before := serverNow(t, ctx, db)
	got, err := pgmq.Read(ctx, db, q, 30*time.Second, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []pgmq.Message{
		{ID: 1, ReadCount: 1, Message: raw(`{"n":0,"kind":"even"}`)},
		{ID: 2, ReadCount: 1, Message: raw(`{"n":1,"kind":"odd"}`)},
	}
	if diff := cmp.Diff(want, got, jsonEq, ignoreTimes); diff != "" {
		t.Fatalf("Read (-want +got):\n%s", diff)
	}
	for _, m := range got {
		if m.LastReadAt == nil || m.LastReadAt.Before(before) {
			t.Errorf("msg %d LastReadAt %v, want set after %v", m.ID, m.LastReadAt, before)
		}
		if d := m.VisibleAt.Sub(*m.LastReadAt); d < 30*time.Second || d > 31*time.Second {
			t.Errorf("msg %d hidden for %v, want 30s", m.ID, d)
		}
	}
	got, err = pgmq.Read(ctx, db, q, 30*time.Second, 10, &pgmq.ReadOpts{Conditional: raw(`{"kind":"even"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int64{3, 5}, ids(got)); diff != "" {
		t.Errorf("conditional read (-want +got):\n%s", diff)
	}
	got, err = pgmq.Read(ctx, db, q, 30*time.Second, 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int64{4}, ids(got)); diff != "" {
		t.Errorf("read of the rest (-want +got):\n%s", diff)
	}
	if got, err := pgmq.Read(ctx, db, q, 30*time.Second, 10, nil); err != nil || got != nil {
		t.Errorf("read of an all-invisible queue: %v, %v; want nil", got, err)
	}
	// The SQL default for conditional.
	var n int
	if _, err := pgmq.SetVTBatch(ctx, db, q, []int64{1}, 0); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(ctx, `SELECT count(*) FROM pgmq.read('jobs', 10, 10)`).Scan(&n); err != nil || n != 1 {
		t.Errorf("read with default conditional: %d, %v; want 1", n, err)
	}
}

func TestVisibilityTimeoutRedelivers(t *testing.T) {
	t.Parallel()
	ctx, db, q := setup(t)
	id := send(t, ctx, db, q, `{"x":1}`)
	first, err := pgmq.Read(ctx, db, q, time.Second, 1, nil)
	if err != nil || len(first) != 1 || first[0].ReadCount != 1 {
		t.Fatalf("first read: %+v, %v", first, err)
	}
	if again, err := pgmq.Read(ctx, db, q, time.Second, 1, nil); err != nil || len(again) != 0 {
		t.Fatalf("read within vt: %+v, %v; want nothing", again, err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		got, err := pgmq.Read(ctx, db, q, 30*time.Second, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 1 {
			if got[0].ID != id || got[0].ReadCount != 2 {
				t.Fatalf("redelivered %+v, want msg %d with read count 2", got[0], id)
			}
			if !got[0].LastReadAt.After(*first[0].LastReadAt) {
				t.Errorf("LastReadAt %v not after the first read's %v", got[0].LastReadAt, first[0].LastReadAt)
			}
			if got[0].LastReadAt.Before(first[0].VisibleAt) {
				t.Errorf("redelivered at %v, before its vt %v", got[0].LastReadAt, first[0].VisibleAt)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("message not redelivered after its vt expired")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestConcurrentReadersNeverShare: four readers on one queue, many rounds;
// every message is received exactly once.
func TestConcurrentReadersNeverShare(t *testing.T) {
	t.Parallel()
	ctx, db, q := setup(t)
	const rounds, perRound, readers = 5, 400, 4
	for round := range rounds {
		msgs := make([]json.RawMessage, perRound)
		for i := range msgs {
			msgs[i] = raw(fmt.Sprintf(`{"round":%d,"i":%d}`, round, i))
		}
		sent, err := pgmq.SendBatch(ctx, db, q, msgs, nil)
		if err != nil {
			t.Fatal(err)
		}
		var (
			mu       sync.Mutex
			seen     = map[int64]int{}
			received atomic.Int64
			wg       sync.WaitGroup
			errs     = make([]error, readers)
		)
		deadline := time.Now().Add(60 * time.Second)
		for r := range readers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for received.Load() < perRound && time.Now().Before(deadline) {
					got, err := pgmq.Read(ctx, db, q, 5*time.Minute, 1+r*3, nil)
					if err != nil {
						errs[r] = err
						return
					}
					mu.Lock()
					for _, m := range got {
						seen[m.ID]++
						if m.ReadCount != 1 {
							errs[r] = fmt.Errorf("msg %d read count %d", m.ID, m.ReadCount)
						}
					}
					mu.Unlock()
					received.Add(int64(len(got)))
				}
			}()
		}
		wg.Wait()
		for r, err := range errs {
			if err != nil {
				t.Fatalf("round %d reader %d: %v", round, r, err)
			}
		}
		for id, n := range seen {
			if n != 1 {
				t.Errorf("round %d: msg %d received %d times", round, id, n)
			}
		}
		if len(seen) != perRound || received.Load() != perRound {
			t.Fatalf("round %d: %d distinct messages in %d deliveries, want %d", round, len(seen), received.Load(), perRound)
		}
		for _, id := range sent {
			if seen[id] != 1 {
				t.Fatalf("round %d: msg %d received %d times", round, id, seen[id])
			}
		}
		if _, err := pgmq.DeleteBatch(ctx, db, q, sent); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReadWithPoll(t *testing.T) {
	t.Parallel()
	ctx, db, q := setup(t)

	t.Run("waits about max_poll_seconds when nothing arrives", func(t *testing.T) {
		start := time.Now()
		got, err := pgmq.ReadWithPoll(ctx, db, q, 30*time.Second, 1, &pgmq.PollOpts{MaxPoll: 2 * time.Second, PollInterval: 50 * time.Millisecond})
		elapsed := time.Since(start)
		if err != nil || got != nil {
			t.Fatalf("ReadWithPoll on an empty queue: %v, %v", got, err)
		}
		if elapsed < 1800*time.Millisecond || elapsed > 20*time.Second {
			t.Errorf("returned after %v, want about 2s", elapsed)
		}
	})

	t.Run("returns early when another connection sends", func(t *testing.T) {
		type result struct {
			msgs    []pgmq.Message
			err     error
			elapsed time.Duration
		}
		done := make(chan result, 1)
		start := time.Now()
		go func() {
			msgs, err := pgmq.ReadWithPoll(ctx, db, q, 30*time.Second, 5, &pgmq.PollOpts{MaxPoll: 30 * time.Second})
			done <- result{msgs, err, time.Since(start)}
		}()
		time.Sleep(300 * time.Millisecond)
		id := send(t, ctx, db, q, `{"late":true}`)
		r := <-done
		if r.err != nil {
			t.Fatal(r.err)
		}
		if diff := cmp.Diff([]int64{id}, ids(r.msgs)); diff != "" {
			t.Errorf("polled (-want +got):\n%s", diff)
		}
		if r.elapsed > 15*time.Second {
			t.Errorf("returned after %v, want well before max_poll_seconds (30s)", r.elapsed)
		}
	})

	t.Run("returns at once when a message is visible", func(t *testing.T) {
		send(t, ctx, db, q, `{"now":true}`)
		var n int
		// SQL defaults: max_poll_seconds 5, poll_interval_ms 100.
		if err := db.QueryRow(ctx, `SELECT count(*) FROM pgmq.read_with_poll('jobs', 30, 5)`).Scan(&n); err != nil || n != 1 {
			t.Errorf("read_with_poll with defaults: %d, %v; want 1", n, err)
		}
	})

	t.Run("conditional", func(t *testing.T) {
		send(t, ctx, db, q, `{"k":"no"}`)
		yes := send(t, ctx, db, q, `{"k":"yes"}`)
		got, err := pgmq.ReadWithPoll(ctx, db, q, 30*time.Second, 5, &pgmq.PollOpts{MaxPoll: time.Second, Conditional: raw(`{"k":"yes"}`)})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]int64{yes}, ids(got)); diff != "" {
			t.Errorf("conditional poll (-want +got):\n%s", diff)
		}
	})

	t.Run("cancelled context stops the wait", func(t *testing.T) {
		cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		_, err := pgmq.ReadWithPoll(cctx, db, "empty_never", 30*time.Second, 1, &pgmq.PollOpts{MaxPoll: 30 * time.Second})
		if err == nil {
			t.Fatal("no error from a poll on a missing queue")
		}
		if err := pgmq.Create(ctx, db, "idle"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err = pgmq.ReadWithPoll(cctx, db, "idle", 30*time.Second, 1, &pgmq.PollOpts{MaxPoll: 30 * time.Second})
		if err == nil || time.Since(start) > 15*time.Second {
			t.Errorf("cancelled poll: %v after %v; want an error well before 30s", err, time.Since(start))
		}
	})
}

func TestPop(t *testing.T) {
	t.Parallel()
	ctx, db, q := setup(t)
	if m, err := pgmq.Pop(ctx, db, q); err != nil || m != nil {
		t.Fatalf("Pop of an empty queue: %v, %v; want nil", m, err)
	}
	a := send(t, ctx, db, q, `{"a":1}`)
	b := send(t, ctx, db, q, `{"b":1}`)
	c := send(t, ctx, db, q, `{"c":1}`)
	d := send(t, ctx, db, q, `{"d":1}`)
	if _, err := pgmq.Send(ctx, db, q, raw(`{"later":1}`), &pgmq.SendOpts{Delay: time.Hour}); err != nil {
		t.Fatal(err)
	}
	// A message read once keeps its read count through pop.
	if _, err := pgmq.Read(ctx, db, q, 0, 1, nil); err != nil {
		t.Fatal(err)
	}
	m, err := pgmq.Pop(ctx, db, q)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&pgmq.Message{ID: a, ReadCount: 1, Message: raw(`{"a":1}`)}, m, jsonEq, ignoreTimes); diff != "" {
		t.Errorf("Pop (-want +got):\n%s", diff)
	}
	got, err := pgmq.PopBatch(ctx, db, q, 2)
	if err != nil {
		t.Fatal(err)
	}
	want := []pgmq.Message{{ID: b, Message: raw(`{"b":1}`)}, {ID: c, Message: raw(`{"c":1}`)}}
	if diff := cmp.Diff(want, got, jsonEq, ignoreTimes); diff != "" {
		t.Errorf("PopBatch (-want +got):\n%s", diff)
	}
	got, err = pgmq.PopBatch(ctx, db, q, 10)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int64{d}, ids(got)); diff != "" {
		t.Errorf("PopBatch skips invisible messages (-want +got):\n%s", diff)
	}
	var left, archived int
	if err := db.QueryRow(ctx, `SELECT (SELECT count(*) FROM pgmq.q_jobs), (SELECT count(*) FROM pgmq.a_jobs)`).Scan(&left, &archived); err != nil || left != 1 || archived != 0 {
		t.Errorf("after pops: %d left, %d archived (err %v); want 1, 0", left, archived, err)
	}
}

func TestArchiveAndDelete(t *testing.T) {
	t.Parallel()
	ctx, db, q := setup(t)
	var sent []int64
	for i := range 6 {
		sent = append(sent, send(t, ctx, db, q, fmt.Sprintf(`{"i":%d}`, i)))
	}
	if _, err := pgmq.Read(ctx, db, q, time.Minute, 1, nil); err != nil {
		t.Fatal(err)
	}

	ok, err := pgmq.Archive(ctx, db, q, sent[0])
	if err != nil || !ok {
		t.Fatalf("Archive: %v, %v; want true", ok, err)
	}
	if ok, err := pgmq.Archive(ctx, db, q, sent[0]); err != nil || ok {
		t.Errorf("Archive of an archived message: %v, %v; want false", ok, err)
	}
	if ok, err := pgmq.Archive(ctx, db, q, 999); err != nil || ok {
		t.Errorf("Archive of an unknown id: %v, %v; want false", ok, err)
	}
	got, err := pgmq.ArchiveBatch(ctx, db, q, []int64{999, sent[2], sent[1], sent[0]})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int64{sent[1], sent[2]}, got); diff != "" {
		t.Errorf("ArchiveBatch (-want +got):\n%s", diff)
	}
	if got, err := pgmq.ArchiveBatch(ctx, db, q, nil); err != nil || len(got) != 0 {
		t.Errorf("ArchiveBatch of nothing: %v, %v", got, err)
	}

	var arch []pgmq.Message
	rows, err := db.Query(ctx, `SELECT msg_id, read_ct, enqueued_at, last_read_at, vt, message, headers FROM pgmq.a_jobs WHERE archived_at IS NOT NULL ORDER BY msg_id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var m pgmq.Message
		if err := rows.Scan(&m.ID, &m.ReadCount, &m.EnqueuedAt, &m.LastReadAt, &m.VisibleAt, &m.Message, &m.Headers); err != nil {
			t.Fatal(err)
		}
		arch = append(arch, m)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	wantArch := []pgmq.Message{
		{ID: sent[0], ReadCount: 1, Message: raw(`{"i":0}`)},
		{ID: sent[1], Message: raw(`{"i":1}`)},
		{ID: sent[2], Message: raw(`{"i":2}`)},
	}
	if diff := cmp.Diff(wantArch, arch, jsonEq, ignoreTimes); diff != "" {
		t.Errorf("archive table (-want +got):\n%s", diff)
	}
	if arch[0].LastReadAt == nil {
		t.Error("archived message lost its last_read_at")
	}

	if ok, err := pgmq.Delete(ctx, db, q, sent[3]); err != nil || !ok {
		t.Errorf("Delete: %v, %v; want true", ok, err)
	}
	if ok, err := pgmq.Delete(ctx, db, q, sent[3]); err != nil || ok {
		t.Errorf("Delete of a deleted message: %v, %v; want false", ok, err)
	}
	if ok, err := pgmq.Delete(ctx, db, q, sent[0]); err != nil || ok {
		t.Errorf("Delete of an archived message: %v, %v; want false", ok, err)
	}
	got, err = pgmq.DeleteBatch(ctx, db, q, []int64{sent[5], 12345, sent[4], sent[3]})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int64{sent[4], sent[5]}, got); diff != "" {
		t.Errorf("DeleteBatch (-want +got):\n%s", diff)
	}
	var left, archived int
	if err := db.QueryRow(ctx, `SELECT (SELECT count(*) FROM pgmq.q_jobs), (SELECT count(*) FROM pgmq.a_jobs)`).Scan(&left, &archived); err != nil || left != 0 || archived != 3 {
		t.Errorf("%d left, %d archived (err %v); want 0, 3", left, archived, err)
	}
}

func TestSetVT(t *testing.T) {
	t.Parallel()
	ctx, db, q := setup(t)
	a := send(t, ctx, db, q, `{"a":1}`)
	b := send(t, ctx, db, q, `{"b":1}`)

	m, err := pgmq.SetVT(ctx, db, q, a, time.Hour)
	if err != nil || m == nil {
		t.Fatalf("SetVT: %v, %v", m, err)
	}
	if diff := cmp.Diff(&pgmq.Message{ID: a, Message: raw(`{"a":1}`)}, m, jsonEq, ignoreTimes); diff != "" {
		t.Errorf("SetVT result (-want +got):\n%s", diff)
	}
	if d := m.VisibleAt.Sub(serverNow(t, ctx, db)); d < 59*time.Minute || d > time.Hour {
		t.Errorf("vt in %v, want an hour", d)
	}
	got, err := pgmq.Read(ctx, db, q, time.Hour, 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int64{b}, ids(got)); diff != "" {
		t.Errorf("read after hiding a (-want +got):\n%s", diff)
	}
	changed, err := pgmq.SetVTBatch(ctx, db, q, []int64{b, 777, a}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int64{a, b}, ids(changed)); diff != "" {
		t.Errorf("SetVTBatch (-want +got):\n%s", diff)
	}
	got, err = pgmq.Read(ctx, db, q, time.Hour, 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int64{a, b}, ids(got)); diff != "" {
		t.Errorf("read after SetVTBatch 0 (-want +got):\n%s", diff)
	}
	if m, err := pgmq.SetVT(ctx, db, q, 777, 0); err != nil || m != nil {
		t.Errorf("SetVT of an unknown id: %v, %v; want nil", m, err)
	}
	// The timestamp overloads.
	at := time.Date(2099, 5, 6, 7, 8, 9, 0, time.UTC)
	var vt time.Time
	if err := db.QueryRow(ctx, `SELECT vt FROM pgmq.set_vt('jobs', $1::bigint, $2::timestamptz)`, a, at).Scan(&vt); err != nil || !vt.Equal(at) {
		t.Errorf("set_vt(id, timestamptz): %v, %v", vt, err)
	}
	var n int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM pgmq.set_vt('jobs', $1::bigint[], $2::timestamptz) WHERE vt = $2`, []int64{a, b}, at).Scan(&n); err != nil || n != 2 {
		t.Errorf("set_vt(ids, timestamptz): %d, %v; want 2", n, err)
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	ctx, db, q := setup(t)
	if err := pgmq.Create(ctx, db, "other"); err != nil {
		t.Fatal(err)
	}
	m, err := pgmq.QueueMetrics(ctx, db, q)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(pgmq.Metrics{QueueName: q}, m, cmpopts.IgnoreFields(pgmq.Metrics{}, "ScrapeTime")); diff != "" {
		t.Errorf("empty queue metrics (-want +got):\n%s", diff)
	}
	a := send(t, ctx, db, q, `{}`)
	send(t, ctx, db, q, `{}`)
	if _, err := pgmq.Send(ctx, db, q, raw(`{}`), &pgmq.SendOpts{Delay: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := pgmq.Delete(ctx, db, q, a); err != nil {
		t.Fatal(err)
	}
	if _, err := pgmq.Send(ctx, db, q, raw(`{}`), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `UPDATE pgmq.q_jobs SET enqueued_at = enqueued_at - interval '100 seconds' WHERE msg_id = 2`); err != nil {
		t.Fatal(err)
	}
	before := serverNow(t, ctx, db)
	m, err = pgmq.QueueMetrics(ctx, db, q)
	if err != nil {
		t.Fatal(err)
	}
	zero, hundred := 0, 100
	want := pgmq.Metrics{QueueName: q, QueueLength: 3, NewestMsgAge: &zero, OldestMsgAge: &hundred, TotalMessages: 4, VisibleLength: 2}
	ages := cmp.Comparer(func(a, b *int) bool { // ages are whole seconds of a running clock
		if a == nil || b == nil {
			return a == b
		}
		return *a-*b <= 2 && *b-*a <= 2
	})
	if diff := cmp.Diff(want, m, ages, cmpopts.IgnoreFields(pgmq.Metrics{}, "ScrapeTime")); diff != "" {
		t.Errorf("metrics (-want +got):\n%s", diff)
	}
	if m.ScrapeTime.Before(before) {
		t.Errorf("ScrapeTime %v before %v", m.ScrapeTime, before)
	}
	all, err := pgmq.MetricsAll(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	wantAll := []pgmq.Metrics{want, {QueueName: "other"}}
	if diff := cmp.Diff(wantAll, all, ages, cmpopts.IgnoreFields(pgmq.Metrics{}, "ScrapeTime")); diff != "" {
		t.Errorf("MetricsAll (-want +got):\n%s", diff)
	}
}

func TestPurgeQueue(t *testing.T) {
	t.Parallel()
	ctx, db, q := setup(t)
	if n, err := pgmq.PurgeQueue(ctx, db, q); err != nil || n != 0 {
		t.Errorf("purge of an empty queue: %d, %v", n, err)
	}
	ids, err := pgmq.SendBatch(ctx, db, q, []json.RawMessage{raw(`1`), raw(`2`), raw(`3`), raw(`4`)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pgmq.Archive(ctx, db, q, ids[0]); err != nil {
		t.Fatal(err)
	}
	n, err := pgmq.PurgeQueue(ctx, db, q)
	if err != nil || n != 3 {
		t.Fatalf("PurgeQueue: %d, %v; want 3", n, err)
	}
	m, err := pgmq.QueueMetrics(ctx, db, q)
	if err != nil {
		t.Fatal(err)
	}
	var archived int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM pgmq.a_jobs`).Scan(&archived); err != nil {
		t.Fatal(err)
	}
	if m.QueueLength != 0 || m.TotalMessages != 4 || archived != 1 {
		t.Errorf("after purge: length %d, total %d, archived %d; want 0, 4, 1", m.QueueLength, m.TotalMessages, archived)
	}
}

func listen(t *testing.T, ctx context.Context, url, queue string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	ch, err := pgmq.NotifyChannel(queue)
	if err != nil {
		t.Fatal(err)
	}
	if ch != "pgmq.q_"+strings.ToLower(queue)+".INSERT" {
		t.Fatalf("NotifyChannel = %q", ch)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	return conn
}

// waitNotify returns the next notification's channel, or "" after d.
func waitNotify(t *testing.T, ctx context.Context, conn *pgx.Conn, d time.Duration) string {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	n, err := conn.WaitForNotification(wctx)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || wctx.Err() != nil {
			return ""
		}
		t.Fatal(err)
	}
	return n.Channel
}

func TestNotifyInsert(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const q = "Mail"
	if err := pgmq.Create(ctx, db.Pool, q); err != nil {
		t.Fatal(err)
	}
	conn := listen(t, ctx, db.URL, q)

	if err := pgmq.EnableNotifyInsert(ctx, db.Pool, q, 0); err != nil {
		t.Fatal(err)
	}
	send(t, ctx, db.Pool, q, `{"n":1}`)
	if ch := waitNotify(t, ctx, conn, 10*time.Second); ch != "pgmq.q_mail.INSERT" {
		t.Fatalf("notification on %q, want pgmq.q_mail.INSERT", ch)
	}
	if _, err := pgmq.SendBatch(ctx, db.Pool, q, []json.RawMessage{raw(`1`), raw(`2`)}, nil); err != nil {
		t.Fatal(err)
	}
	if ch := waitNotify(t, ctx, conn, 10*time.Second); ch == "" {
		t.Fatal("no notification for send_batch")
	}

	// A long throttle lets the first insert through and holds the rest.
	if err := pgmq.EnableNotifyInsert(ctx, db.Pool, q, time.Hour); err != nil {
		t.Fatal(err)
	}
	send(t, ctx, db.Pool, q, `{"n":2}`)
	if ch := waitNotify(t, ctx, conn, 10*time.Second); ch == "" {
		t.Fatal("no notification for the first insert after enabling the throttle")
	}
	send(t, ctx, db.Pool, q, `{"n":3}`)
	if ch := waitNotify(t, ctx, conn, 500*time.Millisecond); ch != "" {
		t.Errorf("throttled insert notified on %q", ch)
	}

	if err := pgmq.DisableNotifyInsert(ctx, db.Pool, q); err != nil {
		t.Fatal(err)
	}
	if err := pgmq.DisableNotifyInsert(ctx, db.Pool, q); err != nil {
		t.Fatalf("second DisableNotifyInsert: %v", err)
	}
	if err := pgmq.EnableNotifyInsert(ctx, db.Pool, q, 0); err != nil {
		t.Fatal(err)
	}
	if err := pgmq.DisableNotifyInsert(ctx, db.Pool, q); err != nil {
		t.Fatal(err)
	}
	send(t, ctx, db.Pool, q, `{"n":4}`)
	if ch := waitNotify(t, ctx, conn, 500*time.Millisecond); ch != "" {
		t.Errorf("insert after DisableNotifyInsert notified on %q", ch)
	}

	// The SQL default throttle is 250ms.
	if _, err := db.Pool.Exec(ctx, `SELECT pgmq.enable_notify_insert('Mail')`); err != nil {
		t.Fatal(err)
	}
	var ms int
	if err := db.Pool.QueryRow(ctx, `SELECT throttle_interval_ms FROM pgmq.notify_insert_throttle WHERE queue_name = 'Mail'`).Scan(&ms); err != nil || ms != 250 {
		t.Errorf("default throttle %d, %v; want 250", ms, err)
	}
	if err := pgmq.EnableNotifyInsert(ctx, db.Pool, q, -time.Second); err == nil {
		t.Error("negative throttle accepted")
	}
}

func TestUnknownQueue(t *testing.T) {
	t.Parallel()
	ctx, db, _ := setup(t)
	const q = "missing"
	calls := map[string]func() error{
		"PurgeQueue":          func() error { _, err := pgmq.PurgeQueue(ctx, db, q); return err },
		"QueueMetrics":        func() error { _, err := pgmq.QueueMetrics(ctx, db, q); return err },
		"Send":                func() error { _, err := pgmq.Send(ctx, db, q, raw(`{}`), nil); return err },
		"SendBatch":           func() error { _, err := pgmq.SendBatch(ctx, db, q, []json.RawMessage{raw(`{}`)}, nil); return err },
		"Read":                func() error { _, err := pgmq.Read(ctx, db, q, time.Second, 1, nil); return err },
		"ReadWithPoll":        func() error { _, err := pgmq.ReadWithPoll(ctx, db, q, time.Second, 1, nil); return err },
		"Pop":                 func() error { _, err := pgmq.Pop(ctx, db, q); return err },
		"PopBatch":            func() error { _, err := pgmq.PopBatch(ctx, db, q, 2); return err },
		"Archive":             func() error { _, err := pgmq.Archive(ctx, db, q, 1); return err },
		"ArchiveBatch":        func() error { _, err := pgmq.ArchiveBatch(ctx, db, q, []int64{1}); return err },
		"Delete":              func() error { _, err := pgmq.Delete(ctx, db, q, 1); return err },
		"DeleteBatch":         func() error { _, err := pgmq.DeleteBatch(ctx, db, q, []int64{1}); return err },
		"SetVT":               func() error { _, err := pgmq.SetVT(ctx, db, q, 1, 0); return err },
		"SetVTBatch":          func() error { _, err := pgmq.SetVTBatch(ctx, db, q, []int64{1}, 0); return err },
		"EnableNotifyInsert":  func() error { return pgmq.EnableNotifyInsert(ctx, db, q, 0) },
		"DisableNotifyInsert": func() error { return pgmq.DisableNotifyInsert(ctx, db, q) },
		"ReadGrouped":         func() error { _, err := pgmq.ReadGrouped(ctx, db, q, time.Second, 1); return err },
		"ReadGroupedRR":       func() error { _, err := pgmq.ReadGroupedRR(ctx, db, q, time.Second, 1); return err },
		"ReadGroupedWithPoll": func() error { _, err := pgmq.ReadGroupedWithPoll(ctx, db, q, time.Second, 1, nil); return err },
		"ReadGroupedRRWithPoll": func() error {
			_, err := pgmq.ReadGroupedRRWithPoll(ctx, db, q, time.Second, 1, nil)
			return err
		},
		"CreateFIFOIndex": func() error { return pgmq.CreateFIFOIndex(ctx, db, q) },
	}
	for name, call := range calls {
		err := call()
		if !errors.Is(err, pgmq.ErrQueueNotFound) || !strings.Contains(strings.ToLower(err.Error()), `queue "missing" does not exist`) {
			t.Errorf("%s: %v; want ErrQueueNotFound naming the queue", name, err)
		}
		// pgmq's relation errors are 42P01; its enable_notify_insert raises P0001.
		code := "42P01"
		if name == "EnableNotifyInsert" {
			code = "P0001"
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != code {
			t.Errorf("%s: %v does not wrap SQLSTATE %s", name, err, code)
		}
	}
}

// noDB fails the test on any use: validation must happen before the
// database is touched.
type noDB struct{ t *testing.T }

func (d noDB) Exec(context.Context, string, ...any) (pgconn.CommandTag, error) {
	d.t.Error("database used")
	return pgconn.CommandTag{}, errors.New("no database")
}

func (d noDB) Query(context.Context, string, ...any) (pgx.Rows, error) {
	d.t.Error("database used")
	return nil, errors.New("no database")
}

func (d noDB) QueryRow(context.Context, string, ...any) pgx.Row {
	d.t.Error("database used")
	return errRow{}
}

type errRow struct{}

func (errRow) Scan(...any) error { return errors.New("no database") }

// rejectedNames are names pgmq refuses ($, ;, -- and ' anywhere, more
// than 47 characters for create) and names this package refuses besides
// (empty, NUL, invalid UTF-8: PostgreSQL text cannot hold the last two).
var rejectedNames = []string{
	"",
	"a;drop table x",
	"x'; DROP TABLE pgmq.meta; --",
	"dollar$-signed",
	"double--hyphen",
	"it's",
	strings.Repeat("a", 48),
	strings.Repeat("ü", 48),
	"nul\x00byte",
	"bad\xffutf8",
}

// acceptedNames are hostile-looking names pgmq accepts: they must work,
// quoted as identifiers everywhere, and change nothing but their own tables.
var acceptedNames = []string{
	`quote"d`,
	`x" CASCADE`,
	`x") DROP TABLE public.x CASCADE`,
	"space name",
	"queue-hyphened",
	"QueueCased",
	"dot.name",
	"pgmq.meta",
	"../../etc/passwd",
	"ünïcode",
	"tab\tname",
	"new\nline",
	"%I %L %s",
	"1",
	strings.Repeat("a", 47),
	strings.Repeat("ü", 47),
}

// TestInvalidQueueNames: every function refuses the names pgmq rejects
// before touching the database (noDB fails the test on any use), and
// ValidateQueueName accepts the names pgmq accepts.
func TestInvalidQueueNames(t *testing.T) {
	t.Parallel()
	for _, name := range acceptedNames {
		if err := pgmq.ValidateQueueName(name); err != nil {
			t.Errorf("ValidateQueueName(%q): %v; pgmq accepts it", name, err)
		}
	}
	ctx := context.Background()
	for _, name := range rejectedNames {
		t.Run(fmt.Sprintf("%q", name), func(t *testing.T) {
			db := noDB{t}
			calls := map[string]func() error{
				"Create":                    func() error { return pgmq.Create(ctx, db, name) },
				"CreateNonPartitioned":      func() error { return pgmq.CreateNonPartitioned(ctx, db, name) },
				"CreateUnlogged":            func() error { return pgmq.CreateUnlogged(ctx, db, name) },
				"CreatePartitioned":         func() error { return pgmq.CreatePartitioned(ctx, db, name, nil) },
				"ConvertArchivePartitioned": func() error { return pgmq.ConvertArchivePartitioned(ctx, db, name, nil) },
				"DetachArchive":             func() error { return pgmq.DetachArchive(ctx, db, name) },
				"CreateFIFOIndex":           func() error { return pgmq.CreateFIFOIndex(ctx, db, name) },
				"DropQueue":                 func() error { _, err := pgmq.DropQueue(ctx, db, name); return err },
				"PurgeQueue":                func() error { _, err := pgmq.PurgeQueue(ctx, db, name); return err },
				"QueueMetrics":              func() error { _, err := pgmq.QueueMetrics(ctx, db, name); return err },
				"Send":                      func() error { _, err := pgmq.Send(ctx, db, name, raw(`{}`), nil); return err },
				"SendBatch":                 func() error { _, err := pgmq.SendBatch(ctx, db, name, nil, nil); return err },
				"Read":                      func() error { _, err := pgmq.Read(ctx, db, name, 0, 1, nil); return err },
				"ReadWithPoll":              func() error { _, err := pgmq.ReadWithPoll(ctx, db, name, 0, 1, nil); return err },
				"ReadGrouped":               func() error { _, err := pgmq.ReadGrouped(ctx, db, name, 0, 1); return err },
				"ReadGroupedRR":             func() error { _, err := pgmq.ReadGroupedRR(ctx, db, name, 0, 1); return err },
				"ReadGroupedWithPoll":       func() error { _, err := pgmq.ReadGroupedWithPoll(ctx, db, name, 0, 1, nil); return err },
				"ReadGroupedRRWithPoll":     func() error { _, err := pgmq.ReadGroupedRRWithPoll(ctx, db, name, 0, 1, nil); return err },
				"Pop":                       func() error { _, err := pgmq.Pop(ctx, db, name); return err },
				"PopBatch":                  func() error { _, err := pgmq.PopBatch(ctx, db, name, 1); return err },
				"Archive":                   func() error { _, err := pgmq.Archive(ctx, db, name, 1); return err },
				"ArchiveBatch":              func() error { _, err := pgmq.ArchiveBatch(ctx, db, name, nil); return err },
				"Delete":                    func() error { _, err := pgmq.Delete(ctx, db, name, 1); return err },
				"DeleteBatch":               func() error { _, err := pgmq.DeleteBatch(ctx, db, name, nil); return err },
				"SetVT":                     func() error { _, err := pgmq.SetVT(ctx, db, name, 1, 0); return err },
				"SetVTBatch":                func() error { _, err := pgmq.SetVTBatch(ctx, db, name, nil, 0); return err },
				"EnableNotifyInsert":        func() error { return pgmq.EnableNotifyInsert(ctx, db, name, 0) },
				"DisableNotifyInsert":       func() error { return pgmq.DisableNotifyInsert(ctx, db, name) },
				"TableName":                 func() error { _, err := pgmq.TableName(name); return err },
				"ArchiveTableName":          func() error { _, err := pgmq.ArchiveTableName(name); return err },
				"NotifyChannel":             func() error { _, err := pgmq.NotifyChannel(name); return err },
			}
			for fn, call := range calls {
				if err := call(); !errors.Is(err, pgmq.ErrInvalidQueueName) {
					t.Errorf("%s: %v; want ErrInvalidQueueName", fn, err)
				}
			}
		})
	}
}

// nameCalls are the SQL functions that take a queue name.
var nameCalls = []string{
	`SELECT pgmq.create($1)`,
	`SELECT pgmq.create_non_partitioned($1)`,
	`SELECT pgmq.create_unlogged($1)`,
	`SELECT pgmq.create_partitioned($1)`,
	`SELECT pgmq.convert_archive_partitioned($1)`,
	`SELECT pgmq.detach_archive($1)`,
	`SELECT pgmq.create_fifo_index($1)`,
	`SELECT pgmq.drop_queue($1)`,
	`SELECT pgmq.drop_queue($1, true)`,
	`SELECT pgmq.purge_queue($1)`,
	`SELECT pgmq.metrics($1)`,
	`SELECT pgmq.send($1, '{}'::jsonb)`,
	`SELECT pgmq.send_batch($1, ARRAY['{}']::jsonb[])`,
	`SELECT pgmq.read($1, 1, 1)`,
	`SELECT pgmq.read_with_poll($1, 1, 1, 1, 10)`,
	`SELECT pgmq.read_grouped($1, 1, 1)`,
	`SELECT pgmq.read_grouped_rr($1, 1, 1)`,
	`SELECT pgmq.read_grouped_with_poll($1, 1, 1, 1, 10)`,
	`SELECT pgmq.read_grouped_rr_with_poll($1, 1, 1, 1, 10)`,
	`SELECT pgmq.pop($1)`,
	`SELECT pgmq.archive($1, 1::bigint)`,
	`SELECT pgmq.archive($1, ARRAY[1]::bigint[])`,
	`SELECT pgmq.delete($1, 1::bigint)`,
	`SELECT pgmq.delete($1, ARRAY[1]::bigint[])`,
	`SELECT pgmq.set_vt($1, 1::bigint, 0)`,
	`SELECT pgmq.set_vt($1, ARRAY[1]::bigint[], 0)`,
	`SELECT pgmq.enable_notify_insert($1)`,
	`SELECT pgmq.disable_notify_insert($1)`,
	`SELECT pgmq.format_table_name($1, 'q')`,
}

// TestInvalidQueueNamesSQL calls the SQL functions directly. pgmq rejects a
// name containing $, ;, -- or ' in every function with SQLSTATE P0001 ("queue
// name contains invalid characters"), before building any dynamic SQL; so do
// we, and for the empty name too. Nothing outside pgmq changes.
func TestInvalidQueueNamesSQL(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE public.x (id int); CREATE TABLE public.a (id int)`); err != nil {
		t.Fatal(err)
	}
	for _, name := range rejectedNames {
		if strings.ContainsRune(name, 0) || !utf8.ValidString(name) || utf8.RuneCountInString(name) > pgmq.MaxQueueNameLen {
			continue // not text, or checked by TestQueueNameLength
		}
		for _, sql := range nameCalls {
			_, err := db.Pool.Exec(ctx, sql, name)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "P0001" || !strings.Contains(pgErr.Message, "queue name") {
				t.Errorf("%s with %q: %v; want SQLSTATE P0001 about the queue name", sql, name, err)
			}
		}
	}
	// NULL: pgmq fails formatting a NULL identifier (22004); so do we.
	for _, sql := range nameCalls {
		if strings.Contains(sql, "format_table_name") || strings.Contains(sql, "detach_archive") || strings.Contains(sql, "drop_queue($1, true)") {
			continue // these return NULL, warn, or report, as pgmq's do
		}
		_, err := db.Pool.Exec(ctx, sql, nil)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "22004" {
			t.Errorf("%s with NULL: %v; want SQLSTATE 22004", sql, err)
		}
	}
	var tables, queues int
	err := db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_tables WHERE schemaname IN ('public', 'pgmq')), (SELECT count(*) FROM pgmq.meta)`).Scan(&tables, &queues)
	if err != nil || tables != 4 || queues != 0 {
		t.Errorf("after hostile calls: %d tables, %d queues (err %v); want public.x, public.a, pgmq.meta, pgmq.notify_insert_throttle and no queues", tables, queues, err)
	}
}

// TestTransactionsAndConns runs calls on a transaction and on a plain
// connection: the DBTX contract.
func TestTransactionsAndConns(t *testing.T) {
	t.Parallel()
	ctx, pool, q := setup(t)
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	send(t, ctx, tx, q, `{"rolled":"back"}`)
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		send(t, ctx, tx, q, `{"kept":true}`)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	got, err := pgmq.Read(ctx, conn.Conn(), q, time.Minute, 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]pgmq.Message{{ID: 2, ReadCount: 1, Message: raw(`{"kept":true}`)}}, got, jsonEq, ignoreTimes); diff != "" {
		t.Errorf("after rollback and commit (-want +got):\n%s", diff)
	}
}
