package triage

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/quantumflow/qflow/gen"
	"github.com/quantumflow/qflow/internal/pgtest"
	"github.com/quantumflow/qflow/runtime"
	"github.com/quantumflow/qflow/runtime/notify"
)

var quietLog = slog.New(slog.DiscardHandler)

// TestGeneratedIsCurrent fails when qflow_gen.go or qflow_triage.mmd is not
// what qflowgen would write now (fix: go generate ./examples/triage/...).
func TestGeneratedIsCurrent(t *testing.T) {
	results, diags := gen.Generate(context.Background(), ".", nil, []string{"."}, gen.Options{Mermaid: true})
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	for _, r := range results {
		stale, err := r.Stale()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range stale {
			t.Errorf("%s is stale: run go generate ./examples/triage/...", f.Path)
		}
	}
}

// setup returns a client on a fresh database, with a worker running the
// flow with handlers (the generated ones when nil) until the test ends.
func setup(t *testing.T, handlers map[string]runtime.Handler) (*pgtest.DB, *runtime.Client) {
	t.Helper()
	db := pgtest.New(t)
	c := runtime.NewClient(db.Pool, &runtime.ClientOptions{Logger: quietLog})
	t.Cleanup(c.Close)
	startWorker(t, db, handlers)
	return db, c
}

func startWorker(t *testing.T, db *pgtest.DB, handlers map[string]runtime.Handler) {
	t.Helper()
	if handlers == nil {
		handlers = qflowTriageHandlers()
	}
	w := runtime.NewWorker(db.Pool, &runtime.WorkerOptions{Logger: quietLog, PollInterval: 50 * time.Millisecond})
	if err := w.Register(TriageFlow, handlers); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	})
}

// statuses maps each step of a view to its status.
func statuses(v *TriageRunView) map[string]string {
	s := v.Steps
	return map[string]string{
		"classify": s.Classify.Status, "quarantine": s.Quarantine.Status, "notify_security": s.NotifySecurity.Status,
		"links": s.Links.Status, "scan_link": s.ScanLink.Status, "page": s.Page.Status,
		"lookup_customer": s.LookupCustomer.Status, "file": s.File.Status,
	}
}

// TestTriage runs the generated flow on PostgreSQL for tickets that take
// different paths: false conditions skip their steps and the steps that
// need them (a map step among them), File gets nil for each skipped
// dependency and a value for each that ran, the optional lookup's failure
// is skipped and kept, the run completes every time, and the typed output
// has nil for the skipped leaf.
func TestTriage(t *testing.T) {
	_, c := setup(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const done, skipped = "completed", "skipped"
	for _, tc := range []struct {
		name     string
		ticket   Ticket
		file     Filed
		notified bool
		steps    map[string]string
	}{
		{"plain", Ticket{ID: "1", From: "grace@example.com", Subject: "Question", Body: "How do I export?"},
			Filed{Queue: "normal", Customer: "Grace (team)"}, false,
			map[string]string{"classify": done, "quarantine": skipped, "notify_security": skipped, "links": skipped,
				"scan_link": skipped, "page": skipped, "lookup_customer": done, "file": done}},
		{"urgent with links", Ticket{ID: "2", From: "ada@example.com", Subject: "Site down", Body: "see https://status.example and http://x.example"},
			Filed{Queue: "urgent", Customer: "Ada (enterprise)", Notes: []string{"unsafe link http://x.example", "paged on-call"}}, false,
			map[string]string{"classify": done, "quarantine": skipped, "notify_security": skipped, "links": done,
				"scan_link": done, "page": done, "lookup_customer": done, "file": done}},
		{"spam from a stranger", Ticket{ID: "3", From: "x@spam.example", Subject: "Site down", Body: "$$$"},
			Filed{Queue: "spam", Notes: []string{"quarantined as q-3"}}, true,
			map[string]string{"classify": done, "quarantine": done, "notify_security": done, "links": skipped,
				"scan_link": skipped, "page": skipped, "lookup_customer": skipped, "file": done}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run, err := StartTriage(ctx, c, tc.ticket)
			if err != nil {
				t.Fatal(err)
			}
			out, err := run.Wait(ctx)
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if diff := cmp.Diff(tc.file, out.File); diff != "" {
				t.Errorf("File (-want +got):\n%s", diff)
			}
			if (out.NotifySecurity != nil) != tc.notified {
				t.Errorf("NotifySecurity = %v; want set: %v", out.NotifySecurity, tc.notified)
			}
			v, err := GetTriageRun(ctx, c, run.ID)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.steps, statuses(v)); v.Status != done || diff != "" {
				t.Errorf("run %s, steps (-want +got):\n%s", v.Status, diff)
			}
			if v.Output == nil || !cmp.Equal(*v.Output, out) {
				t.Errorf("view output %+v; Wait gave %+v", v.Output, out)
			}
			if q := v.Steps.Quarantine; q.Status == skipped && (q.Output != "" || q.Error != "" || q.TaskCount != 1 || q.Tasks[0].Status != skipped) {
				t.Errorf("quarantine, skipped by its condition: %+v", q)
			}
			if s := v.Steps.ScanLink; s.Status == skipped && (s.Output != nil || s.TaskCount != 0) {
				t.Errorf("scan_link, skipped with links: %+v", s)
			}
			if l := v.Steps.LookupCustomer; l.Status == skipped &&
				(l.Error != tc.ticket.From+": no customer with this address" || l.Attempts != 2 || l.TasksFailed != 1) {
				t.Errorf("lookup_customer, an optional step that failed: %+v", l)
			}
			raw, err := c.GetRun(ctx, run.ID)
			if err != nil {
				t.Fatal(err)
			}
			var keys map[string]json.RawMessage
			if err := json.Unmarshal(raw.Output, &keys); err != nil {
				t.Fatal(err)
			}
			if _, ok := keys["notify_security"]; ok != tc.notified {
				t.Errorf("run output %s: key notify_security present %v; want %v", raw.Output, ok, tc.notified)
			}
		})
	}
}

