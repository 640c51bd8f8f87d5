package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// config is the parsed command line.
type config struct {
	server *pgxpool.Config // the maintenance database; per-case pools copy it

	peers, workloads, variants []string // filters; empty keeps all

	reps, slots, poolMax int
	runs, seqRuns, fan   int
	poll                 time.Duration
	pgbenchSeconds       int
	pgbenchFlag, pgbench string // as given; as found
	timeout              time.Duration
	out                  string
}

// setServer parses url and applies the -pghost, -pgport and -pguser overrides.
func (c *config) setServer(url, host string, port uint16, user string) error {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return fmt.Errorf("DATABASE_URL: %w", err)
	}
	cc := cfg.ConnConfig
	if host != "" {
		cc.Host, cc.Fallbacks = host, nil
	}
	if port != 0 {
		cc.Port, cc.Fallbacks = port, nil
	}
	if user != "" {
		cc.User = user
	}
	c.server = cfg
	return nil
}

func (c *config) admin(ctx context.Context) (*pgx.Conn, error) {
	return pgx.ConnectConfig(ctx, c.server.ConnConfig.Copy())
}

// withDatabase creates a database for peer, runs f with a pool of -poolmax
// connections on it, then drops it.
func (c *config) withDatabase(ctx context.Context, peer string, f func(pool *pgxpool.Pool) error) error {
	name := fmt.Sprintf("bench_%s_%d", peer, os.Getpid())
	ident := pgx.Identifier{name}.Sanitize()
	admin, err := c.admin(ctx)
	if err != nil {
		return err
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
		return err
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+ident); err != nil {
		return err
	}
	defer admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)")
	cfg := c.server.Copy()
	cfg.ConnConfig.Database = name
	cfg.MaxConns = int32(c.poolMax)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	return f(pool)
}

// checkpoint makes every repetition start from a similar WAL state.
func (c *config) checkpoint(ctx context.Context) error {
	admin, err := c.admin(ctx)
	if err != nil {
		return err
	}
	defer admin.Close(context.Background())
	_, err = admin.Exec(ctx, "CHECKPOINT")
	return err
}

// describe returns the lines that head the table: what ran where, with which settings.
func (c *config) describe(ctx context.Context) ([]string, error) {
	admin, err := c.admin(ctx)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	defer admin.Close(context.Background())
	var version string
	if err := admin.QueryRow(ctx, "SHOW server_version").Scan(&version); err != nil {
		return nil, err
	}
	cc := c.server.ConnConfig
	where := cc.Host
	if strings.HasPrefix(where, "/") {
		where += " (unix socket)"
	} else {
		where = fmt.Sprintf("%s:%d", where, cc.Port)
	}
	pgbench := c.pgbench
	if pgbench == "" {
		pgbench = "not used"
	}
	return []string{
		fmt.Sprintf("%s; PostgreSQL %s at %s; %s %s/%s, %d CPUs; pgbench: %s",
			time.Now().UTC().Format("2006-01-02 15:04 UTC"), version, where, runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), pgbench),
		fmt.Sprintf("-reps %d -slots %d -poolmax %d -runs %d -seqruns %d -fan %d -poll %s -pgbench-seconds %d",
			c.reps, c.slots, c.poolMax, c.runs, c.seqRuns, c.fan, c.poll, c.pgbenchSeconds),
	}, nil
}
