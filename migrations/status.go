package migrations

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// State is one migration as a database sees it.
type State struct {
	Version int    `json:"version"`
	Name    string `json:"name"`
	// AppliedAt is when the migration was applied; nil while pending.
	AppliedAt *time.Time `json:"applied_at,omitempty"`
	// Unknown reports a migration recorded in the database that this build
	// does not embed: the database was migrated by a newer release.
	Unknown bool `json:"unknown,omitempty"`
}

// Pending reports whether the migration is embedded and not yet applied.
func (s State) Pending() bool { return s.AppliedAt == nil && !s.Unknown }

// Status lists every migration this build embeds and every one the
// database records, in version order, each with when it was applied (nil
// while pending). A database migrated by a newer release lists the versions
// this build does not know with Unknown set; Migrate refuses such a
// database with ErrNewerSchema. Status changes nothing.
func Status(ctx context.Context, db interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
	QueryRow(context.Context, string, ...any) pgx.Row
}) ([]State, error) {
	applied := map[int]State{}
	var exists bool
	if err := db.QueryRow(ctx, `SELECT to_regclass('qflow.schema_migrations') IS NOT NULL`).Scan(&exists); err != nil {
		return nil, fmt.Errorf("qflow migrate: status: %w", err)
	}
	if exists {
		rows, err := db.Query(ctx, `SELECT version, name, applied_at FROM qflow.schema_migrations ORDER BY version`)
		if err != nil {
			return nil, fmt.Errorf("qflow migrate: status: %w", err)
		}
		for rows.Next() {
			var s State
			var at time.Time
			if err := rows.Scan(&s.Version, &s.Name, &at); err != nil {
				rows.Close()
				return nil, fmt.Errorf("qflow migrate: status: %w", err)
			}
			s.AppliedAt = &at
			applied[s.Version] = s
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("qflow migrate: status: %w", err)
		}
	}
	var out []State
	for _, m := range All() {
		s := State{Version: m.Version, Name: m.Name}
		if a, ok := applied[m.Version]; ok {
			s.AppliedAt = a.AppliedAt
			delete(applied, m.Version)
		}
		out = append(out, s)
	}
	for _, a := range applied {
		a.Unknown = true
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b State) int { return cmp.Compare(a.Version, b.Version) })
	return out, nil
}
