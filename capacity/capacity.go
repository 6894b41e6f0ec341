// Package capacity bounds what one instance takes on and sizes the Go
// runtime to it.
//
//   - MAX_TRACKS: a start that would record more tracks than that is
//     refused (the API answers 503 with Retry-After; a fleet places it on
//     another instance).
//   - CPU_GUARD: while the process uses more than that share of the
//     machine's cores (averaged over the last few seconds), new starts are
//     refused too, and a fleet's placement counts the instance as full. The
//     recordings running go on.
//   - ADAPTIVE_PROCS: the Go scheduler runs on as many processors as the
//     load needs, each at most half busy. Receiving media in pion hands
//     every packet across three goroutines; with idle processors to wake
//     for each hand-off the scheduler costs as much as the rest of the
//     receive path, so fewer processors cut the cost per packet (measured
//     by `make bench-load`). It grows at once when the load grows and
//     shrinks after it stayed lower for a while. An operator's GOMAXPROCS
//     wins.
//   - SysmonEnv: with ADAPTIVE_PROCS the process runs with the runtime's
//     system monitor kept awake (GODEBUG=schedtrace set to its largest
//     period, which prints one scheduler line every 24.8 days). Otherwise
//     an instance that is idle between packets, as a recorder is, puts the
//     monitor to sleep each time, and the next system call (every packet's
//     UDP read) wakes it with a futex: about a third of the recorder's CPU
//     at 100 tracks (`make bench-load`: 1.6 to 1.1 ms per track-second).
//     An operator's GODEBUG schedtrace wins, and ADAPTIVE_PROCS=off in the
//     environment leaves it out. Its costs: the runtime prints a "SCHED"
//     line to stderr every 24.8 days (at start too on a host up longer
//     than that), and a fatal crash dumps the scheduler's state first.
//   - TuneGC: the garbage collector runs at GOGC=20 rather than 100. The
//     recorder allocates little per packet (about 270 bytes), so
//     collecting more often costs almost nothing, and the heap's headroom
//     above what is live, most of the memory a track adds, shrinks: RSS per
//     track went from about 380 to 235-256 KiB at 100 tracks (`make
//     bench-load`, GOGC 15 to 25). An operator's GOGC wins.
package capacity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrFull is Admit's answer for a start beyond the bound.
var ErrFull = errors.New("capacity: at its bound")

// Options configure a Guard.
type Options struct {
	MaxTracks int     // 0: no bound
	CPUGuard  float64 // share of the cores, (0, 1]; 0: no guard
	// AdaptProcs sizes GOMAXPROCS to the load.
	AdaptProcs bool
	Cores      int           // what the process may use (Go's default GOMAXPROCS: cgroup-aware)
	Interval   time.Duration // between samples of the process's CPU time (1 s)
	Logger     *slog.Logger

	// cpuTime and setProcs are the process's, replaced in tests.
	cpuTime  func() (time.Duration, error)
	setProcs func(int)
}

// Sampling. The CPU use is the average of the last window samples; the
// processors shrink after shrinkAfter samples that all wanted fewer.
const (
	window      = 5
	shrinkAfter = 15
	// perProc is how busy one processor may be on average.
	perProc = 0.5
)

// Guard is one instance's bound, sampled by Run. Safe for concurrent use.
type Guard struct {
	o Options

	mu      sync.Mutex
	samples []float64 // cores used, per interval, newest last
	last    time.Duration
	lastAt  time.Time
	procs   int
	lower   int // samples in a row that wanted fewer processors
	refused int64
}

