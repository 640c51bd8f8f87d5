package dashboard_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/quantumflow/qflow/dashboard"
	"github.com/quantumflow/qflow/internal/pgtest"
	"github.com/quantumflow/qflow/runtime"
)

// findBrowser returns a Chromium binary, or skips the test (fails it when
// QFLOW_REQUIRE_BROWSER=1, as .ci/run sets).
func findBrowser(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("QFLOW_REQUIRE_BROWSER") == "1" {
		t.Fatal("no chromium binary on $PATH and QFLOW_REQUIRE_BROWSER=1: install Debian's chromium package")
	}
	t.Skip("no chromium binary on $PATH (apt-get install chromium); set QFLOW_REQUIRE_BROWSER=1 to fail instead")
	return ""
}

// TestDashboardBrowser drives headless Chromium against a real server: a
// run's slow step turns from started to completed on its page without a
// reload, and another run is cancelled with its page's button. With
// QFLOW_SCREENSHOTS=DIR it saves dashboard-overview.png and
// dashboard-run.png there.
func TestDashboardBrowser(t *testing.T) {
	browser := findBrowser(t)
	db := pgtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	quiet := slog.New(slog.DiscardHandler)
	client := runtime.NewClient(db.Pool, &runtime.ClientOptions{Logger: quiet})
	defer client.Close()

	// Some history for the overview: a completed and a failed report.
	rdef, rhandlers := reportFlow(t)
	// The flow under watch: fetch, then a map whose tasks wait for the test
	// to release them, then a summary.
	def, err := runtime.NewFlow("nightly_import").
		Step("fetch", runtime.StepDef{TakesInput: true}).
		MapStep("crunch", "fetch", runtime.StepOptions{Timeout: time.Minute}).
		Step("publish", runtime.StepDef{DependsOn: []string{"crunch"}}).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	handlers := map[string]runtime.Handler{
		"fetch": func(ctx context.Context, task *runtime.Task) (json.RawMessage, error) {
			return json.RawMessage(`["orders.csv","refunds.csv","stock.csv"]`), nil
		},
		"crunch": func(ctx context.Context, task *runtime.Task) (json.RawMessage, error) {
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return json.RawMessage(`{"rows":1200}`), nil
		},
		"publish": func(ctx context.Context, task *runtime.Task) (json.RawMessage, error) {
			return json.RawMessage(`"published"`), nil
		},
	}
	w := runtime.NewWorker(db.Pool, &runtime.WorkerOptions{Logger: quiet, PollInterval: 100 * time.Millisecond})
	if err := w.Register(def, handlers); err != nil {
		t.Fatal(err)
	}
	if err := w.Register(rdef, rhandlers); err != nil {
		t.Fatal(err)
	}
	wctx, stopWorker := context.WithCancel(ctx)
	wdone := make(chan error, 1)
	go func() { wdone <- w.Run(wctx) }()
	defer func() {
		stopWorker()
		if err := <-wdone; err != nil {
			t.Error(err)
		}
	}()
	for _, items := range [][]string{{"a", "b"}, {"a", "bad"}, {"c"}} {
		h, err := client.StartFlow(ctx, rdef, map[string]any{"items": items}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.Wait(ctx); err != nil && !errors.Is(err, runtime.ErrRunFailed) {
			t.Fatal(err)
		}
	}
	watched, err := client.StartFlow(ctx, def, map[string]string{"date": "2025-06-01"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	doomed, err := client.StartFlow(ctx, def, map[string]string{"date": "2025-06-02"}, nil)
	if err != nil {
		t.Fatal(err)
	}

	h, err := dashboard.New(client, &dashboard.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	defer h.Close()
	_ = http.StatusOK

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 860),
	)
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()

	shots := os.Getenv("QFLOW_SCREENSHOTS")
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
			png, err := chromedp.FullScreenshot(100)(ctx, t)
			if err != nil {
				return chromedp.Void{}, err
			}
			return chromedp.Void{}, os.WriteFile(filepath.Join(shots, name), png, 0o644)
		}
	}

	// js runs a script whose value is a boolean, for its effect.
	js := func(expr string) chromedp.Action[chromedp.Void] {
		return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
			_, err := chromedp.Evaluate[bool](expr)(ctx, t)
			return chromedp.Void{}, err
		}
	}

	// The watched run: its map step is started; mark the page so a reload
	// would show, then let the tasks finish and wait for the page to say
	// completed.
	runURL := srv.URL + "/runs/" + watched.ID.String()
	if err := chromedp.Do(bctx,
		chromedp.Navigate(runURL),
		chromedp.WaitReady(chromedp.CSS(`#node-crunch[data-status="started"]`)),
		js(`window.qflowMarker = true`),
		chromedp.Sleep(300*time.Millisecond),
	); err != nil {
		t.Fatalf("run page with a started step: %v", err)
	}
	close(release)
	if err := chromedp.Do(bctx,
		chromedp.WaitReady(chromedp.CSS(`#node-crunch[data-status="completed"]`)),
		chromedp.WaitReady(chromedp.CSS(`#run-status[data-status="completed"]`)),
		chromedp.WaitReady(chromedp.CSS(`#node-publish[data-status="completed"]`)),
	); err != nil {
		t.Fatalf("waiting for the step to complete on the page: %v", err)
	}
	marker, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`window.qflowMarker === true`))
	if err != nil || !marker {
		t.Fatal("the run page was reloaded; it should update in place")
	}
	if _, err := watched.Wait(ctx); err != nil {
		t.Fatal(err)
	}

	// The doomed run has completed too (its tasks were released): start a
	// fresh one that waits, and cancel it from its page.
	if _, err := doomed.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	hold, _ := runtime.NewFlow("approval").Step("wait_for_sign_off", runtime.StepDef{TakesInput: true}).Build()
	victim, err := client.StartFlow(ctx, hold, map[string]string{"invoice": "INV-2041"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The page replaces its live part as the run moves, so a node found a
	// moment ago may be gone: a step that fails on that is tried again
	// (the click happens last in its step, so it is never made twice).
	if err := chromedp.Do(bctx, chromedp.Navigate(srv.URL+"/runs/"+victim.ID.String())); err != nil {
		t.Fatalf("opening the run page: %v", err)
	}
	for _, step := range [][]chromedp.Action[chromedp.Void]{
		{chromedp.WaitVisible(chromedp.CSS(`#cancel-run`)), chromedp.Click(chromedp.CSS(`#cancel-run`))},
		{chromedp.WaitReady(chromedp.CSS(`#run-status[data-status="cancelled"]`)),
			chromedp.WaitReady(chromedp.CSS(`#node-wait_for_sign_off[data-status="cancelled"]`))},
	} {
		if err := retryStaleNode(func() error { return chromedp.Do(bctx, step...) }); err != nil {
			t.Fatalf("cancelling from the run page: %v", err)
		}
	}
	r, err := client.GetRun(ctx, victim.ID)
	if err != nil || r.Status != runtime.StatusCancelled {
		t.Fatalf("after the button: %v, %v", r, err)
	}

	// Screenshots: a run in progress and the overview.
	if shots != "" {
		release2 := make(chan struct{})
		defer close(release2)
		show, err := client.StartFlow(ctx, rdef, map[string]any{"items": []string{"x", "bad", "y"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := show.Wait(ctx); !errors.Is(err, runtime.ErrRunFailed) {
			t.Fatal(err)
		}
		if err := chromedp.Do(bctx,
			chromedp.Navigate(runURL),
			chromedp.WaitReady(chromedp.CSS(`#run-status`)),
			js(`document.querySelectorAll("details.step").forEach(d => d.open = true), true`),
			shot("dashboard-run.png"),
			chromedp.Navigate(srv.URL+"/"),
			chromedp.WaitReady(chromedp.CSS(`.cards`)),
			shot("dashboard-overview.png"),
		); err != nil {
			t.Fatal(err)
		}
	}
}

// retryStaleNode runs f up to three times while it fails because a node it
// had found left the page (Chromium's "Could not find node with given id").
func retryStaleNode(f func() error) error {
	err := f()
	for i := 0; i < 2 && err != nil && strings.Contains(err.Error(), "Could not find node with given id"); i++ {
		err = f()
	}
	return err
}
