package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/webhook"
	"github.com/trackrec/trackrec/recorder"
	"github.com/trackrec/trackrec/spool"
	"github.com/trackrec/trackrec/testbed"
)

// consumerKey is the rule the downstream pipeline parses keys with.
var consumerKey = regexp.MustCompile(`^livekit/(?P<room_name>[^/]+)/(?P<identity>.+?)-(?P<timestamp>\d{4}-\d{2}-\d{2}T\d{6})-(?P<track_id>TR_\w+)\.(?P<ext>\w+)$`)

func startS3(t *testing.T) *testbed.S3 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s, err := testbed.StartS3(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// withS3 is the recorder environment for storing in s, plus extra.
func withS3(s *testbed.S3, extra map[string]string) map[string]string {
	env := map[string]string{"MIXDOWN_SETTLE": "1s"}
	for _, kv := range s.Env() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

// bucketKeys lists the objects under prefix, read from the store's own
// folder (versitygw's posix backend keeps an object at Dir/Bucket/key).
func bucketKeys(t *testing.T, s *testbed.S3, prefix string) []string {
	t.Helper()
	root := filepath.Join(s.Dir, s.Bucket)
	var keys []string
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && p != root {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			if key := filepath.ToSlash(rel); strings.HasPrefix(key, prefix) {
				keys = append(keys, key)
			}
		}
		return nil
	})
	sort.Strings(keys)
	return keys
}

