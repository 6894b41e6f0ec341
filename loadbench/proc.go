package loadbench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is Linux's USER_HZ: /proc's CPU times are in these.
const clockTick = 10 * time.Millisecond

// cpuTime is the process's user and system CPU time so far.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: fields count
	// from the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	// After the name: state(0) ... utime(11) stime(12).
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q stime %q", pid, f[11], f[12])
	}
	return time.Duration(u+st) * clockTick, nil
}

// rss is the process's resident set size, in bytes.
func rss(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/status: VmRSS %q", pid, v)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

// window is one process's CPU time over a steady window.
type window struct {
	pid        int
	cpu0, cpu1 time.Duration
	t0, t1     time.Time
}

func startWindow(pid int) (*window, error) {
	c, err := cpuTime(pid)
	if err != nil {
		return nil, err
	}
	return &window{pid: pid, cpu0: c, t0: time.Now()}, nil
}

func (w *window) end() error {
	c, err := cpuTime(w.pid)
	if err != nil {
		return err
	}
	w.cpu1, w.t1 = c, time.Now()
	return nil
}

// cores is the CPU the process used over the window, in cores.
func (w *window) cores() float64 {
	return w.cpu().Seconds() / w.t1.Sub(w.t0).Seconds()
}

func (w *window) cpu() time.Duration { return w.cpu1 - w.cpu0 }

// perTrackSecond is the CPU per track-second, in milliseconds.
func (w *window) perTrackSecond(tracks int) float64 {
	return float64(w.cpu().Microseconds()) / 1000 / float64(tracks) / w.t1.Sub(w.t0).Seconds()
}
