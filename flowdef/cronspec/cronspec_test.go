package cronspec

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseErrors(t *testing.T) {
	for _, c := range []struct{ spec, tz, want string }{
		{"0 * * *", "", "cron spec \"0 * * *\""},
		{"61 * * * *", "", "cron spec \"61 * * * *\""},
		{"", "", "empty cron spec"},
		{"CRON_TZ=Europe/Berlin 0 * * * *", "", "give the time zone apart"},
		{"0 0 30 2 *", "", "never fires"},
		{"@every 0s", "", "at least 1s"},
		{"@every 1500ms", "", "at least 1s"},
		{"0 * * * *", "Europe/Berlim", `unknown time zone "Europe/Berlim"`},
		{"0 * * * *", "Local", `time zone "Local"`},
	} {
		_, err := Parse(c.spec, c.tz)
		if !errors.Is(err, ErrBadSpec) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q, %q) = %v; want an ErrBadSpec containing %q", c.spec, c.tz, err, c.want)
		}
	}
}

func TestTimeZone(t *testing.T) {
	s, err := Parse("0 9 * * *", "Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	from := time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)
	if got, want := s.Next(from), time.Date(2026, 1, 10, 8, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("winter: Next = %s, want %s", got.UTC(), want)
	}
	from = time.Date(2026, 7, 10, 0, 0, 0, 0, time.UTC)
	if got, want := s.Next(from), time.Date(2026, 7, 10, 7, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("summer: Next = %s, want %s", got.UTC(), want)
	}
	u, err := Parse("0 9 * * *", "")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := u.Next(from), time.Date(2026, 7, 10, 9, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("UTC: Next = %s, want %s", got.UTC(), want)
	}
}

// Latest agrees with walking every tick from the start.
func TestLatest(t *testing.T) {
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, spec := range []string{"* * * * * *", "*/7 * * * * *", "0 * * * *", "@every 90s", "30 2 * * 1", "@daily"} {
		s, err := Parse(spec, "Europe/Berlin")
		if err != nil {
			t.Fatal(err)
		}
		from := s.Next(base)
		for _, gap := range []time.Duration{0, time.Second, 89 * time.Second, time.Hour, 50 * time.Hour, 40 * 24 * time.Hour} {
			now := from.Add(gap)
			want := from
			if gap < 100*time.Hour || spec != "* * * * * *" { // walking a month of seconds is slow
				for n := s.Next(want); !n.After(now); n = s.Next(n) {
					want = n
				}
			} else {
				want = now.Truncate(time.Second)
			}
			if got := s.Latest(from, now); !got.Equal(want) {
				t.Errorf("%s: Latest(from, from+%s) = %s, want %s", spec, gap, got, want)
			}
		}
	}
}
