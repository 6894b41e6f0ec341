//go:build !linux

package testbed

import "syscall"

func childProcAttr() *syscall.SysProcAttr { return nil }
