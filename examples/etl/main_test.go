package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quantumflow/qflow/examples/etl/etl"
	"github.com/quantumflow/qflow/internal/pgtest"
)

// TestRunTwice runs the command twice on the same database with a small
// source: both runs succeed, show progress and the same summary.
func TestRunTwice(t *testing.T) {
	db := pgtest.New(t)
	t.Setenv("DATABASE_URL", db.URL)
	src := filepath.Join(t.TempDir(), "small.csv")
	data := strings.Join(etl.Columns, ",") + "\n" +
		"A-1,2024-01-02,west,toys,kite,2,3.50\n" +
		"A-2,2024-01-03,east,books,atlas,1,20\n" +
		"A-3,2024-01-04,east,books,novel,3,9.99\n" +
		"A-4,someday,east,books,novel,3,9.99\n" +
		"A-5,2024-01-04,east,books\n"
	if err := os.WriteFile(src, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for round := 1; round <= 2; round++ {
		var out, errOut bytes.Buffer
		if err := run(ctx, []string{"-source", src}, &out, &errOut); err != nil {
			t.Fatalf("round %d: %v\nstdout:\n%s\nstderr:\n%s", round, err, &out, &errOut)
		}
		for _, want := range []string{
			"parse     completed  5/5 tasks",
			"load      completed",
			"5 rows, 3 valid, 2 rejected.",
			"books            2       4          49.97",
			"total            3       6          56.97",
			"Rejected rows by problem: date 1, field count 1",
			"etl_category_totals has 2 rows and etl_rejects 2 for this source; etl_loads has 1 source(s).",
		} {
			if !strings.Contains(squash(out.String()), squash(want)) {
				t.Errorf("round %d: output lacks %q:\n%s", round, want, &out)
			}
		}
		if errOut.Len() > 0 {
			t.Errorf("round %d: stderr:\n%s", round, &errOut)
		}
	}
}

// squash collapses runs of spaces, so the checks ignore column widths.
func squash(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.Join(strings.Fields(l), " ")
	}
	return strings.Join(lines, "\n")
}

func TestMoney(t *testing.T) {
	for cents, want := range map[int64]string{0: "0.00", 5: "0.05", 123456: "1,234.56", -100000000: "-1,000,000.00"} {
		if got := money(cents); got != want {
			t.Errorf("money(%d) = %q, want %q", cents, got, want)
		}
	}
}
