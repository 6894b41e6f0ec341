package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	"github.com/livekit/protocol/webhook"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/redis/go-redis/v9"

	"github.com/trackrec/trackrec/egress"
	"github.com/trackrec/trackrec/recorder"
	"github.com/trackrec/trackrec/testbed"
)

// liveKitHooks receives livekit-server's own webhooks, verified with its key.
type liveKitHooks struct {
	url    string
	mu     sync.Mutex
	events []*livekit.WebhookEvent
}

func newLiveKitHooks(t *testing.T) *liveKitHooks {
	h := &liveKitHooks{}
	keys := auth.NewSimpleKeyProvider("devkey", "secret")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ev, err := webhook.ReceiveWebhookEvent(r, keys)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		h.mu.Lock()
		h.events = append(h.events, ev)
		h.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	h.url = srv.URL
	return h
}

// egressEvents returns the egress webhooks of id, in arrival order.
func (h *liveKitHooks) egressEvents(id string) []*livekit.WebhookEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*livekit.WebhookEvent
	for _, ev := range h.events {
		if ev.GetEgressInfo().GetEgressId() == id {
			out = append(out, ev)
		}
	}
	return out
}

// egressBed is livekit-server on the test's Redis, with its webhooks to
// hooks, and versitygw for the egresses' files.
type egressBed struct {
	t      *testing.T
	ctx    context.Context
	redis  *testbed.Redis
	s3     *testbed.S3
	hooks  *liveKitHooks
	server *testbed.LiveKit
}

func newEgressBed(t *testing.T) *egressBed {
	t.Helper()
	needRecorder(t)
	e := &egressBed{t: t, redis: startRedis(t), s3: startS3(t), hooks: newLiveKitHooks(t)}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	e.ctx = ctx
	server, err := testbed.StartLiveKit(ctx, testbed.LiveKitOptions{WebhookURLs: []string{e.hooks.url}, RedisAddress: e.redis.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = server.Close() })
	e.server = server
	return e
}

// s3Output is versitygw as an egress request names it.
func (e *egressBed) s3Output() *livekit.S3Upload {
	return &livekit.S3Upload{AccessKey: e.s3.AccessKey, Secret: e.s3.SecretKey, Region: e.s3.Region,
		Endpoint: e.s3.Endpoint, Bucket: e.s3.Bucket, ForcePathStyle: true}
}

// autoEgressRoom creates room with Auto Track Egress at the consumer's
// layout, to versitygw.
func (e *egressBed) autoEgressRoom(room string) {
	e.t.Helper()
	rs := lksdk.NewRoomServiceClient(e.server.HTTPURL, e.server.APIKey, e.server.APISecret)
	if _, err := rs.CreateRoom(e.ctx, &livekit.CreateRoomRequest{Name: room, Egress: &livekit.RoomEgress{Tracks: &livekit.AutoTrackEgress{
		Filepath: "livekit/{room_name}/{publisher_identity}-{time}",
		Output:   &livekit.AutoTrackEgress_S3{S3: e.s3Output()},
	}}}); err != nil {
		e.t.Fatal(err)
	}
}

// ended is the egress_ended info of id, nil before it came.
func (h *liveKitHooks) ended(id string) *livekit.EgressInfo {
	for _, ev := range h.egressEvents(id) {
		if ev.Event == webhook.EventEgressEnded {
			return ev.EgressInfo
		}
	}
	return nil
}

// waitEnded waits for the egress_ended webhook of id.
func (h *liveKitHooks) waitEnded(t *testing.T, id string, within time.Duration) *livekit.EgressInfo {
	t.Helper()
	waitFor(t, within, "egress "+id+" ended", func() bool { return h.ended(id) != nil })
	return h.ended(id)
}

