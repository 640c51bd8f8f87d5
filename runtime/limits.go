package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/quantumflow/qflow/flowdef"
)

// Defaults for Limits. They are generous for ordinary payloads and small
// enough that one task cannot exhaust a worker's memory or PostgreSQL's
// stack. See docs/reliability.md.
const (
	// DefaultMaxInputBytes caps the JSON of one flow input (4 MiB).
	DefaultMaxInputBytes = 4 << 20
	// DefaultMaxOutputBytes caps the JSON of one task's output (4 MiB).
	DefaultMaxOutputBytes = 4 << 20
	// DefaultMaxJSONDepth caps the nesting of arrays and objects (256).
	// PostgreSQL's jsonb parser is recursive and fails with "stack depth
	// limit exceeded" somewhere in the thousands; Go's decoder stops at 10,000.
	DefaultMaxJSONDepth = 256
	// MaxFlowSteps is the most steps one flow may have (flowdef.MaxSteps:
	// steps are indexed by a smallint in the database; this leaves ample
	// room).
	MaxFlowSteps = flowdef.MaxSteps
)

// Limits bound the JSON documents the runtime accepts. The zero value
// means the defaults; a negative field means no limit (PostgreSQL's own
// limits still apply: 255 MiB per jsonb value).
type Limits struct {
	// MaxInputBytes caps a flow input at StartRun and friends
	// (default DefaultMaxInputBytes).
	MaxInputBytes int
	// MaxOutputBytes caps what a handler may return; a larger output fails
	// the task permanently (default DefaultMaxOutputBytes).
	MaxOutputBytes int
	// MaxJSONDepth caps the nesting of arrays and objects in inputs and
	// outputs (default DefaultMaxJSONDepth).
	MaxJSONDepth int
}

// ErrTooLarge is wrapped by the error for a flow input or step output over
// a configured limit (size or nesting depth). An input over a limit also
// matches ErrBadInput.
var ErrTooLarge = errors.New("qflow: over the limit")

func limitOr(v, def int) int {
	switch {
	case v == 0:
		return def
	case v < 0:
		return int(^uint(0) >> 1)
	}
	return v
}

func (l Limits) maxInput() int  { return limitOr(l.MaxInputBytes, DefaultMaxInputBytes) }
func (l Limits) maxOutput() int { return limitOr(l.MaxOutputBytes, DefaultMaxOutputBytes) }
func (l Limits) maxDepth() int  { return limitOr(l.MaxJSONDepth, DefaultMaxJSONDepth) }

// encodeInput is encodeInput with the limits applied: a raw input is
// checked before it is parsed, an encoded one after.
func (l Limits) encodeInput(input any) ([]byte, error) {
	var raw []byte
	switch v := input.(type) {
	case json.RawMessage:
		raw = v
	case []byte:
		raw = v
	}
	if raw != nil && len(raw) > l.maxInput() {
		return nil, l.tooBigInput(len(raw))
	}
	b, err := encodeInput(input)
	if err != nil {
		if raw != nil {
			if perr := checkJSON(raw, l.maxDepth()); perr != nil {
				return nil, fmt.Errorf("%w: input: %w", ErrBadInput, perr)
			}
		}
		return nil, err
	}
	if len(b) > l.maxInput() {
		return nil, l.tooBigInput(len(b))
	}
	if err := checkJSON(b, l.maxDepth()); err != nil {
		return nil, fmt.Errorf("%w: input: %w", ErrBadInput, err)
	}
	return b, nil
}

func (l Limits) tooBigInput(n int) error {
	return fmt.Errorf("%w: %w: input is %d bytes of JSON; the limit is %d (ClientOptions.Limits.MaxInputBytes)",
		ErrBadInput, ErrTooLarge, n, l.maxInput())
}

// checkOutput reports why a handler's output cannot be stored, or nil.
// The error is permanent: the same handler would return the same output.
func (l Limits) checkOutput(step string, out []byte) error {
	if len(out) > l.maxOutput() {
		return Permanent(fmt.Errorf("%w: step %q returned %d bytes of JSON; the limit is %d (WorkerOptions.Limits.MaxOutputBytes)",
			ErrTooLarge, step, len(out), l.maxOutput()))
	}
	if err := checkJSON(out, l.maxDepth()); err != nil {
		return Permanent(fmt.Errorf("step %q returned JSON that cannot be stored: %w", step, err))
	}
	return nil
}

