package flowdef

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Limits across all workers: StepOptions.Concurrency, Rate and Key. The
// engine enforces them when a worker claims tasks, in the database, so they
// hold however many worker processes on however many machines share it
// (see "Concurrency and rate limits" in the README).

// MaxConcurrency is the largest Concurrency a step or a flow may have. A
// claim checks whether the tasks holding a limit's places still run, so a
// limit costs more the larger it is; beyond a few thousand it limits
// little that the workers' own Concurrency would not.
const MaxConcurrency = 10000

// MaxRate is the fastest Rate, in tasks per second.
const MaxRate = 1000000

// MaxBurst is the largest Rate.Burst.
const MaxBurst = 1000000

// Rate caps how fast tasks start: at most N every Per on average, and at
// most Burst at once. Precisely, in any stretch of time d at most
// Burst + d/(Per/N) tasks start (a token bucket of Burst tokens, refilled
// one every Per/N: the generic cell rate algorithm). The zero Rate means no
// cap.
type Rate struct {
	// N tasks every Per: N ≥ 1 and Per at least a millisecond when the
	// rate is set, and at most MaxRate tasks a second.
	N   int           `json:"n"`
	Per time.Duration `json:"per"`
	// Burst is how many tasks may start at once after a quiet spell
	// (0 means 1: evenly spaced starts).
	Burst int `json:"burst,omitempty"`
}

// IsZero reports whether r is the zero Rate (no cap).
func (r Rate) IsZero() bool { return r == Rate{} }

// Interval is the time between starts at the steady rate, Per/N (0 for the
// zero Rate).
func (r Rate) Interval() time.Duration {
	if r.N <= 0 {
		return 0
	}
	return r.Per / time.Duration(r.N)
}

// Bursts returns Burst, or 1 when it is 0.
func (r Rate) Bursts() int { return max(r.Burst, 1) }

// String spells r as ParseRate reads it: "50/s", "5/10s", "100/m burst=20"
// ("" for the zero Rate).
func (r Rate) String() string {
	if r.IsZero() {
		return ""
	}
	var per string
	switch r.Per {
	case time.Second:
		per = "s"
	case time.Minute:
		per = "m"
	case time.Hour:
		per = "h"
	default:
		per = r.Per.String()
	}
	s := fmt.Sprintf("%d/%s", r.N, per)
	if r.Burst > 1 {
		s += fmt.Sprintf(" burst=%d", r.Burst)
	}
	return s
}

// errRateSyntax is ParseRate's error for a value it cannot read.
var errRateSyntax = errors.New("want N/s, N/m, N/h or N/DURATION, such as 50/s, 600/m or 5/10s")

// ParseRate reads a rate as the //qflow:step annotation writes it: N/s,
// N/m or N/h (N tasks a second, minute or hour), or N/DURATION with a Go
// duration (5/10s, 3/500ms). The Burst of the result is 0.
func ParseRate(s string) (Rate, error) {
	num, per, ok := strings.Cut(s, "/")
	if !ok {
		return Rate{}, errRateSyntax
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 1 || num[0] == '+' {
		return Rate{}, fmt.Errorf("%q is not a whole number of tasks, 1 or more: %w", num, errRateSyntax)
	}
	var d time.Duration
	switch per {
	case "s":
		d = time.Second
	case "m":
		d = time.Minute
	case "h":
		d = time.Hour
	default:
		// A bare number of units ("10s") is a Go duration; so is "1h30m".
		d, err = time.ParseDuration(per)
		if err != nil || d <= 0 {
			return Rate{}, fmt.Errorf("%q is not a unit (s, m, h) or a positive duration: %w", per, errRateSyntax)
		}
	}
	r := Rate{N: n, Per: d}
	if err := r.check(); err != nil {
		return Rate{}, err
	}
	return r, nil
}

// check reports what is wrong with a non-zero rate.
func (r Rate) check() error {
	switch {
	case r.N < 1:
		return fmt.Errorf("rate %d per %s: N must be at least 1", r.N, r.Per)
	case r.Per < time.Millisecond:
		return fmt.Errorf("rate %d per %s: Per must be at least a millisecond", r.N, r.Per)
	case float64(r.N)/r.Per.Seconds() > MaxRate:
		return fmt.Errorf("rate %d per %s is over %d tasks a second", r.N, r.Per, MaxRate)
	case r.Burst < 0 || r.Burst > MaxBurst:
		return fmt.Errorf("burst %d: want 1 to %d (0 means 1)", r.Burst, MaxBurst)
	}
	return nil
}

// KeyPath splits a StepOptions.Key into the keys of its path: ".a.b" is
// [a b] and "." (the whole input) is empty. It reports false for a key
// that is not a path: one that does not start with a dot, or has an empty
// step (".a..b", ".a.").
func KeyPath(key string) ([]string, bool) {
	if key == "." {
		return []string{}, true
	}
	if !strings.HasPrefix(key, ".") {
		return nil, false
	}
	parts := strings.Split(key[1:], ".")
	for _, p := range parts {
		if p == "" {
			return nil, false
		}
	}
	return parts, true
}

// limited reports whether o sets a concurrency or rate limit.
func (o StepOptions) limited() bool { return o.Concurrency > 0 || !o.Rate.IsZero() }

// Limited reports whether the tasks of step slug of f are held by a limit
// across workers: the step's Concurrency or Rate, or the flow's
// Concurrency. A worker must not start such a task by any path that
// bypasses the claim (one that runs a chain's next step in the same
// process, say): only the claim counts a task against its limits.
func (f FlowDef) Limited(slug string) bool {
	if f.Options.Concurrency > 0 {
		return true
	}
	for _, s := range f.Steps {
		if s.Slug == slug {
			return s.Options.limited()
		}
	}
	return false
}

// HasLimits reports whether any step of f, or f itself, has a limit across
// workers.
func (f FlowDef) HasLimits() bool {
	if f.Options.Concurrency > 0 {
		return true
	}
	for _, s := range f.Steps {
		if s.Options.limited() {
			return true
		}
	}
	return false
}

// checkLimits reports the problems of o's limits; step tells a step's
// options from the flow's.
func checkLimits(o StepOptions, step bool, bad func(string, ...any)) {
	if o.Concurrency < 0 || o.Concurrency > MaxConcurrency {
		bad("Concurrency %d: want 1 to %d tasks at once (0: no limit)", o.Concurrency, MaxConcurrency)
	}
	if !step {
		if !o.Rate.IsZero() {
			bad("Rate applies to steps, not to a flow's options")
		}
		if o.Key != "" {
			bad("Key applies to steps, not to a flow's options")
		}
		return
	}
	if !o.Rate.IsZero() {
		if o.Rate.N == 0 && o.Rate.Per == 0 {
			bad("Rate has a Burst (%d) but no rate: set N and Per", o.Rate.Burst)
		} else if err := o.Rate.check(); err != nil {
			bad("%v", err)
		}
	}
	if o.Key != "" {
		if _, ok := KeyPath(o.Key); !ok {
			bad("Key %q: want a path into the task input such as .customer_id or .run.customer.id (. for the input itself)", o.Key)
		}
		if !o.limited() {
			bad("Key %q limits nothing: set Concurrency or Rate too", o.Key)
		}
	}
}