func object(t *testing.T, s *testbed.S3, key string) string {
	return filepath.Join(s.Dir, s.Bucket, filepath.FromSlash(key))
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkStoredTrack checks a stored track object against its stored
// manifest: the key parses, the bytes hash to the manifest's SHA-256, the
// file decodes. It returns the manifest.
func checkStoredTrack(t *testing.T, s *testbed.S3, key string) spool.Manifest {
	t.Helper()
	if m := consumerKey.FindStringSubmatch(key); m == nil || m[5] != "ogg" {
		t.Errorf("key %q does not parse with the consumer's rule", key)
	}
	data, err := os.ReadFile(object(t, s, strings.TrimSuffix(key, ".ogg")+".json"))
	if err != nil {
		t.Fatalf("manifest of %s: %v", key, err)
	}
	var man spool.Manifest
	if err := json.Unmarshal(data, &man); err != nil {
		t.Fatal(err)
	}
	media, err := os.ReadFile(object(t, s, key))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(media)
	if man.File.Key != key || man.File.SHA256 != hex.EncodeToString(sum[:]) || man.File.Size != int64(len(media)) {
		t.Errorf("%s: manifest says key %s, sha256 %s, size %d; object has sha256 %x, size %d", key, man.File.Key, man.File.SHA256, man.File.Size, sum, len(media))
	}
	d := decodedDuration(t, object(t, s, key))
	within(t, key+" decoded duration vs manifest", d, time.Duration(man.Timeline.DurationMS)*time.Millisecond, 5*time.Millisecond)
	return man
}

func TestUploadsAndMixdownToS3(t *testing.T) {
	t.Parallel()
	s3 := startS3(t)
	svc := startService(t, withS3(s3, nil))
	room := "s3-room"
	rita := publish(t, room, "rita")
	sam := publish(t, room, "sam")
	svc.mustStart(room, "rita")
	time.Sleep(1500 * time.Millisecond)
	svc.mustStart(room, "sam")
	time.Sleep(3 * time.Second)
	svc.mustStop(room, "rita")
	time.Sleep(time.Second)
	svc.mustStop(room, "sam")

	waitFor(t, 60*time.Second, "the mixdown manifest", func() bool { return len(bucketKeys(t, s3, "mixdown/")) == 2 })
	tracks := bucketKeys(t, s3, "livekit/")
	if len(tracks) != 4 {
		t.Fatalf("track objects: %v, want 2 files and 2 manifests", tracks)
	}
	var first, last time.Time
	for _, key := range tracks {
		if !strings.HasSuffix(key, ".ogg") {
			continue
		}
		man := checkStoredTrack(t, s3, key)
		if man.Room != room || (man.Participant.Identity != "rita" && man.Participant.Identity != "sam") {
			t.Errorf("manifest of %s: %+v", key, man)
		}
		if want := map[string]string{"rita": rita.TrackSID(), "sam": sam.TrackSID()}[man.Participant.Identity]; man.Track.SID != want {
			t.Errorf("track sid %s, want %s", man.Track.SID, want)
		}
		end := man.Timeline.Start.Add(time.Duration(man.Timeline.DurationMS) * time.Millisecond)
		if first.IsZero() || man.Timeline.Start.Before(first) {
			first = man.Timeline.Start
		}
		if end.After(last) {
			last = end
		}
	}
	mix := bucketKeys(t, s3, "mixdown/")
	var mixKey string
	for _, k := range mix {
		if strings.HasSuffix(k, ".mp3") {
			mixKey = k
		}
	}
	if mixKey == "" || consumerKey.MatchString(mixKey) {
		t.Fatalf("mixdown objects %v", mix)
	}
	within(t, "mixdown length (first track start to last track end)", decodedDuration(t, object(t, s3, mixKey)), last.Sub(first), 100*time.Millisecond)

	// The spool is empty once everything is stored and the room's pipeline
	// has run (its pending-room markers go last), and the API says so.
	waitFor(t, 10*time.Second, "the spool to empty", func() bool {
		left, _ := filepath.Glob(filepath.Join(svc.dir, "[^.]*", "*"))
		markers, _ := filepath.Glob(filepath.Join(svc.dir, ".pending-rooms", "*", "*"))
		return len(left)+len(markers) == 0
	})
	for _, r := range svc.list() {
		for _, tr := range r.Tracks {
			if tr.Upload != "uploaded" {
				t.Errorf("track %s upload state %q", tr.TrackSID, tr.Upload)
			}
		}
	}
}

func TestS3OutageLosesNothing(t *testing.T) {
	t.Parallel()
	s3 := startS3(t)
	svc := startService(t, withS3(s3, map[string]string{"MIXDOWN": "none"}))
	room := "outage-room"
	p := publish(t, room, "uma")
	svc.mustStart(room, "uma")
	time.Sleep(3 * time.Second)
	if err := s3.Stop(); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	final := svc.mustStop(room, "uma")
	tr := fileOf(t, final, p.TrackSID())
	svc.waitRecording(room, "uma", 20*time.Second, func(r recorder.RecordingInfo) bool {
		return len(r.Tracks) == 1 && r.Tracks[0].Upload == "failed" && r.Tracks[0].UploadError != ""
	})
	if _, err := os.Stat(tr.Path); err != nil {
		t.Fatalf("file gone from the spool while the store is down: %v", err)
	}
	time.Sleep(30*time.Second - time.Since(down))
	if err := s3.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 90*time.Second, "the upload after the outage", func() bool { return len(bucketKeys(t, s3, "livekit/")) == 2 })
	keys := bucketKeys(t, s3, "livekit/")
	checkStoredTrack(t, s3, keys[1])
	waitFor(t, 10*time.Second, "the spool to empty", func() bool {
		_, err := os.Stat(tr.Path)
		return os.IsNotExist(err)
	})
	// The outage shows on the metrics: failed attempts, then the file and
	// its manifest stored.
	if got := svc.metric("trackrec_uploads_total", "result=failure"); got < 1 {
		t.Errorf("trackrec_uploads_total{result=failure} = %v during a 30 s outage", got)
	}
	if got := svc.metric("trackrec_uploads_total", "result=success"); got != 2 {
		t.Errorf("trackrec_uploads_total{result=success} = %v, want 2 (file, manifest)", got)
	}
	if got := svc.metric("trackrec_upload_duration_seconds"); got != 2 {
		t.Errorf("trackrec_upload_duration_seconds count = %v, want 2", got)
	}
}

