package etl_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/quantumflow/qflow/examples/etl/etl"
	"github.com/quantumflow/qflow/internal/pgtest"
	"github.com/quantumflow/qflow/runtime"
)

// Start a run with per-run options, re-attach to it by id (as another
// process would, knowing only the id) and read every step's typed output,
// intermediate steps included, from the generated view.
func ExampleGetEtlRun() {
	db, done := pgtest.ForExample()
	defer done()
	ctx := context.Background()
	etl.SetDatabase(db.Pool)

	dir, _ := os.MkdirTemp("", "etl")
	defer os.RemoveAll(dir)
	src := filepath.Join(dir, "small.csv")
	err := os.WriteFile(src, []byte("order_id,date,region,category,product,quantity,unit_price\n"+
		"SO-1,2024-03-08,west,clothing,hat,3,7.95\n"+
		"SO-2,2024-05-21,east,garden,rake,7,32.27\n"+
		"SO-3,2024-05-22,east,garden,hose,x,12.00\n"), 0o666)
	if err != nil {
		fmt.Println(err)
		return
	}

	c := runtime.NewClient(db.Pool, &runtime.ClientOptions{Logger: quiet})
	defer c.Close()
	w := runtime.NewWorker(db.Pool, &runtime.WorkerOptions{Logger: quiet})
	if err := etl.RegisterEtl(w); err != nil {
		fmt.Println(err)
		return
	}
	wctx, stop := context.WithCancel(ctx)
	stopped := make(chan error, 1)
	go func() { stopped <- w.Run(wctx) }()
	defer func() { stop(); <-stopped }()

	// The options are a trailing argument: StartEtl(ctx, c, in) works too.
	run, err := etl.StartEtl(ctx, c, etl.Input{Source: src}, &runtime.StartOptions{Timeout: time.Minute})
	if err != nil {
		fmt.Println(err)
		return
	}
	id := run.ID // all another process needs

	again, err := etl.EtlRunByID(ctx, c, id)
	if err != nil {
		fmt.Println(err)
		return
	}
	if _, err := again.Wait(ctx); err != nil {
		fmt.Println(err)
		return
	}
	v, err := again.View(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("run:", v.Status)
	fmt.Println("extract:", v.Steps.Extract.Status, len(v.Steps.Extract.Output), "records")
	p := v.Steps.Parse // a map step: one task and one output per record
	fmt.Println("parse:", p.Status, p.TasksDone, "of", p.TaskCount, "tasks;", "record 3:", p.Output[2].Problem)
	for _, t := range v.Steps.Totals.Output {
		fmt.Printf("totals: %s %d orders, %d units\n", t.Category, t.Orders, t.Units)
	}
	fmt.Println("quality:", v.Steps.Quality.Output.Valid, "valid,", v.Steps.Quality.Output.Rejected, "rejected")
	fmt.Println("load:", v.Output.Load.RevenueCents, "cents")
	// Output:
	// run: completed
	// extract: completed 3 records
	// parse: completed 3 of 3 tasks; record 3: quantity: "x" is not a positive whole number
	// totals: clothing 1 orders, 3 units
	// totals: garden 1 orders, 7 units
	// quality: 2 valid, 1 rejected
	// load: 24974 cents
}
