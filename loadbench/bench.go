package loadbench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/trackrec/trackrec/recorder"
	"github.com/trackrec/trackrec/testbed"
)

// Options configure Run.
type Options struct {
	Tracks  int           // publishers, one track each (default 100)
	PerRoom int           // publishers per room (default 5)
	Warmup  time.Duration // after every track flows, before measuring (default 10 s)
	Window  time.Duration // the steady window measured (default 30 s)
	// Recorder is the recorder binary (bin/recorder).
	Recorder string
	// Child runs this benchmark's own child modes ("crowd", "subscribe")
	// in a process of their own.
	Child func(mode string, args ...string) *exec.Cmd
	Tone  string // the Ogg Opus file the publishers send, looped
	// NoSubscriber leaves the bare subscriber out (a saturation run: the
	// machine's cores go to the recorder, livekit-server and publishers).
	NoSubscriber bool
	// RecorderEnv is added to the recorder's environment (KEY=value).
	RecorderEnv []string
	Dir         string // a work folder; the recorder's files go below it
	Out         io.Writer
}

func (o *Options) defaults() error {
	if o.Tracks <= 0 {
		o.Tracks = 100
	}
	if o.PerRoom <= 0 {
		o.PerRoom = 5
	}
	if o.Warmup <= 0 {
		o.Warmup = 10 * time.Second
	}
	if o.Window <= 0 {
		o.Window = 30 * time.Second
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Recorder == "" || o.Child == nil || o.Tone == "" || o.Dir == "" {
		return errors.New("loadbench: Recorder, Child, Tone and Dir are required")
	}
	return nil
}

// Measured is one receiver's cost.
type Measured struct {
	CPU         float64 // ms per track-second
	RSSPerTrack int64   // bytes above the idle process
	Lost        float64 // packets lost per track
	MaxLost     int64   // the most one track lost
}

// Report is one run's figures.
type Report struct {
	Tracks, Rooms int
	Window        time.Duration
	Recorder      Measured
	Subscriber    Measured
	Chain         float64 // ms per second of audio: the re-encode livekit/egress adds
	// The recorder's CPU profile over its window, by component, and the
	// packets it wrote in that window.
	Shares     []share
	ProfileCPU time.Duration
	// SubscriberShares is the bare subscriber's CPU profile by component.
	SubscriberShares []share
	Packets          int64
	// Files is what the recorder's files held, summed.
	Files, Decoded      int
	Publisher, Inserted int
	FileLost, Repeated  int
	// Late and Concealed are the recorder's own counts: packets dropped
	// as too late for the jitter window, and concealment inserted.
	Late, Concealed int64
	// Memory is the recorder's runtime.MemStats growth per track, by
	// field (HeapInuse, StackInuse, Sys...): where its RSS goes.
	Memory map[string]int64
	// Cores each process used in the window.
	RecorderCores, SubscriberCores, LiveKit, Crowd float64
}

// Run runs the benchmark and returns its figures; a file that fails its
// checks fails the run, so a faster but wrong recorder cannot look good.
func Run(ctx context.Context, o Options) (Report, error) {
	if err := o.defaults(); err != nil {
		return Report{}, err
	}
	rep := Report{Tracks: o.Tracks, Rooms: (o.Tracks + o.PerRoom - 1) / o.PerRoom, Window: o.Window}
	tone, err := testbed.ReadOpusFile(o.Tone)
	if err != nil {
		return rep, err
	}
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "bench-load: "+format+"\n", args...) }

	lkLog, err := os.Create(filepath.Join(o.Dir, "livekit-server.log"))
	if err != nil {
		return rep, err
	}
	defer lkLog.Close()
	lk, err := testbed.StartLiveKit(ctx, testbed.LiveKitOptions{LogWriter: lkLog, LogLevel: "warn"})
	if err != nil {
		return rep, err
	}
	defer lk.Close()
	srv := Server{URL: lk.URL, APIKey: lk.APIKey, APISecret: lk.APISecret}

	logf("%d publishers joining %d rooms", o.Tracks, rep.Rooms)
	crowd, err := startChild(ctx, o, srv, "crowd", "-n", strconv.Itoa(o.Tracks), "-per-room", strconv.Itoa(o.PerRoom), "-tone", o.Tone)
	if err != nil {
		return rep, err
	}
	defer crowd.stop()
	if err := crowd.await("ready", time.Minute+time.Duration(o.Tracks)*300*time.Millisecond); err != nil {
		return rep, err
	}

	// The recorder and the bare SDK subscriber receive the same tracks in
	// the same window, so both meet the same machine.
	rec, err := startRecorder(ctx, o, srv)
	if err != nil {
		return rep, err
	}
	defer rec.kill()
	var rooms []string
	want := 0
	if !o.NoSubscriber {
		for r := range rep.Rooms {
			rooms = append(rooms, room(r*o.PerRoom, o.PerRoom))
		}
		want = o.Tracks
	}
	subProfile := filepath.Join(o.Dir, "subscriber.pprof")
	sub, err := startChild(ctx, o, srv, "subscribe", "-tracks", strconv.Itoa(want), "-rooms", strings.Join(rooms, ","), "-cpuprofile", subProfile)
	if err != nil {
		return rep, err
	}
	defer sub.stop()
	if err := sub.await("started", 30*time.Second); err != nil {
		return rep, err
	}
	time.Sleep(2 * time.Second)
	idle, err := rss(rec.pid())
	if err != nil {
		return rep, err
	}
	idleMem, err := rec.memStats()
	if err != nil {
		return rep, err
	}
	subIdle, err := rss(sub.cmd.Process.Pid)
	if err != nil {
		return rep, err
	}
	logf("recording %d tracks, and receiving them in the bare subscriber", o.Tracks)
	if err := each(o.Tracks, func(i int) error { return rec.post("/recordings/start", room(i, o.PerRoom), identity(i)) }); err != nil {
		return rep, err
	}
	if _, err := io.WriteString(sub.in, "go\n"); err != nil {
		return rep, err
	}
	if err := rec.awaitFlowing(o.Tracks, time.Minute); err != nil {
		return rep, err
	}
	if err := sub.await("ready", time.Minute); err != nil {
		return rep, err
	}
	time.Sleep(o.Warmup)
	logf("measuring for %v", o.Window)
	p0, err := rec.packets()
	if err != nil {
		return rep, err
	}
	wins, err := windows(rec.pid(), sub.cmd.Process.Pid, lk.PID(), crowd.cmd.Process.Pid)
	if err != nil {
		return rep, err
	}
	profile := filepath.Join(o.Dir, "recorder.pprof")
	profErr := make(chan error, 1)
	go func() { profErr <- rec.profile(profile, o.Window) }()
	time.Sleep(o.Window)
	for _, w := range wins {
		if err := w.end(); err != nil {
			return rep, err
		}
	}
	loaded, err := rss(rec.pid())
	if err != nil {
		return rep, err
	}
	loadedMem, err := rec.memStats()
	if err != nil {
		return rep, err
	}
	for k, v := range loadedMem {
		if rep.Memory == nil {
			rep.Memory = map[string]int64{}
		}
		rep.Memory[k] = (v - idleMem[k]) / int64(o.Tracks)
	}
	subLoaded, err := rss(sub.cmd.Process.Pid)
	if err != nil {
		return rep, err
	}
	p1, err := rec.packets()
	if err != nil {
		return rep, err
	}
	if err := <-profErr; err != nil {
		return rep, err
	}
	// What holds the memory, for a look with go tool pprof (-keep).
	if err := rec.save("/debug/pprof/heap", filepath.Join(o.Dir, "recorder.heap")); err != nil {
		return rep, err
	}
	rep.Packets = p1 - p0
	rep.RecorderCores, rep.SubscriberCores, rep.LiveKit, rep.Crowd = wins[0].cores(), wins[1].cores(), wins[2].cores(), wins[3].cores()
	rep.Recorder.CPU = wins[0].perTrackSecond(o.Tracks)
	rep.Recorder.RSSPerTrack = (loaded - idle) / int64(o.Tracks)
	rep.Subscriber.CPU = wins[1].perTrackSecond(o.Tracks)
	rep.Subscriber.RSSPerTrack = (subLoaded - subIdle) / int64(o.Tracks)
	if rep.Shares, rep.ProfileCPU, err = breakdown(ctx, profile); err != nil {
		return rep, err
	}
	stats, err := sub.finish()
	if err != nil {
		return rep, err
	}
	if stats.Tracks != want {
		return rep, fmt.Errorf("bare subscriber: %d tracks, want %d", stats.Tracks, o.Tracks)
	}
	rep.Subscriber.Lost, rep.Subscriber.MaxLost = float64(stats.Lost)/float64(o.Tracks), stats.MaxLost
	if want > 0 {
		// Its profile runs from its warm-up to its end: shares, not costs.
		if rep.SubscriberShares, _, err = breakdown(ctx, subProfile); err != nil {
			return rep, fmt.Errorf("bare subscriber's profile: %w", err)
		}
	}

	// Stopped, its files are judged as a consumer judges them.
	logf("stopping and checking the files")
	finals := make([]recorder.RecordingInfo, o.Tracks)
	if err := each(o.Tracks, func(i int) error {
		var err error
		finals[i], err = rec.stop(room(i, o.PerRoom), identity(i))
		return err
	}); err != nil {
		return rep, err
	}
	var long string
	var longDur time.Duration
	for i, f := range finals {
		if len(f.Tracks) != 1 || f.Tracks[0].Path == "" {
			return rep, fmt.Errorf("%s/%s: %d files, want one", room(i, o.PerRoom), identity(i), len(f.Tracks))
		}
		path := f.Tracks[0].Path
		rep.Files++
		if err := decodes(ctx, path); err != nil {
			return rep, err
		}
		rep.Decoded++
		c, err := checkTone(path, tone.Packets)
		if err != nil {
			return rep, err
		}
		rep.Publisher += c.Publisher
		rep.Inserted += c.Inserted
		rep.FileLost += c.Lost
		rep.Repeated += c.Repeated
		rep.Recorder.MaxLost = max(rep.Recorder.MaxLost, int64(c.Lost))
		if c.Repeated > 0 {
			return rep, fmt.Errorf("%s: %d tone packets written twice", path, c.Repeated)
		}
		if d := time.Duration(f.Tracks[0].DurationMS) * time.Millisecond; d > longDur {
			long, longDur = path, d
		}
	}
	rep.Recorder.Lost = float64(rep.FileLost) / float64(o.Tracks)
	rec.terminate()

	logf("measuring the re-encode chain on %s (%v)", filepath.Base(long), longDur)
	if rep.Chain, err = chainPerSecond(ctx, long, longDur, o.Tone, toneDuration(tone.Packets)); err != nil {
		return rep, err
	}
	return rep, nil
}