func TestKilledRecorderRecoversItsFile(t *testing.T) {
	t.Parallel()
	s3 := startS3(t)
	dir := t.TempDir()
	env := withS3(s3, map[string]string{"LOCAL_DIRECTORY": dir, "MIXDOWN_SETTLE": "1s"})
	first := startService(t, env)
	room := "crash-room"
	p := publish(t, room, "vera")
	first.mustStart(room, "vera")
	time.Sleep(4 * time.Second)
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	<-first.done
	files, _ := filepath.Glob(filepath.Join(dir, room, "vera-*.ogg"))
	if len(files) != 1 {
		t.Fatalf("spool after the kill: %v", files)
	}
	start := fileSecond(t, files[0])

	startService(t, env)
	waitFor(t, 60*time.Second, "the recovered file in the bucket", func() bool { return len(bucketKeys(t, s3, "livekit/")) == 2 })
	keys := bucketKeys(t, s3, "livekit/")
	man := checkStoredTrack(t, s3, keys[1])
	if !man.Recorder.Recovered || man.Track.SID != p.TrackSID() || man.Participant.Identity != "vera" {
		t.Errorf("recovered manifest: %+v", man)
	}
	// Everything up to within a second of the kill is there.
	got := decodedDuration(t, object(t, s3, keys[1]))
	if want := killedAt.Sub(start); got < want-time.Second || got > want+100*time.Millisecond {
		t.Errorf("recovered file plays %v, the kill came %v after its start", got, want)
	}
	// The recording never stopped in the killed process; its room still
	// completes: the restarted one mixes it.
	checkMixdownOf(t, s3, room, got)
}

// checkMixdownOf waits for room's mixdown (the MP3 and its manifest) and
// checks it plays as long as the room's one track.
func checkMixdownOf(t *testing.T, s3 *testbed.S3, room string, track time.Duration) {
	t.Helper()
	waitFor(t, 60*time.Second, "the room's mixdown", func() bool { return len(bucketKeys(t, s3, "mixdown/")) == 2 })
	for _, k := range bucketKeys(t, s3, "mixdown/") {
		if !strings.HasPrefix(k, "mixdown/"+room+"/") {
			t.Errorf("mixdown key %q", k)
		}
		if strings.HasSuffix(k, ".mp3") {
			// The mix starts at the track's first sample, not its second.
			if got := decodedDuration(t, object(t, s3, k)); got > track+50*time.Millisecond || got < track-time.Second {
				t.Errorf("mixdown plays %v, its one track %v", got, track)
			}
		}
	}
}

// The pair that signs pipeline webhooks in these tests: receivers hold it
// alone, never the LiveKit secret.
const (
	pipelineKey    = "pipeline-key"
	pipelineSecret = "pipeline-secret-not-the-livekit-one"
)

