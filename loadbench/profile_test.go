package loadbench

import (
	"testing"
	"time"
)

func TestComponentOf(t *testing.T) {
	for fn, want := range map[string]string{
		"github.com/pion/srtp/v3.(*Context).decryptRTP":                     "srtp+crypto",
		"crypto/internal/fips140/aes/gcm.gcmAesDec":                         "srtp+crypto",
		"github.com/pion/interceptor/pkg/nack.(*GeneratorInterceptor).Bind": "interceptors",
		"github.com/pion/webrtc/v4.(*TrackRemote).ReadRTP":                  "webrtc+rtp",
		"github.com/livekit/server-sdk-go/v2.(*Room).OnTrack":               "livekit sdk",
		"github.com/trackrec/trackrec/muxer.(*Track).Write":                 "trackrec",
		"syscall.Syscall6":      "syscalls",
		"runtime.mallocgc":      "go runtime",
		"encoding/json.Marshal": "other",
	} {
		if got := componentOf(fn); got != want {
			t.Errorf("%s: %s, want %s", fn, got, want)
		}
	}
}

func TestPprofDuration(t *testing.T) {
	for s, want := range map[string]time.Duration{
		"0": 0, "350ms": 350 * time.Millisecond, "1.20s": 1200 * time.Millisecond, "1.5mins": 90 * time.Second, "10us": 10 * time.Microsecond,
	} {
		if got, ok := pprofDuration(s); !ok || got != want {
			t.Errorf("%s: %v %v, want %v", s, got, ok, want)
		}
	}
	if _, ok := pprofDuration("12.5%"); ok {
		t.Error("a percentage read as a duration")
	}
}