// Number literals beyond these are refused: PostgreSQL's numeric type
// overflows past about 1e131071 and below 1e-16383, and no JSON consumer
// reads such numbers exactly anyway.
const (
	maxNumberLen      = 1000
	maxNumberExponent = 1000
)

// checkJSON finds what PostgreSQL's jsonb would reject, or our limits
// forbid, in a document: invalid UTF-8, the escape \u0000, unpaired UTF-16
// surrogates, numbers out of range, nesting deeper than maxDepth. It does
// not check the syntax (json.Valid does); on malformed JSON it may return
// nil or an error.
func checkJSON(b []byte, maxDepth int) error {
	if !utf8.Valid(b) {
		return errors.New("JSON is not valid UTF-8")
	}
	depth := 0
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c == '[' || c == '{':
			if depth++; depth > maxDepth {
				return fmt.Errorf("%w: JSON nests deeper than %d levels (Limits.MaxJSONDepth)", ErrTooLarge, maxDepth)
			}
		case c == ']' || c == '}':
			depth--
		case c == '"':
			end, err := checkString(b, i+1)
			if err != nil {
				return err
			}
			i = end
		case c == '-' || '0' <= c && c <= '9':
			j := i
			for j < len(b) && (b[j] == '-' || b[j] == '+' || b[j] == '.' || b[j] == 'e' || b[j] == 'E' || '0' <= b[j] && b[j] <= '9') {
				j++
			}
			if err := checkNumber(b[i:j]); err != nil {
				return err
			}
			i = j - 1
		}
	}
	return nil
}

// checkString checks the string body starting at b[i] and returns the
// index of its closing quote.
func checkString(b []byte, i int) (int, error) {
	pendingHigh := false // the previous escape was a high surrogate
	for ; i < len(b); i++ {
		c := b[i]
		if c == '"' {
			if pendingHigh {
				return i, errors.New(`JSON string holds an unpaired UTF-16 surrogate escape`)
			}
			return i, nil
		}
		if c != '\\' || i+1 >= len(b) {
			if pendingHigh {
				return i, errors.New(`JSON string holds an unpaired UTF-16 surrogate escape`)
			}
			continue
		}
		i++
		if b[i] != 'u' {
			if pendingHigh {
				return i, errors.New(`JSON string holds an unpaired UTF-16 surrogate escape`)
			}
			continue
		}
		if i+4 >= len(b) {
			return i, errors.New(`JSON string ends inside a \u escape`)
		}
		var r rune
		for _, h := range b[i+1 : i+5] {
			r <<= 4
			switch {
			case '0' <= h && h <= '9':
				r |= rune(h - '0')
			case 'a' <= h && h <= 'f':
				r |= rune(h-'a') + 10
			case 'A' <= h && h <= 'F':
				r |= rune(h-'A') + 10
			default:
				return i, errors.New(`JSON string holds a malformed \u escape`)
			}
		}
		i += 4
		switch {
		case r == 0:
			return i, errors.New(`JSON string holds \u0000, which PostgreSQL cannot store`)
		case 0xD800 <= r && r < 0xDC00:
			if pendingHigh {
				return i, errors.New(`JSON string holds an unpaired UTF-16 surrogate escape`)
			}
			pendingHigh = true
		case 0xDC00 <= r && r < 0xE000:
			if !pendingHigh {
				return i, errors.New(`JSON string holds an unpaired UTF-16 surrogate escape`)
			}
			pendingHigh = false
		default:
			if pendingHigh {
				return i, errors.New(`JSON string holds an unpaired UTF-16 surrogate escape`)
			}
		}
	}
	return i, nil
}

func checkNumber(n []byte) error {
	if len(n) > maxNumberLen {
		return fmt.Errorf("JSON number of %d characters; at most %d are accepted", len(n), maxNumberLen)
	}
	for k, c := range n {
		if c != 'e' && c != 'E' {
			continue
		}
		exp := 0
		for _, d := range n[k+1:] {
			if '0' <= d && d <= '9' {
				if exp = exp*10 + int(d-'0'); exp > maxNumberExponent {
					return fmt.Errorf("JSON number %.40s has an exponent beyond ±%d", n, maxNumberExponent)
				}
			}
		}
	}
	return nil
}
