package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pgbench is W0: the server's floor for a small write transaction.
func pgbench(ctx context.Context, c config) (map[string]float64, error) {
	cfg, err := pgx.ParseConfig(c.url)
	if err != nil {
		return nil, err
	}
	m := map[string]float64{}
	_, err = withDatabase(ctx, c.url, func(pool *pgxpool.Pool) (map[string]float64, error) {
		db := pool.Config().ConnConfig.Database
		env := append(os.Environ(), "PGHOST="+cfg.Host, "PGPORT="+strconv.Itoa(int(cfg.Port)), "PGUSER="+cfg.User)
		if cfg.Password != "" {
			env = append(env, "PGPASSWORD="+cfg.Password)
		}
		sh := func(args ...string) (string, error) {
			cmd := exec.CommandContext(ctx, "pgbench", append(args, db)...)
			cmd.Env = env
			b, err := cmd.CombinedOutput()
			if err != nil {
				return "", fmt.Errorf("pgbench %v: %v\n%s", args, err, b)
			}
			return string(b), nil
		}
		if _, err := sh("-i", "-q"); err != nil {
			return nil, err
		}
		o, err := sh("-N", "-c", "8", "-j", "2", "-T", strconv.Itoa(c.pgbenchT))
		if err != nil {
			return nil, err
		}
		m["tps_c8"] = grab(o, `tps = ([\d.]+)`)
		m["latency_ms_c8"] = grab(o, `latency average = ([\d.]+) ms`)
		if o, err = sh("-N", "-c", "1", "-T", "10"); err != nil {
			return nil, err
		}
		m["tps_c1"] = grab(o, `tps = ([\d.]+)`)
		m["latency_ms_c1"] = grab(o, `latency average = ([\d.]+) ms`)
		return m, nil
	})
	return m, err
}

func grab(s, re string) float64 {
	if m := regexp.MustCompile(re).FindStringSubmatch(s); m != nil {
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	return 0
}
