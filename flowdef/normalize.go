package flowdef

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"time"
)

// Normalized is a definition in the form the engine stores (the steps of
// the qflow.steps table): every step with its options resolved against
// the flow's and the defaults, retries as attempts in all, durations in
// whole milliseconds (rounded up). Nothing in it is inherited, so the
// engine's define_flow applies no rule of its own.
type Normalized struct {
	Slug  string           `json:"slug"`
	Steps []NormalizedStep `json:"steps"`
}

// NormalizedStep is one step of a Normalized definition.
type NormalizedStep struct {
	Slug         string   `json:"slug"`
	DependsOn    []string `json:"depends_on"` // slugs, in parameter order; never null
	Map          bool     `json:"map"`
	TakesInput   bool     `json:"takes_input"`
	MaxAttempts  int      `json:"max_attempts"` // Retries + 1: at least 1
	BaseDelayMS  int64    `json:"base_delay_ms"`
	TimeoutMS    int64    `json:"timeout_ms"` // at least 1
	StartDelayMS int64    `json:"start_delay_ms"`
	// When, Optional and AcceptsSkipped are the step's StepDef fields
	// (When as whether it has a condition); left out of the JSON when
	// unset, so definitions without them hash as before they existed.
	When           bool     `json:"when,omitempty"`
	Optional       bool     `json:"optional,omitempty"`
	AcceptsSkipped []string `json:"accepts_skipped,omitempty"`
	// Wait and WaitTimeoutMS are the step's StepDef.Wait and WaitTimeout
	// (in whole milliseconds, rounded up); left out of the JSON when unset,
	// like When.
	Wait          string `json:"wait,omitempty"`
	WaitTimeoutMS int64  `json:"wait_timeout_ms,omitempty"`
	// Priority is the step's StepOptions.Priority (not inherited). It is
	// left out of the shape hash; define_flow applies it (see
	// StepOptions.Priority).
	Priority int `json:"priority,omitempty"`
	// The step's limits across workers (StepOptions.Concurrency, Rate and
	// Key, not inherited; all absent when it has none). Left out of the
	// shape hash like Priority; define_flow applies them. RatePerMS is
	// Rate.Per in whole milliseconds (rounded up) and Burst is
	// Rate.Bursts() when the step has a rate.
	Concurrency int    `json:"concurrency,omitempty"`
	RateN       int    `json:"rate_n,omitempty"`
	RatePerMS   int64  `json:"rate_per_ms,omitempty"`
	Burst       int    `json:"burst,omitempty"`
	Key         string `json:"key,omitempty"`
}

// Normalize validates f and returns its Normalized form.
func (f FlowDef) Normalize() (Normalized, error) {
	if err := f.Validate(); err != nil {
		return Normalized{}, err
	}
	return f.normal(), nil
}

// normal resolves f without validating it.
func (f FlowDef) normal() Normalized {
	n := Normalized{Slug: f.Slug, Steps: make([]NormalizedStep, len(f.Steps))}
	for i, s := range f.Steps {
		deps := s.DependsOn
		if deps == nil {
			deps = []string{}
		}
		n.Steps[i] = NormalizedStep{
			Slug:         s.Slug,
			DependsOn:    deps,
			Map:          s.Map,
			TakesInput:   s.TakesInput,
			MaxAttempts:  Attempts(pick(s.Options.Retries, f.Options.Retries, DefaultRetries)),
			BaseDelayMS:  ceilMS(pick(s.Options.BaseDelay, f.Options.BaseDelay, DefaultBaseDelay)),
			TimeoutMS:    max(1, ceilMS(pick(s.Options.Timeout, f.Options.Timeout, DefaultTimeout))),
			StartDelayMS: ceilMS(s.Options.StartDelay),
			Priority:     s.Options.Priority,
			Concurrency:  s.Options.Concurrency,
			Key:          s.Options.Key,

			When:           s.When != nil,
			Optional:       s.Optional,
			AcceptsSkipped: s.AcceptsSkipped,
			Wait:           s.Wait,
			WaitTimeoutMS:  ceilMS(s.WaitTimeout),
		}
		if r := s.Options.Rate; !r.IsZero() {
			n.Steps[i].RateN, n.Steps[i].RatePerMS, n.Steps[i].Burst = r.N, ceilMS(r.Per), r.Bursts()
		}
	}
	return n
}

// Effective returns the options the engine applies to step s of f: its
// own, else the flow's, else the defaults. Retries is never 0 unless the
// step gets no retry, in which case it is NoRetries. Priority and the
// limits are left zero: they order and pace claims and are not part of
// how a run executes (nor of the shape hash).
func (f FlowDef) Effective(s StepDef) StepOptions {
	r := pick(s.Options.Retries, f.Options.Retries, DefaultRetries)
	return StepOptions{
		Retries:    r,
		BaseDelay:  pick(s.Options.BaseDelay, f.Options.BaseDelay, DefaultBaseDelay),
		Timeout:    pick(s.Options.Timeout, f.Options.Timeout, DefaultTimeout),
		StartDelay: s.Options.StartDelay,
	}
}

// Attempts converts a Retries value to attempts in all: retries + 1, and 1
// for NoRetries (or any negative value).
func Attempts(retries int) int { return max(retries, 0) + 1 }

// ShapeHash returns a stable hash of everything that affects how runs of
// the flow execute: its Normalized form (step slugs, order, dependencies,
// map and input flags, resolved options, conditions, optional steps and
// the dependencies whose skip a step takes) less the step priorities and
// limits. Two definitions with the same hash are interchangeable, however
// their options were spelled; priorities only order claims, and limits
// (Concurrency, Rate, Key, also the flow's) only pace them, so a
// definition that changes nothing else keeps its hash, and its flow
// version: its runs go on with the new priorities and limits.
func (f FlowDef) ShapeHash() string { return f.normal().ShapeHash() }

// ShapeHash returns the shape hash of the definition n was made from (see
// FlowDef.ShapeHash).
func (n Normalized) ShapeHash() string {
	if slices.ContainsFunc(n.Steps, func(s NormalizedStep) bool { return s.Priority != 0 || s.limited() }) {
		steps := slices.Clone(n.Steps)
		for i := range steps {
			// Omitted from the JSON: hashes as before priorities and
			// limits existed.
			steps[i].Priority = 0
			steps[i].Concurrency, steps[i].RateN, steps[i].RatePerMS, steps[i].Burst, steps[i].Key = 0, 0, 0, 0, ""
		}
		n.Steps = steps
	}
	b, err := json.Marshal(n)
	if err != nil {
		panic(err) // plain data: cannot fail
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

func pick[T comparable](step, flow, dflt T) T {
	var zero T
	if step != zero {
		return step
	}
	if flow != zero {
		return flow
	}
	return dflt
}

func ceilMS(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// limited reports whether the step has a limit across workers.
func (s NormalizedStep) limited() bool {
	return s.Concurrency != 0 || s.RateN != 0 || s.RatePerMS != 0 || s.Burst != 0 || s.Key != ""
}
