//go:build unix

package failpoint

import (
	"os"
	"os/signal"
	"syscall"
)

// kill sends the process SIGKILL, which it can neither catch nor ignore.
func kill() { _ = syscall.Kill(os.Getpid(), syscall.SIGKILL) }

// stop sends the process SIGSTOP, which it can neither catch nor ignore, and
// returns once something sent SIGCONT. A signal to the process is delivered
// asynchronously — the calling goroutine's thread could run on for a moment
// after kill returns — so stop waits for the SIGCONT itself.
func stop() {
	cont := make(chan os.Signal, 1)
	signal.Notify(cont, syscall.SIGCONT)
	defer signal.Stop(cont)
	_ = syscall.Kill(os.Getpid(), syscall.SIGSTOP)
	<-cont
}
