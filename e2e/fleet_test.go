package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trackrec/trackrec/recorder"
	"github.com/trackrec/trackrec/testbed"
)

// startRedis runs a redis-server of the test's own on loopback.
func startRedis(t *testing.T) *testbed.Redis { return testbed.RedisForTest(t) }

// Three instances behind haproxy, LiveKit's webhooks pointed at haproxy and
// each event also replayed to every instance (each arrives four times, with
// one id): each participant is recorded exactly once, and of each event's
// replays at most one is acted on (the others answer "duplicate"). A start
// sent to an instance that does not hold the recording never makes a
// second one.
func TestFleetActsOnEachWebhookOnce(t *testing.T) {
	t.Parallel()
	needRecorder(t)
	rd := startRedis(t)
	ports := []int{freePort(t), freePort(t), freePort(t)}
	var backends, hooks []string
	for _, p := range ports {
		backends = append(backends, "127.0.0.1:"+strconv.Itoa(p))
		hooks = append(hooks, "http://127.0.0.1:"+strconv.Itoa(p)+"/recordings/webhooks")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	hp, err := testbed.StartHAProxy(ctx, backends)
	if err != nil {
		t.Fatal(err)
	}
	defer hp.Close()
	replay := newReplayer(t, hooks)
	server, err := testbed.StartLiveKit(ctx, testbed.LiveKitOptions{WebhookURLs: []string{hp.URL() + "/recordings/webhooks", replay.url}})
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	var fleet []*service
	for _, p := range ports {
		fleet = append(fleet, startService(t, map[string]string{
			"LIVEKIT_URL": server.URL, "LIVEKIT_API_KEY": server.APIKey, "LIVEKIT_API_SECRET": server.APISecret,
			"APP_PORT": strconv.Itoa(p), "REDIS_ADDRESS": rd.Addr(), "MIXDOWN": "none", "LEASE_TTL": "2s",
		}))
	}
	room := "fleet-hook-room"
	who := []string{"ada", "bea", "cyd"}
	pubs := map[string]*testbed.Publisher{}
	for _, id := range who {
		pubs[id] = publishOn(t, server, room, id)
	}
	// recordings returns each participant's recordings across the fleet.
	recordings := func() map[string][]recorder.RecordingInfo {
		out := map[string][]recorder.RecordingInfo{}
		seen := map[string]bool{}
		for _, s := range fleet {
			for _, r := range s.list() {
				if !seen[r.ID] {
					seen[r.ID] = true
					out[r.Participant] = append(out[r.Participant], r)
				}
			}
		}
		return out
	}
	waitFor(t, 30*time.Second, "every participant recorded", func() bool {
		recs := recordings()
		for _, id := range who {
			if len(recs[id]) == 0 || len(recs[id][0].Tracks) == 0 || recs[id][0].Tracks[0].Packets < 100 {
				return false
			}
		}
		return true
	})
	time.Sleep(2 * time.Second) // a second recording, if any, would show by now
	recs := recordings()
	for _, id := range who {
		if len(recs[id]) != 1 {
			t.Errorf("%s recorded %d times across the fleet: %+v", id, len(recs[id]), recs[id])
		}
	}
	// Any instance answers for the fleet: a start of ada on either gives
	// the one recording, wherever it runs, and each lists every recording
	// with the instance that holds it.
	holder := recs["ada"][0].Instance
	for _, s := range fleet {
		code, info, body := s.post("/recordings/start", room, "ada")
		if code != http.StatusOK || info.ID != recs["ada"][0].ID || info.Instance != holder {
			t.Errorf("start of ada (held by %s) on %s: %d %s", holder, s.url, code, body)
		}
		l := s.list()
		if len(l) != len(who) {
			t.Errorf("%s lists %d recordings, want the fleet's %d", s.url, len(l), len(who))
		}
		for _, r := range l {
			if r.Instance == "" {
				t.Errorf("%s lists %s without its instance", s.url, r.Participant)
			}
		}
	}
	for _, id := range who {
		if err := pubs[id].Leave(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, "every recording stopped", func() bool {
		for _, rs := range recordings() {
			for _, r := range rs {
				if r.State != recorder.StateStopped {
					return false
				}
			}
		}
		return true
	})
	for id, rs := range recordings() {
		if len(rs) != 1 {
			t.Errorf("%s: %d recordings after the leave", id, len(rs))
			continue
		}
		checkTrackFile(t, fileOf(t, rs[0], pubs[id].TrackSID()).Path, pubs[id], pubs[id].TrackSID(), 0)
	}
	events, acted := replay.outcomes()
	t.Logf("%d events replayed to %d instances; acted on by a replay: %d", len(events), len(hooks), acted)
	if len(events) < 2*len(who) { // at least each participant's join and leave
		t.Errorf("only %d events replayed", len(events))
	}
	for id, answers := range events {
		if n := len(answers); n != len(hooks) {
			t.Errorf("event %s answered %d times, want once per instance", id, n)
		}
		fresh := 0
		for _, a := range answers {
			if a != "duplicate" {
				fresh++
			}
			if a != "duplicate" && !strings.HasPrefix(a, "200 ") {
				t.Errorf("event %s answered %q", id, a)
			}
		}
		if fresh > 1 {
			t.Errorf("event %s acted on %d times by its replays: %v", id, fresh, answers)
		}
	}
}

// replayer receives LiveKit's webhooks and sends each, unchanged (body and
// signature), to every instance, keeping each event's answers.
type replayer struct {
	url string
	mu  sync.Mutex
	got map[string][]string // event id: each instance's status
}

func newReplayer(t *testing.T, targets []string) *replayer {
	r := &replayer{got: map[string][]string{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var ev struct{ ID string }
		_ = json.Unmarshal(body, &ev)
		for _, target := range targets {
			fwd, _ := http.NewRequest(http.MethodPost, target, bytes.NewReader(body))
			fwd.Header.Set("Content-Type", req.Header.Get("Content-Type"))
			fwd.Header.Set("Authorization", req.Header.Get("Authorization"))
			status := "unanswered"
			if res, err := http.DefaultClient.Do(fwd); err == nil {
				var ans struct{ Status string }
				_ = json.NewDecoder(res.Body).Decode(&ans)
				res.Body.Close()
				status = strconv.Itoa(res.StatusCode) + " " + ans.Status
				if res.StatusCode == http.StatusOK && ans.Status == "duplicate" {
					status = "duplicate"
				}
			}
			r.mu.Lock()
			r.got[ev.ID] = append(r.got[ev.ID], status)
			r.mu.Unlock()
		}
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL
	return r
}

// outcomes returns each event's answers and how many events a replay acted on.
func (r *replayer) outcomes() (map[string][]string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string][]string{}
	acted := 0
	for id, a := range r.got {
		out[id] = append([]string(nil), a...)
		for _, s := range a {
			if s != "duplicate" {
				acted++
				break
			}
		}
	}
	return out, acted
}

// An instance killed without warning: its claim lapses after LEASE_TTL and
// the other instance goes on with the recording (same id, a new file)
// within seconds; the killed instance, started again, stores its cut file
// from the spool and leaves the recording where it is. The room completes
// once, fleet-wide: one pipeline webhook listing both files.
func TestFleetFailover(t *testing.T) {
	t.Parallel()
	needRecorder(t)
	rd := startRedis(t)
	recv := newPipelineReceiver(t, func(int) int { return http.StatusOK })
	env := func() map[string]string {
		return pipelineEnv(recv, map[string]string{"REDIS_ADDRESS": rd.Addr(), "MIXDOWN": "none", "MIXDOWN_SETTLE": "1s", "LEASE_TTL": "2s", "LOCAL_DIRECTORY": t.TempDir()})
	}
	envs := []map[string]string{env(), env()}
	fleet := []*service{startService(t, envs[0]), startService(t, envs[1])}
	room, who := "failover-room", "fay"
	p := publish(t, room, who)
	first := fleet[0].mustStart(room, who)
	fleet[0].waitRecording(room, who, 20*time.Second, func(r recorder.RecordingInfo) bool {
		return len(r.Tracks) == 1 && r.Tracks[0].Packets > 100
	})
	// Kill the instance the fleet placed it on.
	held := 0
	if fleet[1].instance() == first.Instance {
		held = 1
	}
	a, b, aEnv := fleet[held], fleet[1-held], envs[held]
	if a.instance() != first.Instance {
		t.Fatalf("recording on %s, instances %s and %s", first.Instance, a.instance(), b.instance())
	}
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-a.done
	killed := time.Now()
	var taken recorder.RecordingInfo
	waitFor(t, 20*time.Second, "the recording on the surviving instance", func() bool {
		for _, r := range b.list() {
			if r.ID == first.ID && r.Instance != first.Instance && len(r.Tracks) == 1 && r.Tracks[0].Anchor != nil && r.Tracks[0].Packets > 20 {
				taken = r
				return true
			}
		}
		return false
	})
	resumed := taken.Tracks[0].Anchor.Sub(killed)
	t.Logf("audio resumed %v after the kill (on %s)", resumed, taken.Instance)
	if resumed > 10*time.Second {
		t.Errorf("audio resumed %v after the kill, want within 10 s", resumed)
	}
	// The killed instance comes back on its spool: it recovers its cut
	// file and does not take the recording back.
	again := startService(t, aEnv)
	waitFor(t, 20*time.Second, "the cut file recovered", func() bool {
		l := again.listing()
		if len(l.Recovered) != 1 {
			t.Logf("recovered: %+v", l.Recovered)
		}
		return len(l.Recovered) == 1
	})
	time.Sleep(3 * time.Second)
	for _, r := range again.list() {
		if r.Participant == who && r.Instance == first.Instance {
			t.Errorf("the restarted instance records %s again: %+v", who, r)
		}
	}
	final := b.mustStop(room, who)
	checkTrackFile(t, fileOf(t, final, p.TrackSID()).Path, p, p.TrackSID(), 0)

	waitFor(t, 30*time.Second, "the room's pipeline webhook", func() bool {
		_, events := recv.seen()
		return len(events) > 0
	})
	time.Sleep(3 * time.Second) // nothing more may arrive
	_, events := recv.seen()
	if len(events) != 1 {
		t.Fatalf("%d pipeline webhooks for the room, want 1: %v", len(events), events)
	}
	tracks, _ := events[0]["tracks"].([]any)
	recovered := 0
	for _, tr := range tracks {
		m, _ := tr.(map[string]any)
		if rec, _ := m["recorder"].(map[string]any); rec["recovered"] == true {
			recovered++
		}
	}
	if len(tracks) != 2 || recovered != 1 {
		t.Errorf("the webhook lists %d tracks (%d recovered), want both files, the cut one recovered: %v", len(tracks), recovered, tracks)
	}
}

// An instance killed mid-recording that does not come back within
// COMPLETION_WAIT: the room completes without its file, the webhook lists
// that file as missing; once the instance comes back and stores it from its
// spool, a signed recordings_updated event carries it.
func TestFleetCompletesWithoutADeadInstance(t *testing.T) {
	t.Parallel()
	needRecorder(t)
	rd := startRedis(t)
	recv := newPipelineReceiver(t, func(int) int { return http.StatusOK })
	env := func() map[string]string {
		return pipelineEnv(recv, map[string]string{"REDIS_ADDRESS": rd.Addr(), "MIXDOWN": "none", "MIXDOWN_SETTLE": "1s",
			"LEASE_TTL": "2s", "COMPLETION_WAIT": "3s", "LOCAL_DIRECTORY": t.TempDir()})
	}
	envs := []map[string]string{env(), env()}
	fleet := []*service{startService(t, envs[0]), startService(t, envs[1])}
	room, who := "late-room", "lou"
	p := publish(t, room, who)
	first := fleet[0].mustStart(room, who)
	held := 0
	if fleet[1].instance() == first.Instance {
		held = 1
	}
	a, b, aEnv := fleet[held], fleet[1-held], envs[held]
	cut := a.waitRecording(room, who, 20*time.Second, func(r recorder.RecordingInfo) bool {
		return len(r.Tracks) == 1 && r.Tracks[0].Key != "" && r.Tracks[0].Packets > 100
	}).Tracks[0].Key
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-a.done
	b.waitRecording(room, who, 20*time.Second, func(r recorder.RecordingInfo) bool {
		return r.ID == first.ID && len(r.Tracks) == 1 && r.Tracks[0].Packets > 50
	})
	final := b.mustStop(room, who)
	kept := fileOf(t, final, p.TrackSID()).Key
	// The killed instance is forgotten after 15 s without a heartbeat;
	// then the room waits COMPLETION_WAIT for its file.
	waitFor(t, 60*time.Second, "the room's completion", func() bool {
		_, events := recv.seen()
		return len(events) > 0
	})
	_, events := recv.seen()
	done := events[0]
	if done["event"] != "recordings_complete" || len(done["tracks"].([]any)) != 1 || trackKey(done["tracks"].([]any)[0]) != kept {
		t.Fatalf("completion: %v", done)
	}
	missing, _ := done["missing"].([]any)
	if len(missing) != 1 || missing[0].(map[string]any)["key"] != cut {
		t.Fatalf("completion lists missing %v, want the killed instance's %s", missing, cut)
	}
	// The instance comes back: its spool stores the cut file.
	startService(t, aEnv)
	waitFor(t, 30*time.Second, "the update", func() bool {
		_, events := recv.seen()
		return len(events) > 1
	})
	time.Sleep(3 * time.Second) // nothing more may arrive
	_, events = recv.seen()
	if len(events) != 2 {
		t.Fatalf("%d pipeline webhooks, want the completion and one update: %v", len(events), events)
	}
	upd := events[1]
	tracks, _ := upd["tracks"].([]any)
	if upd["event"] != "recordings_updated" || upd["id"] == done["id"] || len(tracks) != 1 || trackKey(tracks[0]) != cut || upd["missing"] != nil {
		t.Fatalf("update: %v", upd)
	}
}

// trackKey is the object key of a track manifest in a pipeline webhook.
func trackKey(manifest any) string {
	m, _ := manifest.(map[string]any)
	f, _ := m["file"].(map[string]any)
	k, _ := f["key"].(string)
	return k
}

// instance is the id the recorder logged when it started listening.
func (s *service) instance() string {
	for _, line := range strings.Split(s.logs.String(), "\n") {
		if !strings.Contains(line, `"msg":"recorder listening"`) {
			continue
		}
		var entry struct{ Instance string }
		if json.Unmarshal([]byte(line), &entry) == nil {
			return entry.Instance
		}
	}
	return ""
}

// Redis stops for 10 s mid-recording: the recording goes on (nothing lost,
// nothing doubled when Redis is back), starts answer 503 with Retry-After
// meanwhile, and succeed once it is back.
func TestFleetSurvivesARedisOutage(t *testing.T) {
	t.Parallel()
	needRecorder(t)
	rd := startRedis(t)
	env := func() map[string]string {
		return map[string]string{"REDIS_ADDRESS": rd.Addr(), "MIXDOWN": "none", "LEASE_TTL": "2s", "LOCAL_DIRECTORY": t.TempDir()}
	}
	fleet := []*service{startService(t, env()), startService(t, env())}
	room := "redis-outage-room"
	p := publish(t, room, "gus")
	publish(t, room, "hal")
	first := fleet[0].mustStart(room, "gus")
	fleet[0].waitRecording(room, "gus", 20*time.Second, func(r recorder.RecordingInfo) bool {
		return len(r.Tracks) == 1 && r.Tracks[0].Packets > 50
	})
	if err := rd.Stop(); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	code, header, body := fleet[1].postHeader("/recordings/start", room, "hal")
	if code != http.StatusServiceUnavailable || header.Get("Retry-After") != "5" {
		t.Errorf("start with Redis down: %d (Retry-After %q) %s, want 503 with Retry-After 5", code, header.Get("Retry-After"), body)
	}
	time.Sleep(10*time.Second - time.Since(down))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := rd.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "a start succeeding after the outage", func() bool {
		code, _, _ := fleet[1].post("/recordings/start", room, "hal")
		return code == http.StatusCreated || code == http.StatusOK
	})
	time.Sleep(4 * time.Second) // renewals and takeovers have had their turn
	var gus []recorder.RecordingInfo
	seen := map[string]bool{}
	for _, s := range fleet {
		for _, r := range s.list() {
			if r.Participant == "gus" && !seen[r.ID] {
				seen[r.ID] = true
				gus = append(gus, r)
			}
		}
	}
	if len(gus) != 1 || gus[0].ID != first.ID || gus[0].State != recorder.StateRecording || len(gus[0].Tracks) != 1 {
		t.Fatalf("gus after the outage: %+v", gus)
	}
	final := fleet[0].mustStop(room, "gus")
	// One file through the outage, every packet in it.
	checkTrackFile(t, fileOf(t, final, p.TrackSID()).Path, p, p.TrackSID(), 0)
}

// Three instances behind haproxy (round robin), 20 participants in 4 rooms,
// every start sent twice through the balancer: 20 recordings fleet-wide,
// one bot per room, the listing through the balancer shows each with its
// instance, and every stop through it answers 200 once the files closed.
func TestFleetBehindALoadBalancer(t *testing.T) {
	t.Parallel()
	needRecorder(t)
	rd := startRedis(t)
	var fleet []*service
	var backends, dirs []string
	for range 3 {
		dirs = append(dirs, t.TempDir())
		s := startService(t, map[string]string{"REDIS_ADDRESS": rd.Addr(), "MIXDOWN": "none", "LOCAL_DIRECTORY": dirs[len(dirs)-1]})
		fleet = append(fleet, s)
		backends = append(backends, strings.TrimPrefix(s.url, "http://"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hp, err := testbed.StartHAProxy(ctx, backends)
	if err != nil {
		t.Fatal(err)
	}
	defer hp.Close()
	lb := &service{t: t, url: hp.URL(), token: fleet[0].token}

	type who struct{ room, id string }
	var all []who
	pubs := map[who]*testbed.Publisher{}
	for r := range 4 {
		for p := range 5 {
			w := who{"lb-room-" + strconv.Itoa(r), "lb-" + strconv.Itoa(r) + "-" + strconv.Itoa(p)}
			all = append(all, w)
			pubs[w] = publish(t, w.room, w.id)
		}
	}
	// All 40 starts at once: each participant's two race each other, and
	// every room's first ones race on different instances.
	type answer struct {
		w    who
		code int
		info recorder.RecordingInfo
		body string
	}
	answers := make(chan answer, 2*len(all))
	var wg sync.WaitGroup
	for _, w := range all {
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, info, body := lb.post("/recordings/start", w.room, w.id)
				answers <- answer{w, code, info, body}
			}()
		}
	}
	wg.Wait()
	close(answers)
	ids := map[who]string{}
	created := map[who]int{}
	for a := range answers {
		if a.code != http.StatusCreated && a.code != http.StatusOK {
			t.Fatalf("start %v: %d %s", a.w, a.code, a.body)
		}
		if a.code == http.StatusCreated {
			created[a.w]++
		}
		if id, ok := ids[a.w]; ok && id != a.info.ID {
			t.Errorf("%v started as %s and %s", a.w, id, a.info.ID)
		}
		ids[a.w] = a.info.ID
	}
	for _, w := range all {
		if created[w] != 1 {
			t.Errorf("%v: %d answers 201, want exactly 1 (the other 200)", w, created[w])
		}
	}
	waitFor(t, 30*time.Second, "every participant recorded", func() bool {
		n := 0
		for _, r := range lb.list() {
			if len(r.Tracks) == 1 && r.Tracks[0].Packets > 50 {
				n++
			}
		}
		return n == len(all)
	})
	list := lb.list()
	if len(list) != len(all) {
		t.Errorf("%d recordings fleet-wide, want %d", len(list), len(all))
	}
	perInstance := map[string]int{}
	for _, r := range list {
		if r.Instance == "" || ids[who{r.Room, r.Participant}] != r.ID {
			t.Errorf("listed %s/%s %s on %q", r.Room, r.Participant, r.ID, r.Instance)
		}
		perInstance[r.Instance]++
	}
	t.Logf("recordings per instance: %v", perInstance)
	for r := range 4 {
		if n := botsIn(t, "lb-room-"+strconv.Itoa(r)); n != 1 {
			t.Errorf("room %d has %d bots, want 1", r, n)
		}
	}
	for _, w := range all {
		code, info, body := lb.post("/recordings/stop", w.room, w.id)
		if code != http.StatusOK || info.State != recorder.StateStopped || len(info.Tracks) != 1 || info.Tracks[0].State != "closed" {
			t.Fatalf("stop %v: %d %s", w, code, body)
		}
		checkTrackFile(t, info.Tracks[0].Path, pubs[w], pubs[w].TrackSID(), 5)
	}
	// On every instance's disk, each participant's audio is in one file,
	// named by its room, identity, second and track.
	files := map[who][]string{}
	for _, dir := range dirs {
		paths, _ := filepath.Glob(filepath.Join(dir, "lb-room-*", "*.ogg"))
		for _, p := range paths {
			room, name := filepath.Base(filepath.Dir(p)), filepath.Base(p)
			for _, w := range all {
				if w.room == room && strings.HasPrefix(name, w.id+"-") && strings.HasSuffix(name, "-"+pubs[w].TrackSID()+".ogg") {
					files[w] = append(files[w], p)
				}
			}
		}
	}
	for _, w := range all {
		if len(files[w]) != 1 {
			t.Errorf("%v: %d files across the fleet, want 1: %v", w, len(files[w]), files[w])
		}
	}
}

// SIGTERM of the instance holding a room's recordings: it hands each to
// the other instance and exits by itself. For each participant the old
// file ends where the new one begins: measured on the publisher's own
// packets (each is in one file or the other), the gap at most 100 ms and
// the overlap at most 40 ms.
func TestFleetShutdownHandsRecordingsOn(t *testing.T) {
	t.Parallel()
	needRecorder(t)
	rd := startRedis(t)
	env := map[string]string{"REDIS_ADDRESS": rd.Addr(), "MIXDOWN": "none", "LEASE_TTL": "2s"}
	fleet := []*service{startService(t, withDir(t, env)), startService(t, withDir(t, env)), startService(t, withDir(t, env))}
	room := "handover-room"
	whos := []string{"ivy", "jay", "kim"}
	pubs := map[string]*testbed.Publisher{}
	firsts := map[string]recorder.RecordingInfo{}
	for _, who := range whos {
		pubs[who] = publish(t, room, who)
		firsts[who] = fleet[0].mustStart(room, who)
	}
	held := 0
	for i, s := range fleet {
		if s.instance() == firsts[whos[0]].Instance {
			held = i
		}
	}
	a, b := fleet[held], fleet[(held+1)%len(fleet)]
	olds := map[string]recorder.TrackInfo{}
	for _, who := range whos {
		if firsts[who].Instance != firsts[whos[0]].Instance {
			t.Fatalf("one room on two instances: %s and %s", firsts[who].Instance, firsts[whos[0]].Instance)
		}
		before := a.waitRecording(room, who, 20*time.Second, func(r recorder.RecordingInfo) bool {
			return len(r.Tracks) == 1 && r.Tracks[0].Path != "" && r.Tracks[0].Packets > 100
		})
		olds[who] = before.Tracks[0]
	}
	a.terminate(t, 30*time.Second)
	successors := map[string]bool{}
	for _, who := range whos {
		taken := b.waitRecording(room, who, 20*time.Second, func(r recorder.RecordingInfo) bool {
			return r.ID == firsts[who].ID && len(r.Tracks) == 1 && r.Tracks[0].Packets > 50
		})
		if taken.HandoverAt == nil {
			t.Errorf("%s: resumed without a handover: %+v", who, taken)
		}
		successors[taken.Instance] = true
	}
	// The room's recordings, handed over at once, meet on one instance.
	if len(successors) != 1 {
		t.Errorf("the room's recordings went to %v, want one instance", successors)
	}
	if n := botsIn(t, room); n != 1 {
		t.Errorf("%d bots in the room after the handover, want 1", n)
	}
	time.Sleep(time.Second)
	for _, who := range whos {
		p := pubs[who]
		final := b.mustStop(room, who)
		oldM := checkTrackFile(t, olds[who].Path, p, p.TrackSID(), 0)
		near := time.Time{}
		if final.HandoverAt != nil {
			near = *final.HandoverAt // a looping tone: its payloads come round again
		}
		newM := checkTrackFileNear(t, fileOf(t, final, p.TrackSID()).Path, p, p.TrackSID(), 0, near)
		// In the publisher's time: from the end of the old file's last
		// packet to the start of the new file's first.
		gap := newM[0].RTPTime.Sub(oldM[len(oldM)-1].RTPTime) - frame
		t.Logf("%s: handover gap %v (negative: overlap) at %v", who, gap, final.HandoverAt)
		if gap > 100*time.Millisecond || gap < -40*time.Millisecond {
			t.Errorf("%s: the old file ends %v before the new file begins, want a gap of at most 100 ms and an overlap of at most 40 ms", who, gap)
		}
	}
}

func withDir(t *testing.T, env map[string]string) map[string]string {
	out := map[string]string{"LOCAL_DIRECTORY": t.TempDir()}
	for k, v := range env {
		out[k] = v
	}
	return out
}

// A fleet whose every instance is full (MAX_TRACKS=1 each) answers a start
// 503 with Retry-After and a JSON error, and records nobody new; a
// participant LiveKit's webhook asks to record meanwhile waits. Once a stop
// frees an instance, that participant is recorded there (not before), and
// once another frees one, the refused start succeeds.
func TestFleetFullAnswers503UntilCapacityFrees(t *testing.T) {
	t.Parallel()
	needRecorder(t)
	rd := startRedis(t)
	ports := []int{freePort(t), freePort(t)}
	var hooks []string
	for _, p := range ports {
		hooks = append(hooks, "http://127.0.0.1:"+strconv.Itoa(p)+"/recordings/webhooks")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	server, err := testbed.StartLiveKit(ctx, testbed.LiveKitOptions{WebhookURLs: hooks})
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	var fleet []*service
	for _, p := range ports {
		fleet = append(fleet, startService(t, withDir(t, map[string]string{
			"LIVEKIT_URL": server.URL, "LIVEKIT_API_KEY": server.APIKey, "LIVEKIT_API_SECRET": server.APISecret,
			"APP_PORT": strconv.Itoa(p), "REDIS_ADDRESS": rd.Addr(), "MIXDOWN": "none", "MAX_TRACKS": "1",
			"AUTO_RECORD_ROOMS": "full-auto-*",
		})))
	}
	rooms := []string{"full-room-0", "full-room-1", "full-room-2"}
	whos := []string{"lea", "max", "ned"}
	for i := range rooms {
		publishOn(t, server, rooms[i], whos[i])
	}
	held := map[string]string{}
	for i := range 2 {
		info := fleet[i].mustStart(rooms[i], whos[i])
		held[info.Instance] = whos[i]
	}
	if len(held) != 2 {
		t.Fatalf("two recordings on one instance with MAX_TRACKS=1: %v", held)
	}
	code, header, body := fleet[0].postHeader("/recordings/start", rooms[2], whos[2])
	var e struct{ Error string }
	if code != http.StatusServiceUnavailable || json.Unmarshal([]byte(body), &e) != nil || e.Error == "" {
		t.Fatalf("start with the fleet full: %d %s, want 503 with a JSON error", code, body)
	}
	if s, err := strconv.Atoi(header.Get("Retry-After")); err != nil || s <= 0 {
		t.Errorf("Retry-After %q on a full fleet", header.Get("Retry-After"))
	}
	// oli joins an auto-recorded room while the fleet is full.
	publishOn(t, server, "full-auto-0", "oli")
	recorded := func(who string) *recorder.RecordingInfo {
		for _, r := range fleet[1].list() {
			if r.Participant == who && r.State != recorder.StateStopped {
				return &r
			}
		}
		return nil
	}
	time.Sleep(4 * time.Second) // the webhook came and was refused
	for _, who := range []string{"ned", "oli"} {
		if r := recorded(who); r != nil {
			t.Fatalf("%s recorded while the fleet is full: %+v", who, r)
		}
	}
	freed := fleet[1].mustStop(rooms[0], whos[0])
	waitFor(t, 20*time.Second, "oli recorded once an instance has room", func() bool {
		r := recorded("oli")
		return r != nil && len(r.Tracks) == 1 && r.Tracks[0].Packets > 20
	})
	if r := recorded("oli"); r.Instance != freed.Instance {
		t.Errorf("oli recorded on %s, want %s, which freed room", r.Instance, freed.Instance)
	}
	freed = fleet[0].mustStop(rooms[1], whos[1])
	code, info, body := fleet[1].post("/recordings/start", rooms[2], whos[2])
	if code != http.StatusCreated || info.Instance != freed.Instance {
		t.Fatalf("start once %s freed room: %d on %q %s", freed.Instance, code, info.Instance, body)
	}
	fleet[1].waitRecording(rooms[2], whos[2], 20*time.Second, func(r recorder.RecordingInfo) bool {
		return len(r.Tracks) == 1 && r.Tracks[0].Packets > 20
	})
}
