// Package article is a flow whose publish step waits for a person's
// approval.
package article

import "context"

//qflow:flow article
type Input struct{ Title string }

// Approval is the payload of signal approval.
type Approval struct {
	By string
	OK bool
}

//qflow:step
func Draft(ctx context.Context, in Input) (string, error) { return "draft of " + in.Title, nil }

//qflow:step depends=Draft wait=approval wait_timeout=72h optional
func Publish(ctx context.Context, draft string, a Approval) (string, error) {
	if !a.OK {
		return "rejected by " + a.By, nil
	}
	return "published " + draft, nil
}

//qflow:step depends=Draft wait=approval
func Notify(ctx context.Context, in Input, draft string, a Approval) error { return nil }
