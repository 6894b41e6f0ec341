package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/trackrec/trackrec/completion"
	"github.com/trackrec/trackrec/spool"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/trackrec/trackrec/recorder"
	"github.com/trackrec/trackrec/testbed"
)

// Shared by the tests that need them: the race-built recorder binary and one
// livekit-server. Each is made on first use, so a run that selects none of
// those tests builds and starts nothing, and TestMain tears them down after
// m.Run. lk and recorderBin are set only once needLiveKit / needRecorder
// returned: startService, publish, apiToken and runBinary call them, and a
// test that reads lk before any of those calls needLiveKit(t) first.
var (
	lk          *testbed.LiveKit
	recorderBin string
	toneFile    = absPath("../testdata/tone.ogg")

	shared sharedSetup
)

func TestMain(m *testing.M) {
	code := m.Run()
	if err := shared.close(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e teardown:", err)
	}
	os.Exit(code)
}

// sharedSetup makes lk and recorderBin once each; a failure is kept and
// fails every test that needs the part.
type sharedSetup struct {
	recorderOnce sync.Once
	recorderErr  error
	dir          string // holds the recorder binary

	liveKitOnce sync.Once
	liveKitErr  error
}

// needRecorder builds the recorder binary (with -race) on first use.
func needRecorder(t testing.TB) {
	t.Helper()
	if err := shared.recorder(); err != nil {
		t.Fatal(err)
	}
}

// needLiveKit starts the shared livekit-server on first use.
func needLiveKit(t testing.TB) {
	t.Helper()
	if err := shared.liveKit(); err != nil {
		t.Fatal(err)
	}
}

func (s *sharedSetup) recorder() error {
	s.recorderOnce.Do(func() {
		dir, err := os.MkdirTemp("", "trackrec-e2e-")
		if err != nil {
			s.recorderErr = fmt.Errorf("e2e: %w", err)
			return
		}
		s.dir = dir
		bin := filepath.Join(dir, "recorder")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "go", "build", "-race", "-o", bin, "../cmd/recorder").CombinedOutput()
		if err != nil {
			s.recorderErr = fmt.Errorf("e2e: build recorder: %w\n%s", err, out)
			return
		}
		recorderBin = bin
	})
	return s.recorderErr
}

func (s *sharedSetup) liveKit() error {
	s.liveKitOnce.Do(func() {
		var opts testbed.LiveKitOptions
		if os.Getenv("E2E_LIVEKIT_LOG") != "" {
			opts.LogWriter = os.Stderr
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		server, err := testbed.StartLiveKit(ctx, opts)
		if err != nil {
			s.liveKitErr = fmt.Errorf("e2e: %w", err)
			return
		}
		lk = server
	})
	return s.liveKitErr
}

// close stops what was started; it runs after every test has ended.
func (s *sharedSetup) close() error {
	var err error
	if lk != nil {
		err = lk.Close()
	}
	if s.dir != "" {
		err = errors.Join(err, os.RemoveAll(s.dir))
	}
	return err
}

func absPath(rel string) string {
	p, err := filepath.Abs(rel)
	if err != nil {
		panic(err) // only if the working directory is gone
	}
	return p
}

// service is one recorder process.
type service struct {
	t     *testing.T
	url   string
	token string // for the API, from `recorder token`
	dir   string
	cmd   *exec.Cmd
	logs  *syncBuffer
	done  chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startService runs the recorder binary against the shared LiveKit server,
// or the one extra names (LIVEKIT_URL, LIVEKIT_API_KEY and
// LIVEKIT_API_SECRET all set); extra overrides its environment.
func startService(t *testing.T, extra map[string]string) *service {
	t.Helper()
	// The recorder's built-in mixdown runs ffmpeg and ffprobe.
	if err := testbed.CheckTools("ffmpeg", "ffprobe"); err != nil {
		t.Fatal(err)
	}
	own := extra["LIVEKIT_URL"] != "" && extra["LIVEKIT_API_KEY"] != "" && extra["LIVEKIT_API_SECRET"] != ""
	if !own {
		needLiveKit(t)
	}
	needRecorder(t)
	port := freePort(t)
	s := &service{
		t:    t,
		url:  "http://127.0.0.1:" + strconv.Itoa(port),
		dir:  t.TempDir(),
		logs: &syncBuffer{},
		done: make(chan error, 1),
	}
	env := map[string]string{
		"APP_HOST":        "127.0.0.1",
		"APP_PORT":        strconv.Itoa(port),
		"LOCAL_DIRECTORY": s.dir,
		"LOG_LEVEL":       "debug",
		"REJOIN_TIMEOUT":  "3s",
	}
	if !own {
		env["LIVEKIT_URL"], env["LIVEKIT_API_KEY"], env["LIVEKIT_API_SECRET"] = lk.URL, lk.APIKey, lk.APISecret
	}
	for k, v := range extra {
		env[k] = v
	}
	s.dir = env["LOCAL_DIRECTORY"]
	s.url = "http://127.0.0.1:" + env["APP_PORT"]
	s.token = apiToken(t, env["LIVEKIT_API_KEY"], env["LIVEKIT_API_SECRET"])
	s.cmd = exec.Command(recorderBin)
	s.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		s.cmd.Env = append(s.cmd.Env, k+"="+v)
	}
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			_ = s.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-s.done:
			case <-time.After(20 * time.Second):
				_ = s.cmd.Process.Kill()
			}
		}
		if t.Failed() {
			t.Logf("recorder log:\n%s", tail(s.logs.String(), 12000))
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(s.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("recorder did not become healthy: %v\n%s", err, s.logs.String())
		}
		select {
		case err := <-s.done:
			t.Fatalf("recorder exited: %v\n%s", err, s.logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// terminate sends SIGTERM and waits, up to within, for the recorder to exit
// cleanly by itself.
func (s *service) terminate(t *testing.T, within time.Duration) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("recorder exited with %v after SIGTERM", err)
		}
	case <-time.After(within):
		t.Fatalf("recorder did not exit within %v of SIGTERM", within)
	}
}

