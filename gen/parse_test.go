package gen

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/quantumflow/qflow/flowdef"
)

var directiveSeeds = []string{
	"//qflow:flow etl retries=3 backoff=1s timeout=60s",
	"//qflow:step",
	"//qflow:step depends=Clean,Count retries=5 timeout=30s",
	"//qflow:step depends=Extract map name=clean_rows flow=etl delay=1500ms",
	"//qflow:step retries=lots timeout=soon",
	"//qflow:step depends= name=Bad-Name bogus retries=3 retries=4 map=yes",
	"//qflow:step depends=A,,9lives flow=",
	"//qflow:flow",
	"//qflow:flow retries=2",
	"//qflow:",
	"//qflow: step",
	"//qflow:stpe x",
	"//qflow:step\tmap\t depends=A",
	"//qflow:step backoff=-1s delay=0s timeout=0s",
	"//qflow:flow é retries=99999999999999999999",
	"//qflow:step name=ünïcode depends=Ä",
	"//qflow:step retries=0 attempts=1",
	"//qflow:flow f attempts=1000 retries=999",
	"//qflow:step depends=A when=IsSpam optional",
	"//qflow:step when= when=x.Y optional=1 optional",
	"//qflow:flow f when=X optional",
}

func TestParseDirective(t *testing.T) {
	d, errs := parseDirective("//qflow:step depends=Clean,Count map name=load flow=etl retries=5 backoff=2s timeout=30s delay=1m")
	if errs != nil {
		t.Fatal(errs)
	}
	got := struct {
		Kind, Slug, Flow string
		Depends          []word
		Map              bool
		Opts             optionSpec
	}{d.Kind.Text, d.Slug.Text, d.Flow.Text, d.Depends, d.Map, d.Options}
	want := got
	want.Kind, want.Slug, want.Flow, want.Map = "step", "load", "etl", true
	want.Depends = []word{{"Clean", 21}, {"Count", 27}}
	want.Opts = optionSpec{Retries: 5, RetriesOff: 56, Backoff: 2 * time.Second, Timeout: 30 * time.Second, Delay: time.Minute}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}

	d, errs = parseDirective("//qflow:step idempotent")
	if errs != nil || !d.Options.Idempotent {
		t.Fatalf("idempotent: %+v, %v", d.Options, errs)
	}
	_, errs = parseDirective("//qflow:flow f idempotent=yes")
	if diff := cmp.Diff([]parseError{{15, "option idempotent takes no value"}}, errs); diff != "" {
		t.Errorf("idempotent=yes: errors (-want +got)\n%s", diff)
	}

	_, errs = parseDirective("//qflow:step retries=lots timeout=soon")
	wantErrs := []parseError{
		{21, "retries=lots: want a whole number of retries after the first attempt, from 0 to 999"},
		{34, "timeout=soon: want a duration such as 500ms, 30s or 5m"},
	}
	if diff := cmp.Diff(wantErrs, errs); diff != "" {
		t.Errorf("errors (-want +got)\n%s", diff)
	}
}

// TestParseCondition: when=Func names the condition, optional is a flag;
// both belong to steps only.
func TestParseCondition(t *testing.T) {
	d, errs := parseDirective("//qflow:step depends=Classify when=IsSpam optional")
	if errs != nil {
		t.Fatal(errs)
	}
	if d.When != (word{"IsSpam", 35}) || d.WhenOff != 30 || !d.Optional || d.OptionalOff != 42 {
		t.Errorf("when %+v at %d, optional %v at %d", d.When, d.WhenOff, d.Optional, d.OptionalOff)
	}
	_, errs = parseDirective("//qflow:step when=a.B optional=yes")
	wantErrs := []parseError{
		{18, "when=a.B: want the name of a function of this package (func(<the step's parameters after ctx>) bool)"},
		{22, "option optional takes no value"},
	}
	if diff := cmp.Diff(wantErrs, errs); diff != "" {
		t.Errorf("errors (-want +got)\n%s", diff)
	}
	_, errs = parseDirective("//qflow:flow f when=X optional")
	if len(errs) != 2 || !strings.Contains(errs[0].Msg, `unknown option "when" for //qflow:flow`) || !strings.Contains(errs[1].Msg, `unknown option "optional" for //qflow:flow`) {
		t.Errorf("when and optional on a flow: %v", errs)
	}
}

