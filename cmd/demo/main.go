// Command demo shows the recorder end to end on one machine: it starts a
// development LiveKit server on loopback, the recorder on its embedded
// defaults, and a participant speaking a test tone; records it for about ten
// seconds through the HTTP API; and prints where the file is, how long it
// plays and where its audio sits on the wall clock.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/trackrec/trackrec/bot"
	"github.com/trackrec/trackrec/testbed"
)

func main() {
	recorderBin := flag.String("recorder", "bin/recorder", "recorder binary to run")
	tone := flag.String("file", "testdata/tone.ogg", "Ogg Opus file the demo participant speaks")
	seconds := flag.Int("seconds", 10, "how long to record")
	dir := flag.String("dir", "recordings", "LOCAL_DIRECTORY for the recorder")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *recorderBin, *tone, *dir, time.Duration(*seconds)*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, recorderBin, tone, dir string, length time.Duration) error {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	bot.UseSDKLogger(slog.Default())
	// `make demo` installs them first (testbed.InstallCommand).
	if err := testbed.CheckTools("ffmpeg", "ffprobe"); err != nil {
		return err
	}
	lk, err := testbed.StartLiveKit(ctx, testbed.LiveKitOptions{})
	if err != nil {
		return err
	}
	defer lk.Close()
	say("LiveKit dev server on %s", lk.URL)

	port, err := freePort()
	if err != nil {
		return err
	}
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	rec := exec.Command(recorderBin)
	rec.Env = append(os.Environ(),
		"LIVEKIT_URL="+lk.URL, "LIVEKIT_API_KEY="+lk.APIKey, "LIVEKIT_API_SECRET="+lk.APISecret,
		"APP_HOST=127.0.0.1", "APP_PORT="+strconv.Itoa(port), "LOCAL_DIRECTORY="+dir, "LOG_LEVEL=warn",
		"MIXDOWN_SETTLE=1s")
	rec.Stdout, rec.Stderr = os.Stderr, os.Stderr
	if err := rec.Start(); err != nil {
		return fmt.Errorf("start recorder: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- rec.Wait() }()
	defer func() {
		_ = rec.Process.Signal(syscall.SIGTERM)
		<-exited
	}()
	if err := waitHealthy(ctx, base, exited); err != nil {
		return err
	}
	say("recorder API on %s (files go to ./%s)", base, dir)
	// The API wants a LiveKit token with the roomRecord grant; the recorder
	// binary prints one.
	tok := exec.CommandContext(ctx, recorderBin, "token", "-valid", "1h")
	tok.Env = append(os.Environ(), "LIVEKIT_API_KEY="+lk.APIKey, "LIVEKIT_API_SECRET="+lk.APISecret)
	out, err := tok.Output()
	if err != nil {
		return fmt.Errorf("recorder token: %w", err)
	}
	token := strings.TrimSpace(string(out))

	const room, identity = "demo-room", "demo-speaker"
	pub, err := testbed.Publish(ctx, testbed.PublisherOptions{
		URL: lk.URL, APIKey: lk.APIKey, APISecret: lk.APISecret,
		Room: room, Identity: identity, File: tone, Loop: true,
	})
	if err != nil {
		return err
	}
	defer pub.Leave()
	say("%s is speaking in %s (track %s)", identity, room, pub.TrackSID())

	say("POST /recordings/start {\"room\":%q,\"participant\":%q}", room, identity)
	if _, err := post(ctx, base+"/recordings/start", token, room, identity); err != nil {
		return err
	}
	// A live listener, as a transcription service would be: 16 kHz mono
	// PCM over a WebSocket while the recording is written.
	say("GET /recordings/live?room=%s&participant=%s&format=pcm (WebSocket)", room, identity)
	heard := make(chan liveResult, 1)
	go func() { heard <- listen(ctx, base, token, room, identity) }()
	select {
	case <-time.After(length):
	case <-ctx.Done():
		return ctx.Err()
	}
	say("POST /recordings/stop")
	body, err := post(ctx, base+"/recordings/stop", token, room, identity)
	if err != nil {
		return err
	}
	var info struct {
		Tracks []struct {
			Path       string    `json:"path"`
			Bytes      int64     `json:"bytes"`
			Packets    int64     `json:"packets"`
			DurationMS int64     `json:"duration_ms"`
			Anchor     time.Time `json:"anchor"`
			StartedAt  time.Time `json:"started_at"`
		} `json:"tracks"`
	}
	if err := json.Unmarshal(body, &info); err != nil {
		return fmt.Errorf("stop answer: %w", err)
	}
	if len(info.Tracks) == 0 {
		return errors.New("the recording has no track file")
	}
	for _, t := range info.Tracks {
		// Decode the whole file: a clean decode is the first thing to trust.
		out, err := exec.CommandContext(ctx, "ffmpeg", "-v", "error", "-i", t.Path, "-f", "null", "-").CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			return fmt.Errorf("ffmpeg could not decode %s cleanly: %v %s", t.Path, err, out)
		}
		fmt.Printf("recorded %s\n", t.Path)
		fmt.Printf("  plays %.3f s; starts on %s, first audio %.3f s in (anchor %s)\n",
			float64(t.DurationMS)/1000, t.StartedAt.Format("15:04:05"), t.Anchor.Sub(t.StartedAt).Seconds(), t.Anchor.Format("15:04:05.000000"))
		fmt.Printf("  %d Opus packets from the publisher, %d bytes, decodes cleanly with ffmpeg\n", t.Packets, t.Bytes)
	}
	select {
	case h := <-heard:
		if h.err != nil {
			return fmt.Errorf("live listener: %w", h.err)
		}
		fmt.Printf("live: %.3f s of 16 kHz PCM heard as it was recorded, from %s; %d of its %d messages came within %v of their first sample's instant (the first second waits for the anchor)\n",
			float64(h.samples)/16000, h.first.Format("15:04:05.000"), h.prompt, h.messages, liveBound)
	case <-time.After(10 * time.Second):
		return errors.New("the live listener did not hear the stream end")
	}
	// The room is complete once it has stayed without recordings for the
	// settle delay: the built-in mixdown follows.
	say("waiting for the room's mixdown")
	outs, err := waitMixdown(ctx, base, token, room)
	if err != nil {
		return err
	}
	for _, key := range outs {
		fmt.Printf("mixdown %s\n", filepath.Join(dir, filepath.FromSlash(key)))
	}
	return nil
}

// liveBound is what "as it was recorded" means in the demo's summary.
const liveBound = 100 * time.Millisecond

type liveResult struct {
	samples  int64
	first    time.Time // the instant of the first sample
	prompt   int       // messages that came within liveBound of their instant
	messages int
	err      error
}

// listen reads a live PCM session until it ends.
func listen(ctx context.Context, base, token, room, identity string) liveResult {
	q := url.Values{"room": {room}, "participant": {identity}, "format": {"pcm"}, "access_token": {token}}
	u := "ws" + strings.TrimPrefix(base, "http") + "/recordings/live?" + q.Encode()
	conn, _, err := websocket.DefaultDialer.DialContext(ctx, u, nil)
	if err != nil {
		return liveResult{err: err}
	}
	defer conn.Close()
	var r liveResult
	for {
		kind, b, err := conn.ReadMessage()
		if err != nil {
			if websocket.IsCloseError(err, websocket.CloseNormalClosure) {
				return r
			}
			r.err = err
			return r
		}
		if kind == websocket.TextMessage {
			var m struct {
				Type string    `json:"type"`
				At   time.Time `json:"at"`
			}
			if json.Unmarshal(b, &m) == nil && m.Type == "start" {
				r.first = m.At
			}
			continue
		}
		at := r.first.Add(time.Duration(r.samples) * time.Second / 16000)
		if time.Since(at) < liveBound {
			r.prompt++
		}
		r.messages++
		r.samples += int64(len(b) / 2)
	}
}

// waitMixdown polls GET /recordings until room's pipeline run is done.
func waitMixdown(ctx context.Context, base, token, room string) ([]string, error) {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/recordings", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		var list struct {
			Rooms []struct {
				Room    string   `json:"room"`
				State   string   `json:"state"`
				Outputs []string `json:"outputs"`
				Error   string   `json:"error"`
			} `json:"rooms"`
		}
		err = json.NewDecoder(resp.Body).Decode(&list)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		for _, r := range list.Rooms {
			switch {
			case r.Room != room:
			case r.State == "done":
				return r.Outputs, nil
			case r.State == "failed":
				return nil, fmt.Errorf("mixdown failed: %s", r.Error)
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return nil, errors.New("no mixdown within 60 s")
}

func say(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "demo: "+format+"\n", args...)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func waitHealthy(ctx context.Context, base string, exited <-chan error) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/healthz", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-exited:
			return fmt.Errorf("recorder exited: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return errors.New("recorder did not become healthy in 20s")
}

func post(ctx context.Context, url, token, room, participant string) ([]byte, error) {
	body, _ := json.Marshal(map[string]string{"room": room, "participant": participant})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return nil, fmt.Errorf("%s: %s %s", url, resp.Status, out)
	}
	return out, nil
}
