package runtime_test

import (
	"fmt"
	"strings"
	"testing"

	qflow "github.com/quantumflow/qflow/runtime"
	"github.com/quantumflow/qflow/runtime/pgmq"
)

// FuzzValidSlug: a slug is accepted only when it is safe everywhere it
// goes: a SQL identifier fragment, the flow's queue name <slug>_<version>
// for any version up to 999,999, and the database's CHECK constraint.
func FuzzValidSlug(f *testing.F) {
	for _, s := range []string{"etl", "a", "run", "A", "1a", "_a", "a-b", "a b", strings.Repeat("a", 40), strings.Repeat("a", 41),
		"a;drop table qflow.runs", "a\x00", "ünï", "a\u212a", "etl_v2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !qflow.ValidSlug(s) {
			return
		}
		if len(s) > 40 || s[0] < 'a' || s[0] > 'z' {
			t.Fatalf("ValidSlug(%q) accepted", s)
		}
		for _, c := range []byte(s) {
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
				t.Fatalf("ValidSlug(%q) accepted byte %q", s, c)
			}
		}
		if err := pgmq.ValidateQueueName(fmt.Sprintf("%s_%d", s, 999999)); err != nil {
			t.Fatalf("queue of slug %q: %v", s, err)
		}
	})
}