// TestTriageEvents: the skips of a run reach listeners as step_skipped,
// the optional step's with its error, and the run ends with
// workflow_completed.
func TestTriageEvents(t *testing.T) {
	db, c := setup(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l, err := notify.Listen(ctx, db.Pool, &notify.ListenOptions{Logger: quietLog}, notify.EventsChannel)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	run, err := StartTriage(ctx, c, Ticket{ID: "9", From: "nobody@example.com", Subject: "hi", Body: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	skips := map[string]string{}
	for {
		var m notify.Message
		select {
		case m = <-l.C():
		case <-ctx.Done():
			t.Fatalf("no workflow_completed; step_skipped so far: %v", skips)
		}
		if m.Event == nil || m.Event.RunID != run.ID {
			continue
		}
		if m.Event.Type == notify.StepSkipped {
			skips[m.Event.Step] = m.Event.Error
		}
		if m.Event.Type.Terminal() {
			if m.Event.Type != notify.WorkflowCompleted {
				t.Fatalf("terminal event %s", m.Event)
			}
			break
		}
	}
	want := map[string]string{"quarantine": "", "notify_security": "", "links": "", "scan_link": "", "page": "",
		"lookup_customer": "nobody@example.com: no customer with this address"}
	if diff := cmp.Diff(want, skips); diff != "" {
		t.Errorf("step_skipped events, step -> error (-want +got):\n%s", diff)
	}
}

// TestTriageResume: a run that failed after some steps were skipped
// resumes with ResumeTriage (the definition, with its conditions, matches
// the stored one); what was skipped stays skipped, and the step that
// failed runs again.
func TestTriageResume(t *testing.T) {
	db := pgtest.New(t)
	c := runtime.NewClient(db.Pool, &runtime.ClientOptions{Logger: quietLog})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	broken := qflowTriageHandlers()
	broken["file"] = func(context.Context, *runtime.Task) (json.RawMessage, error) {
		return nil, runtime.Permanent(errors.New("filing cabinet locked"))
	}
	wctx, stop := context.WithCancel(ctx)
	w := runtime.NewWorker(db.Pool, &runtime.WorkerOptions{Logger: quietLog, PollInterval: 50 * time.Millisecond})
	if err := w.Register(TriageFlow, broken); err != nil {
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- w.Run(wctx) }()
	run, err := StartTriage(ctx, c, Ticket{ID: "5", From: "nobody@example.com", Subject: "hi", Body: "$$$"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := run.Wait(ctx); !errors.Is(err, runtime.ErrRunFailed) {
		t.Fatalf("first run: %v; want failed at file", err)
	}
	stop()
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}

	startWorker(t, db, nil)
	again, err := ResumeTriage(ctx, c, run.ID)
	if err != nil {
		t.Fatal(err)
	}
	out, err := again.Wait(ctx)
	if err != nil {
		t.Fatalf("resumed run: %v", err)
	}
	if out.File.Queue != "spam" || out.File.Customer != "" || out.NotifySecurity == nil {
		t.Errorf("resumed output %+v", out)
	}
	v, err := again.View(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v.Steps.LookupCustomer.Status != "skipped" || v.Steps.LookupCustomer.Attempts != 2 || v.Steps.Page.Status != "skipped" ||
		v.Steps.File.Status != "completed" || v.Steps.Quarantine.Attempts != 1 {
		t.Errorf("after the resume: lookup_customer %s (%d attempts), page %s, file %s, quarantine %d attempts",
			v.Steps.LookupCustomer.Status, v.Steps.LookupCustomer.Attempts, v.Steps.Page.Status, v.Steps.File.Status, v.Steps.Quarantine.Attempts)
	}
}
