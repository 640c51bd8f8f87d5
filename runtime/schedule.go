package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/quantumflow/qflow/flowdef/cronspec"
)

// Cron schedules: a schedule starts a run of its flow at every tick of a
// cron spec. Workers that serve the flow fire its due ticks (cronLoop);
// firing a tick is one transaction that moves the schedule's next_tick on
// only if it still holds the tick this worker read, inserts the
// (schedule, tick) row whose primary key admits one run per tick, and
// starts the run, so a tick fires once however many workers race for it,
// and not at all if the transaction is cut short (it fires on the next
// try). migrations/0005_schedules.sql has the tables.

// MissedPolicy says what a schedule does with ticks that came and went
// while no worker serving its flow ran (or while they could not reach the
// database).
type MissedPolicy string

const (
	// MissedLatest (the default) runs the latest missed tick once and
	// skips the earlier ones: an hourly report that was down for a day
	// runs once, for the last hour.
	MissedLatest MissedPolicy = "latest"
	// MissedAll runs every missed tick, oldest first, one run each; for
	// backfills where each tick stands for its own period. A worker fires
	// at most MaxCatchUp of them per round.
	MissedAll MissedPolicy = "all"
)

// MaxCatchUp is the most missed ticks of one schedule a worker fires in
// one round with MissedAll; the rest follow in the next rounds.
const MaxCatchUp = 100

// keptTicks is how many fired ticks a schedule keeps in
// qflow.schedule_ticks.
const keptTicks = 100

// ErrUnknownSchedule: no schedule has this name.
var ErrUnknownSchedule = errors.New("qflow: unknown schedule")

// ErrBadSchedule wraps the errors of a schedule's parameters: a cron spec
// that does not parse, a time zone that does not exist, an invalid name or
// missed-tick policy. It is cronspec.ErrBadSpec, so errors.Is matches both.
var ErrBadSchedule = cronspec.ErrBadSpec

// ScheduleParams describe a schedule (see Client.Schedule).
type ScheduleParams struct {
	// Flow is the slug of the flow to run. Required.
	Flow string
	// Cron is the spec: five crontab fields ("0 * * * *"), six with seconds
	// first ("*/10 * * * * *"), or a descriptor (@hourly, @daily,
	// "@every 30s"). See package cronspec. Required.
	Cron string
	// TZ is the IANA time zone the spec is read in (Europe/Berlin); empty
	// means UTC.
	TZ string
	// Input is each run's input, encoded as JSON like StartRun's (nil is
	// JSON null, which decodes into a flow's zero input).
	Input any
	// Missed is the missed-tick policy; empty means MissedLatest.
	Missed MissedPolicy
	// Paused creates the schedule paused. It applies only when the schedule
	// is created: pausing and resuming are PauseSchedule's and
	// ResumeSchedule's.
	Paused bool
}

