package loadbench

import (
	"context"
	"fmt"
	"os/exec"
	"time"
)

// egressChain is the audio chain livekit/egress runs for a track egress
// once it has the Opus stream: decode, convert, resample, re-encode at
// 128 kbit/s, mux. Run from a file, it costs what it costs live, without
// the pacing.
var egressChain = []string{"oggdemux", "!", "opusparse", "!", "opusdec", "!", "audioconvert", "!", "audioresample", "!",
	"opusenc", "bitrate=128000", "!", "oggmux", "!", "fakesink"}

// chainCPU is the CPU time gst-launch-1.0 takes to run egressChain on the
// Ogg Opus file at path.
func chainCPU(ctx context.Context, path string) (time.Duration, error) {
	args := append([]string{"-q", "filesrc", "location=" + path, "!"}, egressChain...)
	cmd := exec.CommandContext(ctx, "gst-launch-1.0", args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("gst-launch-1.0 on %s: %w: %s", path, err, out)
	}
	return cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
}

// chainPerSecond is the chain's CPU per second of audio, in milliseconds:
// the difference between a long file and a short one, so that
// gst-launch's own start (its plugin registry) does not count.
func chainPerSecond(ctx context.Context, long string, longDur time.Duration, short string, shortDur time.Duration) (float64, error) {
	if longDur-shortDur < 5*time.Second {
		return 0, fmt.Errorf("chain: the long file (%v) must be at least 5 s longer than the short one (%v): a longer -window", longDur, shortDur)
	}
	var l, s time.Duration
	// The least of three: the other processes of the machine only add.
	for range 3 {
		lc, err := chainCPU(ctx, long)
		if err != nil {
			return 0, err
		}
		sc, err := chainCPU(ctx, short)
		if err != nil {
			return 0, err
		}
		if l == 0 || lc < l {
			l = lc
		}
		if s == 0 || sc < s {
			s = sc
		}
	}
	return float64((l - s).Microseconds()) / 1000 / (longDur - shortDur).Seconds(), nil
}
