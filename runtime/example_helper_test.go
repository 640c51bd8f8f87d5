package runtime_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/quantumflow/qflow/internal/pgtest"
)

// exampleTB lets an Example use the pgtest harness, which wants a
// testing.TB: failures exit, cleanups run when done is called. Only the
// methods pgtest calls are implemented.
type exampleTB struct {
	testing.TB
	cleanups []func()
}

func (*exampleTB) Helper()             {}
func (e *exampleTB) Cleanup(f func())  { e.cleanups = append(e.cleanups, f) }
func (*exampleTB) Logf(string, ...any) {}
func (e *exampleTB) Fatal(args ...any) { e.Fatalf("%s", fmt.Sprint(args...)) }
func (e *exampleTB) Fatalf(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "example database: "+f+"\n", a...)
	e.done()
	os.Exit(1)
}

func (e *exampleTB) done() {
	for i := len(e.cleanups) - 1; i >= 0; i-- {
		e.cleanups[i]()
	}
	e.cleanups = nil
}

// exampleDatabase returns a pool on a fresh migrated database (on the
// server pgtest finds, or a throwaway cluster) and a function that drops
// it. In real code the pool is your own *pgxpool.Pool.
func exampleDatabase() (*pgxpool.Pool, func()) {
	tb := &exampleTB{}
	db := pgtest.New(tb)
	return db.Pool, tb.done
}
