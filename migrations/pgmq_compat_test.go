package migrations

import "testing"

func TestPlanPgmq(t *testing.T) {
	ours := pgmqPlan{Action: pgmqOurs}
	keep := pgmqPlan{Action: pgmqKeep}
	ext := func(v string) pgmqPlan { return pgmqPlan{Action: pgmqExtension, Version: v} }
	for _, tc := range []struct {
		name  string
		state pgmqState
		want  pgmqPlan
	}{
		{"nothing offered", pgmqState{}, ours},
		{"offered 1.10.0", pgmqState{Default: "1.10.0", Offered: []string{"1.10.0"}}, ext("1.10.0")},
		{"offered 1.11.2", pgmqState{Default: "1.11.2", Offered: []string{"1.10.0", "1.11.2"}}, ext("1.11.2")},
		{"offered 2.0", pgmqState{Default: "2.0", Offered: []string{"2.0"}}, ext("2.0")},
		// Issue 11's server: only pgmq 1.5.1, whose layout runtime/pgmq
		// cannot use. Our SQL is installed instead.
		{"offered only 1.5.1", pgmqState{Default: "1.5.1", Offered: []string{"1.4.4", "1.5.0", "1.5.1"}}, ours},
		{"offered 1.9.9", pgmqState{Default: "1.9.9", Offered: []string{"1.9.9"}}, ours},
		// A packager's default older than another offered version: the
		// newest recent-enough version wins.
		{"old default, newer offered", pgmqState{Default: "1.5.1", Offered: []string{"1.5.1", "1.10.0", "1.10.2", "1.9.0"}}, ext("1.10.2")},
		{"unparsable default", pgmqState{Default: "1.10-beta", Offered: []string{"1.10-beta"}}, ours},
		// Whatever is installed is left alone, old or new.
		{"extension 1.5.1 installed", pgmqState{Installed: "1.5.1", Present: true, Default: "1.10.0", Offered: []string{"1.10.0"}}, keep},
		{"extension 1.10.0 installed", pgmqState{Installed: "1.10.0", Present: true, Default: "1.10.0"}, keep},
		{"SQL-only pgmq installed", pgmqState{Present: true, Default: "1.10.0", Offered: []string{"1.10.0"}}, keep},
		{"ours installed", pgmqState{Present: true}, keep},
	} {
		if got := planPgmq(tc.state); got != tc.want {
			t.Errorf("%s: planPgmq(%+v) = %+v, want %+v", tc.name, tc.state, got, tc.want)
		}
	}
}

func TestPgmqVersionOK(t *testing.T) {
	for v, want := range map[string]bool{
		"1.10": true, "1.10.0": true, "1.10.1": true, "1.11": true, "2.0.0": true, "10.0": true,
		"1.9": false, "1.9.99": false, "1.5.1": false, "1.4.4": false, "0.33.1": false, "1.1": false,
		"": false, "1.10-rc1": false, "1..10": false, "v1.10": false, "1.10.": false, "1.10 ": false,
		"1.10'; DROP TABLE x; --": false,
	} {
		if got := pgmqVersionOK(v); got != want {
			t.Errorf("pgmqVersionOK(%q) = %t, want %t", v, got, want)
		}
	}
}

func TestCompareVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"1.10", "1.10.0", 0},
		{"1.10.0", "1.10.1", -1},
		{"1.10.1", "1.11", -1},
		{"1.9.9", "1.10", -1},
		{"2", "1.99.99", 1},
	} {
		if got := compareVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("compareVersions(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := compareVersions(tc.b, tc.a); got != -tc.want {
			t.Errorf("compareVersions(%q, %q) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}
