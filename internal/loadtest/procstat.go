package loadtest

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of the CPU times in /proc/PID/stat (USER_HZ, 100 on
// every Linux architecture Go runs on).
const clockTick = 10 * time.Millisecond

// ProcStat is what /proc/PID/stat says of one process's CPU use.
type ProcStat struct {
	PID, PPID int
	Comm      string
	// CPU is the process's own user plus system time.
	CPU time.Duration
	// ChildrenCPU is the user plus system time of its children that exited
	// and that it waited for (cutime + cstime).
	ChildrenCPU time.Duration
}

// ReadProcStat reads /proc/PID/stat. Linux only.
func ReadProcStat(pid int) (ProcStat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return ProcStat{}, err
	}
	return parseProcStat(pid, string(b))
}

func parseProcStat(pid int, s string) (ProcStat, error) {
	// The command name is in parentheses and may hold spaces or parentheses.
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return ProcStat{}, fmt.Errorf("loadtest: /proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[closing+1:])
	// f[0] is field 3 (state): ppid is field 4, utime..cstime fields 14..17.
	if len(f) < 15 {
		return ProcStat{}, fmt.Errorf("loadtest: /proc/%d/stat: %d fields", pid, len(f)+2)
	}
	n := make([]int64, 5)
	for i, idx := range []int{1, 11, 12, 13, 14} {
		v, err := strconv.ParseInt(f[idx], 10, 64)
		if err != nil {
			return ProcStat{}, fmt.Errorf("loadtest: /proc/%d/stat: %w", pid, err)
		}
		n[i] = v
	}
	return ProcStat{PID: pid, PPID: int(n[0]), Comm: s[open+1 : closing],
		CPU: time.Duration(n[1]+n[2]) * clockTick, ChildrenCPU: time.Duration(n[3]+n[4]) * clockTick}, nil
}

// ChildrenOf lists the running processes whose parent is ppid.
func ChildrenOf(ppid int) ([]ProcStat, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []ProcStat
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := ReadProcStat(pid)
		if err != nil {
			continue // exited meanwhile
		}
		if st.PPID == ppid {
			out = append(out, st)
		}
	}
	return out, nil
}

// TreeCPU is the CPU time of a process and its children so far: its own,
// that of its children still running, and that of those that exited (which
// the kernel adds to the parent once it waited for them) — the figure for a
// PostgreSQL server, whose backends are the postmaster's children and come
// and go with the connections.
func TreeCPU(pid int) (time.Duration, error) {
	root, err := ReadProcStat(pid)
	if err != nil {
		return 0, err
	}
	total := root.CPU + root.ChildrenCPU
	kids, err := ChildrenOf(pid)
	if err != nil {
		return 0, err
	}
	for _, k := range kids {
		total += k.CPU
	}
	return total, nil
}

// ResetPeakRSSOf restarts the peak-RSS mark (VmHWM) of process pid, as
// ResetPeakRSS does for this one.
func ResetPeakRSSOf(pid int) error {
	return os.WriteFile(filepath.Join("/proc", strconv.Itoa(pid), "clear_refs"), []byte("5"), 0)
}

// PeakRSSOf is the peak resident set size of process pid in bytes (VmHWM).
func PeakRSSOf(pid int) (int64, error) {
	return vmHWM(filepath.Join("/proc", strconv.Itoa(pid), "status"))
}

// vmHWM reads the peak resident set size (VmHWM, in kB) from a
// /proc/PID/status file, in bytes.
func vmHWM(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, err
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("loadtest: no VmHWM in %s", path)
}
