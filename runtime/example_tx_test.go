package runtime_test

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"

	"github.com/quantumflow/qflow/runtime"
)

// Starting a run inside your own transaction: the run exists, and workers
// see its tasks, only if the transaction commits, so a row and the work
// that follows from it are never one without the other.
func ExampleClient_StartFlowTx() {
	pool, done := exampleDatabase()
	defer done()
	ctx := context.Background()

	if _, err := pool.Exec(ctx, `CREATE TABLE orders (id integer PRIMARY KEY, item text NOT NULL)`); err != nil {
		fmt.Println(err)
		return
	}
	def, err := runtime.NewFlow("ship_order").Step("ship", runtime.StepDef{TakesInput: true}).Build()
	if err != nil {
		fmt.Println(err)
		return
	}
	type order struct {
		ID   int    `json:"id"`
		Item string `json:"item"`
	}
	handlers := map[string]runtime.Handler{
		"ship": runtime.HandlerFunc(func(ctx context.Context, in struct {
			Run order `json:"run"`
		}) (string, error) {
			return fmt.Sprintf("order %d (%s) shipped", in.Run.ID, in.Run.Item), nil
		}),
	}

	client := runtime.NewClient(pool, nil)
	defer client.Close()
	w := runtime.NewWorker(pool, &runtime.WorkerOptions{Logger: slog.New(slog.DiscardHandler)})
	if err := w.Register(def, handlers); err != nil {
		fmt.Println(err)
		return
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go w.Run(wctx)

	// place inserts an order and starts its run in one transaction.
	place := func(o order, commit bool) error {
		tx, err := pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx) // a no-op after Commit
		if _, err := tx.Exec(ctx, `INSERT INTO orders (id, item) VALUES ($1, $2)`, o.ID, o.Item); err != nil {
			return err
		}
		h, err := client.StartFlowTx(ctx, tx, def, o, nil)
		if err != nil {
			return err
		}
		if !commit {
			return tx.Rollback(ctx) // say, a later check failed
		}
		if err := tx.Commit(ctx); err != nil {
			return err
		}
		out, err := h.Wait(ctx)
		fmt.Println(string(out), err)
		return nil
	}
	if err := place(order{ID: 1, Item: "book"}, true); err != nil {
		fmt.Println(err)
	}
	if err := place(order{ID: 2, Item: "lamp"}, false); err != nil {
		fmt.Println(err)
	}

	runs, err := client.ListRuns(ctx, runtime.ListRunsParams{Flow: "ship_order"})
	if err != nil {
		fmt.Println(err)
		return
	}
	rows, err := pool.Query(ctx, `SELECT item FROM orders ORDER BY id`)
	if err != nil {
		fmt.Println(err)
		return
	}
	items, err := pgx.CollectRows(rows, pgx.RowTo[string])
	fmt.Println("runs:", len(runs), "orders:", items, err)
	// Output:
	// {"ship": "order 1 (book) shipped"} <nil>
	// runs: 1 orders: [book] <nil>
}
