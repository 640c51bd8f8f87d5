package gen

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/quantumflow/qflow/flowdef"
	"github.com/quantumflow/qflow/flowdef/cronspec"
)

// This file parses one //qflow: directive line. It knows nothing about
// go/ast or go/types: every word and every error carries a byte offset into
// the comment text ("//qflow:..."), which the loader turns into a token.Pos
// by adding it to Comment.Slash.

// directivePrefix starts every qflowgen directive.
const directivePrefix = "//qflow:"

// word is a piece of a directive with its byte offset in the comment text.
type word struct {
	Text string
	Off  int
}

// optionSpec holds the timing options a flow or a step may set. A field is
// zero when the option is absent.
type optionSpec struct {
	// Retries is the value for flowdef.StepOptions.Retries: from retries=N
	// (N, or flowdef.NoRetries for 0) or attempts=N (N-1, or NoRetries
	// for 1); 0 when neither is given.
	Retries int
	// RetriesOff is the offset of a retries= option, -1 when absent: the
	// spelling whose meaning changed (see checker.retriesMeaning).
	RetriesOff int
	Backoff    time.Duration
	Timeout    time.Duration
	Delay      time.Duration
	// Priority is the step's claim priority from priority=N (0 when
	// absent; flowdef.StepOptions.Priority).
	Priority int
	// Idempotent is set by the word idempotent (flowdef.StepOptions.Idempotent).
	Idempotent bool
	// Limits across workers: concurrency=N (a flow's or a step's),
	// rate=N/UNIT with burst=N, and key=NAME (Text empty when absent; the
	// checker resolves it against the step's parameters).
	Concurrency int
	Rate        flowdef.Rate
	Key         word
}

// directive is a parsed //qflow:flow or //qflow:step line.
type directive struct {
	Kind word // "flow" or "step"

	// //qflow:flow NAME
	Name word
	// cron=, tz= and missed= of //qflow:flow, Text empty when absent; Cron
	// is unquoted.
	Cron, TZ, Missed word

	// //qflow:step
	Depends     []word
	DependsOff  int // offset of "depends=", -1 when absent
	Map         bool
	MapOff      int
	Slug        word // name=, Text empty when absent
	Flow        word // flow=, Text empty when absent
	When        word // when= (the condition's function name), Text empty when absent
	WhenOff     int  // offset of "when=", -1 when absent
	Optional    bool
	OptionalOff int
	// wait= (the signal's name, Text empty when absent) and
	// wait_timeout= (0 when absent, at WaitTimeoutOff, -1 then).
	Wait           word
	WaitTimeout    time.Duration
	WaitTimeoutOff int
	// subflow= (the child flow's name, Text empty when absent).
	Subflow word

	Options optionSpec
}

// parseError is a problem found in a directive, at a byte offset of the
// comment text.
type parseError struct {
	Off int
	Msg string
}

// isDirective reports whether a comment's text is a qflowgen directive.
func isDirective(text string) bool { return strings.HasPrefix(text, directivePrefix) }

