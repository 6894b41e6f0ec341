package muxer_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/trackrec/trackrec/muxer"
	"github.com/trackrec/trackrec/muxer/internal/oggtest"
	"github.com/trackrec/trackrec/muxer/ogg"
	"github.com/trackrec/trackrec/muxer/webm"
)

// headersOnly writes a file in format with its headers and no audio, as a
// crash right after the file opened leaves it.
func headersOnly(t *testing.T, path, format string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	switch format {
	case muxer.FormatOgg:
		_, err = ogg.NewWriter(f, ogg.Header{Channels: 1, PreSkip: 3840}, ogg.Options{})
	case muxer.FormatWebM:
		_, err = webm.NewWriter(f, webm.Header{Channels: 1, PreSkip: 3840}, webm.Options{})
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestRepairDispatch(t *testing.T) {
	tone := oggtest.Tone(t, 4, 1, "32k")
	recorded := map[string]struct {
		path string
		st   muxer.Stats
	}{}
	for _, format := range formats {
		k, st := record(t, format, muxer.Options{}, newGen(tone, 1, 100, 5000).send(200).pkts)
		recorded[format] = struct {
			path string
			st   muxer.Stats
		}{k.path, st}
	}
	copyTo := func(t *testing.T, format string, cut int64) string {
		data, err := os.ReadFile(recorded[format].path)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "track."+format)
		if err := os.WriteFile(path, data[:int64(len(data))-cut], 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	samples := func(format string) int64 { return recorded[format].st.Samples }

	for _, tc := range []struct {
		name     string
		path     func(t *testing.T) string
		repaired bool
		samples  int64 // decoded length wanted, within tol
		tol      int64
		err      error // nil, ErrNoAudio, or errAny
	}{
		{"ogg closed", func(t *testing.T) string { return copyTo(t, "ogg", 0) }, false, samples("ogg"), 0, nil},
		{"webm closed", func(t *testing.T) string { return copyTo(t, "webm", 0) }, false, samples("webm"), 24, nil},
		{"ogg cut in the last page", func(t *testing.T) string { return copyTo(t, "ogg", 100) }, true, samples("ogg") - 24000, 24000, nil},
		{"ogg headers only", func(t *testing.T) string {
			path := filepath.Join(t.TempDir(), "h.ogg")
			headersOnly(t, path, muxer.FormatOgg)
			return path
		}, false, 0, 0, muxer.ErrNoAudio},
		{"webm headers only", func(t *testing.T) string {
			path := filepath.Join(t.TempDir(), "h.webm")
			headersOnly(t, path, muxer.FormatWebM)
			return path
		}, false, 0, 0, muxer.ErrNoAudio},
		{"unknown extension", func(t *testing.T) string {
			path := filepath.Join(t.TempDir(), "h.mp3")
			headersOnly(t, path, muxer.FormatOgg)
			return path
		}, false, 0, 0, errAny},
		{"missing file", func(t *testing.T) string { return filepath.Join(t.TempDir(), "none.ogg") }, false, 0, 0, errAny},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.path(t)
			before, _ := os.ReadFile(path)
			res, err := muxer.Repair(path)
			switch {
			case tc.err == nil && err != nil:
				t.Fatal(err)
			case tc.err == nil:
			case err == nil:
				t.Fatalf("%+v, want an error", res)
			case tc.err == muxer.ErrNoAudio && !errors.Is(err, muxer.ErrNoAudio):
				t.Fatalf("%v, want ErrNoAudio", err)
			case tc.err == errAny && errors.Is(err, muxer.ErrNoAudio):
				t.Fatalf("%v: not ErrNoAudio", err)
			}
			if err != nil || !tc.repaired {
				if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
					t.Fatal("file changed")
				}
			}
			if err != nil {
				return
			}
			if res.Repaired != tc.repaired || (res.Truncated > 0) != tc.repaired {
				t.Errorf("%+v, want repaired %v", res, tc.repaired)
			}
			got := int64(math.Round(res.Duration.Seconds() * 48000))
			if got < tc.samples-tc.tol || got > tc.samples+tc.tol {
				t.Errorf("duration %v (%d samples), want %d ± %d", res.Duration, got, tc.samples, tc.tol)
			}
			if n := int64(len(decode(t, path, "opus", 1))); n < got-24 || n > got+24 {
				t.Errorf("decoded %d samples, Duration says %d", n, got)
			}
		})
	}
}

var errAny = errors.New("any error but ErrNoAudio")

// ErrNoAudio from Repair also matches the container's own error.
func TestRepairErrNoAudioWraps(t *testing.T) {
	for format, want := range map[string]error{muxer.FormatOgg: ogg.ErrNoAudio, muxer.FormatWebM: webm.ErrNoAudio} {
		path := filepath.Join(t.TempDir(), "h."+format)
		headersOnly(t, path, format)
		_, err := muxer.Repair(path)
		if !errors.Is(err, muxer.ErrNoAudio) || !errors.Is(err, want) || !strings.Contains(err.Error(), "no audio") {
			t.Errorf("%s: %v", format, err)
		}
	}
}

const killChildEnv = "TRACKREC_REPAIR_SIGKILL_CHILD" // format, path and payload file, "|"-separated