// TestParseRetries: retries=N counts the tries after the first, attempts=N
// all of them; both become flowdef.StepOptions.Retries, with NoRetries for
// a single attempt. Only retries= is remembered for the check of its old
// meaning.
func TestParseRetries(t *testing.T) {
	for _, tc := range []struct {
		text    string
		retries int
		off     int
	}{
		{"//qflow:step retries=3", 3, 13},
		{"//qflow:step retries=0", flowdef.NoRetries, 13},
		{"//qflow:step attempts=4", 3, -1},
		{"//qflow:step attempts=1", flowdef.NoRetries, -1},
		{"//qflow:flow f timeout=1s retries=999", 999, 26},
		{"//qflow:step", 0, -1},
	} {
		d, errs := parseDirective(tc.text)
		if errs != nil {
			t.Fatalf("%s: %v", tc.text, errs)
		}
		if d.Options.Retries != tc.retries || d.Options.RetriesOff != tc.off {
			t.Errorf("%s: Retries %d at %d, want %d at %d", tc.text, d.Options.Retries, d.Options.RetriesOff, tc.retries, tc.off)
		}
	}
	for _, text := range []string{"//qflow:step retries=1000", "//qflow:step attempts=0", "//qflow:step attempts=1001", "//qflow:step retries=-1", "//qflow:step attempts=2 retries=1"} {
		if _, errs := parseDirective(text); len(errs) != 1 {
			t.Errorf("%s: %d errors, want 1", text, len(errs))
		}
	}
}

// TestNearMiss: comments meant as directives but not read as one are
// recognised, with the directive they were meant to be; prose is not.
func TestNearMiss(t *testing.T) {
	for text, want := range map[string]string{
		"// qflow:step":                 "//qflow:step",
		"//  qflow:step depends=A map":  "//qflow:step depends=A map",
		"//\tqflow:flow etl retries=3":  "//qflow:flow etl retries=3",
		"//QFlow:step":                  "//qflow:step",
		"// QFlow:step depends=Ok":      "//qflow:step depends=Ok", // as gofmt rewrites //QFlow:step
		"// QFLOW:STEP name=x":          "//qflow:step name=x",
		"//qflow:stpe":                  "", // a directive: the parser reports it
		"// qflow:stpe depends=A":       "//qflow:step depends=A",
		"// qflow: a comment about it":  "",
		"// qflow:workers are separate": "",
		"// see //qflow:step":           "",
		"/* qflow:step */":              "",
		"// qflowstep":                  "",
		"// qflow:":                     "",
	} {
		if text == "//qflow:stpe" {
			if !isDirective(text) {
				t.Errorf("%q is not taken as a directive", text)
			}
			continue
		}
		if got := nearMiss(text); got != want {
			t.Errorf("nearMiss(%q) = %q, want %q", text, got, want)
		}
	}
}

func TestSnakeCase(t *testing.T) {
	for in, want := range map[string]string{
		"Extract": "extract", "LoadRows": "load_rows", "HTTPFetch": "http_fetch", "ParseJSON": "parse_json",
		"loadRows": "load_rows", "Step2": "step2", "V2Load": "v2_load", "resize": "resize", "ID": "id",
	} {
		if got := snakeCase(in); got != want {
			t.Errorf("snakeCase(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzParseDirective: the parser never panics, every error points inside
// the comment, and the words it returns are where it says they are.
func FuzzParseDirective(f *testing.F) {
	for _, s := range directiveSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		if !strings.HasPrefix(text, directivePrefix) {
			text = directivePrefix + text
		}
		if strings.ContainsAny(text, "\n") || !utf8.ValidString(text) {
			return // a // comment is one line of source
		}
		d, errs := parseDirective(text)
		for _, e := range errs {
			if e.Off < 0 || e.Off > len(text) {
				t.Fatalf("error %q at offset %d outside %q", e.Msg, e.Off, text)
			}
			if e.Msg == "" {
				t.Fatalf("empty error message at %d", e.Off)
			}
		}
		if d == nil {
			if len(errs) == 0 {
				t.Fatal("no directive and no error")
			}
			return
		}
		check := func(w word) {
			if w.Text == "" {
				return
			}
			if w.Off < 0 || w.Off+len(w.Text) > len(text) || text[w.Off:w.Off+len(w.Text)] != w.Text {
				t.Fatalf("word %q at %d does not match %q", w.Text, w.Off, text)
			}
		}
		check(d.Kind)
		check(d.Name)
		check(d.Slug)
		check(d.Flow)
		for _, w := range d.Depends {
			check(w)
		}
		if len(errs) == 0 && d.Kind.Text == "flow" && !flowdef.ValidSlug(d.Name.Text) {
			t.Fatalf("flow name %q accepted", d.Name.Text)
		}
	})
}
