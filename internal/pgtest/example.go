package pgtest

import (
	"fmt"
	"os"
	"testing"
)

// exampleTB lets an Example use the harness, which wants a testing.TB:
// failures print and exit (an error found by a cleanup, once the cleanups
// have run), cleanups run when the returned function is called. Only the
// methods this package calls are implemented.
type exampleTB struct {
	testing.TB
	cleanups []func()
	failed   bool
}

func (*exampleTB) Helper()             {}
func (e *exampleTB) Cleanup(f func())  { e.cleanups = append(e.cleanups, f) }
func (*exampleTB) Logf(string, ...any) {}
func (e *exampleTB) Fatal(args ...any) { e.Fatalf("%s", fmt.Sprint(args...)) }
func (e *exampleTB) Errorf(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "example database: "+f+"\n", a...)
	e.failed = true
}
func (e *exampleTB) Fatalf(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "example database: "+f+"\n", a...)
	e.done()
	os.Exit(1)
}

func (e *exampleTB) done() {
	cleanups := e.cleanups
	e.cleanups = nil
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	if e.failed {
		os.Exit(1)
	}
}

// ForExample returns a fresh migrated database for a runnable Example,
// which has no *testing.T, and a function that drops it. It exits the
// process with a message when no database can be had.
func ForExample() (*DB, func()) {
	tb := &exampleTB{}
	return New(tb), tb.done
}