// New returns a Guard; Run starts its sampling.
func New(o Options) *Guard {
	if o.Cores <= 0 {
		// Go's default: the machine's cores, or the container's limit.
		o.Cores = runtime.GOMAXPROCS(0)
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.cpuTime == nil {
		o.cpuTime = processCPU
	}
	if o.setProcs == nil {
		o.setProcs = func(n int) { runtime.GOMAXPROCS(n) }
	}
	g := &Guard{o: o, procs: runtime.GOMAXPROCS(0)}
	if o.AdaptProcs {
		// From one: the idle instance needs no more, and the first
		// samples grow it as the load comes.
		g.procs = 1
		o.setProcs(1)
	}
	return g
}

// sysmonAwake keeps the runtime's system monitor from its deep sleep: the
// largest schedtrace period (ms), so the trace itself prints about once in
// 24.8 days. The runtime reads it only as the process starts.
const sysmonAwake = "schedtrace=2147483647"

// AdaptiveFromEnv says whether ADAPTIVE_PROCS, as the environment gives
// it, leaves the monitor kept awake: unset or on (the monitor's setting is
// decided before the configuration is read).
func AdaptiveFromEnv(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "off", "false":
		return false
	}
	return true
}

// SysmonEnv returns env with sysmonAwake added to GODEBUG, and whether the
// process must start again with it (it has no schedtrace setting yet).
func SysmonEnv(env []string) ([]string, bool) {
	out := make([]string, 0, len(env)+1)
	found := false
	for _, kv := range env {
		v, ok := strings.CutPrefix(kv, "GODEBUG=")
		if !ok {
			out = append(out, kv)
			continue
		}
		found = true
		for _, f := range strings.Split(v, ",") {
			if strings.HasPrefix(strings.TrimSpace(f), "schedtrace=") {
				return env, false // the operator's, or ours already
			}
		}
		if v != "" {
			v += ","
		}
		out = append(out, "GODEBUG="+v+sysmonAwake)
	}
	if !found {
		out = append(out, "GODEBUG="+sysmonAwake)
	}
	return out, true
}

// gcPercent is the collector's target (GOGC) unless the operator set one.
const gcPercent = 20

// TuneGC sets the collector's target to gcPercent unless GOGC is set.
func TuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
}

// processCPU is the process's user and system CPU time so far.
func processCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// Run samples the process's CPU use every Interval until ctx ends.
func (g *Guard) Run(ctx context.Context) {
	t := time.NewTicker(g.o.Interval)
	defer t.Stop()
	g.sample(time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			g.sample(now)
		}
	}
}

// sample reads the CPU time and, with AdaptProcs, sizes the processors.
func (g *Guard) sample(now time.Time) {
	cpu, err := g.o.cpuTime()
	if err != nil {
		g.o.Logger.Warn("capacity: CPU time unreadable; the CPU guard is blind", "err", err)
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.lastAt.IsZero() {
		if d := now.Sub(g.lastAt); d > 0 {
			g.samples = append(g.samples, (cpu-g.last).Seconds()/d.Seconds())
			if len(g.samples) > window {
				g.samples = g.samples[len(g.samples)-window:]
			}
		}
	}
	g.last, g.lastAt = cpu, now
	if !g.o.AdaptProcs || len(g.samples) == 0 {
		return
	}
	// The newest sample grows the processors at once; shrinking waits for
	// the average to have wanted fewer for a while.
	newest := g.samples[len(g.samples)-1]
	want := procsFor(newest, g.o.Cores)
	if avg := procsFor(g.usageLocked(), g.o.Cores); avg > want {
		want = avg
	}
	if newest >= 0.9*float64(g.procs) {
		// Saturated: the use measured is bounded by the processors, not
		// what the load needs (a takeover of many recordings at once).
		want = g.o.Cores
	}
	switch {
	case want > g.procs:
		g.lower = 0
		g.setLocked(want)
	case want < g.procs:
		if g.lower++; g.lower >= shrinkAfter {
			g.lower = 0
			g.setLocked(g.procs - 1)
		}
	default:
		g.lower = 0
	}
}

func (g *Guard) setLocked(n int) {
	g.o.Logger.Debug("capacity: processors", "from", g.procs, "to", n, "cores_used", g.usageLocked())
	g.procs = n
	g.o.setProcs(n)
}

// procsFor is how many processors a use of cores needs: each at most
// perProc busy, at least one, at most every core.
func procsFor(cores float64, max int) int {
	n := 1
	for float64(n)*perProc < cores && n < max {
		n++
	}
	return n
}

func (g *Guard) usageLocked() float64 {
	if len(g.samples) == 0 {
		return 0
	}
	var sum float64
	for _, s := range g.samples {
		sum += s
	}
	return sum / float64(len(g.samples))
}

// Usage is the cores the process used, averaged over the last samples.
func (g *Guard) Usage() float64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.usageLocked()
}

