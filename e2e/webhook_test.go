package e2e

import (
	"context"
	"github.com/trackrec/trackrec/completion"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/trackrec/trackrec/recorder"
	"github.com/trackrec/trackrec/testbed"
)

// LiveKit sends its webhooks to the recorder: participants are recorded
// without any API call, their files close when they leave, and the room's
// mixdown follows. The recorder's own bot is never recorded.
func TestWebhooksRecordWithoutAnAPICall(t *testing.T) {
	t.Parallel()
	server, s := webhookService(t, map[string]string{"MIXDOWN_SETTLE": "1s"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	room := "auto-room"
	p := publishOn(t, server, room, "yuri")
	rec := s.waitRecording(room, "yuri", 20*time.Second, func(r recorder.RecordingInfo) bool {
		return r.State == recorder.StateRecording && len(r.Tracks) == 1 && r.Tracks[0].Packets > 50
	})
	time.Sleep(time.Second)
	for _, r := range s.list() {
		if strings.HasPrefix(r.Participant, recorder.BotIdentityPrefix) {
			t.Errorf("the recorder recorded its own bot: %+v", r)
		}
	}
	if err := p.Leave(); err != nil {
		t.Fatal(err)
	}
	rec = s.waitRecording(room, "yuri", 20*time.Second, func(r recorder.RecordingInfo) bool { return r.State == recorder.StateStopped })
	checkTrackFile(t, fileOf(t, rec, p.TrackSID()).Path, p, p.TrackSID(), 0)

	// Closing the room finishes it; the mixdown of its recordings runs.
	rs := lksdk.NewRoomServiceClient(server.HTTPURL, server.APIKey, server.APISecret)
	_, _ = rs.DeleteRoom(ctx, &livekit.DeleteRoomRequest{Room: room})
	waitFor(t, 30*time.Second, "the room's mixdown", func() bool {
		resp := s.rooms()
		for _, c := range resp {
			if c.Room == room && c.State == completion.StateDone && len(c.Outputs) == 2 {
				return true
			}
		}
		return false
	})
	if len(s.list()) != 1 {
		t.Errorf("recordings: %+v, want only yuri's", s.list())
	}
}

// The API refuses requests without a roomRecord token, and the binary's
// token subcommand makes one it accepts.
func TestAPIRequiresARecordToken(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	body := `{"room":"auth-room","participant":"zoe","wait_for_participant":true}`
	for name, c := range map[string]struct {
		header string
		want   int
	}{
		"no token":       {"", http.StatusUnauthorized},
		"join-only":      {"Bearer " + joinToken(t), http.StatusForbidden},
		"recorder token": {"Bearer " + s.token, http.StatusCreated},
	} {
		req, _ := http.NewRequest(http.MethodPost, s.url+"/recordings/start", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if c.header != "" {
			req.Header.Set("Authorization", c.header)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s: %d, want %d", name, resp.StatusCode, c.want)
		}
	}
}

func joinToken(t *testing.T) string {
	tok, err := lk.Token("auth-room", "zoe")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// webhookService starts a livekit-server of the test's own whose webhooks go
// to a recorder started with extra settings, and returns both.
func webhookService(t *testing.T, extra map[string]string) (*testbed.LiveKit, *service) {
	t.Helper()
	needRecorder(t) // before ctx: a first build must not use up its time
	port := freePort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	server, err := testbed.StartLiveKit(ctx, testbed.LiveKitOptions{
		WebhookURLs: []string{"http://127.0.0.1:" + strconv.Itoa(port) + "/recordings/webhooks"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = server.Close() })
	env := map[string]string{
		"LIVEKIT_URL": server.URL, "LIVEKIT_API_KEY": server.APIKey, "LIVEKIT_API_SECRET": server.APISecret,
		"APP_PORT": strconv.Itoa(port),
	}
	for k, v := range extra {
		env[k] = v
	}
	return server, startService(t, env)
}
