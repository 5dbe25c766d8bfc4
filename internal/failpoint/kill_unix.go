//go:build unix

package failpoint

import (
	"os"
	"syscall"
)

// kill sends the process SIGKILL, which it can neither catch nor ignore.
func kill() { _ = syscall.Kill(os.Getpid(), syscall.SIGKILL) }

// stop sends the process SIGSTOP, which it can neither catch nor ignore; it
// returns once something sends SIGCONT.
func stop() { _ = syscall.Kill(os.Getpid(), syscall.SIGSTOP) }