// parseDirective parses the text of a comment starting with "//qflow:". It
// never panics; every error has an offset within text.
func parseDirective(text string) (*directive, []parseError) {
	var errs []parseError
	bad := func(off int, format string, a ...any) {
		errs = append(errs, parseError{Off: off, Msg: fmt.Sprintf(format, a...)})
	}
	d := &directive{DependsOff: -1, MapOff: -1, WhenOff: -1, OptionalOff: -1, WaitTimeoutOff: -1, Options: optionSpec{RetriesOff: -1}}
	if !isDirective(text) {
		bad(0, "not a //qflow: directive")
		return nil, errs
	}
	words := splitWords(text, len(directivePrefix))
	if len(words) == 0 || words[0].Off != len(directivePrefix) {
		bad(len(directivePrefix), "missing directive name after //qflow: (want //qflow:flow or //qflow:step)")
		return nil, errs
	}
	d.Kind = words[0]
	words = words[1:]
	switch d.Kind.Text {
	case "flow":
		if len(words) == 0 || strings.Contains(words[0].Text, "=") {
			bad(d.Kind.Off, "//qflow:flow needs a flow name: //qflow:flow NAME [options]")
		} else {
			d.Name = words[0]
			words = words[1:]
			if !flowdef.ValidSlug(d.Name.Text) {
				bad(d.Name.Off, "invalid flow name %q: want a lowercase letter, then lowercase letters, digits or underscores (at most 40)", d.Name.Text)
			}
		}
	case "step":
	default:
		if alt := suggest(d.Kind.Text, []string{"flow", "step"}); alt != "" {
			bad(d.Kind.Off, "unknown directive //qflow:%s (did you mean //qflow:%s?)", d.Kind.Text, alt)
		} else {
			bad(d.Kind.Off, "unknown directive //qflow:%s (want //qflow:flow or //qflow:step)", d.Kind.Text)
		}
		return nil, errs
	}
	seen := map[string]bool{}
	burstOff := -1
	for _, w := range words {
		key, val, hasVal := strings.Cut(w.Text, "=")
		valOff := w.Off + len(key) + 1
		if seen[key] {
			bad(w.Off, "option %s given twice", key)
			continue
		}
		seen[key] = true
		if !hasVal {
			if key == "map" && d.Kind.Text == "step" {
				d.Map, d.MapOff = true, w.Off
				continue
			}
			if key == "optional" && d.Kind.Text == "step" {
				d.Optional, d.OptionalOff = true, w.Off
				continue
			}
			if key == "idempotent" {
				d.Options.Idempotent = true
				continue
			}
			if knownOption(d.Kind.Text, key) {
				bad(w.Off, "option %s needs a value: %s=...", key, key)
			} else {
				bad(w.Off, "unknown option %q for //qflow:%s (want %s)", w.Text, d.Kind.Text, optionList(d.Kind.Text))
			}
			continue
		}
		if !knownOption(d.Kind.Text, key) {
			bad(w.Off, "unknown option %q for //qflow:%s (want %s)", key, d.Kind.Text, optionList(d.Kind.Text))
			continue
		}
		if key == "map" || key == "optional" || key == "idempotent" {
			bad(w.Off, "option %s takes no value", key)
			continue
		}
		if val == "" {
			bad(w.Off, "option %s needs a value: %s=...", key, key)
			continue
		}
		switch key {
		case "depends":
			d.DependsOff = w.Off
			off := valOff
			for _, name := range strings.Split(val, ",") {
				if name == "" {
					bad(off, "empty name in depends=%s", val)
				} else if !isIdent(name) {
					bad(off, "depends=%s: %q is not a Go function name", val, name)
				} else {
					d.Depends = append(d.Depends, word{name, off})
				}
				off += len(name) + 1
			}
		case "name":
			d.Slug = word{val, valOff}
			if !flowdef.ValidSlug(val) {
				bad(valOff, "invalid step name %q: want a lowercase letter, then lowercase letters, digits or underscores (at most 40)", val)
			}
		case "flow":
			d.Flow = word{val, valOff}
		case "cron":
			spec := val
			if strings.HasPrefix(val, `"`) {
				u, err := strconv.Unquote(val)
				if err != nil {
					bad(valOff, "cron=%s: unterminated or malformed quotes (write cron=\"0 * * * *\")", val)
					continue
				}
				spec = u
			}
			if _, err := cronspec.Parse(spec, ""); err != nil {
				msg := strings.TrimPrefix(err.Error(), cronspec.ErrBadSpec.Error()+": ")
				msg = strings.TrimPrefix(msg, fmt.Sprintf("cron spec %q: ", spec))
				bad(valOff, "cron=%s: %s", val, msg)
				continue
			}
			d.Cron = word{spec, valOff}
		case "tz":
			if _, err := cronspec.Location(val); err != nil {
				bad(valOff, "tz=%s: %s", val, strings.TrimPrefix(err.Error(), cronspec.ErrBadSpec.Error()+": "))
				continue
			}
			d.TZ = word{val, valOff}
		case "missed":
			if val != "latest" && val != "all" {
				bad(valOff, "missed=%s: want latest (run the latest missed tick once) or all (run every missed tick)", val)
				continue
			}
			d.Missed = word{val, valOff}
		case "wait":
			if !flowdef.ValidSlug(val) {
				bad(valOff, "wait=%s: want a signal name: a lowercase letter, then lowercase letters, digits or underscores (at most 40)", val)
				continue
			}
			d.Wait = word{val, valOff}
		case "subflow":
			if !flowdef.ValidSlug(val) {
				bad(valOff, "subflow=%s: want the name of a flow of this package (//qflow:flow NAME): a lowercase letter, then lowercase letters, digits or underscores (at most 40)", val)
				continue
			}
			d.Subflow = word{val, valOff}
		case "wait_timeout":
			dur, err := time.ParseDuration(val)
			if err != nil || dur <= 0 {
				bad(valOff, "wait_timeout=%s: want a positive duration such as 30m or 72h", val)
				continue
			}
			d.WaitTimeout, d.WaitTimeoutOff = dur, w.Off
		case "when":
			if !isIdent(val) {
				bad(valOff, "when=%s: want the name of a function of this package (func(<the step's parameters after ctx>) bool)", val)
				continue
			}
			d.When, d.WhenOff = word{val, valOff}, w.Off
		case "retries", "attempts":
			other := map[string]string{"retries": "attempts", "attempts": "retries"}[key]
			if seen[other] {
				bad(w.Off, "%s= and %s= both set how often a task is tried: give one", other, key)
				continue
			}
			n, err := strconv.Atoi(val)
			if key == "retries" {
				if err != nil || n < 0 || n > maxRetries {
					bad(valOff, "retries=%s: want a whole number of retries after the first attempt, from 0 to %d", val, maxRetries)
					continue
				}
				d.Options.RetriesOff = w.Off
			} else {
				if err != nil || n < 1 || n > maxRetries+1 {
					bad(valOff, "attempts=%s: want a whole number of attempts in all, from 1 to %d", val, maxRetries+1)
					continue
				}
				n--
			}
			d.Options.Retries = n
			if n == 0 {
				d.Options.Retries = flowdef.NoRetries
			}
		case "concurrency":
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 || n > flowdef.MaxConcurrency {
				bad(valOff, "concurrency=%s: want a whole number of tasks from 1 to %d, the most that may run at once across all workers", val, flowdef.MaxConcurrency)
				continue
			}
			d.Options.Concurrency = n
		case "rate":
			r, err := flowdef.ParseRate(val)
			if err != nil {
				bad(valOff, "rate=%s: %v", val, err)
				continue
			}
			d.Options.Rate.N, d.Options.Rate.Per = r.N, r.Per
		case "burst":
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 || n > flowdef.MaxBurst {
				bad(valOff, "burst=%s: want a whole number of tasks from 1 to %d that may start at once", val, flowdef.MaxBurst)
				continue
			}
			d.Options.Rate.Burst = n
			burstOff = w.Off
		case "key":
			ok := true
			for _, part := range strings.Split(val, ".") {
				ok = ok && isIdent(part)
			}
			if !ok {
				bad(valOff, "key=%s: want a field of the step's input, such as key=CustomerID or key=Customer.ID (or a parameter and its field: key=in.CustomerID)", val)
				continue
			}
			d.Options.Key = word{val, valOff}
		case "priority":
			n, err := strconv.ParseInt(val, 10, 32)
			if err != nil {
				bad(valOff, "priority=%s: want a whole number from %d to %d (higher is claimed first)", val, math.MinInt32, math.MaxInt32)
				continue
			}
			d.Options.Priority = int(n)
		case "backoff", "timeout", "delay":
			dur, err := time.ParseDuration(val)
			switch {
			case err != nil:
				bad(valOff, "%s=%s: want a duration such as 500ms, 30s or 5m", key, val)
				continue
			case dur < 0 || (dur == 0 && key != "delay"):
				bad(valOff, "%s=%s: want a positive duration", key, val)
				continue
			}
			switch key {
			case "backoff":
				d.Options.Backoff = dur
			case "timeout":
				d.Options.Timeout = dur
			case "delay":
				d.Options.Delay = dur
			}
		}
	}
	o := &d.Options
	if burstOff >= 0 && o.Rate.N == 0 && !seen["rate"] {
		bad(burstOff, "burst= needs rate=: it is how many of a rate's starts may come at once")
	}
	if o.Key.Text != "" && o.Concurrency == 0 && o.Rate.N == 0 && !seen["concurrency"] && !seen["rate"] {
		bad(o.Key.Off-len("key="), "key=%s limits nothing: give concurrency=N or rate=N/s too, which then hold per key", o.Key.Text)
	}
	if d.WaitTimeoutOff >= 0 && !seen["wait"] {
		bad(d.WaitTimeoutOff, "wait_timeout= needs wait=: it bounds the wait for the step's signal")
	}
	if !seen["cron"] {
		for _, o := range []struct {
			key string
			w   word
		}{{"tz", d.TZ}, {"missed", d.Missed}} {
			if o.w.Text != "" {
				bad(o.w.Off-len(o.key)-1, "%s= needs cron=: it says how the flow's cron schedule is read", o.key)
			}
		}
	}
	if len(errs) > 0 {
		return d, errs
	}
	return d, nil
}

