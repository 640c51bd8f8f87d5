package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"

	"github.com/quantumflow/qflow/internal/pgtest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := start(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "optimize example:", err)
		os.Exit(1)
	}
}

// start parses the flags, makes a fresh database (on the server named by
// DATABASE_URL, the local server, or a throwaway cluster; dropped on
// exit) and measures.
func start(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("optimize", flag.ContinueOnError)
	scale := fs.Float64("scale", 1, "multiply every step duration by this (the hang's configured 10s timeout excepted)")
	runs := fs.Int("runs", 5, "measured runs per scenario and level")
	only := fs.String("scenarios", "", "comma-separated scenarios to run: critical, hang, stragglers (default all)")
	levels := fs.String("levels", "", "comma-separated levels to measure: off, basic, advanced, aggressive (default each scenario's)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *scale <= 0 || *runs < 1 {
		return fmt.Errorf("-scale must be positive and -runs at least 1")
	}
	cfg := config{scale: *scale, runs: *runs}
	if *only != "" {
		cfg.scenarios = strings.Split(*only, ",")
	}
	if *levels != "" {
		var err error
		if cfg.levels, err = parseLevels(*levels); err != nil {
			return err
		}
	}
	db, done := pgtest.ForExample()
	defer done()
	return run(ctx, db.Pool, out, cfg)
}