// TestRepairAfterSIGKILL records a track in real time in a child process
// (this test binary again), kills it with SIGKILL after a few seconds, and
// repairs what it left: the file must carry, byte for byte and in order,
// every publisher packet up to within 1 s of the kill, and pass the
// validators and decode without a word.
func TestRepairAfterSIGKILL(t *testing.T) {
	if spec := os.Getenv(killChildEnv); spec != "" {
		recordUntilKilled(spec)
		return
	}
	tone := oggtest.Tone(t, 2, 1, "32k")
	for _, format := range formats {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, "track."+format)
			payloads := filepath.Join(dir, "payloads")
			if err := os.WriteFile(payloads, encodePayloads(tone), 0o644); err != nil {
				t.Fatal(err)
			}
			last := runAndKill(t, strings.Join([]string{format, path, payloads}, "|"), 3500*time.Millisecond)
			res, err := muxer.Repair(path)
			if err != nil {
				t.Fatal(err)
			}
			if !res.Repaired {
				t.Errorf("a killed recording was complete: %+v", res)
			}
			checkKilled(t, format, path, tone, last, res)
		})
	}
}

// childStats is what the child last reported before it was killed.
type childStats struct{ samples, packets int64 }

// runAndKill starts the child and kills it with SIGKILL once it reports
// media past after, and returns the child's last report.
func runAndKill(t *testing.T, spec string, after time.Duration) childStats {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestRepairAfterSIGKILL$", "-test.count=1")
	cmd.Env = append(os.Environ(), killChildEnv+"="+spec)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	guard := time.AfterFunc(30*time.Second, func() { _ = cmd.Process.Kill() })
	defer guard.Stop()
	var last childStats
	killed := false
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		var s childStats
		if _, err := fmt.Sscanf(sc.Text(), "stats %d %d", &s.samples, &s.packets); err != nil {
			continue // the testing package's own output
		}
		last = s
		if !killed && s.samples >= int64(after.Seconds()*48000) {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !killed || !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child: %v, killed by the test %v\n%s", err, killed, stderr.Bytes())
	}
	return last
}

// recordUntilKilled is the child: it feeds a Track one 20 ms packet every
// 20 ms of wall-clock time, as the SFU would, and reports the Track's stats
// after each, until it is killed (or 30 s pass).
func recordUntilKilled(spec string) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	parts := strings.Split(spec, "|")
	if len(parts) != 3 {
		fail(fmt.Errorf("bad spec %q", spec))
	}
	format, path := parts[0], parts[1]
	data, err := os.ReadFile(parts[2])
	if err != nil {
		fail(err)
	}
	payloads := decodePayloads(data)
	tr, err := muxer.NewTrack(muxer.Options{Format: format, Open: func(time.Time, int) (io.WriteCloser, error) {
		return os.Create(path)
	}})
	if err != nil {
		fail(err)
	}
	start := time.Now()
	for i := 0; time.Since(start) < 30*time.Second; i++ {
		p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SSRC: 7, SequenceNumber: uint16(i), Timestamp: uint32(i * 960)},
			Payload: payloads[i%len(payloads)]}
		if err := tr.WriteRTP(p, time.Now()); err != nil {
			fail(err)
		}
		st := tr.Stats()
		fmt.Printf("stats %d %d\n", st.Samples, st.Packets)
		time.Sleep(time.Until(start.Add(time.Duration(i+1) * 20 * time.Millisecond)))
	}
	os.Exit(3) // never Close: only a kill ends a recording here
}

// encodePayloads frames packets with a 2-byte length each.
func encodePayloads(pkts [][]byte) []byte {
	var b []byte
	for _, p := range pkts {
		b = binary.BigEndian.AppendUint16(b, uint16(len(p)))
		b = append(b, p...)
	}
	return b
}

func decodePayloads(b []byte) [][]byte {
	var out [][]byte
	for len(b) >= 2 {
		n := int(binary.BigEndian.Uint16(b))
		out = append(out, b[2:2+n])
		b = b[2+n:]
	}
	return out
}

// checkKilled checks the repaired file: validators silent, ffmpeg and
// libopus decode it without a word to its Duration, and it holds the
// publisher packets in the order sent, byte for byte, with only the
// Track's silence or concealment between them, up to within 1 s of what
// the child had written when it was killed.
func checkKilled(t *testing.T, format, path string, tone [][]byte, last childStats, res muxer.RepairResult) {
	t.Helper()
	switch format {
	case muxer.FormatOgg:
		oggtest.Validate(t, path, false)
	case muxer.FormatWebM:
		mkvinfo(t, path)
	}
	dur := int64(math.Round(res.Duration.Seconds() * 48000))
	for _, dec := range []string{"opus", "libopus"} {
		if n := int64(len(decode(t, path, dec, 1))); n < dur-24 || n > dur+24 {
			t.Errorf("%s decoded %d samples, Duration %d", dec, n, dur)
		}
	}
	if lost := last.samples - dur; lost < -5760 || lost > 48000 {
		t.Errorf("repaired file lasts %d samples; the track had written %d when killed", dur, last.samples)
	}
	fill := fillers([]sent{{payload: tone[0]}})
	next := int64(0)
	for i, p := range probePackets(t, path) {
		if p.hash == oggtest.MD5(tone[next%int64(len(tone))]) {
			next++
			continue
		}
		if _, ok := fill[p.hash]; !ok {
			t.Fatalf("packet %d at %.3f s is neither publisher packet %d nor a filler", i, p.pts, next)
		}
	}
	if next > last.packets+1 || last.packets-next > 50 {
		t.Errorf("%d publisher packets kept; the track had written %d when killed", next, last.packets)
	}
	t.Logf("killed after %d packets (%.3f s); repaired: %+v, %d packets", last.packets, float64(last.samples)/48000, res, next)
}
