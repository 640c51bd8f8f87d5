package etl

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/quantumflow/qflow/runtime"
)

// pool is where Load writes. Steps are plain functions, so their
// dependencies live in the package; SetDatabase sets this one.
var pool atomic.Pointer[pgxpool.Pool]

// SetDatabase sets the database Load writes to. Call it before running a
// worker for this flow.
func SetDatabase(p *pgxpool.Pool) { pool.Store(p) }

// Schema creates the example's tables when they are missing. Load runs it
// in its transaction; it is exported for callers that want the tables
// before the first load.
const Schema = `
CREATE TABLE IF NOT EXISTS etl_loads (
	source        text PRIMARY KEY,
	sha256        text        NOT NULL,
	rows          integer     NOT NULL,
	valid         integer     NOT NULL,
	rejected      integer     NOT NULL,
	revenue_cents bigint      NOT NULL,
	loaded_at     timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS etl_category_totals (
	source        text    NOT NULL REFERENCES etl_loads (source) ON DELETE CASCADE,
	category      text    NOT NULL,
	orders        integer NOT NULL,
	units         integer NOT NULL,
	revenue_cents bigint  NOT NULL,
	PRIMARY KEY (source, category)
);
CREATE TABLE IF NOT EXISTS etl_rejects (
	source  text    NOT NULL REFERENCES etl_loads (source) ON DELETE CASCADE,
	line    integer NOT NULL,
	problem text    NOT NULL,
	raw     text    NOT NULL,
	PRIMARY KEY (source, line)
);`

// CreateTables runs Schema on db.
func CreateTables(ctx context.Context, db runtime.DB) error {
	// Concurrent CREATE TABLE IF NOT EXISTS can still collide: serialise.
	if _, err := db.Exec(ctx, `SELECT pg_advisory_xact_lock(7170601)`); err != nil {
		return fmt.Errorf("etl: create tables: %w", err)
	}
	if _, err := db.Exec(ctx, Schema); err != nil {
		return fmt.Errorf("etl: create tables: %w", err)
	}
	return nil
}

// store replaces the source's rows with s, in one transaction.
func store(ctx context.Context, s Summary) error {
	p := pool.Load()
	if p == nil {
		return runtime.Permanent(errors.New("etl: no database to load into: call etl.SetDatabase before running the worker"))
	}
	return pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
		if err := CreateTables(ctx, tx); err != nil {
			return err
		}
		// Deleting the load row cascades to its totals and rejects.
		if _, err := tx.Exec(ctx, `DELETE FROM etl_loads WHERE source = $1`, s.Source); err != nil {
			return fmt.Errorf("etl: load: %w", err)
		}
		q := s.Quality
		if _, err := tx.Exec(ctx, `INSERT INTO etl_loads (source, sha256, rows, valid, rejected, revenue_cents)
			VALUES ($1, $2, $3, $4, $5, $6)`, s.Source, s.Fingerprint.SHA256, q.Rows, q.Valid, q.Rejected, s.RevenueCents); err != nil {
			return fmt.Errorf("etl: load: %w", err)
		}
		var cats []string
		var orders, units []int
		var revenue []int64
		for _, t := range s.Categories {
			cats, orders, units, revenue = append(cats, t.Category), append(orders, t.Orders), append(units, t.Units), append(revenue, t.RevenueCents)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO etl_category_totals (source, category, orders, units, revenue_cents)
			SELECT $1, * FROM unnest($2::text[], $3::integer[], $4::integer[], $5::bigint[])`,
			s.Source, cats, orders, units, revenue); err != nil {
			return fmt.Errorf("etl: load totals: %w", err)
		}
		var lines []int
		var problems, raws []string
		for _, r := range q.Rejects {
			lines, problems, raws = append(lines, r.Line), append(problems, r.Problem), append(raws, r.Raw)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO etl_rejects (source, line, problem, raw)
			SELECT $1, * FROM unnest($2::integer[], $3::text[], $4::text[])`,
			s.Source, lines, problems, raws); err != nil {
			return fmt.Errorf("etl: load rejects: %w", err)
		}
		return nil
	})
}
