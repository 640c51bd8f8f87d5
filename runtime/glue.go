package runtime

import (
	"encoding/json"
	"fmt"
)

// DecodeTaskInput decodes a task's JSON input into v. An input that does not
// decode would not decode on a retry either, so the error is Permanent.
// Generated handlers and HandlerFunc use it.
func DecodeTaskInput(t *Task, v any) error {
	if err := json.Unmarshal(t.Input, v); err != nil {
		return Permanent(fmt.Errorf("qflow: flow %q step %q: decode input: %w", t.Flow, t.Step, err))
	}
	return nil
}

// EncodeTaskOutput encodes a step's output as JSON. An output that cannot be
// encoded fails the task permanently.
func EncodeTaskOutput(t *Task, v any) (json.RawMessage, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, Permanent(fmt.Errorf("qflow: flow %q step %q: encode output: %w", t.Flow, t.Step, err))
	}
	return b, nil
}

// DecodeRunOutput decodes a run's JSON output into T, passing err (the
// error of waiting for the run) through unchanged. Generated Wait methods
// use it.
func DecodeRunOutput[T any](flow string, raw json.RawMessage, err error) (T, error) {
	var out T
	if err != nil {
		return out, err
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return out, fmt.Errorf("qflow: flow %q: decode run output: %w", flow, err)
	}
	return out, nil
}