// Auto Track Egress served by the recorder on livekit-server's Redis: two
// participants' audio, written untranscoded at the consumer's layout with
// an EG_<id>.json beside each, livekit-server's own egress webhooks for
// each, ListEgress and StopEgress through its API. A video track, and an
// audio track offered while the recorder is full (MAX_TRACKS=2), are not
// claimed; StartTrackEgress through the API records a track of a room
// without auto egress.
func TestAutoTrackEgress(t *testing.T) {
	t.Parallel()
	e := newEgressBed(t)
	rd, s3, hooks, server, ctx := e.redis, e.s3, e.hooks, e.server, e.ctx
	// The recorder's own storage is its local directory: the requests'
	// S3 target (versitygw) is theirs, with their credentials.
	rec := startService(t, withDir(t, map[string]string{
		"LIVEKIT_URL": server.URL, "LIVEKIT_API_KEY": server.APIKey, "LIVEKIT_API_SECRET": server.APISecret,
		"REDIS_ADDRESS": rd.Addr(), "EGRESS_WORKER": "true", "AUTO_RECORD": "false", "MIXDOWN": "none", "MAX_TRACKS": "2",
	}))
	s3Out := e.s3Output()
	room := "egress-room"
	e.autoEgressRoom(room)
	pubs := map[string]*testbed.Publisher{"eve": publishOn(t, server, room, "eve"), "flo": publishOn(t, server, room, "flo")}
	ec := lksdk.NewEgressClient(server.HTTPURL, server.APIKey, server.APISecret)
	egresses := map[string]*livekit.EgressInfo{} // by identity
	waitFor(t, 30*time.Second, "both egresses active", func() bool {
		res, err := ec.ListEgress(ctx, &livekit.ListEgressRequest{RoomName: room})
		if err != nil {
			t.Logf("ListEgress: %v", err)
			return false
		}
		for _, e := range res.GetItems() {
			for who, p := range pubs {
				if e.GetTrack().GetTrackId() == p.TrackSID() && e.Status == livekit.EgressStatus_EGRESS_ACTIVE {
					egresses[who] = e
				}
			}
		}
		return len(egresses) == 2
	})
	// Not claimed: eve's camera, and hal's audio while the recorder is full.
	video, err := pubs["eve"].PublishVideo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hal := publishOn(t, server, room, "hal")
	time.Sleep(4 * time.Second)
	res, err := ec.ListEgress(ctx, &livekit.ListEgressRequest{RoomName: room})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range res.GetItems() {
		if id := e.GetTrack().GetTrackId(); id == video || id == hal.TrackSID() {
			t.Errorf("egress %s of track %s claimed (video %s, hal's audio while full %s)", e.EgressId, id, video, hal.TrackSID())
		}
	}
	for _, r := range rec.list() {
		if r.Participant == "hal" {
			t.Errorf("hal recorded while the recorder was full: %+v", r)
		}
	}
	// The worker looked at both requests and did not claim them, each for
	// its reason.
	declined := map[string]bool{}
	for _, line := range strings.Split(rec.logs.String(), "\n") {
		declined["video"] = declined["video"] || (strings.Contains(line, `"msg":"egress not claimed"`) && strings.Contains(line, video) && strings.Contains(line, `"kind":"video"`))
		declined["full"] = declined["full"] || (strings.Contains(line, `"msg":"egress not claimed: the recorder is full"`) && strings.Contains(line, hal.TrackSID()))
	}
	if !declined["video"] || !declined["full"] {
		t.Errorf("declined for its kind: %v, for capacity: %v", declined["video"], declined["full"])
	}
	// livekit-server offers hal's egress again for a while: hal leaves
	// before capacity frees, so that offer finds no track to claim.
	if err := hal.Leave(); err != nil {
		t.Fatal(err)
	}
	// StopEgress through the API ends one at once (ENDING), and it is
	// complete once stored.
	asked := time.Now()
	stopped, err := ec.StopEgress(ctx, &livekit.StopEgressRequest{EgressId: egresses["eve"].EgressId})
	if err != nil {
		t.Fatalf("StopEgress: %v", err)
	}
	t.Logf("StopEgress answered in %v with %s", time.Since(asked), stopped.Status)
	if took := time.Since(asked); took > 3*time.Second || stopped.Status != livekit.EgressStatus_EGRESS_ENDING {
		t.Errorf("StopEgress: %s after %v, want ENDING within 3 s", stopped.Status, took)
	}
	// flo leaves: its egress ends by itself.
	if err := pubs["flo"].Leave(); err != nil {
		t.Fatal(err)
	}
	ended := map[string]*livekit.EgressInfo{}
	for who, e := range egresses {
		ended[who] = hooks.waitEnded(t, e.EgressId, 30*time.Second)
	}
	if evs := hooks.egressEvents(egresses["eve"].EgressId); len(evs) > 0 {
		t.Logf("eve's egress complete, its file stored, %v after StopEgress", time.Unix(0, evs[len(evs)-1].EgressInfo.EndedAt).Sub(asked).Round(time.Millisecond))
	}
	for who, e := range egresses {
		events := hooks.egressEvents(e.EgressId)
		var names []string
		for _, ev := range events {
			names = append(names, ev.Event+"/"+ev.EgressInfo.Status.String())
		}
		t.Logf("%s: %v", who, names)
		if len(events) < 3 || events[0].Event != webhook.EventEgressStarted || events[len(events)-1].Event != webhook.EventEgressEnded {
			t.Errorf("%s: webhooks %v, want egress_started first and egress_ended last", who, names)
		}
		active := false
		for _, ev := range events {
			active = active || (ev.Event == webhook.EventEgressUpdated && ev.EgressInfo.Status == livekit.EgressStatus_EGRESS_ACTIVE)
		}
		if !active {
			t.Errorf("%s: no egress_updated ACTIVE: %v", who, names)
		}
		done := ended[who]
		if done.Status != livekit.EgressStatus_EGRESS_COMPLETE || len(done.FileResults) != 1 {
			t.Fatalf("%s: ended %s with %d files: %s", who, done.Status, len(done.FileResults), done.Error)
		}
		for _, secret := range []string{s3.SecretKey, s3.AccessKey} {
			if doc, _ := json.Marshal(done); strings.Contains(string(doc), secret) {
				t.Errorf("%s: egress info carries a credential: %s", who, doc)
			}
		}
		fr := done.FileResults[0]
		p := pubs[who]
		if m := consumerKey.FindStringSubmatch(fr.Filename); m == nil || m[1] != room || m[2] != who || m[4] != p.TrackSID() || m[5] != "ogg" {
			t.Errorf("%s: key %q does not parse as livekit/{room}/{identity}-{time}-{track}.ogg", who, fr.Filename)
		}
		path := object(t, s3, fr.Filename)
		st, err := os.Stat(path)
		if err != nil || st.Size() != fr.Size {
			t.Errorf("%s: object %s: %v, size %d; file result says %d", who, fr.Filename, err, st.Size(), fr.Size)
		}
		within(t, who+" duration vs file result", decodedDuration(t, path), time.Duration(fr.Duration), 60*time.Millisecond)
		checkTrackFile(t, path, p, p.TrackSID(), 0)
		if !strings.HasPrefix(fr.Location, s3.Endpoint+"/"+s3.Bucket+"/") {
			t.Errorf("%s: location %q", who, fr.Location)
		}
		data, err := os.ReadFile(object(t, s3, egress.ManifestKey(fr.Filename, e.EgressId)))
		if err != nil {
			t.Fatalf("%s: EG manifest: %v", who, err)
		}
		var man egress.Manifest
		if err := json.Unmarshal(data, &man); err != nil || man.EgressID != e.EgressId || man.TrackID != p.TrackSID() || man.RoomName != room ||
			len(man.Files) != 1 || man.Files[0].Filename != fr.Filename || man.Files[0].Location != fr.Location || len(man.Trackrec) == 0 {
			t.Errorf("%s: EG manifest %s (%v)", who, data, err)
		}
	}
	// Listed as complete afterwards.
	res, err = ec.ListEgress(ctx, &livekit.ListEgressRequest{RoomName: room})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range res.GetItems() {
		if e.Status != livekit.EgressStatus_EGRESS_COMPLETE {
			t.Errorf("ListEgress after: %s %s", e.EgressId, e.Status)
		}
	}
	// StartTrackEgress of a track published later in a room without auto
	// egress.
	// ivy is recorded whole through the recorder's API first: her track's
	// egress then shares the subscription, and both files hold her audio.
	ivy := publishOn(t, server, "egress-api-room", "ivy")
	rec.mustStart("egress-api-room", "ivy")
	started, err := ec.StartTrackEgress(ctx, &livekit.TrackEgressRequest{RoomName: "egress-api-room", TrackId: ivy.TrackSID(),
		Output: &livekit.TrackEgressRequest_File{File: &livekit.DirectFileOutput{Filepath: "livekit/{room_name}/{publisher_identity}-{time}-{track_id}", Output: &livekit.DirectFileOutput_S3{S3: s3Out}}}})
	if err != nil {
		t.Fatalf("StartTrackEgress: %v", err)
	}
	defer func() {
		if t.Failed() {
			for _, l := range strings.Split(rec.logs.String(), "\n") {
				if strings.Contains(l, "ivy") {
					t.Log(l)
				}
			}
		}
	}()
	waitFor(t, 20*time.Second, "the API's egress active", func() bool {
		evs := hooks.egressEvents(started.EgressId)
		return len(evs) > 0 && evs[len(evs)-1].EgressInfo.Status == livekit.EgressStatus_EGRESS_ACTIVE
	})
	time.Sleep(2 * time.Second)
	if _, err := ec.StopEgress(ctx, &livekit.StopEgressRequest{EgressId: started.EgressId}); err != nil {
		t.Fatal(err)
	}
	apiDone := hooks.waitEnded(t, started.EgressId, 20*time.Second)
	if apiDone.Status != livekit.EgressStatus_EGRESS_COMPLETE || len(apiDone.FileResults) != 1 {
		t.Fatalf("API egress ended %s: %s", apiDone.Status, apiDone.Error)
	}
	checkTrackFile(t, object(t, s3, apiDone.FileResults[0].Filename), ivy, ivy.TrackSID(), 0)
	whole := rec.mustStop("egress-api-room", "ivy")
	if n := len(whole.Tracks); n != 2 {
		t.Errorf("ivy's whole recording has %d files of her track, want 2 (cut where the egress began)", n)
	}
	for _, tr := range whole.Tracks {
		checkTrackFile(t, tr.Path, ivy, ivy.TrackSID(), 0)
	}
	// An S3 target that refuses the request's credentials fails the egress
	// with the reason, never showing the secret.
	bad := e.s3Output()
	bad.Secret = "not-the-secret-at-all"
	refused, err := ec.StartTrackEgress(ctx, &livekit.TrackEgressRequest{RoomName: "egress-api-room", TrackId: ivy.TrackSID(),
		Output: &livekit.TrackEgressRequest_File{File: &livekit.DirectFileOutput{Filepath: "livekit/{room_name}/refused-{time}", Output: &livekit.DirectFileOutput_S3{S3: bad}}}})
	if err != nil {
		t.Fatalf("StartTrackEgress: %v", err)
	}
	time.Sleep(2 * time.Second)
	if _, err := ec.StopEgress(ctx, &livekit.StopEgressRequest{EgressId: refused.EgressId}); err != nil {
		t.Fatal(err)
	}
	failed := hooks.waitEnded(t, refused.EgressId, 90*time.Second)
	t.Logf("refused egress: %s: %s", failed.Status, failed.Error)
	if failed.Status != livekit.EgressStatus_EGRESS_FAILED || !strings.Contains(failed.Error, "refused") || strings.Contains(failed.Error, bad.Secret) {
		t.Errorf("refused egress ended %s: %q", failed.Status, failed.Error)
	}
	if strings.Contains(rec.logs.String(), s3.SecretKey) {
		t.Error("the recorder logged the request's S3 secret")
	}
	for _, r := range rec.list() {
		if r.ID != whole.ID && !strings.HasPrefix(r.ID, "EG_") {
			t.Errorf("recording %s is not named by its egress id", r.ID)
		}
	}
}