// ScheduleInfo is a stored schedule.
type ScheduleInfo struct {
	Name      string          `json:"name"`
	Flow      string          `json:"flow"`
	Cron      string          `json:"cron"`
	TZ        string          `json:"tz"`
	Input     json.RawMessage `json:"input"`
	Missed    MissedPolicy    `json:"missed"`
	Paused    bool            `json:"paused"`
	NextTick  time.Time       `json:"next_tick"` // the first tick not fired yet
	LastTick  *time.Time      `json:"last_tick,omitempty"`
	LastRunID *uuid.UUID      `json:"last_run_id,omitempty"` // the run the last tick started
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`
}

// Schedule creates the schedule name, or updates it, and returns it as
// stored. Runs of p.Flow start at every tick from then on, fired by the
// workers that serve the flow (exactly one run per tick however many there
// are); ticks missed while none ran follow p.Missed.
//
// An update that keeps the spec and time zone keeps the next tick; one that
// changes them starts from the first tick of the new spec after now. It
// leaves a paused schedule paused. The flow must be defined (DefineFlow, a
// worker that registered it, or a run started); a spec that does not parse
// or a time zone that does not exist is an error wrapping ErrBadSchedule,
// and changes nothing.
func (c *Client) Schedule(ctx context.Context, name string, p ScheduleParams) (*ScheduleInfo, error) {
	sched, err := checkSchedule(name, p)
	if err != nil {
		return nil, err
	}
	input, err := c.limits.encodeInput(p.Input)
	if err != nil {
		return nil, fmt.Errorf("qflow: schedule %q: %w", name, err)
	}
	missed := p.Missed
	if missed == "" {
		missed = MissedLatest
	}
	tz := p.TZ
	if tz == "" {
		tz = "UTC"
	}
	var info *ScheduleInfo
	err = pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		var known bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM qflow.flows WHERE slug = $1::text)`, p.Flow).Scan(&known); err != nil {
			return err
		}
		if !known {
			return fmt.Errorf("%w %q: define it first (DefineFlow, or run a worker that registers it)", ErrUnknownFlow, p.Flow)
		}
		var now time.Time
		var old struct {
			found          bool
			spec, tz       string
			next, lastTick *time.Time
		}
		if err := tx.QueryRow(ctx, `SELECT now()`).Scan(&now); err != nil {
			return err
		}
		err := tx.QueryRow(ctx, `SELECT spec, tz, next_tick, last_tick FROM qflow.schedules WHERE name = $1::text FOR UPDATE`, name).
			Scan(&old.spec, &old.tz, &old.next, &old.lastTick)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return err
		default:
			old.found = true
		}
		var next time.Time
		if old.found && old.spec == p.Cron && old.tz == tz {
			next = *old.next
		} else {
			from := now
			if old.lastTick != nil && old.lastTick.After(from) {
				from = *old.lastTick
			}
			next = sched.Next(from)
		}
		rows, err := tx.Query(ctx, `INSERT INTO qflow.schedules AS s (name, flow_slug, spec, tz, input, missed, paused, next_tick)
			VALUES ($1::text, $2::text, $3::text, $4::text, $5::jsonb, $6::text, $7::boolean, $8::timestamptz)
			ON CONFLICT (name) DO UPDATE SET flow_slug = excluded.flow_slug, spec = excluded.spec, tz = excluded.tz,
				input = excluded.input, missed = excluded.missed, next_tick = excluded.next_tick,
				updated_at = CASE WHEN (s.flow_slug, s.spec, s.tz, s.input, s.missed) IS NOT DISTINCT FROM
				                       (excluded.flow_slug, excluded.spec, excluded.tz, excluded.input, excluded.missed)
				             THEN s.updated_at ELSE now() END
			RETURNING `+scheduleColumns, name, p.Flow, p.Cron, tz, string(input), string(missed), p.Paused, next)
		if err != nil {
			return err
		}
		info, err = pgx.CollectExactlyOneRow(rows, scanSchedule)
		return err
	})
	if errors.Is(err, ErrUnknownFlow) {
		return nil, err
	}
	if err != nil {
		return nil, mapError(fmt.Errorf("qflow: schedule %q: %w", name, err))
	}
	return info, nil
}

// checkSchedule validates a schedule's name and parameters.
func checkSchedule(name string, p ScheduleParams) (cronspec.Schedule, error) {
	if !ValidSlug(name) {
		return cronspec.Schedule{}, fmt.Errorf("qflow: %w: invalid schedule name %q: want a lowercase letter, then lowercase letters, digits or underscores (at most 40)", ErrBadSchedule, name)
	}
	if !ValidSlug(p.Flow) {
		return cronspec.Schedule{}, fmt.Errorf("%w %q (not a valid flow slug)", ErrUnknownFlow, p.Flow)
	}
	switch p.Missed {
	case "", MissedLatest, MissedAll:
	default:
		return cronspec.Schedule{}, fmt.Errorf("qflow: schedule %q: %w: missed-tick policy %q: want %q or %q", name, ErrBadSchedule, p.Missed, MissedLatest, MissedAll)
	}
	s, err := cronspec.Parse(p.Cron, p.TZ)
	if err != nil {
		return cronspec.Schedule{}, fmt.Errorf("qflow: schedule %q: %w", name, err)
	}
	return s, nil
}

