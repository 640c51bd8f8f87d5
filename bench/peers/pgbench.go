package main

// W0: the server's floor, measured with pgbench's built-in "simple update"
// script (-N: one UPDATE of pgbench_accounts, one SELECT, one INSERT into
// pgbench_history per transaction) on a scale-1 database of its own.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
)

// findPgbench returns the pgbench to run: the -pgbench flag, else pgbench on
// PATH, else the newest one in a Debian-style PostgreSQL install.
func findPgbench(given string) (string, error) {
	if given != "" {
		p, err := exec.LookPath(given)
		if err != nil {
			return "", fmt.Errorf("-pgbench %s: %w", given, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath("pgbench"); err == nil {
		return p, nil
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pgbench")
	// Newest major version first: compare the version directories as numbers.
	version := func(p string) int {
		v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(p))))
		return v
	}
	slices.SortFunc(found, func(a, b string) int { return version(b) - version(a) })
	for _, p := range found {
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errors.New("pgbench not found on PATH nor in a PostgreSQL bin directory; install PostgreSQL's client tools or pass -pgbench")
}

// pgbenchCase is W0 with the given number of clients: 8 for the server's
// throughput floor (TPS), 1 for the latency of one small write transaction.
func pgbenchCase(clients int) func(ctx context.Context, c *config, rep int) (Result, error) {
	return func(ctx context.Context, c *config, rep int) (Result, error) {
		var r Result
		err := c.withDatabase(ctx, "pgbench", func(pool *pgxpool.Pool) error {
			cc := pool.Config().ConnConfig
			env := append(os.Environ(), "PGHOST="+cc.Host, "PGPORT="+strconv.Itoa(int(cc.Port)), "PGUSER="+cc.User, "PGDATABASE="+cc.Database)
			if cc.Password != "" {
				env = append(env, "PGPASSWORD="+cc.Password)
			}
			sh := func(args ...string) (string, error) {
				cmd := exec.CommandContext(ctx, c.pgbench, args...)
				cmd.Env = env
				b, err := cmd.CombinedOutput()
				if err != nil {
					return "", fmt.Errorf("pgbench %s: %v\n%s", strings.Join(args, " "), err, b)
				}
				return string(b), nil
			}
			if _, err := sh("-i", "-q"); err != nil {
				return err
			}
			if err := c.checkpoint(ctx); err != nil {
				return err
			}
			secs := c.pgbenchSeconds
			if clients == 1 {
				secs = max(1, secs/2)
			}
			args := []string{"-n", "-N", "-c", strconv.Itoa(clients), "-j", strconv.Itoa(min(clients, 2)), "-T", strconv.Itoa(secs)}
			m := startMeter()
			out, err := sh(args...)
			if err != nil {
				return err
			}
			r.Runs = int(grab(out, `number of transactions actually processed: (\d+)`))
			r.Tasks = r.Runs
			m.finish(&r)
			r.TasksPerSec = grab(out, `tps = ([\d.]+)`)
			r.RunsPerSec = r.TasksPerSec
			r.MeanMs = grab(out, `latency average = ([\d.]+) ms`)
			if r.TasksPerSec == 0 {
				return fmt.Errorf("no tps in pgbench's output:\n%s", out)
			}
			r.Settings = "pgbench " + strings.Join(args, " ") + " (scale 1, fresh database)"
			return nil
		})
		return r, err
	}
}

func grab(s, re string) float64 {
	if m := regexp.MustCompile(re).FindStringSubmatch(s); m != nil {
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	return 0
}