// toneDuration is the length of the tone's packets (20 ms each).
func toneDuration(pkts [][]byte) time.Duration {
	var d time.Duration
	for _, p := range pkts {
		if pd, err := testbed.OpusPacketDuration(p); err == nil {
			d += pd
		}
	}
	return d
}

// windows starts a CPU window for each process.
func windows(pids ...int) ([]*window, error) {
	var out []*window
	for _, pid := range pids {
		w, err := startWindow(pid)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, nil
}

// each runs fn for 0..n-1, 8 at a time, and returns the first error.
func each(n int, fn func(i int) error) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = fn(i)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// child is one of the benchmark's own processes.
type child struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
	out   bytes.Buffer // the last words, after the lines awaited
	mu    sync.Mutex
	done  chan error
}

func startChild(ctx context.Context, o Options, srv Server, mode string, args ...string) (*child, error) {
	cmd := o.Child(mode, args...)
	cmd.Env = append(os.Environ(), "LIVEKIT_URL="+srv.URL, "LIVEKIT_API_KEY="+srv.APIKey, "LIVEKIT_API_SECRET="+srv.APISecret)
	logFile, err := os.Create(filepath.Join(o.Dir, mode+".log"))
	if err != nil {
		return nil, err
	}
	cmd.Stderr = logFile
	c := &child{cmd: cmd, lines: make(chan string, 16), done: make(chan error, 1)}
	if c.in, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", mode, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case c.lines <- sc.Text():
			default:
				c.mu.Lock()
				c.out.WriteString(sc.Text() + "\n")
				c.mu.Unlock()
			}
		}
		close(c.lines)
		c.done <- cmd.Wait()
		logFile.Close()
	}()
	return c, nil
}