const scheduleColumns = `s.name, s.flow_slug, s.spec, s.tz, s.input, s.missed, s.paused, s.next_tick, s.last_tick, s.last_run_id, s.created_at, s.updated_at`

func scanSchedule(row pgx.CollectableRow) (*ScheduleInfo, error) {
	var s ScheduleInfo
	var missed string
	err := row.Scan(&s.Name, &s.Flow, &s.Cron, &s.TZ, &s.Input, &missed, &s.Paused, &s.NextTick, &s.LastTick, &s.LastRunID, &s.CreatedAt, &s.UpdatedAt)
	s.Missed = MissedPolicy(missed)
	return &s, err
}

// GetSchedule returns the schedule name, or an error wrapping
// ErrUnknownSchedule.
func (c *Client) GetSchedule(ctx context.Context, name string) (*ScheduleInfo, error) {
	rows, err := c.pool.Query(ctx, `SELECT `+scheduleColumns+` FROM qflow.schedules s WHERE s.name = $1::text`, name)
	if err != nil {
		return nil, fmt.Errorf("qflow: get schedule %q: %w", name, err)
	}
	s, err := pgx.CollectExactlyOneRow(rows, scanSchedule)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w %q", ErrUnknownSchedule, name)
	}
	if err != nil {
		return nil, fmt.Errorf("qflow: get schedule %q: %w", name, err)
	}
	return s, nil
}

// ListSchedules returns every schedule, by name; flow, when not empty,
// keeps those of that flow.
func (c *Client) ListSchedules(ctx context.Context, flow string) ([]ScheduleInfo, error) {
	rows, err := c.pool.Query(ctx, `SELECT `+scheduleColumns+` FROM qflow.schedules s
		WHERE $1::text = '' OR s.flow_slug = $1::text ORDER BY s.name`, flow)
	if err != nil {
		return nil, fmt.Errorf("qflow: list schedules: %w", err)
	}
	list, err := pgx.CollectRows(rows, scanSchedule)
	if err != nil {
		return nil, fmt.Errorf("qflow: list schedules: %w", err)
	}
	out := make([]ScheduleInfo, len(list))
	for i, s := range list {
		out[i] = *s
	}
	return out, nil
}

// PauseSchedule stops the schedule name from firing until ResumeSchedule.
// Pausing a paused schedule does nothing.
func (c *Client) PauseSchedule(ctx context.Context, name string) error {
	tag, err := c.pool.Exec(ctx, `UPDATE qflow.schedules SET paused = true, updated_at = now() WHERE name = $1::text`, name)
	if err != nil {
		return fmt.Errorf("qflow: pause schedule %q: %w", name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w %q", ErrUnknownSchedule, name)
	}
	return nil
}

// ResumeSchedule lets a paused schedule fire again, from its first tick
// after now: ticks that came while it was paused are skipped, whatever its
// missed-tick policy. Resuming a schedule that is not paused does nothing.
func (c *Client) ResumeSchedule(ctx context.Context, name string) error {
	return pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		var spec, tz string
		var paused bool
		var now time.Time
		var last *time.Time
		err := tx.QueryRow(ctx, `SELECT spec, tz, paused, last_tick, now() FROM qflow.schedules WHERE name = $1::text FOR UPDATE`, name).
			Scan(&spec, &tz, &paused, &last, &now)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w %q", ErrUnknownSchedule, name)
		}
		if err != nil {
			return fmt.Errorf("qflow: resume schedule %q: %w", name, err)
		}
		if !paused {
			return nil
		}
		sched, err := cronspec.Parse(spec, tz)
		if err != nil {
			return fmt.Errorf("qflow: resume schedule %q: %w", name, err)
		}
		if last != nil && last.After(now) {
			now = *last
		}
		_, err = tx.Exec(ctx, `UPDATE qflow.schedules SET paused = false, next_tick = $2::timestamptz, updated_at = now() WHERE name = $1::text`,
			name, sched.Next(now))
		if err != nil {
			return fmt.Errorf("qflow: resume schedule %q: %w", name, err)
		}
		return nil
	})
}

