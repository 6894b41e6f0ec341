package testbed

import "syscall"

// childProcAttr makes the kernel kill the server if the test process dies
// without calling Close, so no orphan keeps its ports.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
