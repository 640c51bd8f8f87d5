//go:build !linux

package main

import "syscall"

// childAttr: elsewhere a worker process ends when its stdin closes, which
// happens when this process dies.
func childAttr() *syscall.SysProcAttr { return nil }
