package mixdown

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// SampleRate is the sample rate of every mix: the inputs are resampled to it
// (Opus decodes at 48 kHz anyway) and the output is encoded at it.
const SampleRate = 48000

// Track is one input of a mix: a recorded track file and where it sits on the
// wall clock.
type Track struct {
	Key      string    // object key of the track file (for the manifest)
	Path     string    // local file to read; any format ffmpeg decodes
	Start    time.Time // the file's start: the whole UTC second its name carries
	Identity string
	TrackSID string
}

// Format is the mix's codec and container.
type Format string

const (
	// FormatMP3 is MP3 (libmp3lame, constant bit rate, with a Xing/LAME
	// header carrying gapless information). The default.
	FormatMP3 Format = "mp3"
	// FormatOpus is Opus in Ogg (libopus).
	FormatOpus Format = "opus"
)

// ParseFormat reads a configured format, case-insensitively; the empty string
// is [FormatMP3].
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.ToLower(strings.TrimSpace(s))); f {
	case "", FormatMP3:
		return FormatMP3, nil
	case FormatOpus, "ogg":
		return FormatOpus, nil
	default:
		return "", fmt.Errorf("mixdown format %q: want mp3 or opus", s)
	}
}

// Ext is the file extension of the format, with its dot: ".mp3" or ".opus"
// (RFC 7845's extension for Ogg Opus files, which also keeps a mixdown from
// looking like a participant's .ogg track).
func (f Format) Ext() string {
	if f == FormatOpus {
		return ".opus"
	}
	return ".mp3"
}

// ContentType is the media type of the format: audio/mpeg or audio/ogg.
func (f Format) ContentType() string {
	if f == FormatOpus {
		return "audio/ogg"
	}
	return "audio/mpeg"
}

// Result describes a finished mix.
type Result struct {
	Path     string
	Format   Format
	Start    time.Time     // the earliest track start: position 0 of the mix
	Duration time.Duration // decoded length of the output
	Channels int           // 1, or 2 if any input has two or more channels
	Inputs   []Input       // in mix order: by start, then as given
}

// Input is one track as it went into the mix.
type Input struct {
	Key      string
	Identity string
	TrackSID string
	// Offset is the delay applied: the track's start minus Result.Start,
	// plus where its audio begins in its file if not at 0 (trackrec's files
	// begin at 0: they carry leading silence instead).
	Offset time.Duration
}

// ErrNoTracks is returned by [Mix] when it is given nothing to mix.
var ErrNoTracks = errors.New("mixdown: no tracks to mix")

const (
	mp3MonoBitrate    = "64k"
	mp3StereoBitrate  = "128k"
	opusMonoBitrate   = "32k"
	opusStereoBitrate = "64k"
	stderrTail        = 4 << 10
)

