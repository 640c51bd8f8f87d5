package triage_test

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/quantumflow/qflow/examples/triage"
	"github.com/quantumflow/qflow/internal/pgtest"
	"github.com/quantumflow/qflow/runtime"
)

var quiet = slog.New(slog.DiscardHandler)

// Conditional and optional steps in generated code: a ticket that is
// neither spam nor urgent and has no links skips Quarantine, Links and
// Page (their conditions are false), and NotifySecurity and ScanLink with
// them; its sender is no customer, so LookupCustomer, which is optional,
// fails and is skipped too. The run completes: File, which takes every
// skippable step as a pointer, runs with nils. The typed view shows which
// steps were skipped and keeps the optional step's failure.
func ExampleRunTriage() {
	db, done := pgtest.ForExample()
	defer done()
	ctx := context.Background()

	c := runtime.NewClient(db.Pool, &runtime.ClientOptions{Logger: quiet})
	defer c.Close()
	w := runtime.NewWorker(db.Pool, &runtime.WorkerOptions{Logger: quiet})
	if err := triage.RegisterTriage(w); err != nil {
		fmt.Println(err)
		return
	}
	wctx, stop := context.WithCancel(ctx)
	stopped := make(chan error, 1)
	go func() { stopped <- w.Run(wctx) }()
	defer func() { stop(); <-stopped }()

	run, err := triage.StartTriage(ctx, c, triage.Ticket{ID: "T-1", From: "bob@example.com", Subject: "Invoice", Body: "Where is my invoice?"})
	if err != nil {
		fmt.Println(err)
		return
	}
	out, err := run.Wait(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("filed in %q, customer %q, security notified: %v\n", out.File.Queue, out.File.Customer, out.NotifySecurity != nil)

	v, err := run.View(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("run:", v.Status)
	fmt.Println("quarantine:", v.Steps.Quarantine.Status)
	fmt.Println("notify_security:", v.Steps.NotifySecurity.Status)
	fmt.Println("scan_link:", v.Steps.ScanLink.Status)
	l := v.Steps.LookupCustomer
	fmt.Printf("lookup_customer: %s after %d attempts: %s\n", l.Status, l.Attempts, l.Error)
	fmt.Println("file:", v.Steps.File.Status)

	// Spam with a link: Quarantine, NotifySecurity, Links and ScanLink run.
	out, err = triage.RunTriage(ctx, c, triage.Ticket{ID: "T-2", From: "ada@example.com", Subject: "WIN",
		Body: "$$$ click http://win.example now"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("filed in %q, customer %q, notes %q\n", out.File.Queue, out.File.Customer, out.File.Notes)
	fmt.Println(*out.NotifySecurity)
	// Output:
	// filed in "normal", customer "", security notified: false
	// run: completed
	// quarantine: skipped
	// notify_security: skipped
	// scan_link: skipped
	// lookup_customer: skipped after 2 attempts: bob@example.com: no customer with this address
	// file: completed
	// filed in "spam", customer "Ada (enterprise)", notes ["quarantined as q-T-2" "unsafe link http://win.example"]
	// security notified of q-T-2
}