// egressFleet starts n recorders serving livekit-server's egress requests
// on its Redis, as one fleet, each on its own spool. With ownS3 their own
// storage is the requests' bucket; without, they store on their local
// directory, and the requests' bucket is reached with the requests'
// credentials (sealed in the fleet's records).
func (e *egressBed) egressFleet(n int, ownS3 bool) []*service {
	e.t.Helper()
	var fleet []*service
	for range n {
		fleet = append(fleet, startService(e.t, withDir(e.t, e.egressEnv(ownS3))))
	}
	return fleet
}

func (e *egressBed) egressEnv(ownS3 bool) map[string]string {
	env := map[string]string{
		"LIVEKIT_URL": e.server.URL, "LIVEKIT_API_KEY": e.server.APIKey, "LIVEKIT_API_SECRET": e.server.APISecret,
		"REDIS_ADDRESS": e.redis.Addr(), "EGRESS_WORKER": "true", "AUTO_RECORD": "false", "MIXDOWN": "none", "LEASE_TTL": "2s",
	}
	if ownS3 {
		return withS3(e.s3, env)
	}
	return env
}

// activeEgress waits for the egress of track to be active and returns its
// id.
func (h *liveKitHooks) activeEgress(t *testing.T, track string) string {
	t.Helper()
	var id string
	waitFor(t, 30*time.Second, "the egress of "+track+" active", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, ev := range h.events {
			if ev.GetEgressInfo().GetTrack().GetTrackId() == track && ev.EgressInfo.Status == livekit.EgressStatus_EGRESS_ACTIVE {
				id = ev.EgressInfo.EgressId
			}
		}
		return id != ""
	})
	return id
}