// pipelineEnv configures the recorder to sign pipeline webhooks with the
// pipeline pair.
func pipelineEnv(recv *pipelineReceiver, extra map[string]string) map[string]string {
	env := map[string]string{"PIPELINE_WEBHOOK_URL": recv.url, "PIPELINE_WEBHOOK_KEY": pipelineKey, "PIPELINE_WEBHOOK_SECRET": pipelineSecret}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

// pipelineReceiver is a pipeline webhook endpoint. It verifies every
// delivery with LiveKit's own webhook.Receive and a key provider holding
// only the pipeline pair, and answers status(attempt); a 2xx answer accepts
// the event. A delivery the LiveKit secret would verify counts as a leak.
type pipelineReceiver struct {
	url    string
	status func(attempt int) int

	mu         sync.Mutex
	attempts   int
	unverified int
	leaked     int // deliveries signed with the LiveKit secret
	events     []map[string]any
}

func newPipelineReceiver(t *testing.T, status func(attempt int) int) *pipelineReceiver {
	t.Helper()
	needLiveKit(t)
	pr := &pipelineReceiver{status: status}
	keys := auth.NewSimpleKeyProvider(pipelineKey, pipelineSecret)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := r.Header.Get("Authorization")
		body, err := webhook.Receive(r, keys)
		pr.mu.Lock()
		defer pr.mu.Unlock()
		pr.attempts++
		if v, perr := auth.ParseAPIToken(token); perr == nil {
			if _, _, verr := v.Verify(lk.APISecret); verr == nil {
				pr.leaked++
			}
		}
		if err != nil {
			pr.unverified++
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		code := pr.status(pr.attempts)
		if code/100 == 2 {
			var ev map[string]any
			_ = json.Unmarshal(body, &ev)
			pr.events = append(pr.events, ev)
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(srv.Close)
	pr.url = srv.URL + "/pipeline"
	return pr
}

// seen returns the attempts so far and the accepted events.
func (pr *pipelineReceiver) seen() (int, []map[string]any) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return pr.attempts, append([]map[string]any(nil), pr.events...)
}

// checkRoomEvent checks that the receiver accepted exactly one event, for
// room, listing exactly trackSID, and that every delivery verified.
func (pr *pipelineReceiver) checkRoomEvent(t *testing.T, room, trackSID string) {
	t.Helper()
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pr.unverified != 0 {
		t.Errorf("%d deliveries did not verify with the pipeline pair", pr.unverified)
	}
	if pr.leaked != 0 {
		t.Errorf("%d deliveries were signed with the LiveKit secret", pr.leaked)
	}
	if len(pr.events) != 1 {
		t.Fatalf("%d events accepted, want 1: %v", len(pr.events), pr.events)
	}
	ev := pr.events[0]
	tracks, _ := ev["tracks"].([]any)
	if ev["event"] != "recordings_complete" || ev["room_name"] != room || len(tracks) != 1 {
		t.Fatalf("event %v", ev)
	}
	tr, _ := tracks[0].(map[string]any)
	if track, _ := tr["track"].(map[string]any); track["sid"] != trackSID {
		t.Errorf("event lists track %v, want %s", track["sid"], trackSID)
	}
}

func TestPipelineWebhookDeliveredOnce(t *testing.T) {
	t.Parallel()
	recv := newPipelineReceiver(t, func(attempt int) int {
		if attempt <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	svc := startService(t, pipelineEnv(recv, map[string]string{"MIXDOWN": "none", "MIXDOWN_SETTLE": "1s"}))
	room := "hook-room"
	p := publish(t, room, "walt")
	svc.mustStart(room, "walt")
	time.Sleep(2 * time.Second)
	svc.mustStop(room, "walt")
	waitFor(t, 30*time.Second, "the webhook delivery", func() bool {
		_, events := recv.seen()
		return len(events) > 0
	})
	time.Sleep(2 * time.Second) // nothing more may arrive
	if attempts, _ := recv.seen(); attempts != 3 {
		t.Errorf("%d attempts, want 3 (500, 500, then 200)", attempts)
	}
	recv.checkRoomEvent(t, room, p.TrackSID())
}

func TestHostileIdentitiesStayUnderThePrefix(t *testing.T) {
	t.Parallel()
	s3 := startS3(t)
	svc := startService(t, withS3(s3, map[string]string{"MIXDOWN": "none"}))
	room := "hostile/../room"
	// 256 characters is the longest identity LiveKit accepts (the 300-
	// character case is in uploader's unit tests).
	ids := []string{"../../etc/passwd", "a/b", strings.Repeat("x", 256), "Дмитрий 🎧"}
	for _, id := range ids {
		publish(t, room, id)
		svc.mustStart(room, id)
	}
	// Each has a file open before it stops (a loaded machine may take a
	// while to subscribe).
	for _, id := range ids {
		svc.waitRecording(room, id, 20*time.Second, func(r recorder.RecordingInfo) bool {
			return len(r.Tracks) == 1 && r.Tracks[0].Path != "" && r.Tracks[0].Packets > 50
		})
	}
	for _, id := range ids {
		svc.mustStop(room, id)
	}
	waitFor(t, 30*time.Second, "every upload", func() bool { return len(bucketKeys(t, s3, "")) == 2*len(ids) })
	for _, key := range bucketKeys(t, s3, "") {
		segs := strings.Split(key, "/")
		if len(segs) != 3 || segs[0] != "livekit" || segs[1] != "hostile%2F..%2Froom" || segs[2] == "." || segs[2] == ".." {
			t.Errorf("key %q leaves livekit/{room}/", key)
		}
		if strings.HasSuffix(key, ".ogg") {
			checkStoredTrack(t, s3, key)
		}
	}
	left, _ := filepath.Glob(filepath.Join(svc.dir, "*", "*"))
	if len(left) != 0 {
		t.Errorf("spool not emptied: %v", left)
	}
}

// SIGTERM while the store is down: the recorder gives uploads DRAIN_TIMEOUT,
// exits, and the next start uploads what stayed in the spool.
func TestDrainLeavesUnstoredFilesForTheNextStart(t *testing.T) {
	t.Parallel()
	s3 := startS3(t)
	dir := t.TempDir()
	env := withS3(s3, map[string]string{"LOCAL_DIRECTORY": dir, "MIXDOWN_SETTLE": "1s", "DRAIN_TIMEOUT": "2s"})
	first := startService(t, env)
	room := "drain-room"
	publish(t, room, "xena")
	first.mustStart(room, "xena")
	time.Sleep(3 * time.Second)
	if err := s3.Stop(); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	first.terminate(t, 30*time.Second)
	if took := time.Since(began); took > 15*time.Second {
		t.Errorf("shutdown took %v with a 2s drain timeout", took)
	}
	left, _ := filepath.Glob(filepath.Join(dir, room, "xena-*"))
	if len(left) != 2 { // the file and its manifest
		t.Fatalf("spool after shutdown with the store down: %v", left)
	}
	if err := s3.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	startService(t, env)
	waitFor(t, 60*time.Second, "the upload at the next start", func() bool { return len(bucketKeys(t, s3, "livekit/")) == 2 })
	man := checkStoredTrack(t, s3, bucketKeys(t, s3, "livekit/")[1])
	// The room was settling at SIGTERM; the next process completes it.
	checkMixdownOf(t, s3, room, time.Duration(man.Timeline.DurationMS)*time.Millisecond)
}

// The pipeline receiver is down when a room completes and the recorder is
// restarted while it retries: the next process delivers the event.
func TestPipelineWebhookSurvivesARestart(t *testing.T) {
	t.Parallel()
	var up atomic.Bool
	recv := newPipelineReceiver(t, func(int) int {
		if up.Load() {
			return http.StatusOK
		}
		return http.StatusServiceUnavailable
	})
	env := pipelineEnv(recv, map[string]string{"LOCAL_DIRECTORY": t.TempDir(), "MIXDOWN": "none", "MIXDOWN_SETTLE": "1s"})
	first := startService(t, env)
	room := "restart-hook-room"
	p := publish(t, room, "yael")
	first.mustStart(room, "yael")
	time.Sleep(2 * time.Second)
	first.mustStop(room, "yael")
	waitFor(t, 30*time.Second, "a failed delivery", func() bool {
		attempts, _ := recv.seen()
		return attempts > 0
	})
	first.terminate(t, 30*time.Second)
	up.Store(true)
	startService(t, env)
	waitFor(t, 30*time.Second, "the delivery by the next process", func() bool {
		_, events := recv.seen()
		return len(events) > 0
	})
	time.Sleep(2 * time.Second) // nothing more may arrive
	recv.checkRoomEvent(t, room, p.TrackSID())
}