// await waits for the child to write want on a line of its own.
func (c *child) await(want string, within time.Duration) error {
	t := time.NewTimer(within)
	defer t.Stop()
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				return fmt.Errorf("%s exited before %q (see its log)", c.cmd.Args[1], want)
			}
			if l == want {
				return nil
			}
		case <-t.C:
			return fmt.Errorf("%s: no %q within %v (see its log)", c.cmd.Args[1], want, within)
		}
	}
}

// finish closes the child's stdin (its signal to stop) and reads the
// stats it writes last.
func (c *child) finish() (SubscriberStats, error) {
	_ = c.in.Close()
	var st SubscriberStats
	var last string
	for l := range c.lines {
		last = l
	}
	select {
	case <-c.done:
	case <-time.After(settle + 10*time.Second):
		_ = c.cmd.Process.Kill()
		return st, fmt.Errorf("%s did not exit", c.cmd.Args[1])
	}
	c.mu.Lock()
	if s := strings.TrimSpace(c.out.String()); s != "" {
		lines := strings.Split(s, "\n")
		last = lines[len(lines)-1]
	}
	c.mu.Unlock()
	if err := json.Unmarshal([]byte(last), &st); err != nil {
		return st, fmt.Errorf("%s stats %q: %w", c.cmd.Args[1], last, err)
	}
	return st, nil
}