// holder is the instance of fleet recording egress id.
func holder(t *testing.T, fleet []*service, id string) (held, other *service) {
	t.Helper()
	waitFor(t, 10*time.Second, "the egress's recording listed", func() bool {
		for _, r := range fleet[0].list() {
			if r.ID == id && !r.State.Final() {
				for i, s := range fleet {
					if s.instance() == r.Instance {
						held, other = s, fleet[(i+1)%len(fleet)]
					}
				}
			}
		}
		return held != nil
	})
	return held, other
}

// checkEgressFiles is what a consumer checks of a finished egress written
// by more than one instance: exactly one egress_ended, COMPLETE, with
// files in order, each object of its result's size and decoding to its
// duration, holding the publisher's packets, all listed in the EG
// manifest beside the first. It returns each file's matched packets.
func (e *egressBed) checkEgressFiles(id string, p *testbed.Publisher, want int) [][]testbed.SentPacket {
	t := e.t
	t.Helper()
	done := e.hooks.waitEnded(t, id, 60*time.Second)
	t.Logf("ended %s: %s %s", done.Status, done.Details, done.Error)
	var ends int
	for _, ev := range e.hooks.egressEvents(id) {
		if ev.Event == webhook.EventEgressEnded {
			ends++
		}
	}
	if ends != 1 {
		t.Errorf("%d egress_ended webhooks, want 1", ends)
	}
	if done.Status != livekit.EgressStatus_EGRESS_COMPLETE || len(done.FileResults) != want {
		t.Fatalf("the egress ended %s with %d files, want COMPLETE with %d: %s", done.Status, len(done.FileResults), want, done.Error)
	}
	var out [][]testbed.SentPacket
	for i, fr := range done.FileResults {
		t.Logf("file %d: %s, %d bytes, %v from %v", i, fr.Filename, fr.Size, time.Duration(fr.Duration), time.Unix(0, fr.StartedAt).UTC().Format("15:04:05.000"))
		if m := consumerKey.FindStringSubmatch(fr.Filename); m == nil || m[4] != p.TrackSID() {
			t.Errorf("file %d: key %q", i, fr.Filename)
		}
		if i > 0 && fr.StartedAt <= done.FileResults[i-1].StartedAt {
			t.Errorf("file %d starts before file %d", i, i-1)
		}
		path := object(t, e.s3, fr.Filename)
		if st, err := os.Stat(path); err != nil || st.Size() != fr.Size {
			t.Fatalf("object %s: %v (file result %d bytes)", fr.Filename, err, fr.Size)
		}
		within(t, "duration vs file result", decodedDuration(t, path), time.Duration(fr.Duration), 60*time.Millisecond)
		// Its first packet came within its first second.
		out = append(out, checkTrackFileNear(t, path, p, p.TrackSID(), 0, time.Unix(0, fr.StartedAt).Add(500*time.Millisecond)))
	}
	data, err := os.ReadFile(object(t, e.s3, egress.ManifestKey(done.FileResults[0].Filename, id)))
	if err != nil {
		t.Fatalf("EG manifest: %v", err)
	}
	var man egress.Manifest
	if err := json.Unmarshal(data, &man); err != nil || man.EgressID != id || len(man.Files) != want {
		t.Fatalf("EG manifest %s (%v), want %d files", data, err, want)
	}
	for i, f := range man.Files {
		if f.Filename != done.FileResults[i].Filename {
			t.Errorf("EG manifest file %d is %s, the egress's %s", i, f.Filename, done.FileResults[i].Filename)
		}
	}
	ec := lksdk.NewEgressClient(e.server.HTTPURL, e.server.APIKey, e.server.APISecret)
	res, err := ec.ListEgress(e.ctx, &livekit.ListEgressRequest{EgressId: id})
	if err != nil || len(res.GetItems()) != 1 || res.Items[0].Status != livekit.EgressStatus_EGRESS_COMPLETE {
		t.Errorf("ListEgress: %v %v", res, err)
	}
	return out
}

