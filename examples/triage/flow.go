// Package triage is an example flow with conditional and optional steps:
// support tickets are classified, then only some steps run, depending on
// what the classification says, and a lookup that may fail does not fail
// the run.
//
//   - Quarantine runs only for spam (when=IsSpam), and NotifySecurity,
//     which needs Quarantine's output, is skipped with it.
//   - Links runs only when the ticket has links (when=HasLinks), and
//     ScanLink, a map step over the links, is skipped with it.
//   - Page runs only for urgent tickets that are not spam (when=IsUrgent).
//   - LookupCustomer is optional: when it fails after its retries (the
//     sender is no customer), the run goes on without it.
//   - File takes all of these as pointers, nil for the ones that were
//     skipped, so it always runs, and files the ticket with what is known.
//
// The flow's diagram, as qflowgen draws it, is qflow_triage.mmd;
// ExampleRunTriage runs it.
package triage

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

//go:generate go run github.com/quantumflow/qflow/cmd/qflowgen -mermaid

// Ticket is the flow's input.
//
//qflow:flow triage retries=2 backoff=10ms timeout=10s
type Ticket struct {
	ID      string
	From    string
	Subject string
	Body    string
}

// Verdict is what Classify makes of a ticket.
type Verdict struct {
	Spam     bool
	Priority string // "normal" or "urgent"
}

// Customer is the sender, when known.
type Customer struct {
	Name string
	Plan string
}

// LinkScan is one link's verdict.
type LinkScan struct {
	URL  string
	Safe bool
}

// Filed is how the ticket was filed: the flow's result.
type Filed struct {
	Queue    string   // where the ticket went
	Customer string   // "" when unknown
	Notes    []string // what the optional steps added
}

// Classify reads the ticket.
//
//qflow:step
func Classify(ctx context.Context, t Ticket) (Verdict, error) {
	v := Verdict{Priority: "normal", Spam: strings.Contains(t.Body, "$$$")}
	if strings.Contains(strings.ToLower(t.Subject), "down") {
		v.Priority = "urgent"
	}
	return v, nil
}

// IsSpam is Quarantine's condition: a plain function of Quarantine's
// parameters after ctx, returning bool.
func IsSpam(t Ticket, v Verdict) bool { return v.Spam }

// Quarantine moves spam aside and returns the quarantine id. It runs only
// when IsSpam says so.
//
//qflow:step depends=Classify when=IsSpam
func Quarantine(ctx context.Context, t Ticket, v Verdict) (string, error) {
	return "q-" + t.ID, nil
}

// NotifySecurity needs Quarantine's output (a string, not a pointer), so
// it is skipped whenever Quarantine is.
//
//qflow:step depends=Quarantine
func NotifySecurity(ctx context.Context, quarantineID string) (string, error) {
	return "security notified of " + quarantineID, nil
}

// HasLinks is Links' condition.
func HasLinks(t Ticket, v Verdict) bool { return strings.Contains(t.Body, "http") }

// Links lists the ticket's links.
//
//qflow:step depends=Classify when=HasLinks
func Links(ctx context.Context, t Ticket, v Verdict) ([]string, error) {
	var out []string
	for _, w := range strings.Fields(t.Body) {
		if strings.HasPrefix(w, "http") {
			out = append(out, w)
		}
	}
	return out, nil
}

// ScanLink checks one link. A map step cannot run without its dependency:
// it is skipped with Links.
//
//qflow:step depends=Links map
func ScanLink(ctx context.Context, url string) (LinkScan, error) {
	return LinkScan{URL: url, Safe: strings.HasPrefix(url, "https://")}, nil
}

// IsUrgent is Page's condition.
func IsUrgent(v Verdict) bool { return !v.Spam && v.Priority == "urgent" }

// Page wakes the on-call engineer.
//
//qflow:step depends=Classify when=IsUrgent
func Page(ctx context.Context, v Verdict) (string, error) { return "paged on-call", nil }

// customers is the example's customer database.
var customers = map[string]Customer{
	"ada@example.com":   {Name: "Ada", Plan: "enterprise"},
	"grace@example.com": {Name: "Grace", Plan: "team"},
}

// errNoCustomer is LookupCustomer's failure for a sender who is no customer.
var errNoCustomer = errors.New("no customer with this address")

// LookupCustomer finds the sender. It is optional: when it fails after its
// retries, the run goes on as if it had been skipped, and the failure is
// kept on the step.
//
//qflow:step optional retries=1
func LookupCustomer(ctx context.Context, t Ticket) (Customer, error) {
	c, ok := customers[t.From]
	if !ok {
		return Customer{}, fmt.Errorf("%s: %w", t.From, errNoCustomer)
	}
	return c, nil
}

// File takes every step that may be skipped as a pointer, nil when it was,
// so it always runs.
//
//qflow:step depends=Classify,Quarantine,ScanLink,Page,LookupCustomer
func File(ctx context.Context, t Ticket, v Verdict, quarantineID *string, scans *[]LinkScan, page *string, c *Customer) (Filed, error) {
	f := Filed{Queue: v.Priority}
	if quarantineID != nil {
		f.Queue = "spam"
		f.Notes = append(f.Notes, "quarantined as "+*quarantineID)
	}
	if scans != nil {
		for _, s := range *scans {
			if !s.Safe {
				f.Notes = append(f.Notes, "unsafe link "+s.URL)
			}
		}
	}
	if page != nil {
		f.Notes = append(f.Notes, *page)
	}
	if c != nil {
		f.Customer = c.Name + " (" + c.Plan + ")"
	}
	return f, nil
}
