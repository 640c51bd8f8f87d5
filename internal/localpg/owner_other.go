//go:build !unix

package localpg

import (
	"context"
	"errors"
	"os/exec"
)

type owner struct{}

func (owner) String() string { return "the current user" }

func clusterOwner() (owner, error) {
	return owner{}, errors.New("localpg: throwaway clusters need a Unix system; set " + EnvURL + " to a PostgreSQL server")
}

func (owner) chown(string) error { return nil }

func (owner) command(ctx context.Context, dir, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = childEnv()
	return cmd
}

func (owner) canReach(string) bool { return true }
