package main

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestMeasures runs every scenario briefly (steps 20 times shorter, one
// run per level; the hang at basic only, since at off it waits out a 10s
// timeout) and checks the effects that do not depend on timing noise:
// the tables are printed and the aggressive level hedged.
func TestMeasures(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out strings.Builder
	err := start(ctx, []string{"-scale", "0.05", "-runs", "2", "-levels", "basic,advanced,aggressive"}, &out)
	t.Logf("output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"critical: 12 side tasks", "hang: fetch", "stragglers: 3 stages", "advanced", "aggressive"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("output lacks %q", s)
		}
	}
	m := regexp.MustCompile(`(?m)^  aggressive .*\((\d+) hedges in`).FindStringSubmatch(out.String())
	if m == nil || m[1] == "0" {
		t.Errorf("the aggressive level hedged no straggler (%q)", m)
	}
}