// Mix aligns the tracks by their starts and mixes them in one ffmpeg pass
// into out, in format f (empty means MP3).
//
// A track's offset is its start minus the earliest start (a whole number of
// seconds for trackrec's files), plus the position of its first sample in
// the file if the file says its audio begins later than 0 (an Ogg stream
// joined live, say); it is applied as a sample-exact adelay. Each input is
// resampled to 48 kHz with its timestamps honoured (aresample async), so a
// hole in its timeline is filled with silence; then the inputs are summed by amix
// without normalisation, lasting as long as the longest delayed input. One
// track is encoded without amix. The output is written to a temporary file
// beside out and renamed into place once it has been decoded completely
// without an error; the decoded length is Result.Duration.
//
// ctx bounds the whole run: on cancellation ffmpeg is killed and the error
// wraps ctx.Err().
func Mix(ctx context.Context, tracks []Track, out string, f Format) (Result, error) {
	if len(tracks) == 0 {
		return Result{}, ErrNoTracks
	}
	if f == "" {
		f = FormatMP3
	}
	if f != FormatMP3 && f != FormatOpus {
		return Result{}, fmt.Errorf("mixdown: unknown format %q", f)
	}
	if out == "" {
		return Result{}, errors.New("mixdown: no output path")
	}
	for i, t := range tracks {
		if t.Path == "" {
			return Result{}, fmt.Errorf("mixdown: track %d (%s): no path", i, t.Key)
		}
		if t.Start.IsZero() {
			return Result{}, fmt.Errorf("mixdown: track %d (%s): no start time", i, t.Key)
		}
	}
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		return Result{}, fmt.Errorf("mixdown: %w", err)
	}
	ffprobe, err := exec.LookPath("ffprobe")
	if err != nil {
		return Result{}, fmt.Errorf("mixdown: %w", err)
	}

	sorted := slices.Clone(tracks)
	slices.SortStableFunc(sorted, func(a, b Track) int { return a.Start.Compare(b.Start) })
	start := sorted[0].Start

	res := Result{Path: out, Format: f, Start: start, Channels: 1}
	channels := make([]int, 0, len(sorted))
	for _, t := range sorted {
		p, err := probe(ctx, ffprobe, t.Path)
		if err != nil {
			return Result{}, fmt.Errorf("mixdown: track %s: %w", t.Key, err)
		}
		if p.channels >= 2 {
			res.Channels = 2
		}
		channels = append(channels, p.channels)
		if p.lead > 0 {
			slog.InfoContext(ctx, "mixdown: track audio begins into its file", "key", t.Key, "lead", p.lead)
		}
		res.Inputs = append(res.Inputs, Input{
			Key: t.Key, Identity: t.Identity, TrackSID: t.TrackSID,
			Offset: t.Start.Sub(start) + p.lead,
		})
	}

	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*.tmp")
	if err != nil {
		return Result{}, fmt.Errorf("mixdown: create output: %w", err)
	}
	tmpPath := tmp.Name()
	if err := tmp.Close(); err != nil {
		return Result{}, fmt.Errorf("mixdown: create output: %w", err)
	}
	done := false
	defer func() {
		if !done {
			_ = os.Remove(tmpPath)
		}
	}()

	args := mixArgs(sorted, channels, res, tmpPath)
	slog.DebugContext(ctx, "mixdown: running ffmpeg", "inputs", len(sorted), "format", f, "args", args)
	began := time.Now()
	msgs, err := run(ctx, ffmpeg, args, nil)
	if err != nil {
		return Result{}, fmt.Errorf("mixdown: mix %d tracks: %w", len(sorted), err)
	}
	if msgs != "" {
		// ffmpeg finished; an input had a bad packet or two, say. The check
		// below decides whether the output is sound.
		slog.WarnContext(ctx, "mixdown: ffmpeg reported errors", "out", out, "stderr", msgs)
	}
	d, err := DecodedDuration(ctx, tmpPath)
	if err != nil {
		return Result{}, fmt.Errorf("mixdown: check output: %w", err)
	}
	res.Duration = d
	if err := os.Rename(tmpPath, out); err != nil {
		return Result{}, fmt.Errorf("mixdown: %w", err)
	}
	done = true
	slog.InfoContext(ctx, "mixdown: mixed", "out", out, "format", f, "inputs", len(sorted),
		"duration", d, "took", time.Since(began))
	return res, nil
}

// mixArgs builds the ffmpeg command line mixing tracks (sorted by start,
// with channels channels each) into path.
//
// Each input is resampled to 48 kHz float with holes in its timestamps
// filled, brought to the output's layout, and delayed by its offset. A mono
// input in a stereo mix is copied to both channels at its own level (a
// default upmix would lower it by 3 dB); inputs of more than two channels
// are downmixed by ffmpeg's default matrix.
func mixArgs(tracks []Track, channels []int, res Result, path string) []string {
	args := []string{"-nostdin", "-v", "error", "-y"}
	for _, t := range tracks {
		args = append(args, "-i", fileURL(t.Path))
	}
	var g strings.Builder
	for i, in := range res.Inputs {
		if i > 0 {
			g.WriteByte(';')
		}
		fmt.Fprintf(&g, "[%d:a]aresample=%d:async=1:first_pts=0,aformat=sample_fmts=fltp:channel_layouts=", i, SampleRate)
		switch {
		case res.Channels == 1:
			g.WriteString("mono")
		case channels[i] == 1:
			g.WriteString("mono,pan=stereo|c0=c0|c1=c0")
		default:
			g.WriteString("stereo")
		}
		if n := offsetSamples(in.Offset); n > 0 {
			fmt.Fprintf(&g, ",adelay=delays=%dS:all=1", n)
		}
		if len(res.Inputs) == 1 {
			g.WriteString("[out]")
		} else {
			fmt.Fprintf(&g, "[a%d]", i)
		}
	}
	if n := len(res.Inputs); n > 1 {
		g.WriteByte(';')
		for i := range n {
			fmt.Fprintf(&g, "[a%d]", i)
		}
		fmt.Fprintf(&g, "amix=inputs=%d:duration=longest:normalize=0[out]", n)
	}
	args = append(args, "-filter_complex", g.String(), "-map", "[out]",
		"-ar", strconv.Itoa(SampleRate), "-ac", strconv.Itoa(res.Channels))
	switch res.Format {
	case FormatOpus:
		br := opusMonoBitrate
		if res.Channels == 2 {
			br = opusStereoBitrate
		}
		args = append(args, "-c:a", "libopus", "-b:a", br, "-f", "ogg")
	default:
		br := mp3MonoBitrate
		if res.Channels == 2 {
			br = mp3StereoBitrate
		}
		// A constant bit rate keeps even naive players' duration estimates
		// right; the Xing/LAME header (written because path is a seekable
		// file) carries the encoder delay and padding.
		args = append(args, "-c:a", "libmp3lame", "-b:a", br, "-write_xing", "1", "-f", "mp3")
	}
	return append(args, fileURL(path))
}

