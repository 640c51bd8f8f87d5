package pgmq_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/quantumflow/qflow/runtime/pgmq"
)

var queueNameRE = regexp.MustCompile(`^[A-Za-z0-9_]{1,47}$`)

// FuzzValidateQueueName: a name is accepted exactly when it is 1 to 47
// ASCII letters, digits and underscores (so it can never break out of an
// identifier); every rejection wraps ErrInvalidQueueName and says why, and
// the names derived from an accepted one are valid identifiers too.
func FuzzValidateQueueName(f *testing.F) {
	for _, s := range []string{
		"orders", "Orders_2", "", "a", strings.Repeat("q", 47), strings.Repeat("q", 48),
		"x; DROP TABLE pgmq.meta; --", `q"; SELECT 1; --`, "q\x00", "ünïcode", "q-1", "q.1", "q 1",
		"pg_catalog", "Robert'); DROP TABLE students;--", "\u0131", "K", // dotless i, Kelvin sign
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := pgmq.ValidateQueueName(name)
		if ok := queueNameRE.MatchString(name); ok != (err == nil) {
			t.Fatalf("ValidateQueueName(%q) = %v; the rule says ok=%v", name, err, ok)
		}
		if err != nil {
			if !errors.Is(err, pgmq.ErrInvalidQueueName) || !strings.HasPrefix(err.Error(), "pgmq: invalid queue name") {
				t.Fatalf("rejection %q does not wrap ErrInvalidQueueName", err)
			}
			if _, terr := pgmq.TableName(name); terr == nil {
				t.Fatalf("TableName(%q) accepted a rejected name", name)
			}
			return
		}
		tbl, err := pgmq.TableName(name)
		if err != nil || !regexp.MustCompile(`^q_[a-z0-9_]{1,47}$`).MatchString(tbl) {
			t.Fatalf("TableName(%q) = %q, %v", name, tbl, err)
		}
		if ch, err := pgmq.NotifyChannel(name); err != nil || ch != "pgmq."+tbl+".INSERT" {
			t.Fatalf("NotifyChannel(%q) = %q, %v", name, ch, err)
		}
	})
}