// stop ends the child, whatever it is doing.
func (c *child) stop() {
	_ = c.in.Close()
	select {
	case <-c.done:
	case <-time.After(settle + 10*time.Second):
		_ = c.cmd.Process.Kill()
	}
}

// recorderProc is the recorder under measurement.
type recorderProc struct {
	cmd   *exec.Cmd
	api   string // http://127.0.0.1:PORT
	debug string
	done  chan error
}

func startRecorder(ctx context.Context, o Options, srv Server) (*recorderProc, error) {
	apiPort, err := testbed.FreeLoopbackPort()
	if err != nil {
		return nil, err
	}
	debugPort, err := testbed.FreeLoopbackPort()
	if err != nil {
		return nil, err
	}
	api, debug := "127.0.0.1:"+strconv.Itoa(apiPort), "127.0.0.1:"+strconv.Itoa(debugPort)
	cmd := exec.CommandContext(ctx, o.Recorder)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"LIVEKIT_URL=" + srv.URL, "LIVEKIT_API_KEY=" + srv.APIKey, "LIVEKIT_API_SECRET=" + srv.APISecret,
		"APP_HOST=127.0.0.1", "APP_PORT=" + strconv.Itoa(apiPort), "API_AUTH=off", "DEBUG_ADDRESS=" + debug,
		"LOCAL_DIRECTORY=" + filepath.Join(o.Dir, "recordings"), "MIXDOWN=none", "AUTO_RECORD=false", "LOG_LEVEL=warn",
		// Its own bounds out of the way: this measures what it costs.
		"MAX_TRACKS=" + strconv.Itoa(max(400, o.Tracks)), "MAX_RECORDINGS=" + strconv.Itoa(max(500, o.Tracks)), "CPU_GUARD=0"}
	cmd.Env = append(cmd.Env, o.RecorderEnv...)
	logFile, err := os.Create(filepath.Join(o.Dir, "recorder.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", o.Recorder, err)
	}
	r := &recorderProc{cmd: cmd, api: "http://" + api, debug: "http://" + debug, done: make(chan error, 1)}
	go func() { r.done <- cmd.Wait(); logFile.Close() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(r.api + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r, nil
			}
		}
		select {
		case err := <-r.done:
			return nil, fmt.Errorf("recorder exited: %v (see recorder.log)", err)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			r.kill()
			return nil, errors.New("recorder not healthy within 30 s (see recorder.log)")
		}
	}
}

