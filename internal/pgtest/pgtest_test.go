package pgtest

import (
	"context"
	"strings"
	"testing"
)

// recordTB is a testing.TB whose cleanups run when the test says, and
// whose errors are recorded rather than reported.
type recordTB struct {
	testing.TB
	cleanups []func()
	errs     []string
}

func (r *recordTB) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }
func (r *recordTB) Errorf(f string, a ...any) {
	r.errs = append(r.errs, f)
	r.TB.Logf(f, a...)
}

func (r *recordTB) cleanup() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

// A test that leaves a row breaking the engine's rules fails when its
// database is dropped; one that leaves none does not.
func TestCleanupChecksInvariants(t *testing.T) {
	for _, broken := range []bool{false, true} {
		r := &recordTB{TB: t}
		db := New(r)
		if broken {
			if _, err := db.Pool.Exec(context.Background(), `INSERT INTO qflow.step_states (run_id, step_idx, flow_id, status)
				VALUES (gen_random_uuid(), 0, 1, 'bogus')`); err != nil {
				t.Fatal(err)
			}
		}
		r.cleanup()
		if got := strings.Join(r.errs, "\n"); broken != strings.Contains(got, "qflow.invariant_violations") || (!broken && got != "") {
			t.Errorf("broken row %v: errors %q", broken, got)
		}
	}
}
