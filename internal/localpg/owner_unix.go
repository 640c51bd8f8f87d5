//go:build unix

package localpg

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// owner is the OS user that owns a throwaway cluster and runs its
// processes: the current user, or, for root (whom initdb and postgres
// refuse), an unprivileged one.
type owner struct {
	name     string
	uid, gid uint32
	switchTo bool // run the commands as uid/gid
}

func (o owner) String() string { return "user " + o.name }

func clusterOwner() (owner, error) {
	if os.Geteuid() != 0 {
		name := strconv.Itoa(os.Geteuid())
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
		return owner{name: name}, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil || uid == 0 {
			continue
		}
		return owner{name: name, uid: uint32(uid), gid: uint32(gid), switchTo: true}, nil
	}
	return owner{}, fmt.Errorf("localpg: running as root, and PostgreSQL refuses to: no unprivileged user (postgres or nobody) to run it as; " +
		"create one (useradd -r postgres) or run as another user")
}

func (o owner) chown(path string) error {
	if !o.switchTo {
		return nil
	}
	if err := os.Chown(path, int(o.uid), int(o.gid)); err != nil {
		return fmt.Errorf("localpg: hand %s to %s: %w", path, o, err)
	}
	return nil
}

// command returns a command run as the owner, in dir, in a session of its
// own (so a terminal's Ctrl-C reaches only this process, which then stops
// the cluster in order).
func (o owner) command(ctx context.Context, dir, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = childEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if o.switchTo {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: o.uid, Gid: o.gid, Groups: []uint32{}}
	}
	return cmd
}

// canReach reports whether the owner can search every directory on the way
// to dir (root's TMPDIR may sit under /root, which postgres cannot enter).
func (o owner) canReach(dir string) bool {
	if !o.switchTo {
		return true
	}
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return false
		}
		sys, ok := st.Sys().(*syscall.Stat_t)
		mode := st.Mode().Perm()
		switch {
		case ok && sys.Uid == o.uid:
			if mode&0o100 == 0 {
				return false
			}
		case ok && sys.Gid == o.gid:
			if mode&0o010 == 0 {
				return false
			}
		default:
			if mode&0o001 == 0 {
				return false
			}
		}
		if d == filepath.Dir(d) {
			return true
		}
	}
}