// busy says why the CPU guard refuses, "" when it does not.
func (g *Guard) busy() string {
	if g.o.CPUGuard <= 0 {
		return ""
	}
	u := g.Usage()
	if u < g.o.CPUGuard*float64(g.o.Cores) {
		return ""
	}
	return fmt.Sprintf("the process uses %.0f%% of %d cores (CPU_GUARD %.0f%%)", 100*u/float64(g.o.Cores), g.o.Cores, 100*g.o.CPUGuard)
}

// Admit says whether a recording may start while tracks are recorded:
// ErrFull, with the reason, beyond MAX_TRACKS or over the CPU guard.
func (g *Guard) Admit(tracks int) error {
	var why string
	switch {
	case g.o.MaxTracks > 0 && tracks >= g.o.MaxTracks:
		why = fmt.Sprintf("%d of %d tracks (MAX_TRACKS)", tracks, g.o.MaxTracks)
	default:
		why = g.busy()
	}
	if why == "" {
		return nil
	}
	g.mu.Lock()
	g.refused++
	g.mu.Unlock()
	return fmt.Errorf("%w: %s", ErrFull, why)
}

// Capacity is how many tracks this instance takes while tracks are
// recorded: MAX_TRACKS, or no more than it has while over the CPU guard.
func (g *Guard) Capacity(tracks int) int {
	if g.busy() != "" {
		return min(tracks, g.o.MaxTracks)
	}
	return g.o.MaxTracks
}

// Metrics: the guard is a prometheus.Collector.
var (
	descCapacity = prometheus.NewDesc("trackrec_max_tracks", "Tracks this instance takes at most (MAX_TRACKS).", nil, nil)
	descCPU      = prometheus.NewDesc("trackrec_cpu_cores_used", "Cores the process used, averaged over the last seconds (what CPU_GUARD compares).", nil, nil)
	descGuard    = prometheus.NewDesc("trackrec_cpu_guard_cores", "Cores of use above which starts are refused (CPU_GUARD times the cores); 0: no guard.", nil, nil)
	descProcs    = prometheus.NewDesc("trackrec_go_procs", "Processors the Go scheduler runs on (GOMAXPROCS), sized to the load with ADAPTIVE_PROCS.", nil, nil)
	descRefused  = prometheus.NewDesc("trackrec_starts_refused_total", "Starts refused for capacity: MAX_TRACKS or the CPU guard.", nil, nil)
)

func (g *Guard) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCapacity, descCPU, descGuard, descProcs, descRefused} {
		ch <- d
	}
}

func (g *Guard) Collect(ch chan<- prometheus.Metric) {
	g.mu.Lock()
	usage, refused := g.usageLocked(), g.refused
	g.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(descCapacity, prometheus.GaugeValue, float64(g.o.MaxTracks))
	ch <- prometheus.MustNewConstMetric(descCPU, prometheus.GaugeValue, usage)
	ch <- prometheus.MustNewConstMetric(descGuard, prometheus.GaugeValue, g.o.CPUGuard*float64(g.o.Cores))
	ch <- prometheus.MustNewConstMetric(descProcs, prometheus.GaugeValue, float64(runtime.GOMAXPROCS(0)))
	ch <- prometheus.MustNewConstMetric(descRefused, prometheus.CounterValue, float64(refused))
}