// DeleteSchedule deletes the schedule name and its record of fired ticks;
// the runs it started are kept. A worker whose registration declares the
// schedule (a //qflow:flow cron= annotation) creates it again when it
// starts: remove the annotation, or pause the schedule instead.
func (c *Client) DeleteSchedule(ctx context.Context, name string) error {
	tag, err := c.pool.Exec(ctx, `DELETE FROM qflow.schedules WHERE name = $1::text`, name)
	if err != nil {
		return fmt.Errorf("qflow: delete schedule %q: %w", name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w %q", ErrUnknownSchedule, name)
	}
	return nil
}

// ScheduleTick is one fired tick of a schedule.
type ScheduleTick struct {
	Tick    time.Time  `json:"tick"`
	RunID   *uuid.UUID `json:"run_id,omitempty"`
	FiredAt time.Time  `json:"fired_at"`
}

// ScheduleTicks returns the newest fired ticks of the schedule name, newest
// first (a schedule keeps its last 100).
func (c *Client) ScheduleTicks(ctx context.Context, name string) ([]ScheduleTick, error) {
	rows, err := c.pool.Query(ctx, `SELECT tick, run_id, fired_at FROM qflow.schedule_ticks WHERE schedule = $1::text ORDER BY tick DESC`, name)
	if err != nil {
		return nil, fmt.Errorf("qflow: schedule ticks %q: %w", name, err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[ScheduleTick])
}

// Schedule declares a schedule that the worker creates or updates, as
// Client.Schedule does, when Run starts (after defining its flows), so
// the code that serves a flow also says when it runs. Generated
// Register<Flow> functions call it for a //qflow:flow cron= annotation,
// with the flow's name as the schedule's and the zero input. p is checked
// now; p.Flow must be registered with this worker before Run.
func (w *Worker) Schedule(name string, p ScheduleParams) error {
	if _, err := checkSchedule(name, p); err != nil {
		return err
	}
	registered := false
	for _, f := range w.flows {
		registered = registered || f.def.Slug == p.Flow
	}
	if !registered {
		return fmt.Errorf("qflow: schedule %q: %w: flow %q is not registered with this worker (Register it first)", name, ErrBadSchedule, p.Flow)
	}
	for _, s := range w.schedules {
		if s.name == name {
			return fmt.Errorf("qflow: schedule %q: %w: declared twice on this worker", name, ErrBadSchedule)
		}
	}
	w.schedules = append(w.schedules, declaredSchedule{name, p})
	return nil
}

type declaredSchedule struct {
	name string
	p    ScheduleParams
}

// dueSchedule is a schedule of one of the worker's flows, as the cron loop
// reads it.
type dueSchedule struct {
	name, flow, spec, tz, missed string
	next                         time.Time
}

// cronLoop fires the due ticks of the schedules of the worker's flows until
// ctx ends. It wakes at the earliest next tick, and at least every
// PollInterval (a schedule may be created or resumed meanwhile).
func (w *Worker) cronLoop(ctx context.Context) {
	slugs := make([]string, len(w.flows))
	for i, f := range w.flows {
		slugs[i] = f.def.Slug
	}
	for {
		wait := w.fireDue(ctx, slugs)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-w.abandon:
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// fireDue fires the due ticks of the worker's schedules and returns how
// long to sleep until the next one (at most PollInterval).
func (w *Worker) fireDue(ctx context.Context, slugs []string) time.Duration {
	wait := w.opts.PollInterval
	rows, err := w.pool.Query(ctx, `SELECT name, flow_slug, spec, tz, missed, next_tick, now() FROM qflow.schedules
		WHERE flow_slug = ANY ($1::text[]) AND NOT paused ORDER BY next_tick`, slugs)
	if err != nil {
		if ctx.Err() == nil {
			w.log.Warn("qflow: read schedules", "worker_id", w.id, "error", err)
		}
		return wait
	}
	var due []dueSchedule
	var now time.Time
	for rows.Next() {
		var s dueSchedule
		if err := rows.Scan(&s.name, &s.flow, &s.spec, &s.tz, &s.missed, &s.next, &now); err != nil {
			rows.Close()
			w.log.Warn("qflow: read schedules", "worker_id", w.id, "error", err)
			return wait
		}
		due = append(due, s)
	}
	if err := rows.Err(); err != nil {
		if ctx.Err() == nil {
			w.log.Warn("qflow: read schedules", "worker_id", w.id, "error", err)
		}
		return wait
	}
	for _, s := range due {
		if s.next.After(now) {
			wait = min(wait, s.next.Sub(now))
			continue
		}
		sched, err := cronspec.Parse(s.spec, s.tz)
		if err != nil {
			w.log.Error("qflow: schedule does not parse; not fired", "schedule", s.name, "error", err)
			continue
		}
		for n := 0; n < MaxCatchUp && ctx.Err() == nil; n++ {
			tick := s.next
			if s.missed != string(MissedAll) {
				tick = sched.Latest(s.next, now)
			}
			next := sched.Next(tick)
			moved, err := w.fire(ctx, s, tick, next)
			if err != nil {
				if ctx.Err() == nil {
					w.log.Warn("qflow: fire schedule; will try again", "schedule", s.name, "tick", tick, "error", err)
				}
				break
			}
			if !moved {
				// Another worker fired it, or the schedule changed: read it
				// again in the next round.
				s.next = now.Add(w.opts.PollInterval)
				break
			}
			s.next = next
			if next.IsZero() || next.After(now) {
				break
			}
		}
		if !s.next.IsZero() && s.next.After(now) {
			wait = min(wait, s.next.Sub(now))
		} else {
			wait = 0 // more to catch up
		}
	}
	return max(wait, 10*time.Millisecond)
}

// fire fires tick of s in one transaction: move next_tick from s.next to
// next if no one has, record the tick, start the run. It reports whether
// this worker moved next_tick: false when another worker fired the tick
// first, or the schedule was paused, changed or deleted meanwhile.
func (w *Worker) fire(ctx context.Context, s dueSchedule, tick, next time.Time) (moved bool, err error) {
	err = pgx.BeginFunc(ctx, w.pool, func(tx pgx.Tx) error {
		moved = false
		var input []byte
		err := tx.QueryRow(ctx, `UPDATE qflow.schedules SET next_tick = $3::timestamptz, last_tick = $4::timestamptz, updated_at = now()
			WHERE name = $1::text AND next_tick = $2::timestamptz AND NOT paused RETURNING input`,
			s.name, s.next, next, tick).Scan(&input)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // fired by another worker, paused, changed or deleted
		}
		if err != nil {
			return err
		}
		moved = true
		tag, err := tx.Exec(ctx, `INSERT INTO qflow.schedule_ticks (schedule, tick) VALUES ($1::text, $2::timestamptz) ON CONFLICT DO NOTHING`, s.name, tick)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return nil // this tick has its run
		}
		ids, _, err := w.starter.startRuns(ctx, tx, s.flow, 0, []any{json.RawMessage(input)}, nil)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `WITH t AS (
				UPDATE qflow.schedule_ticks SET run_id = $3::uuid WHERE schedule = $1::text AND tick = $2::timestamptz
			), s AS (
				UPDATE qflow.schedules SET last_run_id = $3::uuid WHERE name = $1::text
			)
			DELETE FROM qflow.schedule_ticks WHERE schedule = $1::text AND tick < (
				SELECT tick FROM qflow.schedule_ticks WHERE schedule = $1::text ORDER BY tick DESC OFFSET $4::integer LIMIT 1)`,
			s.name, tick, ids[0], keptTicks-1); err != nil {
			return err
		}
		if w.fireHook != nil {
			if err := w.fireHook(ctx, tx, s.name, tick); err != nil {
				return err
			}
		}
		w.log.Info("qflow schedule fired", "schedule", s.name, "flow", s.flow, "tick", tick, "run_id", ids[0], "next_tick", next)
		return nil
	})
	return moved && err == nil, err
}

// declareSchedules creates or updates the schedules declared with
// Worker.Schedule.
func (w *Worker) declareSchedules(ctx context.Context) error {
	for _, s := range w.schedules {
		if _, err := w.starter.Schedule(ctx, s.name, s.p); err != nil {
			return err
		}
	}
	return nil
}
