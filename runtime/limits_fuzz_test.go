package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// FuzzEncodeInput: any bytes given as a raw flow input are either accepted
// as valid JSON within the limits, or refused with an error wrapping
// ErrBadInput. Nothing panics.
func FuzzEncodeInput(f *testing.F) {
	for _, s := range []string{
		`{}`, `[]`, `null`, `"x"`, `1`, `-0.5e-3`, `{"a":[1,2,{"b":null}]}`,
		`{"a":"\u0000"}`, `"\ud800"`, `"\udc00\ud800"`, `"\ud83d\ude00"`, `"\ud83d\u0041"`,
		"\"\xff\"", `1e99999`, `1E-99999`, `[[[[[[[[[[]]]]]]]]]]`, `{"a":`, ``, ` `, `"\u12`,
		`{"a":1,"a":2}`, `[1,]`, `nul`, `"\\u0000"`, `"\\\u0000"`,
	} {
		f.Add([]byte(s))
	}
	lim := Limits{MaxInputBytes: 1 << 16, MaxJSONDepth: 8}
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := lim.encodeInput(json.RawMessage(b))
		if err != nil {
			if !errors.Is(err, ErrBadInput) || err.Error() == "" {
				t.Fatalf("rejection %v does not wrap ErrBadInput", err)
			}
			return
		}
		if !json.Valid(out) || len(out) > lim.maxInput() {
			t.Fatalf("accepted %q", out)
		}
	})
}

// FuzzCheckJSON: on any valid JSON, checkJSON's verdict on depth agrees
// with a decoder's, and it never panics on anything.
func FuzzCheckJSON(f *testing.F) {
	for _, s := range []string{`[[1]]`, `{"a":{"b":[]}}`, `"[[["`, `["\"[["]`, `[1e5,{"x":"\\"}]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := checkJSON(b, 3)
		if !json.Valid(b) {
			return
		}
		var v any
		if json.Unmarshal(b, &v) != nil {
			return
		}
		deep := depthOf(v) > 3
		if deep && err == nil {
			t.Fatalf("%q nests %d deep, accepted with limit 3", b, depthOf(v))
		}
		if !deep && errors.Is(err, ErrTooLarge) {
			t.Fatalf("%q nests %d deep, refused as too deep: %v", b, depthOf(v), err)
		}
	})
}

func depthOf(v any) int {
	d := 0
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			d = max(d, depthOf(e))
		}
		return d + 1
	case map[string]any:
		for _, e := range x {
			d = max(d, depthOf(e))
		}
		return d + 1
	}
	return 0
}

// FuzzHandlerFuncDecode: whatever JSON reaches a typed handler, decoding
// either works or fails the task permanently with an error naming the
// step; the handler never sees a half-decoded value and nothing panics.
func FuzzHandlerFuncDecode(f *testing.F) {
	for _, s := range []string{`{"run":{"source":"s3://x","n":3},"extract":[1,2]}`, `{"run":null}`, `[]`, `{"n":"3"}`, `{"n":1e400}`, `{"extract":{}}`, ``, `{`} {
		f.Add([]byte(s))
	}
	type in struct {
		Run struct {
			Source string `json:"source"`
			N      int    `json:"n"`
		} `json:"run"`
		Extract []int `json:"extract"`
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		called := false
		h := HandlerFunc(func(_ context.Context, v in) (int, error) {
			called = true
			return len(v.Extract), nil
		})
		out, err := h(context.Background(), &Task{Flow: "fz", Step: "load", Input: b})
		if err != nil {
			if called || !IsPermanent(err) || !strings.Contains(err.Error(), `"load"`) {
				t.Fatalf("decode failure %v (called=%v): want a permanent error naming the step", err, called)
			}
			return
		}
		if !called || !json.Valid(out) {
			t.Fatalf("handler called=%v, output %q", called, out)
		}
	})
}

// FuzzFlowDef: any JSON decoded into a FlowDef either validates or is
// refused with errors wrapping ErrInvalidFlow. A valid definition has
// slugs that fit the database and queue names, a topological order, at
// least one leaf and a stable shape hash.
func FuzzFlowDef(f *testing.F) {
	for _, s := range []string{
		`{"slug":"etl","steps":[{"slug":"a","takes_input":true},{"slug":"b","depends_on":["a"],"map":true}]}`,
		`{"slug":"c","steps":[{"slug":"a","depends_on":["b"]},{"slug":"b","depends_on":["a"]}]}`,
		`{"slug":"x; DROP TABLE qflow.runs","steps":[{"slug":"a"}]}`,
		`{"slug":"ok","steps":[{"slug":"run"}]}`,
		`{"slug":"ok","steps":[{"slug":"a","depends_on":["a"]}]}`,
		`{"slug":"ok","steps":[{"slug":"a","map":true,"depends_on":["b","c"]},{"slug":"b"},{"slug":"c"}]}`,
		`{"slug":"ok","options":{"retries":-2},"steps":[{"slug":"a","options":{"timeout":-5}}]}`,
		`{"slug":"ok","steps":[]}`, `{}`, `{"slug":"Ünïcode","steps":[{"slug":"ß"}]}`,
		`{"slug":"ok","steps":[{"slug":"a"},{"slug":"a"}]}`,
		`{"slug":"ok","steps":[{"slug":"m","map":true,"takes_input":true,"depends_on":["a"]},{"slug":"a"}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var def FlowDef
		if json.Unmarshal(b, &def) != nil {
			return
		}
		err := def.Validate()
		if err != nil {
			if !errors.Is(err, ErrInvalidFlow) {
				t.Fatalf("Validate: %v does not wrap ErrInvalidFlow", err)
			}
			return
		}
		if !ValidSlug(def.Slug) || len(def.Steps) == 0 || len(def.Steps) > MaxFlowSteps {
			t.Fatalf("accepted %+v", def)
		}
		seen := map[string]bool{}
		for len(seen) < len(def.Steps) { // Kahn: a valid graph drains
			progress := false
			for _, s := range def.Steps {
				if seen[s.Slug] || !ValidSlug(s.Slug) || s.Slug == "run" {
					continue
				}
				ready := true
				for _, d := range s.DependsOn {
					ready = ready && seen[d]
				}
				if ready {
					seen[s.Slug], progress = true, true
				}
			}
			if !progress {
				t.Fatalf("accepted a definition with no topological order: %s", b)
			}
		}
		if len(def.Leaves()) == 0 {
			t.Fatalf("accepted a definition without leaves (no run output): %s", b)
		}
		// The hash is a pure function of the definition: a copy made
		// through JSON, as a worker or another process would hold it,
		// hashes the same.
		var again FlowDef
		if err := json.Unmarshal(b, &again); err != nil {
			t.Fatal(err)
		}
		if h, h2 := def.ShapeHash(), again.ShapeHash(); h != h2 {
			t.Fatalf("shape hash %s, %s after a JSON round trip: %s", h, h2, b)
		}
	})
}
