package capacity

import (
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// fakeCPU is a process whose CPU use per second the test sets.
type fakeCPU struct {
	total time.Duration
	now   time.Time
	procs []int
}

func (f *fakeCPU) guard(o Options) *Guard {
	o.cpuTime = func() (time.Duration, error) { return f.total, nil }
	o.setProcs = func(n int) { f.procs = append(f.procs, n) }
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	f.now = time.Unix(1000, 0)
	g := New(o)
	g.sample(f.now)
	return g
}

// second passes one second in which the process used cores.
func (f *fakeCPU) second(g *Guard, cores float64) {
	f.total += time.Duration(cores * float64(time.Second))
	f.now = f.now.Add(time.Second)
	g.sample(f.now)
}

func TestAdmit(t *testing.T) {
	f := &fakeCPU{}
	g := f.guard(Options{MaxTracks: 3, CPUGuard: 0.8, Cores: 2})
	for _, tc := range []struct {
		name   string
		tracks int
		cores  float64 // used in each of the last seconds
		why    string  // "" admitted
	}{
		{"idle", 0, 0.1, ""},
		{"below the bound", 2, 0.1, ""},
		{"at the bound", 3, 0.1, "3 of 3 tracks (MAX_TRACKS)"},
		{"over the CPU guard", 1, 1.7, "uses 85% of 2 cores (CPU_GUARD 80%)"},
		{"back under it", 1, 0.2, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range window {
				f.second(g, tc.cores)
			}
			err := g.Admit(tc.tracks)
			switch {
			case tc.why == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.why != "" && (!errors.Is(err, ErrFull) || !strings.Contains(err.Error(), tc.why)):
				t.Errorf("answer %v, want ErrFull saying %q", err, tc.why)
			}
			if tc.why != "" && strings.Contains(tc.why, "CPU") && g.Capacity(tc.tracks) != tc.tracks {
				t.Errorf("over the guard the fleet still sees room: capacity %d with %d tracks", g.Capacity(tc.tracks), tc.tracks)
			}
		})
	}
}

// With AdaptProcs the processors start at one, grow at once with the load
// (each at most half busy), jump to every core when they are saturated
// (the use measured is then bounded by them), and shrink one at a time only
// after the load stayed lower for shrinkAfter seconds.
func TestAdaptProcs(t *testing.T) {
	f := &fakeCPU{}
	g := f.guard(Options{AdaptProcs: true, Cores: 8})
	last := func() int { return f.procs[len(f.procs)-1] }
	if len(f.procs) != 1 || f.procs[0] != 1 {
		t.Fatalf("started with processors %v, want [1]", f.procs)
	}
	f.second(g, 0.3)
	if last() != 1 {
		t.Fatalf("after 0.3 cores: %d processors, want 1", last())
	}
	f.second(g, 0.8) // below saturation: what the load needs
	if last() != 2 {
		t.Fatalf("after 0.8 cores on 1: %d processors (%v), want 2", last(), f.procs)
	}
	f.second(g, 1.2)
	if last() != 3 {
		t.Fatalf("after 1.2 cores on 2: %d processors (%v), want 3", last(), f.procs)
	}
	f.second(g, 2.8) // saturated: every core
	if last() != 8 {
		t.Fatalf("after a saturated second: %d processors, want 8", last())
	}
	// Eight processors are far more than the average wants: the low
	// seconds count from the first.
	n := len(f.procs)
	for range shrinkAfter - 1 {
		f.second(g, 0.1)
	}
	if len(f.procs) != n {
		t.Fatalf("shrank before the load stayed low for %d s: %v", shrinkAfter, f.procs)
	}
	f.second(g, 0.1)
	if last() != 7 {
		t.Fatalf("after %d low seconds: %d processors, want one fewer (7)", shrinkAfter, last())
	}
	for range 8 * shrinkAfter {
		f.second(g, 0.1)
	}
	if last() != 1 {
		t.Errorf("idle for long: %d processors, want 1", last())
	}
}

func TestProcsFor(t *testing.T) {
	for _, tc := range []struct {
		cores float64
		max   int
		want  int
	}{{0, 2, 1}, {0.5, 2, 1}, {0.51, 2, 2}, {1.0, 8, 2}, {3.2, 8, 7}, {5, 2, 2}} {
		if got := procsFor(tc.cores, tc.max); got != tc.want {
			t.Errorf("procsFor(%v, %d) = %d, want %d", tc.cores, tc.max, got, tc.want)
		}
	}
}

func TestSysmonEnv(t *testing.T) {
	for _, tc := range []struct {
		name  string
		env   []string
		want  []string
		again bool
	}{
		{"no GODEBUG", []string{"A=1"}, []string{"A=1", "GODEBUG=" + sysmonAwake}, true},
		{"another setting kept", []string{"GODEBUG=madvdontneed=1", "B=2"}, []string{"GODEBUG=madvdontneed=1," + sysmonAwake, "B=2"}, true},
		{"ours already: no restart loop", []string{"GODEBUG=" + sysmonAwake}, []string{"GODEBUG=" + sysmonAwake}, false},
		{"the operator's schedtrace wins", []string{"GODEBUG=gctrace=1,schedtrace=1000"}, []string{"GODEBUG=gctrace=1,schedtrace=1000"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, again := SysmonEnv(tc.env)
			if again != tc.again || strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("SysmonEnv(%q) = %q, %v; want %q, %v", tc.env, got, again, tc.want, tc.again)
			}
		})
	}
}
