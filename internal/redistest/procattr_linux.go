package redistest

import "syscall"

// sysProcAttr asks the kernel to kill redis-server if the test binary dies
// without running its cleanups (a -timeout panic, a SIGKILL), so no orphan
// keeps a port. Pdeathsig fires when the forking OS thread exits, which the Go
// runtime does only for goroutines that exit while locked to their thread
// (https://github.com/golang/go/issues/27505); tests here never do that.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