// egressOnFleet starts a fleet of two egress workers and an Auto Track
// Egress room in which who publishes; once the egress has run 3 s it
// returns the egress, the instance running it (a) and the other (b).
func (e *egressBed) egressOnFleet(room, who string, ownS3 bool) (fleet []*service, p *testbed.Publisher, id string, a, b *service) {
	e.t.Helper()
	fleet = e.egressFleet(2, ownS3)
	e.autoEgressRoom(room)
	p = publishOn(e.t, e.server, room, who)
	id = e.hooks.activeEgress(e.t, p.TrackSID())
	a, b = holder(e.t, fleet, id)
	time.Sleep(3 * time.Second)
	return fleet, p, id, a, b
}

// SIGTERM of the instance running a track egress: it hands the egress to
// another instance, which reports it from then on. The egress ends once,
// complete, with both files, the old ending where the new begins
// (measured on the publisher's packets: a gap of at most 100 ms, an
// overlap of at most 40 ms), and its EG manifest lists both.
func TestEgressHandedOverOnShutdown(t *testing.T) {
	t.Parallel()
	e := newEgressBed(t)
	room := "egress-handover-room"
	fleet, p, id, a, b := e.egressOnFleet(room, "una", false)
	a.terminate(t, 30*time.Second)
	taken := b.waitRecording(room, "una", 20*time.Second, func(r recorder.RecordingInfo) bool {
		return r.ID == id && r.Instance == b.instance() && len(r.Tracks) == 1 && r.Tracks[0].Packets > 100
	})
	if taken.HandoverAt == nil {
		t.Errorf("resumed without a handover: %+v", taken)
	}
	if d := e.hooks.ended(id); d != nil {
		t.Fatalf("the egress ended at the handover: %s %s", d.Status, d.Error)
	}
	// The fleet's record of the egress, which carried the request's
	// credentials to b, holds them sealed only.
	if doc := fleetKeys(t, e.redis); !strings.Contains(doc, id) || strings.Contains(doc, e.s3.SecretKey) || strings.Contains(doc, e.s3.AccessKey) {
		t.Errorf("the fleet's keys in Redis do not name the egress, or hold its credentials in the clear:\n%s", doc)
	}
	if err := p.Leave(); err != nil {
		t.Fatal(err)
	}
	files := e.checkEgressFiles(id, p, 2)
	old, cur := files[0], files[1]
	gap := cur[0].RTPTime.Sub(old[len(old)-1].RTPTime) - frame
	t.Logf("egress handover gap %v (negative: overlap)", gap)
	if gap > 100*time.Millisecond || gap < -40*time.Millisecond {
		t.Errorf("the old file ends %v before the new file begins, want a gap of at most 100 ms and an overlap of at most 40 ms", gap)
	}
	for _, s := range fleet {
		if strings.Contains(s.logs.String(), e.s3.SecretKey) {
			t.Error("a recorder logged the request's S3 secret")
		}
	}
}