// fileURL names a local file for ffmpeg so that nothing in its name is read
// as a protocol ("user:1-....ogg"), an option or stdin ("-"), and so that
// ffmpeg opens nothing but local files.
func fileURL(path string) string { return "file:" + path }

// offsetSamples converts a delay to 48 kHz samples, rounded to the nearest.
func offsetSamples(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return (int64(d)*SampleRate + int64(time.Second)/2) / int64(time.Second)
}

// probed is what Mix needs to know of an input file.
type probed struct {
	channels int
	// lead is where the file's audio begins on its own timeline (its first
	// decoded sample's position): 0 for trackrec's files, which begin with
	// silence; more for an Ogg file whose first granule position says it
	// joined later. ffmpeg starts every input at 0, so Mix delays it by lead.
	lead time.Duration
}

// probe reads path's first audio stream's channel count and start time.
func probe(ctx context.Context, ffprobe, path string) (probed, error) {
	var out strings.Builder
	if _, err := run(ctx, ffprobe, []string{"-v", "error", "-select_streams", "a:0",
		"-show_entries", "stream=channels,start_time", "-of", "json", fileURL(path)}, &out); err != nil {
		return probed{}, fmt.Errorf("probe %s: %w", path, err)
	}
	var p struct {
		Streams []struct {
			Channels  int    `json:"channels"`
			StartTime string `json:"start_time"`
		} `json:"streams"`
	}
	if err := json.Unmarshal([]byte(out.String()), &p); err != nil {
		return probed{}, fmt.Errorf("probe %s: %w", path, err)
	}
	if len(p.Streams) == 0 || p.Streams[0].Channels < 1 {
		return probed{}, fmt.Errorf("probe %s: no audio stream", path)
	}
	r := probed{channels: p.Streams[0].Channels}
	// Negative start times are the decoder's pre-skip (WebM CodecDelay):
	// the first decoded sample is then at 0.
	if st, err := strconv.ParseFloat(p.Streams[0].StartTime, 64); err == nil && st > 0 {
		r.lead = time.Duration(st * float64(time.Second)).Round(time.Microsecond)
	}
	return r, nil
}

// DecodedDuration decodes path's first audio stream completely with ffmpeg
// and returns its length, counting the 48 kHz samples the decoder delivers
// (so encoder delay and padding that the container declares are excluded,
// unlike ffprobe's duration). Any message from the decoder at error level is
// an error.
func DecodedDuration(ctx context.Context, path string) (time.Duration, error) {
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		return 0, err
	}
	var n countWriter
	msgs, err := run(ctx, ffmpeg, []string{"-nostdin", "-v", "error", "-i", fileURL(path), "-map", "0:a:0",
		"-ac", "1", "-ar", strconv.Itoa(SampleRate), "-f", "s16le", "pipe:1"}, &n)
	if err == nil && msgs != "" {
		err = errors.New(msgs)
	}
	if err != nil {
		return 0, fmt.Errorf("decode %s: %w", path, err)
	}
	samples := int64(n) / 2
	return time.Duration(samples * int64(time.Second) / SampleRate), nil
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) {
	*c += countWriter(len(p))
	return len(p), nil
}

// run runs bin with args, writing its stdout to stdout (if not nil). It
// returns what the process wrote to stderr (ffmpeg and ffprobe run at -v
// error, so that is error messages only) and an error if it could not run,
// failed (with its messages), or was killed because ctx ended (wrapping
// ctx.Err()).
func run(ctx context.Context, bin string, args []string, stdout io.Writer) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout = stdout
	stderr := &tailWriter{max: stderrTail}
	cmd.Stderr = stderr
	// CommandContext kills the process on cancellation; WaitDelay bounds the
	// wait for its output pipes after that.
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	name := filepath.Base(bin)
	msg := strings.TrimSpace(stderr.String())
	switch {
	case err == nil:
		return msg, nil
	case ctx.Err() != nil:
		return msg, fmt.Errorf("%s: %w", name, ctx.Err())
	case msg != "":
		return msg, fmt.Errorf("%s: %w: %s", name, err, msg)
	default:
		return msg, fmt.Errorf("%s: %w", name, err)
	}
}

// tailWriter keeps the last max bytes written to it.
type tailWriter struct {
	max int
	buf []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailWriter) String() string { return string(t.buf) }
