package main

import "syscall"

// childAttr makes the kernel kill a worker process when this process dies,
// even by SIGKILL.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
