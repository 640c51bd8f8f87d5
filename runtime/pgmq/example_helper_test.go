package pgmq_test

import (
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/quantumflow/qflow/internal/pgtest"
)

// exampleDatabase returns a pool on a fresh migrated database (on the
// server pgtest finds, or a throwaway cluster) and a function that drops
// it. In real code the pool is your own *pgxpool.Pool.
func exampleDatabase() (*pgxpool.Pool, func()) {
	db, done := pgtest.ForExample()
	return db.Pool, done
}
