package loadbench

import (
	"context"
	"fmt"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"time"
)

// component names where a profile's functions belong, by prefix, in the
// order they are tried (the first that matches).
var components = []struct{ name, prefix string }{
	{"srtp+crypto", "github.com/pion/srtp"},
	{"srtp+crypto", "crypto/"},
	{"srtp+crypto", "vendor/golang.org/x/crypto"},
	{"srtp+crypto", "golang.org/x/crypto"},
	{"dtls", "github.com/pion/dtls"},
	{"ice+udp", "github.com/pion/ice"},
	{"ice+udp", "github.com/pion/transport"},
	{"ice+udp", "github.com/pion/stun"},
	{"ice+udp", "github.com/pion/turn"},
	{"interceptors", "github.com/pion/interceptor"},
	{"interceptors", "github.com/livekit/server-sdk-go/v2/pkg/interceptor"},
	{"interceptors", "github.com/livekit/mediatransportutil"},
	{"webrtc+rtp", "github.com/pion/webrtc"},
	{"webrtc+rtp", "github.com/pion/rtp"},
	{"webrtc+rtp", "github.com/pion/rtcp"},
	{"webrtc+rtp", "github.com/pion/sctp"},
	{"webrtc+rtp", "github.com/pion/datachannel"},
	{"webrtc+rtp", "github.com/pion/sdp"},
	{"livekit sdk", "github.com/livekit/"},
	{"trackrec", "github.com/trackrec/"},
	{"syscalls", "syscall."},
	{"syscalls", "internal/poll."},
	{"syscalls", "internal/runtime/syscall"},
	{"syscalls", "runtime/internal/syscall"},
	{"go runtime", "runtime."},
	{"go runtime", "internal/runtime"},
	{"go runtime", "sync."},
	{"go runtime", "sync/atomic."},
}

func componentOf(fn string) string {
	for _, c := range components {
		if strings.HasPrefix(fn, c.prefix) {
			return c.name
		}
	}
	return "other"
}

// share is one component's flat CPU time in a profile.
type share struct {
	Name string
	CPU  time.Duration
}

// breakdown sums the flat CPU time of the profile at path by component,
// largest first, with the profile's total. It reads the profile with
// `go tool pprof -top`.
func breakdown(ctx context.Context, path string) ([]share, time.Duration, error) {
	out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-nodecount=1000000", "-nodefraction=0", "-edgefraction=0", path).Output()
	if err != nil {
		return nil, 0, fmt.Errorf("go tool pprof %s: %w", path, err)
	}
	byName := map[string]time.Duration{}
	var total time.Duration
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			continue
		}
		flat, ok := pprofDuration(f[0])
		if !ok {
			continue
		}
		fn := strings.Join(f[5:], " ")
		byName[componentOf(fn)] += flat
		total += flat
	}
	if total == 0 {
		return nil, 0, fmt.Errorf("profile %s holds no samples", path)
	}
	var shares []share
	for n, d := range byName {
		shares = append(shares, share{n, d})
	}
	sort.Slice(shares, func(i, j int) bool { return shares[i].CPU > shares[j].CPU })
	return shares, total, nil
}

// pprofDuration reads pprof's "1.20s", "350ms", "1.5mins", "0".
func pprofDuration(s string) (time.Duration, bool) {
	if s == "0" {
		return 0, true
	}
	for _, u := range []struct {
		suffix string
		unit   time.Duration
	}{{"mins", time.Minute}, {"hrs", time.Hour}, {"ms", time.Millisecond}, {"us", time.Microsecond}, {"µs", time.Microsecond}, {"ns", time.Nanosecond}, {"s", time.Second}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			x, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, false
			}
			return time.Duration(x * float64(u.unit)), true
		}
	}
	return 0, false
}
