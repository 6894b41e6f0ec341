package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/trackrec/trackrec/recorder"
	"github.com/trackrec/trackrec/testbed"
)

// LiveKit is killed and comes back 2 s later (a crash, a deploy): the
// recording goes on. The bot's connection dies with the server, a new bot
// joins, and the participant's republished track goes to a new file of the
// same recording, byte for byte what the publisher sent.
func TestRecordingSurvivesALiveKitRestart(t *testing.T) {
	t.Parallel()
	needRecorder(t) // before ctx: a first build must not use up its time
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	server, err := testbed.StartLiveKit(ctx, testbed.LiveKitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	s := startService(t, map[string]string{
		"LIVEKIT_URL": server.URL, "LIVEKIT_API_KEY": server.APIKey, "LIVEKIT_API_SECRET": server.APISecret,
		"MIXDOWN": "none", "AUTO_RECORD": "false",
	})
	room := "lk-restart-room"
	p := publishOn(t, server, room, "pat")
	first := s.mustStart(room, "pat")
	time.Sleep(3 * time.Second)
	if err := server.Restart(ctx, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	back := s.waitRecording(room, "pat", 60*time.Second, func(r recorder.RecordingInfo) bool {
		return len(r.Tracks) == 2 && r.Tracks[1].Packets > 100
	})
	if back.ID != first.ID || back.State != recorder.StateRecording {
		t.Fatalf("after the restart: %+v, want recording %s going on", back, first.ID)
	}
	final := s.mustStop(room, "pat")
	before, after := final.Tracks[0], final.Tracks[1]
	if before.State != "closed" || after.State != "closed" || before.File == after.File {
		t.Fatalf("tracks: %+v", final.Tracks)
	}
	// Up to the restart: the first publication's packets.
	checkTrackFile(t, before.Path, p, before.TrackSID, 0)
	// After it: the publisher's SDK republished under a new track id; the
	// payloads are still its own, in order.
	sent := p.Sent()
	for i := range sent {
		sent[i].TrackSID = "any"
	}
	matched, missing := match(t, readPackets(t, after.Path), sent, "any")
	if missing > 5 || len(matched) < 100 {
		t.Errorf("second file: %d of the publisher's packets, %d missing inside", len(matched), missing)
	}
	if d := decodedDuration(t, after.Path); d < 2*time.Second {
		t.Errorf("second file decodes to %v", d)
	}
	// The audio missing is the outage: 2 s down, the server's start, the
	// bot's reconnect timeout (5 s) and a join.
	ended := before.StartedAt.Add(time.Duration(before.DurationMS) * time.Millisecond)
	gap := after.Anchor.Sub(ended)
	t.Logf("audio resumed %v after the first file ended", gap)
	if gap < 2*time.Second || gap > 20*time.Second {
		t.Errorf("second file's audio begins %v after the first file ended", gap)
	}
}
