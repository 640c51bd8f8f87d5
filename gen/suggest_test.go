package gen

import "testing"

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"step", "step", 0}, {"stpe", "step", 1}, {"step", "", 4}, {"", "flow", 4},
		{"Transfrom", "Transform", 1}, {"Extarct", "Extract", 1}, {"kitten", "sitting", 3}, {"ca", "abc", 3},
	} {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestSuggest(t *testing.T) {
	steps := []string{"Extract", "Transform", "Load"}
	for name, want := range map[string]string{
		"Transfrom": "Transform", "extract": "Extract", "Extarct": "Extract", "LOAD": "Load", "Lod": "Load",
		"Audit": "", "Lo": "", "A": "", "Loa": "Load", "Tansfrm": "Transform", "Xtrct": "Extract", "Xyz": "", "Loaders": "",
	} {
		if got := suggest(name, steps); got != want {
			t.Errorf("suggest(%q) = %q, want %q", name, got, want)
		}
	}
	if got := suggest("stpe", []string{"flow", "step"}); got != "step" {
		t.Errorf("suggest(stpe) = %q", got)
	}
	if got := suggest("b", []string{"a", "B"}); got != "B" {
		t.Errorf("suggest(b) = %q, want B (case only)", got)
	}
	if got := suggest("flwo", []string{"flow", "step"}); got != "flow" {
		t.Errorf("suggest(flwo) = %q", got)
	}
}
