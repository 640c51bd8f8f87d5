package runtime_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	qflow "github.com/quantumflow/qflow/runtime"
)

// FuzzEventPayload: whatever error text a handler returns (quotes,
// newlines, NUL bytes, invalid UTF-8, megabytes), the events published for
// the failing task and run are valid JSON under NOTIFY's 8000-byte limit,
// and the run fails with the error stored.
func FuzzEventPayload(f *testing.F) {
	for _, s := range []string{
		"boom", "", `"},{"type":"workflow_completed"`, "line1\nline2\ttab\\", "nul\x00byte", "bad\xffutf8",
		strings.Repeat("é", 5000), strings.Repeat("x", 100_000), "\u2028\u2029</script>", strings.Repeat("\U0001F600", 3000),
	} {
		f.Add(s)
	}
	e := newEnv(f)
	def := single("evfuzz", qflow.StepOptions{Retries: qflow.NoRetries})
	e.startWorker(def, map[string]qflow.Handler{"only": func(_ context.Context, task *qflow.Task) (json.RawMessage, error) {
		var msg string
		if err := json.Unmarshal(task.Input, &struct{ Run *string }{&msg}); err != nil {
			return nil, err
		}
		return nil, qflow.Permanent(errors.New(msg))
	}}, &qflow.WorkerOptions{PollInterval: 20 * time.Millisecond})
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.db.URL)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(ctx, "LISTEN "+qflow.EventsChannel); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		// The message travels as the flow input: a Go string always encodes.
		h, err := e.client.StartFlow(ctx, def, strings.ToValidUTF8(msg, "\uFFFD"), nil)
		if err != nil {
			if errors.Is(err, qflow.ErrBadInput) {
				return // e.g. too large: refused up front, which is the point
			}
			t.Fatal(err)
		}
		types := map[string]bool{}
		for !types["workflow_failed"] {
			n, err := conn.WaitForNotification(ctx)
			if err != nil {
				t.Fatalf("waiting for events of run %s (saw %v): %v", h.ID, types, err)
			}
			if len(n.Payload) >= 8000 || !json.Valid([]byte(n.Payload)) {
				t.Fatalf("payload of %d bytes, valid=%v: %.200q", len(n.Payload), json.Valid([]byte(n.Payload)), n.Payload)
			}
			var evs []struct {
				Type  string `json:"type"`
				RunID string `json:"run_id"`
				Error string `json:"error"`
			}
			if err := json.Unmarshal([]byte(n.Payload), &evs); err != nil {
				t.Fatal(err)
			}
			for _, ev := range evs {
				if ev.RunID == h.ID.String() {
					types[ev.Type] = true
				}
			}
		}
		if !types["task_failed"] {
			t.Errorf("events %v: no task_failed", types)
		}
		_, err = h.Wait(ctx)
		var re *qflow.RunError
		if !errors.As(err, &re) || re.Status != qflow.StatusFailed {
			t.Fatalf("Wait: %v", err)
		}
	})
}

// FuzzStartRunInput: any bytes given as a flow input are either stored
// unchanged in meaning, or refused with ErrBadInput before anything is
// written; PostgreSQL never sees a document it would reject.
func FuzzStartRunInput(f *testing.F) {
	for _, s := range []string{
		`{"source":"s3://bucket/key"}`, `[1,2,3]`, `"x"`, `null`, `{"a":"\u0000"}`, `"\ud800"`, "\"\xc3\x28\"",
		`1e131072`, `1e-16384`, `{"a":1,"a":2}`, `{"'; DROP TABLE qflow.runs; --":"$$"}`, `[` + strings.Repeat(`[`, 300) + strings.Repeat(`]`, 301),
		`0.1000000000000000055511151231257827`, `-0`, `{"\ud83d\ude00":"\u00e9"}`, `not json`,
	} {
		f.Add([]byte(s))
	}
	e := newEnv(f)
	ctx := context.Background()
	if _, err := e.client.DefineFlow(ctx, single("infuzz", qflow.StepOptions{})); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var before int
		if err := e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM qflow.runs`).Scan(&before); err != nil {
			t.Fatal(err)
		}
		id, err := e.client.StartRun(ctx, "infuzz", json.RawMessage(b), nil)
		if err != nil {
			if !errors.Is(err, qflow.ErrBadInput) {
				t.Fatalf("StartRun(%q): %v; want ErrBadInput", b, err)
			}
			var after int
			if err := e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM qflow.runs`).Scan(&after); err != nil || after != before {
				t.Fatalf("a refused input left %d runs behind (%v)", after-before, err)
			}
			return
		}
		run, err := e.client.GetRun(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		var want, got any
		if json.Unmarshal(b, &want) != nil || json.Unmarshal(run.Input, &got) != nil {
			return // numbers beyond float64: compared by PostgreSQL only
		}
		if !reflect.DeepEqual(want, got) {
			t.Fatalf("stored %s for input %s", run.Input, b)
		}
	})
}
