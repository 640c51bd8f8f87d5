package pgmq_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/quantumflow/qflow/runtime/pgmq"
)

// pgmqAccepts is pgmq's rule, written independently of ValidateQueueName:
// pgmq rejects a name matching the regular expression \$|;|--|' and, on
// create, one longer than 47 characters. This package refuses besides what
// PostgreSQL text cannot hold (NUL, invalid UTF-8) and the empty name.
func pgmqAccepts(name string) bool {
	if name == "" || !utf8.ValidString(name) || strings.IndexByte(name, 0) >= 0 {
		return false
	}
	if utf8.RuneCountInString(name) > 47 {
		return false
	}
	for i, r := range name {
		if r == '$' || r == ';' || r == '\'' || (r == '-' && strings.HasPrefix(name[i+1:], "-")) {
			return false
		}
	}
	return true
}

// FuzzValidateQueueName: a name is accepted exactly when pgmq accepts it;
// every rejection wraps ErrInvalidQueueName and says why, and the table and
// channel names derived from an accepted one are what the server derives:
// lower-cased, prefixed, at most 63 bytes of whole characters.
func FuzzValidateQueueName(f *testing.F) {
	for _, s := range []string{
		"orders", "Orders_2", "", "a", strings.Repeat("q", 47), strings.Repeat("q", 48), strings.Repeat("ü", 47),
		"x; DROP TABLE pgmq.meta; --", `q"; SELECT 1; --`, "q\x00", "ünïcode", "q-1", "q--1", "q.1", "q 1", "a$b",
		"pg_catalog", "Robert'); DROP TABLE students;--", "\u0131", "K", "\xff", // dotless i, Kelvin sign
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := pgmq.ValidateQueueName(name)
		if ok := pgmqAccepts(name); ok != (err == nil) {
			t.Fatalf("ValidateQueueName(%q) = %v; pgmq's rule says ok=%v", name, err, ok)
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
		if err != nil || len(tbl) > 63 || !utf8.ValidString(tbl) || !strings.HasPrefix("q_"+strings.ToLower(name), tbl) {
			t.Fatalf("TableName(%q) = %q, %v", name, tbl, err)
		}
		if ch, err := pgmq.NotifyChannel(name); err != nil || ch != "pgmq."+tbl+".INSERT" {
			t.Fatalf("NotifyChannel(%q) = %q, %v", name, ch, err)
		}
	})
}
