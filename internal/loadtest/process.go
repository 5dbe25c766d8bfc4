package loadtest

import (
	"errors"
	"os"
	"syscall"
	"time"
)

// CPUTime is the user plus system CPU time this process has used so far.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ResetPeakRSS restarts the kernel's peak-RSS mark (VmHWM) at the current
// resident size, so that the peak read afterwards belongs to the billing pass and
// not to seeding. Linux only; the error says when it is not available, and then
// PeakRSS is the peak of the whole process.
func ResetPeakRSS() error {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// PeakRSS is the process's peak resident set size in bytes since start or the
// last ResetPeakRSS: VmHWM from /proc/self/status, else getrusage's maxrss.
func PeakRSS() (int64, error) {
	if n, err := vmHWM("/proc/self/status"); err == nil {
		return n, nil
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, errors.Join(err, errors.New("loadtest: no /proc/self/status VmHWM"))
	}
	return ru.Maxrss * 1024, nil
}