// get is an authorized GET on the API.
func (s *service) get(path string) (*http.Response, error) {
	req, _ := http.NewRequest(http.MethodGet, s.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+s.token)
	return http.DefaultClient.Do(req)
}

// apiToken asks the recorder binary for an API token, as a script would.
func apiToken(t *testing.T, key, secret string) string {
	t.Helper()
	needRecorder(t)
	cmd := exec.Command(recorderBin, "token", "-valid", "1h")
	cmd.Env = []string{"LIVEKIT_API_KEY=" + key, "LIVEKIT_API_SECRET=" + secret}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("recorder token: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// post sends a start/stop request and decodes the answer.
func (s *service) post(path, room, participant string) (int, recorder.RecordingInfo, string) {
	s.t.Helper()
	return s.postJSON(path, map[string]any{"room": room, "participant": participant})
}

// postJSON sends body to path with the service's token.
func (s *service) postJSON(path string, v any) (int, recorder.RecordingInfo, string) {
	s.t.Helper()
	code, _, raw := s.postRaw(path, v)
	var info recorder.RecordingInfo
	_ = json.Unmarshal([]byte(raw), &info)
	return code, info, raw
}

// postHeader is post that also returns the answer's header.
func (s *service) postHeader(path, room, participant string) (int, http.Header, string) {
	s.t.Helper()
	return s.postRaw(path, map[string]string{"room": room, "participant": participant})
}

func (s *service) postRaw(path string, v any) (int, http.Header, string) {
	s.t.Helper()
	body, _ := json.Marshal(v)
	req, _ := http.NewRequest(http.MethodPost, s.url+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	var raw bytes.Buffer
	_, _ = raw.ReadFrom(resp.Body)
	return resp.StatusCode, resp.Header, raw.String()
}

func (s *service) mustStart(room, participant string) recorder.RecordingInfo {
	s.t.Helper()
	code, info, raw := s.post("/recordings/start", room, participant)
	if code != http.StatusCreated {
		s.t.Fatalf("start %s/%s: %d %s", room, participant, code, raw)
	}
	return info
}

// mustArm starts a recording for a participant who has not joined yet.
func (s *service) mustArm(room, participant string) recorder.RecordingInfo {
	s.t.Helper()
	code, info, raw := s.postJSON("/recordings/start", map[string]any{"room": room, "participant": participant, "wait_for_participant": true})
	if code != http.StatusCreated {
		s.t.Fatalf("start (waiting) %s/%s: %d %s", room, participant, code, raw)
	}
	return info
}

func (s *service) mustStop(room, participant string) recorder.RecordingInfo {
	s.t.Helper()
	code, info, raw := s.post("/recordings/stop", room, participant)
	if code != http.StatusOK {
		s.t.Fatalf("stop %s/%s: %d %s", room, participant, code, raw)
	}
	return info
}

// listing is GET /recordings.
type listing struct {
	Recordings []recorder.RecordingInfo `json:"recordings"`
	Rooms      []completion.Run         `json:"rooms"`
	Recovered  []spool.RecoveredFile    `json:"recovered"`
}

func (s *service) listing() listing {
	s.t.Helper()
	resp, err := s.get("/recordings")
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out listing
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		s.t.Fatal(err)
	}
	return out
}

func (s *service) list() []recorder.RecordingInfo { return s.listing().Recordings }

// rooms is the rooms' pipeline runs.
func (s *service) rooms() []completion.Run { return s.listing().Rooms }

// waitRecording polls the list until cond holds for the recording of
// room/participant (the latest one).
func (s *service) waitRecording(room, participant string, within time.Duration, cond func(recorder.RecordingInfo) bool) recorder.RecordingInfo {
	s.t.Helper()
	deadline := time.Now().Add(within)
	var last recorder.RecordingInfo
	for time.Now().Before(deadline) {
		for _, r := range s.list() {
			if r.Room == room && r.Participant == participant {
				last = r
			}
		}
		if cond(last) {
			return last
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("recording %s/%s did not reach the expected state; last: %+v", room, participant, last)
	return last
}

// publish starts a looping publisher of the test tone.
func publish(t *testing.T, room, identity string) *testbed.Publisher {
	t.Helper()
	needLiveKit(t)
	return publishOn(t, lk, room, identity)
}

// publishOn is publish on a given LiveKit server.
func publishOn(t *testing.T, lk *testbed.LiveKit, room, identity string) *testbed.Publisher {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, err := testbed.Publish(ctx, testbed.PublisherOptions{
		URL: lk.URL, APIKey: lk.APIKey, APISecret: lk.APISecret,
		Room: room, Identity: identity, File: toneFile, Loop: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Leave() })
	return p
}

// decodedDuration decodes the whole file with ffmpeg and returns the length
// of the audio it produced; any decoder complaint fails the test.
func decodedDuration(t *testing.T, path string) time.Duration {
	t.Helper()
	if err := testbed.CheckTools("ffmpeg"); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ffmpeg", "-v", "error", "-i", path, "-f", "s16le", "-ac", "1", "-ar", "48000", "-")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("ffmpeg decode %s: %v: %s", path, err, stderr.String())
	}
	if msg := strings.TrimSpace(stderr.String()); msg != "" {
		t.Errorf("ffmpeg complained decoding %s: %s", path, msg)
	}
	return time.Duration(stdout.Len()/2) * time.Second / 48000
}

// probeDuration is the container's own idea of its duration (ffprobe).
func probeDuration(t *testing.T, path string) time.Duration {
	t.Helper()
	if err := testbed.CheckTools("ffprobe"); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe %s: %v: %s", path, err, out)
	}
	sec, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		t.Fatalf("ffprobe %s: %q", path, out)
	}
	return time.Duration(sec * float64(time.Second))
}

func itoa(n int) string { return strconv.Itoa(n) }

// runBinary runs the recorder with exactly env and returns its output.
func runBinary(env []string) (string, error) {
	if err := shared.recorder(); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, recorderBin)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// metric reads one series from GET /metrics: the value of a counter or
// gauge, the sample count of a histogram. labels are "k=v" in the
// exposition's (sorted) order; missing series read as -1.
func (s *service) metric(name string, labels ...string) float64 {
	s.t.Helper()
	resp, err := s.get("/metrics")
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		s.t.Fatalf("parse /metrics: %v", err)
	}
	for _, m := range fams[name].GetMetric() {
		var got []string
		for _, l := range m.GetLabel() {
			got = append(got, l.GetName()+"="+l.GetValue())
		}
		if strings.Join(got, ",") != strings.Join(labels, ",") {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

// outputLines is what the recorder wrote, a line each, without the Go
// runtime's scheduler trace (ADAPTIVE_PROCS keeps its monitor awake with
// GODEBUG=schedtrace, which prints a "SCHED" line once in 24.8 days, and at
// start on a host up longer than that).
func outputLines(out string) []string {
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasPrefix(l, "SCHED ") {
			lines = append(lines, l)
		}
	}
	return lines
}
