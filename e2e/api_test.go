package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/trackrec/trackrec/recorder"
	"google.golang.org/protobuf/encoding/protojson"
)

// botsIn counts this service's bots in room (-1 if the room does not exist).
func botsIn(t *testing.T, room string) int {
	t.Helper()
	rs := lksdk.NewRoomServiceClient(lk.HTTPURL, lk.APIKey, lk.APISecret)
	rooms, err := rs.ListRooms(context.Background(), &livekit.ListRoomsRequest{Names: []string{room}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rooms.GetRooms()) == 0 {
		return -1
	}
	resp, err := rs.ListParticipants(context.Background(), &livekit.ListParticipantsRequest{Room: room})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range resp.Participants {
		if strings.HasPrefix(p.Identity, recorder.BotIdentityPrefix) {
			n++
		}
	}
	return n
}

// A start for a room LiveKit does not have, or for someone not in the room,
// is 404 and leaves nothing behind: no recording, no bot, no room created.
func TestStartForAbsentRoomOrParticipantIsNotFound(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	publish(t, "present-room", "host")
	for _, c := range []struct {
		room, participant, says string
		botsAfter               int
	}{
		{"ghost-room", "nobody", "does not exist", -1},
		{"present-room", "nobody", "not in", 0},
	} {
		code, _, raw := s.post("/recordings/start", c.room, c.participant)
		var body struct{ Error string }
		_ = json.Unmarshal([]byte(raw), &body)
		if code != http.StatusNotFound || !strings.Contains(body.Error, c.says) {
			t.Errorf("start %s/%s: %d %s, want 404 saying %q", c.room, c.participant, code, raw, c.says)
		}
		time.Sleep(time.Second)
		if n := botsIn(t, c.room); n != c.botsAfter {
			t.Errorf("%s after a refused start: %d bots (-1: no room), want %d", c.room, n, c.botsAfter)
		}
	}
	if l := s.list(); len(l) != 0 {
		t.Errorf("refused starts left recordings: %+v", l)
	}
	// The same participant, armed ahead, is recorded once they join.
	s.mustArm("ghost-room", "nobody")
	p := publish(t, "ghost-room", "nobody")
	s.waitRecording("ghost-room", "nobody", 10*time.Second, func(r recorder.RecordingInfo) bool {
		return r.State == recorder.StateRecording && len(r.Tracks) == 1 && r.Tracks[0].Packets > 25
	})
	final := s.mustStop("ghost-room", "nobody")
	checkTrackFile(t, fileOf(t, final, p.TrackSID()).Path, p, p.TrackSID(), 0)
}

// hook sends ev to the service signed as livekit-server signs webhooks
// (key/secret override the server's for the wrong-key case; tamper edits
// the body after signing) and returns the status and the answer's status.
func (s *service) hook(ev *livekit.WebhookEvent, key, secret string, sign, tamper bool) (int, string) {
	s.t.Helper()
	body, err := protojson.Marshal(ev)
	if err != nil {
		s.t.Fatal(err)
	}
	var tok string
	if sign {
		sum := sha256.Sum256(body)
		tok, err = auth.NewAccessToken(key, secret).SetValidFor(time.Minute).SetSha256(base64.StdEncoding.EncodeToString(sum[:])).ToJWT()
		if err != nil {
			s.t.Fatal(err)
		}
	}
	if tamper {
		body = bytes.Replace(body, []byte(ev.GetParticipant().GetIdentity()), []byte("mallory"), 1)
	}
	req, _ := http.NewRequest(http.MethodPost, s.url+"/recordings/webhooks", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/webhook+json")
	if tok != "" {
		req.Header.Set("Authorization", tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Status string }
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out.Status
}

// Webhooks as livekit-server sends them, against the real server's room
// state: forged ones change nothing, replays record once, and a
// participant_joined that arrives after the participant_left for someone
// who already left starts nothing.
func TestWebhookReplaysAndOutOfOrderEvents(t *testing.T) {
	t.Parallel()
	s := startService(t, map[string]string{"MIXDOWN": "none"})
	room := "hooks-room"
	stay := publish(t, room, "stay")
	gone := publish(t, room, "gone")
	info := func(id string) *livekit.ParticipantInfo {
		return &livekit.ParticipantInfo{Identity: id, Kind: livekit.ParticipantInfo_STANDARD, State: livekit.ParticipantInfo_ACTIVE}
	}
	ev := func(id, event, identity string, at time.Time) *livekit.WebhookEvent {
		return &livekit.WebhookEvent{Id: id, Event: event, Room: &livekit.Room{Name: room}, Participant: info(identity), CreatedAt: at.Unix()}
	}
	now := time.Now()

	// Forged: unsigned, signed with another secret or key, body changed
	// after signing. Each 401, nothing recorded.
	forged := ev("EV_forged", "participant_joined", "stay", now)
	for name, c := range map[string]struct {
		key, secret  string
		sign, tamper bool
	}{
		"unsigned":     {lk.APIKey, lk.APISecret, false, false},
		"wrong secret": {lk.APIKey, "not-the-secret-not-the-secret-00", true, false},
		"wrong key":    {"otherkey", lk.APISecret, true, false},
		"tampered":     {lk.APIKey, lk.APISecret, true, true},
	} {
		if code, _ := s.hook(forged, c.key, c.secret, c.sign, c.tamper); code != http.StatusUnauthorized {
			t.Errorf("%s webhook: %d, want 401", name, code)
		}
	}
	time.Sleep(time.Second)
	if l := s.list(); len(l) != 0 {
		t.Fatalf("forged webhooks started %+v", l)
	}

	// The same event three times: one recording.
	joined := ev("EV_join_stay", "participant_joined", "stay", now)
	var statuses []string
	for range 3 {
		code, status := s.hook(joined, lk.APIKey, lk.APISecret, true, false)
		if code != http.StatusOK {
			t.Fatalf("signed webhook: %d", code)
		}
		statuses = append(statuses, status)
	}
	if strings.Join(statuses, ",") != "accepted,duplicate,duplicate" {
		t.Errorf("replayed event answered %v", statuses)
	}
	s.waitRecording(room, "stay", 15*time.Second, func(r recorder.RecordingInfo) bool {
		return r.State == recorder.StateRecording && len(r.Tracks) == 1 && r.Tracks[0].Packets > 25
	})

	// "gone" leaves; LiveKit's events for them arrive left first, then the
	// older joined. The joined finds nobody and records nothing.
	if err := gone.Leave(); err != nil {
		t.Fatal(err)
	}
	if _, status := s.hook(ev("EV_left_gone", "participant_left", "gone", now.Add(time.Second)), lk.APIKey, lk.APISecret, true, false); status != "accepted" {
		t.Errorf("participant_left answered %q", status)
	}
	if _, status := s.hook(ev("EV_join_gone", "participant_joined", "gone", now), lk.APIKey, lk.APISecret, true, false); status != "accepted" {
		t.Errorf("late participant_joined answered %q", status)
	}
	time.Sleep(2 * time.Second)
	n := 0
	for _, r := range s.list() {
		if r.Participant == "gone" {
			t.Errorf("a late participant_joined recorded someone who left: %+v", r)
		}
		if r.Participant == "stay" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d recordings of stay, want 1", n)
	}
	if !strings.Contains(s.logs.String(), "participant already gone") {
		t.Errorf("no log of the skipped late join")
	}

	// participant_left stops the recording with every packet in its file.
	if _, status := s.hook(ev("EV_left_stay", "participant_left", "stay", time.Now()), lk.APIKey, lk.APISecret, true, false); status != "accepted" {
		t.Errorf("participant_left answered %q", status)
	}
	final := s.waitRecording(room, "stay", 15*time.Second, func(r recorder.RecordingInfo) bool { return r.State == recorder.StateStopped })
	checkTrackFile(t, fileOf(t, final, stay.TrackSID()).Path, stay, stay.TrackSID(), 0)

	// The metrics tell the same story.
	for _, c := range []struct {
		labels []string
		want   float64
	}{
		{[]string{"event=unknown", "outcome=unauthorized"}, 4},
		{[]string{"event=participant_joined", "outcome=accepted"}, 2},
		{[]string{"event=participant_joined", "outcome=duplicate"}, 2},
		{[]string{"event=participant_left", "outcome=accepted"}, 2},
	} {
		if got := s.metric("trackrec_webhook_events_total", c.labels...); got != c.want {
			t.Errorf("trackrec_webhook_events_total%v = %v, want %v", c.labels, got, c.want)
		}
	}
	tr := fileOf(t, final, stay.TrackSID())
	if got := s.metric("trackrec_packets_written_total"); got != float64(tr.Packets) {
		t.Errorf("trackrec_packets_written_total = %v, the recording wrote %d", got, tr.Packets)
	}
	if got := s.metric("trackrec_bytes_written_total"); got != float64(tr.Bytes) {
		t.Errorf("trackrec_bytes_written_total = %v, the recording wrote %d", got, tr.Bytes)
	}
	if got := s.metric("trackrec_active_recordings"); got != 0 {
		t.Errorf("trackrec_active_recordings = %v after the stop", got)
	}
	waitFor(t, 15*time.Second, "the bot to leave", func() bool { return botsIn(t, room) <= 0 })
}
