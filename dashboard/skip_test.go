package dashboard_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/quantumflow/qflow/dashboard"
	"github.com/quantumflow/qflow/internal/pgtest"
	"github.com/quantumflow/qflow/runtime"
)

// TestDashboardSkippedSteps: a run with a step skipped by its condition,
// one skipped with it and an optional step that failed shows each as
// skipped, in the step list and the DAG, with why; the flow page marks
// conditional and optional steps and the skips a step takes.
func TestDashboardSkippedSteps(t *testing.T) {
	db := pgtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	quiet := slog.New(slog.DiscardHandler)
	client := runtime.NewClient(db.Pool, &runtime.ClientOptions{Logger: quiet})
	defer client.Close()
	def, err := runtime.NewFlow("triage").
		Step("classify", runtime.StepDef{TakesInput: true}).
		Step("quarantine", runtime.StepDef{DependsOn: []string{"classify"},
			When: func(context.Context, json.RawMessage) (bool, error) { return false, nil }}).
		Step("alert", runtime.StepDef{DependsOn: []string{"quarantine"}}).
		Step("enrich", runtime.StepDef{DependsOn: []string{"classify"}, Optional: true,
			Options: runtime.StepOptions{Retries: runtime.NoRetries}}).
		Step("report", runtime.StepDef{DependsOn: []string{"classify", "quarantine", "enrich"},
			AcceptsSkipped: []string{"quarantine", "enrich"}}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	ok := func(context.Context, *runtime.Task) (json.RawMessage, error) { return json.RawMessage(`"ok"`), nil }
	w := runtime.NewWorker(db.Pool, &runtime.WorkerOptions{Logger: quiet, PollInterval: 50 * time.Millisecond})
	err = w.Register(def, map[string]runtime.Handler{"classify": ok, "quarantine": ok, "alert": ok, "report": ok,
		"enrich": func(context.Context, *runtime.Task) (json.RawMessage, error) {
			return nil, errors.New("enrichment down")
		}})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	h, err := client.StartFlow(ctx, def, "mail", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.Wait(ctx)
	stop()
	if werr := <-done; err != nil || werr != nil {
		t.Fatalf("run: %v; worker: %v", err, werr)
	}

	dh, err := dashboard.New(client, &dashboard.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer dh.Close()
	srv := httptest.NewServer(dh)
	defer srv.Close()
	get := func(path string) string {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d\n%s", path, resp.StatusCode, b)
		}
		return string(b)
	}
	run := get("/runs/" + h.ID.String())
	for _, want := range []string{
		`id="step-quarantine" data-status="skipped"`, "Skipped: its condition was false.",
		`id="step-alert" data-status="skipped"`, "Skipped: skipped with quarantine.",
		`id="step-enrich" data-status="skipped"`, "Skipped: optional step failed.", "enrichment down",
		`<g class="node st-skipped" id="node-alert"`, `class="badge st-skipped"`,
		`id="run-status" data-status="completed"`,
	} {
		if !strings.Contains(run, want) {
			t.Errorf("run page: no %q", want)
		}
	}
	flow := get("/flows/triage")
	for _, want := range []string{"single, when", "single, optional", "classify, quarantine?, enrich?", "quarantine (when)", "s_enrich -- or skipped --&gt; s_report"} {
		if !strings.Contains(flow, want) {
			t.Errorf("flow page: no %q", want)
		}
	}
	css := get("/assets/app.css")
	if !strings.Contains(css, ".st-skipped") {
		t.Error("app.css has no style for skipped steps")
	}
}
