// Command etlworker is the example ETL flow's worker as a long-running
// service: the shape docs/production.md deploys with deploy/Dockerfile and
// deploy/qflow-worker.service. It serves flow "etl" until SIGTERM or
// SIGINT, then shuts down gracefully: it stops claiming, lets running
// handlers finish within QFLOW_SHUTDOWN_TIMEOUT, records their results and
// releases the rest to other workers.
//
// It is configured by its environment only:
//
//	DATABASE_URL             the server (required), e.g. postgres://app@db/app?pool_max_conns=12
//	QFLOW_CONCURRENCY        handlers run at once (default 32)
//	QFLOW_SHUTDOWN_TIMEOUT   how long a shutdown waits for handlers (default 30s)
//	QFLOW_LOG_LEVEL          debug, info, warn or error (default info); logs are JSON on standard error
//
// It does not migrate: the deploy pipeline runs `qflow migrate` first.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/quantumflow/qflow/examples/etl/etl"
	"github.com/quantumflow/qflow/runtime"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "etlworker:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, getenv func(string) string) error {
	var level slog.Level
	if s := getenv("QFLOW_LOG_LEVEL"); s != "" {
		if err := level.UnmarshalText([]byte(s)); err != nil {
			return fmt.Errorf("QFLOW_LOG_LEVEL: %w", err)
		}
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	url := getenv("DATABASE_URL")
	if url == "" {
		return errors.New("DATABASE_URL is not set")
	}
	opts := &runtime.WorkerOptions{Logger: log}
	if s := getenv("QFLOW_CONCURRENCY"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			return fmt.Errorf("QFLOW_CONCURRENCY: want a positive number, got %q", s)
		}
		opts.Concurrency = n
	}
	if s := getenv("QFLOW_SHUTDOWN_TIMEOUT"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return fmt.Errorf("QFLOW_SHUTDOWN_TIMEOUT: want a positive duration, got %q", s)
		}
		opts.ShutdownTimeout = d
	}
	// Tracing and metrics: set opts.TracerProvider and opts.MeterProvider
	// to your OpenTelemetry SDK providers (see "Observability" in README.md).

	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return err
	}
	defer pool.Close()
	etl.SetDatabase(pool)
	w := runtime.NewWorker(pool, opts)
	if err := etl.RegisterEtl(w); err != nil {
		return err
	}
	return w.Run(ctx)
}