// SIGKILL of the instance running a track egress: another instance takes
// the egress over once its claim lapses and goes on in a new file; the
// killed one, started again on its spool, stores its cut file. The egress
// ends once, complete, with both files; livekit-server lists it complete.
func TestEgressFailsOver(t *testing.T) {
	t.Parallel()
	e := newEgressBed(t)
	room := "egress-kill-room"
	_, p, id, a, b := e.egressOnFleet(room, "kim", true)
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-a.done
	killed := time.Now()
	b.waitRecording(room, "kim", 30*time.Second, func(r recorder.RecordingInfo) bool {
		return r.ID == id && r.Instance == b.instance() && len(r.Tracks) == 1 && r.Tracks[0].Packets > 50
	})
	t.Logf("egress resumed on the other instance %v after the kill", time.Since(killed).Round(100*time.Millisecond))
	// The killed instance again, on its spool: it stores the cut file.
	startService(t, withEnv(e.egressEnv(true), "LOCAL_DIRECTORY", a.dir))
	time.Sleep(3 * time.Second)
	if d := e.hooks.ended(id); d != nil {
		t.Fatalf("the egress ended while its track was published: %s %s", d.Status, d.Error)
	}
	if err := p.Leave(); err != nil {
		t.Fatal(err)
	}
	files := e.checkEgressFiles(id, p, 2)
	if d := files[0][len(files[0])-1].RTPTime.Sub(files[0][0].RTPTime); d < 2*time.Second {
		t.Errorf("the cut file holds %v of audio", d)
	}
}

func withEnv(env map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for key, val := range env {
		if key != k {
			out[key] = val
		}
	}
	return out
}

// fleetKeys is every key the fleet keeps in Redis (trackrec:*), with its
// fields and values.
func fleetKeys(t *testing.T, rd *testbed.Redis) string {
	t.Helper()
	rc := redis.NewClient(&redis.Options{Addr: rd.Addr()})
	defer rc.Close()
	ctx := t.Context()
	var b strings.Builder
	iter := rc.Scan(ctx, 0, "trackrec:*", 100).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		fmt.Fprintf(&b, "%s:", k)
		switch rc.Type(ctx, k).Val() {
		case "hash":
			for f, v := range rc.HGetAll(ctx, k).Val() {
				fmt.Fprintf(&b, " %s=%s", f, v)
			}
		case "string":
			fmt.Fprintf(&b, " %s", rc.Get(ctx, k).Val())
		case "set":
			fmt.Fprintf(&b, " %v", rc.SMembers(ctx, k).Val())
		}
		b.WriteString("\n")
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
