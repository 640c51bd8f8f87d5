// Package triage has conditional and optional steps: a condition
// (when=), steps skipped with the steps they depend on, steps that take a
// skipped dependency as a pointer, and an optional step.
package triage

import (
	"context"
	"errors"
	"strings"
)

//qflow:flow triage
type Mail struct{ From, Body string }

type Verdict struct {
	Spam  bool
	Score float64
}

// Classify scores the mail.
//
//qflow:step
func Classify(ctx context.Context, m Mail) (Verdict, error) {
	return Verdict{Spam: strings.Contains(m.Body, "$$$"), Score: 0.5}, nil
}

// IsSpam is Quarantine's condition: Quarantine's parameters after ctx.
func IsSpam(m Mail, v Verdict) bool { return v.Spam }

// Quarantine runs only for spam.
//
//qflow:step depends=Classify when=IsSpam
func Quarantine(ctx context.Context, m Mail, v Verdict) (string, error) { return "q-" + m.From, nil }

// Alert is skipped with Quarantine (it takes its output as a string).
//
//qflow:step depends=Quarantine
func Alert(ctx context.Context, ticket string) error { return nil }

// Enrich may fail without failing the run.
//
//qflow:step depends=Classify optional retries=1
func Enrich(ctx context.Context, v Verdict) ([]string, error) { return nil, errors.New("down") }

// Tags runs once per tag, skipped with Enrich.
//
//qflow:step depends=Enrich map
func Tags(ctx context.Context, tag string) (int, error) { return len(tag), nil }

// Report takes Quarantine's and Enrich's skips (pointers), so it always runs.
//
//qflow:step depends=Classify,Quarantine,Enrich
func Report(ctx context.Context, v Verdict, ticket *string, extra *[]string) (string, error) {
	if ticket == nil {
		return "clean", nil
	}
	return "spam " + *ticket, nil
}

// NoInput is conditional and takes nothing.
//
//qflow:step when=enabled
func NoInput(ctx context.Context) (bool, error) { return true, nil }

func enabled() bool { return true }
