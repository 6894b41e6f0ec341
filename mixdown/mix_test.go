package mixdown

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trackrec/trackrec/testbed"
)

func TestMain(m *testing.M) {
	if err := testbed.CheckTools("ffmpeg", "ffprobe"); err != nil {
		fmt.Fprintln(os.Stderr, "mixdown tests need ffmpeg:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

var t0 = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

// tone describes a synthetic track: a sine at freq lasting dur, whose file
// starts at t0+at.
type tone struct {
	freq     float64
	at, dur  time.Duration
	channels int
	// lead, if set, makes the audio begin lead into the file (the first
	// granule position says so) instead of at 0.
	lead time.Duration
}

func (tn tone) name() string { return fmt.Sprintf("tone%.0f", tn.freq) }

// makeTone writes tn as an Ogg Opus file the way trackrec records (20 ms
// frames, 48 kHz) and returns its Track.
func makeTone(t *testing.T, dir string, tn tone) Track {
	t.Helper()
	path := filepath.Join(dir, tn.name()+".ogg")
	args := []string{"-nostdin", "-v", "error", "-y", "-f", "lavfi",
		"-i", fmt.Sprintf("sine=frequency=%g:sample_rate=48000:duration=%g", tn.freq, tn.dur.Seconds()),
		"-c:a", "libopus", "-b:a", "32k", "-frame_duration", "20"}
	if tn.channels == 2 {
		// The tone at full level in both channels.
		args = append(args, "-af", "pan=stereo|c0=c0|c1=c0")
	}
	if tn.lead > 0 {
		args = append(args, "-output_ts_offset", strconv.FormatFloat(tn.lead.Seconds(), 'f', -1, 64))
	}
	ffmpeg(t, append(args, path)...)
	return Track{
		Key:      "livekit/room/" + tn.name() + ".ogg",
		Path:     path,
		Start:    t0.Add(tn.at),
		Identity: tn.name(),
		TrackSID: "TR_" + tn.name(),
	}
}

func ffmpeg(t *testing.T, args ...string) []byte {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(t.Context(), "ffmpeg", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Fatalf("ffmpeg %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

// decodePCM decodes path to 48 kHz mono samples, failing on any decoder
// message at warning level or above.
func decodePCM(t *testing.T, path string) []float64 {
	t.Helper()
	return decodePCMAt(t, path, "warning")
}

// decodePCMAt decodes like decodePCM, failing on messages at level.
func decodePCMAt(t *testing.T, path, level string) []float64 {
	t.Helper()
	raw := ffmpeg(t, "-nostdin", "-v", level, "-i", path, "-ac", "1", "-ar", "48000", "-f", "s16le", "pipe:1")
	pcm := make([]float64, len(raw)/2)
	for i := range pcm {
		pcm[i] = float64(int16(binary.LittleEndian.Uint16(raw[2*i:]))) / 32768
	}
	return pcm
}

// goertzel returns the amplitude of freq in x.
func goertzel(x []float64, freq float64) float64 {
	w := 2 * math.Pi * freq / SampleRate
	c := 2 * math.Cos(w)
	var s1, s2 float64
	for _, v := range x {
		s1, s2 = v+c*s1-s2, s1
	}
	p := s1*s1 + s2*s2 - c*s1*s2
	return 2 * math.Sqrt(max(p, 0)) / float64(len(x))
}

// toneSpan finds where freq plays in pcm: a 10 ms window slides by 1 ms; the
// tone is on where its amplitude is at least half its peak, which a window
// reaches when half of it covers the tone, so the edges are the window
// centres there.
func toneSpan(pcm []float64, freq float64) (on, off time.Duration, ok bool) {
	on, off, _, ok = toneSpanPeak(pcm, freq)
	return on, off, ok
}

// toneSpanPeak is toneSpan that also returns the tone's peak amplitude.
func toneSpanPeak(pcm []float64, freq float64) (on, off time.Duration, peak float64, ok bool) {
	const win, hop = 480, 48
	var amps []float64
	for i := 0; i+win <= len(pcm); i += hop {
		a := goertzel(pcm[i:i+win], freq)
		amps = append(amps, a)
		peak = max(peak, a)
	}
	if peak < 0.01 {
		return 0, 0, peak, false
	}
	first, last := -1, -1
	for i, a := range amps {
		if a >= peak/2 {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	at := func(i int) time.Duration {
		return time.Duration(i*hop+win/2) * time.Second / SampleRate
	}
	return at(first), at(last), peak, true
}

func within(got, want, tol time.Duration) bool {
	d := got - want
	return d >= -tol && d <= tol
}

func TestMix(t *testing.T) {
	a := tone{freq: 440, at: 0, dur: 4 * time.Second}
	b := tone{freq: 1000, at: 2 * time.Second, dur: 6 * time.Second}
	c := tone{freq: 2500, at: 5 * time.Second, dur: 4500 * time.Millisecond}
	stereo := tone{freq: 1700, at: 3 * time.Second, dur: 2 * time.Second, channels: 2}
	late := tone{freq: 1300, at: 1 * time.Second, dur: 2 * time.Second, lead: 1500 * time.Millisecond}
	tests := []struct {
		name         string
		tones        []tone // in the order given to Mix
		format       Format
		wantChannels int
	}{
		{"three tracks to mp3", []tone{c, a, b}, FormatMP3, 1},
		{"three tracks to opus", []tone{c, a, b}, FormatOpus, 1},
		{"default format is mp3", []tone{a, b}, "", 1},
		{"one track to mp3", []tone{b}, FormatMP3, 1},
		{"one track to opus", []tone{c}, FormatOpus, 1},
		{"a stereo track makes a stereo mix", []tone{a, stereo}, FormatMP3, 2},
		{"audio that begins into its file stays there", []tone{late, b}, FormatOpus, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var tracks []Track
			earliest, latestEnd := tc.tones[0].at, time.Duration(0)
			for _, tn := range tc.tones {
				tracks = append(tracks, makeTone(t, dir, tn))
				earliest = min(earliest, tn.at)
				latestEnd = max(latestEnd, tn.at+tn.lead+tn.dur)
			}
			wantFormat := tc.format
			if wantFormat == "" {
				wantFormat = FormatMP3
			}
			out := filepath.Join(dir, "mix"+wantFormat.Ext())

			res, err := Mix(t.Context(), tracks, out, tc.format)
			if err != nil {
				t.Fatal(err)
			}
			span := latestEnd - earliest
			t.Logf("%s: decoded %v, span %v", tc.name, res.Duration, span)
			if res.Path != out || res.Format != wantFormat || res.Channels != tc.wantChannels {
				t.Errorf("result = %s %s %d channels, want %s %s %d", res.Path, res.Format, res.Channels, out, wantFormat, tc.wantChannels)
			}
			if !res.Start.Equal(t0.Add(earliest)) {
				t.Errorf("start = %v, want %v", res.Start, t0.Add(earliest))
			}
			if !within(res.Duration, span, 100*time.Millisecond) {
				t.Errorf("duration = %v, want %v within 100 ms", res.Duration, span)
			}
			if len(res.Inputs) != len(tracks) {
				t.Fatalf("%d inputs, want %d", len(res.Inputs), len(tracks))
			}
			prevAt := time.Duration(-1)
			for _, in := range res.Inputs {
				var tn tone
				for _, x := range tc.tones {
					if x.name() == in.Identity {
						tn = x
					}
				}
				if tn.at < prevAt {
					t.Errorf("inputs not in start order: %+v", res.Inputs)
				}
				prevAt = tn.at
				if want := tn.at - earliest + tn.lead; in.Offset != want || in.Key != "livekit/room/"+tn.name()+".ogg" || in.TrackSID != "TR_"+tn.name() {
					t.Errorf("input %+v, want offset %v for %s", in, want, tn.name())
				}
			}

			// The file decodes without a message and lasts the span, and
			// each tone sits at its offset.
			pcm := decodePCM(t, out)
			decoded := time.Duration(len(pcm)) * time.Second / SampleRate
			if !within(decoded, span, 100*time.Millisecond) || decoded != res.Duration {
				t.Errorf("decoded %v (result %v), want %v", decoded, res.Duration, span)
			}
			for _, tn := range tc.tones {
				on, off, peak, ok := toneSpanPeak(pcm, tn.freq)
				if !ok {
					t.Errorf("%s: not found in the mix", tn.name())
					continue
				}
				// ffmpeg's sine source has amplitude 1/8; without
				// normalisation the mix keeps it, in both channels of a
				// stereo mix (decodePCM averages them).
				if peak < 0.125*0.8 || peak > 0.125*1.2 {
					t.Errorf("%s: amplitude %.3f in the mix, want 0.125 (not normalised)", tn.name(), peak)
				}
				wantOn := tn.at - earliest + tn.lead
				wantOff := wantOn + tn.dur
				t.Logf("%s: on %v (want %v), off %v (want %v)", tn.name(), on, wantOn, off, wantOff)
				if !within(on, wantOn, 20*time.Millisecond) || !within(off, wantOff, 20*time.Millisecond) {
					t.Errorf("%s plays %v-%v, want %v-%v within 20 ms", tn.name(), on, off, wantOn, wantOff)
				}
			}
			assertOnly(t, dir, out)
		})
	}
}

// assertOnly fails if dir holds a mixdown leftover other than keep (a
// temporary output).
func assertOnly(t *testing.T, dir, keep string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if p != keep && !strings.HasSuffix(p, ".ogg") && !strings.HasSuffix(p, ".wav") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

func TestMixErrors(t *testing.T) {
	dir := t.TempDir()
	good := makeTone(t, dir, tone{freq: 440, dur: time.Second})
	notAudio := filepath.Join(dir, "notaudio.ogg")
	if err := os.WriteFile(notAudio, []byte("this is not an ogg file"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		tracks  []Track
		format  Format
		wantIs  error
		wantMsg string
	}{
		{"zero tracks", nil, FormatMP3, ErrNoTracks, "no tracks"},
		{"unknown format", []Track{good}, "flac", nil, "unknown format"},
		{"no path", []Track{{Key: "k", Start: t0}}, FormatMP3, nil, "no path"},
		{"no start", []Track{{Key: "k", Path: good.Path}}, FormatMP3, nil, "no start"},
		{"missing file", []Track{good, {Key: "gone", Path: filepath.Join(dir, "gone.ogg"), Start: t0}}, FormatMP3, nil, "No such file"},
		{"not audio", []Track{good, {Key: "bad", Path: notAudio, Start: t0}}, FormatOpus, nil, "track bad"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, "mix.mp3")
			_, err := Mix(t.Context(), tc.tracks, out, tc.format)
			if err == nil {
				t.Fatal("no error")
			}
			t.Log(err)
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("error %v is not %v", err, tc.wantIs)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q does not mention %q", err, tc.wantMsg)
			}
			if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("output exists after a failure: %v", err)
			}
			assertOnly(t, dir, "")
		})
	}
}

// writeSilentWAV writes a 16-bit mono 48 kHz WAV of d of silence as a
// sparse file: a long input that costs no disk.
func writeSilentWAV(t *testing.T, path string, d time.Duration) {
	t.Helper()
	data := uint32(d/time.Second) * SampleRate * 2
	h := make([]byte, 44)
	copy(h, "RIFF")
	binary.LittleEndian.PutUint32(h[4:], 36+data)
	copy(h[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(h[16:], 16)
	binary.LittleEndian.PutUint16(h[20:], 1) // PCM
	binary.LittleEndian.PutUint16(h[22:], 1) // mono
	binary.LittleEndian.PutUint32(h[24:], SampleRate)
	binary.LittleEndian.PutUint32(h[28:], SampleRate*2)
	binary.LittleEndian.PutUint16(h[32:], 2)
	binary.LittleEndian.PutUint16(h[34:], 16)
	copy(h[36:], "data")
	binary.LittleEndian.PutUint32(h[40:], data)
	if err := os.WriteFile(path, h, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, int64(44+data)); err != nil {
		t.Fatal(err)
	}
}

// findProcess returns the pid of a running ffmpeg whose command line has
// all of args, or 0.
func findProcess(t *testing.T, args ...string) int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		argv := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if filepath.Base(argv[0]) != "ffmpeg" {
			continue
		}
		all := true
		for _, a := range args {
			if !strings.Contains(string(b), a) {
				all = false
			}
		}
		if all {
			return pid
		}
	}
	return 0
}

func TestMixCancelKillsFFmpeg(t *testing.T) {
	dir := t.TempDir()
	long := filepath.Join(dir, "long.wav")
	writeSilentWAV(t, long, time.Hour) // minutes of work for ffmpeg
	tracks := []Track{
		makeTone(t, dir, tone{freq: 440, dur: time.Second}),
		{Key: "long", Path: long, Start: t0.Add(time.Second)},
	}
	out := filepath.Join(dir, "mix.mp3")

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := Mix(ctx, tracks, out, FormatMP3)
		errc <- err
	}()

	var pid int
	for deadline := time.Now().Add(10 * time.Second); pid == 0; {
		select {
		case err := <-errc:
			t.Fatalf("Mix returned before it was cancelled: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("ffmpeg never started")
		}
		time.Sleep(10 * time.Millisecond)
		pid = findProcess(t, long, "-filter_complex")
	}
	time.Sleep(200 * time.Millisecond) // let it get going
	cancelled := time.Now()
	cancel()
	select {
	case err := <-errc:
		t.Logf("returned %v after cancel: %v", time.Since(cancelled), err)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error %v is not context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Mix did not return within 5 s of cancel")
	}
	if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ffmpeg (pid %d) still exists after cancel", pid)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("output exists after cancel: %v", err)
	}
	assertOnly(t, dir, "")
}

func TestParseFormat(t *testing.T) {
	tests := []struct {
		in      string
		want    Format
		wantErr bool
	}{
		{"", FormatMP3, false},
		{"mp3", FormatMP3, false},
		{" MP3 ", FormatMP3, false},
		{"opus", FormatOpus, false},
		{"ogg", FormatOpus, false},
		{"flac", "", true},
	}
	for _, tc := range tests {
		got, err := ParseFormat(tc.in)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("ParseFormat(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
	if FormatMP3.Ext() != ".mp3" || FormatOpus.Ext() != ".opus" ||
		FormatMP3.ContentType() != "audio/mpeg" || FormatOpus.ContentType() != "audio/ogg" {
		t.Error("wrong extension or content type")
	}
}

func TestMixArgs(t *testing.T) {
	tracks := []Track{{Path: "a.ogg"}, {Path: "b.ogg"}}
	res := Result{Format: FormatMP3, Channels: 1, Inputs: []Input{{Offset: 0}, {Offset: 2 * time.Second}}}
	args := strings.Join(mixArgs(tracks, []int{1, 1}, res, "out.mp3"), " ")
	for _, want := range []string{
		"-nostdin -v error",
		"[0:a]aresample=48000:async=1:first_pts=0,aformat=sample_fmts=fltp:channel_layouts=mono[a0]",
		"adelay=delays=96000S:all=1[a1]",
		"[a0][a1]amix=inputs=2:duration=longest:normalize=0[out]",
		"-c:a libmp3lame",
		"-i file:a.ogg -i file:b.ogg",
		"-f mp3 file:out.mp3",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q lack %q", args, want)
		}
	}
	stereo := strings.Join(mixArgs(tracks, []int{1, 2}, Result{Format: FormatMP3, Channels: 2, Inputs: res.Inputs}, "out.mp3"), " ")
	for _, want := range []string{
		"[0:a]aresample=48000:async=1:first_pts=0,aformat=sample_fmts=fltp:channel_layouts=mono,pan=stereo|c0=c0|c1=c0[a0]",
		"[1:a]aresample=48000:async=1:first_pts=0,aformat=sample_fmts=fltp:channel_layouts=stereo,adelay=delays=96000S:all=1[a1]",
		"-ac 2 -c:a libmp3lame -b:a 128k",
	} {
		if !strings.Contains(stereo, want) {
			t.Errorf("args %q lack %q", stereo, want)
		}
	}
	one := strings.Join(mixArgs(tracks[:1], []int{2}, Result{Format: FormatOpus, Channels: 2, Inputs: []Input{{}}}, "o.opus"), " ")
	if strings.Contains(one, "amix") || strings.Contains(one, "adelay") || !strings.Contains(one, "channel_layouts=stereo[out]") ||
		!strings.Contains(one, "-c:a libopus") {
		t.Errorf("one input: %q", one)
	}
}

// TestMP3GaplessHeader shows why Mix writes its MP3 to a seekable file: the
// Xing/LAME header carries libmp3lame's encoder delay and padding, which the
// decoder trims. The same frames copied through a pipe lose it (the muxer
// cannot seek back to write it, so the file has no Xing header at all and
// ffmpeg warns that it estimates the duration from the bit rate) and decode
// about 23 ms late and longer by the priming and padding.
func TestMP3GaplessHeader(t *testing.T) {
	dir := t.TempDir()
	a := tone{freq: 440, at: 0, dur: 3 * time.Second}
	b := tone{freq: 1000, at: 2 * time.Second, dur: 2 * time.Second}
	out := filepath.Join(dir, "mix.mp3")
	res, err := Mix(t.Context(), []Track{makeTone(t, dir, a), makeTone(t, dir, b)}, out, FormatMP3)
	if err != nil {
		t.Fatal(err)
	}
	piped := filepath.Join(dir, "piped.mp3")
	if err := os.WriteFile(piped, ffmpeg(t, "-nostdin", "-v", "error", "-i", out, "-c", "copy", "-f", "mp3", "pipe:1"), 0o644); err != nil {
		t.Fatal(err)
	}
	probe := string(ffprobeOut(t, "-v", "error", "-show_entries", "stream=start_time,duration", "-of", "compact", out))
	t.Logf("ffprobe of the mix (no gapless trim applied): %s", strings.TrimSpace(probe))

	for _, c := range []struct {
		path     string
		level    string        // of decoder messages that fail the test
		wantLate time.Duration // where the 1000 Hz tone begins, past 2 s
		wantLong time.Duration // decoded length past 4 s
	}{
		{out, "warning", 0, 0},
		// 1105 samples of priming; frames of 1152 samples in all.
		{piped, "error", 1105 * time.Second / SampleRate, (4*SampleRate + 1151 + 1105) / 1152 * 1152 * time.Second / SampleRate},
	} {
		pcm := decodePCMAt(t, c.path, c.level)
		got := time.Duration(len(pcm)) * time.Second / SampleRate
		on, _, _ := toneSpan(pcm, b.freq)
		t.Logf("%s: decoded %v, 1000 Hz from %v", filepath.Base(c.path), got, on)
		wantLen := 4 * time.Second
		if c.wantLong != 0 {
			wantLen = c.wantLong
		}
		if got != wantLen {
			t.Errorf("%s: decoded %v, want %v", filepath.Base(c.path), got, wantLen)
		}
		if !within(on, 2*time.Second+c.wantLate, 3*time.Millisecond) {
			t.Errorf("%s: tone begins at %v, want %v", filepath.Base(c.path), on, 2*time.Second+c.wantLate)
		}
	}
	if res.Duration != 4*time.Second {
		t.Errorf("Mix measured %v, want 4s", res.Duration)
	}
}

func ffprobeOut(t *testing.T, args ...string) []byte {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "ffprobe", args...).Output()
	if err != nil {
		t.Fatalf("ffprobe %v: %v", args, err)
	}
	return out
}

// TestMixAwkwardNames: identities end up in file names; ffmpeg must read
// them as plain local files, not as protocols or options.
func TestMixAwkwardNames(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "room:1 ö")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tr := makeTone(t, dir, tone{freq: 440, dur: time.Second})
	for _, name := range []string{"user:1-😀 Ωмега.ogg", "-rf.ogg", "http:x.ogg"} {
		p := filepath.Join(dir, name)
		if err := os.Rename(tr.Path, p); err != nil {
			t.Fatal(err)
		}
		tr.Path = p
		out := filepath.Join(dir, "-mix:"+name+".mp3")
		res, err := Mix(t.Context(), []Track{tr}, out, FormatMP3)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if res.Duration != time.Second {
			t.Errorf("%s: %v", name, res.Duration)
		}
		if _, err := os.Stat(out); err != nil {
			t.Error(err)
		}
	}
}
