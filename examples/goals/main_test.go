package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/quantumflow/qflow/internal/pgtest"
)

func TestExampleRuns(t *testing.T) {
	db := pgtest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out strings.Builder
	if err := run(ctx, db.Pool, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, s := range []string{"12 tasks, 2 sub-goals", "subgraph", "start  login/sessions/revoke", "done   release", "run completed", "Final: wrote: Release notes (after docs, tests)"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("output lacks %q:\n%s", s, out.String())
		}
	}
}