// nearMiss returns the directive a comment that is not one was probably
// meant to be, or "": a line comment whose text, after spaces, starts with
// qflow: in any case and then names flow or step or a likely typo of them
// ("// qflow:step depends=A", "//QFlow:stpe"). Like go vet's check of
// misspelled build tags, it catches a step that would silently vanish.
func nearMiss(text string) string {
	rest, ok := strings.CutPrefix(text, "//")
	if !ok {
		return "" // a /* */ comment
	}
	body := strings.TrimLeft(rest, " \t")
	const name = "qflow:"
	if len(body) <= len(name) || !strings.EqualFold(body[:len(name)], name) {
		return ""
	}
	kind, args := body[len(name):], ""
	if i := strings.IndexAny(kind, " \t"); i >= 0 {
		kind, args = kind[:i], strings.TrimSpace(kind[i:])
	}
	fixed := suggest(kind, []string{"flow", "step"})
	if fixed == "" {
		return ""
	}
	fixed = directivePrefix + fixed
	if args != "" {
		fixed += " " + args
	}
	return fixed
}

// splitWords splits text[from:] at spaces and tabs, keeping offsets. A
// double-quoted part of a word (cron="0 * * * *") keeps its spaces, and
// backslash escapes inside it; an unterminated quote runs to the end.
func splitWords(text string, from int) []word {
	var out []word
	start := -1
	for i := from; i <= len(text); i++ {
		if i < len(text) && text[i] == '"' {
			if start < 0 {
				start = i
			}
			for i++; i < len(text) && text[i] != '"'; i++ {
				if text[i] == '\\' {
					i++
				}
			}
			if i >= len(text) {
				i = len(text) - 1
			}
			continue
		}
		if i == len(text) || text[i] == ' ' || text[i] == '\t' || text[i] == '\r' || text[i] == '\n' {
			if start >= 0 {
				out = append(out, word{text[start:i], start})
				start = -1
			}
			continue
		}
		if start < 0 {
			start = i
		}
	}
	return out
}

// maxRetries is the most retries an annotation may ask for.
const maxRetries = 999

func knownOption(kind, key string) bool {
	switch key {
	case "retries", "attempts", "backoff", "timeout", "idempotent", "concurrency":
		return true
	case "depends", "map", "name", "flow", "delay", "priority", "when", "optional", "rate", "burst", "key", "wait", "wait_timeout", "subflow":
		return kind == "step"
	case "cron", "tz", "missed":
		return kind == "flow"
	}
	return false
}

func optionList(kind string) string {
	if kind == "flow" {
		return "retries=N, attempts=N, backoff=DUR, timeout=DUR, idempotent, concurrency=N, cron=\"SPEC\", tz=ZONE, missed=latest|all"
	}
	return "depends=A,B, map, name=slug, flow=NAME, when=Func, optional, retries=N, attempts=N, backoff=DUR, timeout=DUR, delay=DUR, priority=N, idempotent, concurrency=N, rate=N/s, burst=N, key=FIELD, wait=SIGNAL, wait_timeout=DUR, subflow=FLOW"
}

// isIdent reports whether s is an ASCII Go identifier.
func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
