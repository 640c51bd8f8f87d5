package notify_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/quantumflow/qflow/internal/pgtest"
	"github.com/quantumflow/qflow/runtime/notify"
	"github.com/quantumflow/qflow/runtime/pgmq"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// next returns the next message, failing the test after d.
func next(t *testing.T, l *notify.Listener, d time.Duration) notify.Message {
	t.Helper()
	select {
	case m, ok := <-l.C():
		if !ok {
			t.Fatal("listener channel closed")
		}
		return m
	case <-time.After(d):
		t.Fatalf("no message within %s", d)
	}
	return notify.Message{}
}

// none asserts that nothing arrives for d.
func none(t *testing.T, l *notify.Listener, d time.Duration) {
	t.Helper()
	select {
	case m := <-l.C():
		t.Fatalf("unexpected message %+v", m)
	case <-time.After(d):
	}
}

func TestListenReconnectsAfterTerminateAndReportsGap(t *testing.T) {
	db := pgtest.New(t)
	ctx := ctxT(t, 30*time.Second)
	l, err := notify.Listen(ctx, db.Pool, &notify.ListenOptions{MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}, "jobs", "Other.Channel")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := notify.NotifyOnly(ctx, db.Pool, "jobs", "one"); err != nil {
		t.Fatal(err)
	}
	if m := next(t, l, 5*time.Second); m.Channel != "jobs" || m.Payload != "one" || m.Gap || m.Event != nil {
		t.Fatalf("got %+v", m)
	}
	pid := l.BackendPID()
	if pid == 0 || !l.Connected() {
		t.Fatalf("pid %d connected %v", pid, l.Connected())
	}
	var ok bool
	if err := db.Pool.QueryRow(ctx, `SELECT pg_terminate_backend($1::integer)`, int32(pid)).Scan(&ok); err != nil || !ok {
		t.Fatalf("terminate: %v %v", ok, err)
	}
	m := next(t, l, 10*time.Second)
	if !m.Gap || m.Err == nil {
		t.Fatalf("want a gap with the connection error, got %+v", m)
	}
	if !l.Connected() || l.BackendPID() == pid || l.BackendPID() == 0 {
		t.Fatalf("after the gap: connected %v, pid %d (was %d)", l.Connected(), l.BackendPID(), pid)
	}
	// Both channels are listened on again, case preserved.
	if err := notify.NotifyOnly(ctx, db.Pool, "Other.Channel", "two"); err != nil {
		t.Fatal(err)
	}
	if m := next(t, l, 5*time.Second); m.Channel != "Other.Channel" || m.Payload != "two" {
		t.Fatalf("got %+v", m)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, open := <-l.C(); open {
		t.Fatal("C still open after Close")
	}
	if l.Connected() {
		t.Fatal("connected after Close")
	}
}

func TestListenStopsWithContext(t *testing.T) {
	db := pgtest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	l, err := notify.Listen(ctx, db.Pool, nil, "jobs")
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case _, open := <-l.C():
		if open {
			t.Fatal("message after cancel")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("C not closed after the context ended")
	}
	l.Close() // idempotent after the context ended
}

func TestSlowConsumerGetsGapWithDroppedCount(t *testing.T) {
	db := pgtest.New(t)
	ctx := ctxT(t, 30*time.Second)
	l, err := notify.Listen(ctx, db.Pool, &notify.ListenOptions{Buffer: 2}, "jobs")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := range 10 {
		if err := notify.NotifyOnly(ctx, db.Pool, "jobs", strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond) // let all ten arrive while nobody reads
	var got []string
	dropped := 0
	for len(got)+dropped < 10 {
		m := next(t, l, 5*time.Second)
		if m.Gap {
			dropped += m.Dropped
			got = append(got, "gap")
			continue
		}
		got = append(got, m.Payload)
	}
	if want := "0 1 gap"; strings.Join(got, " ") != want || dropped != 8 {
		t.Fatalf("got %v, dropped %d; want %s, dropped 8", got, dropped, want)
	}
	// Delivery resumes.
	if err := notify.NotifyOnly(ctx, db.Pool, "jobs", "after"); err != nil {
		t.Fatal(err)
	}
	if m := next(t, l, 5*time.Second); m.Payload != "after" {
		t.Fatalf("got %+v", m)
	}
}

func TestSendWithNotifyIsAtomic(t *testing.T) {
	db := pgtest.New(t)
	ctx := ctxT(t, 30*time.Second)
	if err := pgmq.Create(ctx, db.Pool, "jobs"); err != nil {
		t.Fatal(err)
	}
	ch, err := notify.QueueChannel("jobs")
	if err != nil {
		t.Fatal(err)
	}
	l, err := notify.Listen(ctx, db.Pool, nil, ch)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	// Inside the caller's transaction, rolled back: neither message nor notification.
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := notify.SendWithNotify(ctx, tx, "jobs", []byte(`{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	none(t, l, 300*time.Millisecond)
	if m, err := pgmq.QueueMetrics(ctx, db.Pool, "jobs"); err != nil || m.QueueLength != 0 {
		t.Fatalf("after rollback: %+v %v", m, err)
	}

	// Committed: the notification carries the message id.
	id, err := notify.SendWithNotify(ctx, db.Pool, "jobs", []byte(`{"n":2}`))
	if err != nil {
		t.Fatal(err)
	}
	if m := next(t, l, 5*time.Second); m.Channel != ch || m.Payload != strconv.FormatInt(id, 10) {
		t.Fatalf("got %+v, want payload %d", m, id)
	}
	if m, err := pgmq.QueueMetrics(ctx, db.Pool, "jobs"); err != nil || m.QueueLength != 1 {
		t.Fatalf("after commit: %+v %v", m, err)
	}

	// A failed send (unknown queue) sends no notification either.
	if _, err := notify.SendWithNotify(ctx, db.Pool, "nope", []byte(`{}`)); err == nil {
		t.Fatal("send to a missing queue succeeded")
	}
	if _, err := notify.SendWithNotify(ctx, db.Pool, "bad;name", []byte(`{}`)); !errors.Is(err, pgmq.ErrInvalidQueueName) {
		t.Fatalf("invalid queue: %v", err)
	}
	none(t, l, 200*time.Millisecond)
}

func TestChannelAndPayloadValidation(t *testing.T) {
	db := pgtest.New(t)
	ctx := ctxT(t, 10*time.Second)
	for _, bad := range []string{"", "1abc", "a b", `x"; DROP TABLE t; --`, strings.Repeat("a", 64), "é"} {
		if err := notify.ValidateChannel(bad); !errors.Is(err, notify.ErrInvalidChannel) {
			t.Errorf("ValidateChannel(%q) = %v", bad, err)
		}
		if err := notify.NotifyOnly(ctx, db.Pool, bad, "x"); !errors.Is(err, notify.ErrInvalidChannel) {
			t.Errorf("NotifyOnly(%q) = %v", bad, err)
		}
		if _, err := notify.Listen(ctx, db.Pool, nil, bad); !errors.Is(err, notify.ErrInvalidChannel) {
			t.Errorf("Listen(%q) = %v", bad, err)
		}
	}
	for _, good := range []string{"jobs", "qflow_events", "pgmq.q_x.INSERT", "a:b-c$d", strings.Repeat("a", 63)} {
		if err := notify.ValidateChannel(good); err != nil {
			t.Errorf("ValidateChannel(%q) = %v", good, err)
		}
	}
	if err := notify.NotifyOnly(ctx, db.Pool, "jobs", strings.Repeat("x", notify.MaxPayloadBytes)); err != nil {
		t.Errorf("payload at the limit: %v", err)
	}
	if err := notify.NotifyOnly(ctx, db.Pool, "jobs", strings.Repeat("x", notify.MaxPayloadBytes+1)); !errors.Is(err, notify.ErrPayloadTooLarge) {
		t.Errorf("payload over the limit: %v", err)
	}
	if _, err := notify.Listen(ctx, db.Pool, nil); err == nil {
		t.Error("Listen without channels succeeded")
	}
}

func TestParseEventAndFilters(t *testing.T) {
	run := uuid.New()
	e, err := notify.ParseEvent(`{"type":"task_failed","run_id":"` + run.String() + `","flow":"etl","step":"load","task_index":3,"status":"failed","attempt":2,"will_retry":false,"duration_ms":7,"error":"boom","error_truncated":true,"ts":"2026-11-26T14:23:00.123456Z","future_field":1}`)
	if err != nil {
		t.Fatal(err)
	}
	if e.Type != notify.TaskFailed || e.RunID != run || e.TaskIdx() != 3 || e.Attempt != 2 || e.WillRetry ||
		e.DurationMS != 7 || e.Error != "boom" || !e.ErrorTruncated || e.Time.Nanosecond() != 123456000 {
		t.Fatalf("decoded %+v", e)
	}
	if e.Level().String() != "ERROR" || !notify.OfType(notify.TaskFailed)(e) || notify.ForFlow("other")(e) || !notify.ForRun(run)(e) {
		t.Fatal("level or predicates wrong")
	}
	for _, bad := range []string{"", "x", `{"type":"workflow_started"}`, `{"run_id":"` + run.String() + `"}`} {
		if _, err := notify.ParseEvent(bad); !errors.Is(err, notify.ErrNotEvent) {
			t.Errorf("ParseEvent(%q) = %v", bad, err)
		}
	}
	if !notify.WorkflowCancelled.Terminal() || notify.StepFailed.Terminal() || notify.WorkflowResumed.Terminal() {
		t.Fatal("Terminal wrong")
	}
	r, err := notify.ParseEvent(`{"type":"workflow_resumed","run_id":"` + run.String() + `","flow":"f","status":"started","resume":2}`)
	if err != nil || r.Type != notify.WorkflowResumed || r.Resume != 2 || r.Level().String() != "INFO" {
		t.Fatalf("workflow_resumed decoded %+v, %v", r, err)
	}
	if got := fmt.Sprint(r.Attrs()); !strings.Contains(got, "resume=2") {
		t.Fatalf("workflow_resumed attrs %s", got)
	}
}

func TestParseEventsBatches(t *testing.T) {
	a, b := uuid.New(), uuid.New()
	evs, err := notify.ParseEvents(`[{"type":"task_started","run_id":"` + a.String() + `","flow":"f","step":"s","task_index":0,"attempt":1},` +
		`{"type":"workflow_completed","run_id":"` + b.String() + `","flow":"f","duration_ms":4}]`)
	if err != nil || len(evs) != 2 || evs[0].Type != notify.TaskStarted || evs[0].RunID != a || evs[0].TaskIdx() != 0 ||
		evs[1].Type != notify.WorkflowCompleted || evs[1].RunID != b || evs[1].DurationMS != 4 {
		t.Fatalf("ParseEvents = %+v, %v", evs, err)
	}
	for _, bad := range []string{"[]", "[1]", `[{"type":"task_started","run_id":"` + a.String() + `"},{"type":"task_started"}]`,
		`[{"run_id":"` + a.String() + `"}]`, `[{"type":"task_started","run_id":"` + a.String() + `"}`} {
		if _, err := notify.ParseEvents(bad); !errors.Is(err, notify.ErrNotEvent) {
			t.Errorf("ParseEvents(%q) = %v", bad, err)
		}
	}
}

// TestListenKeepsOnlyTypes: with ListenOptions.Types, a listener delivers
// only the engine events of those types (whether or not the type comes
// first in the object), and other channels' notifications as they are.
func TestListenKeepsOnlyTypes(t *testing.T) {
	db := pgtest.New(t)
	ctx := ctxT(t, 10*time.Second)
	l, err := notify.Listen(ctx, db.Pool, &notify.ListenOptions{Types: []notify.EventType{notify.WorkflowCompleted, notify.WorkflowFailed}},
		notify.EventsChannel, "other")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a, b := uuid.New(), uuid.New()
	batch := `[{"type":"task_started","run_id":"` + a.String() + `","flow":"f","step":"s","task_index":0,"attempt":1},` +
		`{"type":"workflow_completed","run_id":"` + a.String() + `","flow":"f"},` +
		`{"type":"step_completed","run_id":"` + b.String() + `","flow":"f","step":"s"},` +
		`{"run_id":"` + b.String() + `","flow":"f","error":"x","type":"workflow_failed"}]`
	if _, err := db.Pool.Exec(ctx, `SELECT pg_notify($1, $2), pg_notify('other', 'hello'),
		pg_notify($1, '{"type":"workflow_started","run_id":"`+b.String()+`","flow":"f"}')`, notify.EventsChannel, batch); err != nil {
		t.Fatal(err)
	}
	var got []string
	for range 3 {
		m := next(t, l, 5*time.Second)
		if m.Event != nil {
			got = append(got, string(m.Event.Type)+" "+m.Event.RunID.String())
		} else {
			got = append(got, m.Channel+" "+m.Payload)
		}
	}
	want := []string{"workflow_completed " + a.String(), "workflow_failed " + b.String(), "other hello"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got %q, want %q", got, want)
	}
	none(t, l, 200*time.Millisecond)
}

// TestListenTypesSplitsBatches: with ListenOptions.Types a batch is split
// without decoding the events it drops; strings holding brackets, braces,
// quotes and commas do not confuse the split, and a payload that is not an
// array of objects is delivered raw.
func TestListenTypesSplitsBatches(t *testing.T) {
	db := pgtest.New(t)
	ctx := ctxT(t, 10*time.Second)
	l, err := notify.Listen(ctx, db.Pool, &notify.ListenOptions{Types: []notify.EventType{notify.WorkflowFailed}}, notify.EventsChannel)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a := uuid.New()
	tricky := `{"type":"task_failed","run_id":"` + a.String() + `","flow":"f","error":"x\"}],[{\\ ,[\"}"}`
	batch := ` [ ` + tricky + ` , {"type":"workflow_failed","run_id":"` + a.String() + `","flow":"f","error":"}{\"]"} ] `
	for _, p := range []string{batch, `[1, 2]`, `[{"type":"workflow_failed"`, `[{"type":"workflow_failed","run_id":"` + a.String() + `"},]`} {
		if _, err := db.Pool.Exec(ctx, `SELECT pg_notify($1, $2)`, notify.EventsChannel, p); err != nil {
			t.Fatal(err)
		}
	}
	m := next(t, l, 5*time.Second)
	if m.Event == nil || m.Event.Type != notify.WorkflowFailed || m.Event.Error != `}{"]` {
		t.Fatalf("first message %+v, want the workflow_failed event", m)
	}
	for _, raw := range []string{`[1, 2]`, `[{"type":"workflow_failed"`, `[{"type":"workflow_failed","run_id":"` + a.String() + `"},]`} {
		if m := next(t, l, 5*time.Second); m.Event != nil || m.Payload != raw {
			t.Fatalf("message %+v, want %q delivered raw", m, raw)
		}
	}
	none(t, l, 200*time.Millisecond)
}