func (r *recorderProc) pid() int { return r.cmd.Process.Pid }

func (r *recorderProc) post(path, room, participant string) error {
	_, err := r.call(path, room, participant)
	return err
}

func (r *recorderProc) call(path, room, participant string) (recorder.RecordingInfo, error) {
	body, _ := json.Marshal(map[string]string{"room": room, "participant": participant})
	resp, err := http.Post(r.api+path, "application/json", bytes.NewReader(body))
	if err != nil {
		return recorder.RecordingInfo{}, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return recorder.RecordingInfo{}, fmt.Errorf("%s %s/%s: %d %s", path, room, participant, resp.StatusCode, raw)
	}
	var info recorder.RecordingInfo
	err = json.Unmarshal(raw, &info)
	return info, err
}

func (r *recorderProc) stop(room, participant string) (recorder.RecordingInfo, error) {
	return r.call("/recordings/stop", room, participant)
}

func (r *recorderProc) list() ([]recorder.RecordingInfo, error) {
	resp, err := http.Get(r.api + "/recordings")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var l struct {
		Recordings []recorder.RecordingInfo `json:"recordings"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
		return nil, err
	}
	return l.Recordings, nil
}

// packets is how many publisher packets the recorder wrote so far.
func (r *recorderProc) packets() (int64, error) {
	list, err := r.list()
	if err != nil {
		return 0, err
	}
	var n int64
	for _, rec := range list {
		for _, t := range rec.Tracks {
			n += t.Packets
		}
	}
	return n, nil
}

// awaitFlowing waits until n recordings each write their track.
func (r *recorderProc) awaitFlowing(n int, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		list, err := r.list()
		if err != nil {
			return err
		}
		flowing := 0
		for _, rec := range list {
			if len(rec.Tracks) == 1 && rec.Tracks[0].Packets > 0 {
				flowing++
			}
		}
		if flowing >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d recordings write their track after %v", flowing, n, within)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// memStats reads the recorder's runtime.MemStats from its heap profile's
// text form: "# Name = value" lines.
func (r *recorderProc) memStats() (map[string]int64, error) {
	resp, err := http.Get(r.debug + "/debug/pprof/heap?debug=1")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]int64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 1<<20), 1<<24)
	for sc.Scan() {
		name, v, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "# "), " = ")
		if !ok || strings.ContainsAny(name, " ") {
			continue
		}
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			out[name] = n
		}
	}
	if _, ok := out["HeapInuse"]; !ok {
		return nil, fmt.Errorf("heap profile: no MemStats (%v)", sc.Err())
	}
	return out, nil
}

// profile saves the recorder's CPU profile over d to path.
func (r *recorderProc) profile(path string, d time.Duration) error {
	return r.save(fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(d.Seconds())), path)
}

// save saves what the recorder's debug listener serves at what to path.
func (r *recorderProc) save(what, path string) error {
	resp, err := http.Get(r.debug + what)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", what, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (r *recorderProc) terminate() {
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		r.kill()
	}
}

func (r *recorderProc) kill() {
	if r.cmd.ProcessState == nil {
		_ = r.cmd.Process.Kill()
	}
}
