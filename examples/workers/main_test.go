package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/quantumflow/qflow/internal/pgtest"
)

// TestMain lets the test binary be a worker process too: run starts copies
// of its own executable, which here is the test binary.
func TestMain(m *testing.M) {
	if os.Getenv(envRole) == "worker" {
		if err := worker(context.Background(), os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "worker:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestWorkers runs the program briefly: three worker processes share one
// queue, the run's output is right and every task was run by one of them.
func TestWorkers(t *testing.T) {
	db := pgtest.New(t)
	t.Setenv("DATABASE_URL", db.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	if err := run(ctx, []string{"-n", "3", "-items", "120", "-work", "20ms", "-concurrency", "2"}, &out, &errOut); err != nil {
		t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, &out, &errOut)
	}
	t.Logf("output:\n%s", &out)
	// The sum of the squares of 0..119.
	if want := `output {"sum": 568820}`; !bytes.Contains(out.Bytes(), []byte(want)) {
		t.Errorf("output lacks %q", want)
	}
	counts := regexp.MustCompile(`(?m)^  w\d \(pid \d+\): (\d+) render tasks$`).FindAllStringSubmatch(out.String(), -1)
	if len(counts) != 3 {
		t.Fatalf("want a line per worker process, got %q", counts)
	}
	total, busy := 0, 0
	for _, c := range counts {
		n, _ := strconv.Atoi(c[1])
		total += n
		if n > 0 {
			busy++
		}
	}
	if total != 120 || busy < 2 {
		t.Errorf("%d tasks over %d busy processes; want 120 over at least 2", total, busy)
	}
	if errOut.Len() > 0 {
		t.Errorf("stderr:\n%s", &errOut)
	}
}
