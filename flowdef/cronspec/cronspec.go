// Package cronspec parses the cron specs of QuantumFlow schedules and
// computes their ticks. Parsing is github.com/robfig/cron/v3's; this
// package fixes the dialect, reads the time zone separately and adds what
// a schedule needs: the latest tick due at a moment.
//
// # Dialect
//
// A spec is five fields (minute hour day-of-month month day-of-week, as in
// crontab: "0 * * * *" is every hour on the hour), or six with seconds
// first ("*/5 * * * * *" is every five seconds), or a descriptor: @yearly,
// @monthly, @weekly, @daily, @hourly, or @every DURATION ("@every 90s";
// ticks are whole seconds). Fields take lists, ranges, steps, names of
// months and days, and ? for day fields. The time zone is an IANA name
// (Europe/Berlin) given apart from the spec; CRON_TZ= and TZ= prefixes are
// refused, so a spec means one thing.
//
// Time zones come from the time/tzdata copy of the IANA database built into
// the program (about 450 KB), so qflowgen and every worker agree on them,
// in a minimal container too.
//
// cronspec imports no database code, so qflowgen uses it to check
// annotations at generate time.
package cronspec

import (
	"errors"
	"fmt"
	"strings"
	"time"
	_ "time/tzdata" // zones load the same on every machine, with or without a zoneinfo database

	"github.com/robfig/cron/v3"
)

// ErrBadSpec wraps every error of Parse.
var ErrBadSpec = errors.New("bad cron schedule")

var parser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Schedule is a parsed spec in its time zone.
type Schedule struct {
	sched cron.Schedule
	loc   *time.Location
}

// Parse parses spec in the time zone tz ("" means UTC). The error wraps
// ErrBadSpec and says what is wrong with which of the two.
func Parse(spec, tz string) (Schedule, error) {
	loc, err := Location(tz)
	if err != nil {
		return Schedule{}, err
	}
	s := strings.TrimSpace(spec)
	if s == "" {
		return Schedule{}, fmt.Errorf("%w: empty cron spec", ErrBadSpec)
	}
	if strings.HasPrefix(s, "CRON_TZ=") || strings.HasPrefix(s, "TZ=") {
		return Schedule{}, fmt.Errorf("%w: cron spec %q: give the time zone apart (tz=), not in the spec", ErrBadSpec, spec)
	}
	if d, ok := strings.CutPrefix(s, "@every "); ok {
		// robfig rounds a delay under a second up to one: refuse it instead.
		if dur, err := time.ParseDuration(strings.TrimSpace(d)); err == nil && (dur < time.Second || dur%time.Second != 0) {
			return Schedule{}, fmt.Errorf("%w: cron spec %q: @every needs a whole number of seconds, at least 1s", ErrBadSpec, spec)
		}
	}
	sched, err := parser.Parse(s)
	if err != nil {
		return Schedule{}, fmt.Errorf("%w: cron spec %q: %v (want 5 fields: minute hour day-of-month month day-of-week, 6 with seconds first, or @hourly, @daily, @every 1h…)", ErrBadSpec, spec, err)
	}
	if ss, ok := sched.(*cron.SpecSchedule); ok {
		ss.Location = loc
	}
	// A spec that never fires (February 30th) is an error now, not a
	// schedule that silently does nothing.
	if sched.Next(time.Now()).IsZero() {
		return Schedule{}, fmt.Errorf("%w: cron spec %q never fires", ErrBadSpec, spec)
	}
	return Schedule{sched: sched, loc: loc}, nil
}

// Location loads the IANA time zone tz ("" and "UTC" are UTC; "Local" is
// refused: a schedule shared by machines must not depend on one of them).
func Location(tz string) (*time.Location, error) {
	switch tz {
	case "", "UTC":
		return time.UTC, nil
	case "Local":
		return nil, fmt.Errorf("%w: time zone %q: name a zone such as Europe/Berlin or UTC; workers on different machines must agree", ErrBadSpec, tz)
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, fmt.Errorf("%w: unknown time zone %q (want an IANA name such as Europe/Berlin or America/New_York)", ErrBadSpec, tz)
	}
	return loc, nil
}

// Next returns the first tick after t, the zero time when there is none.
func (s Schedule) Next(t time.Time) time.Time {
	if s.sched == nil {
		return time.Time{}
	}
	return s.sched.Next(t.In(s.loc))
}

// Latest returns the latest tick in [from, now], given that from is a
// tick not after now. It takes a few steps whatever the gap: it searches
// back from now in doubling windows instead of walking every tick since
// from. The ticks of @every are counted from from.
func (s Schedule) Latest(from, now time.Time) time.Time {
	if now.Before(from) {
		return from
	}
	if cd, ok := s.sched.(cron.ConstantDelaySchedule); ok {
		return from.Add(now.Sub(from) / cd.Delay * cd.Delay)
	}
	for d := time.Second; ; d *= 2 {
		start := now.Add(-d)
		floor := !start.After(from)
		if floor {
			start = from
		}
		t := s.Next(start)
		if floor && (t.IsZero() || t.After(now)) {
			return from
		}
		if !t.IsZero() && !t.After(now) {
			for {
				n := s.Next(t)
				if n.IsZero() || n.After(now) {
					return t
				}
				t = n
			}
		}
	}
}
