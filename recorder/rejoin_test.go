package recorder

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/trackrec/trackrec/bot"
)

// The bot loses LiveKit (a server restart): a new bot joins, the
// participant's new track goes to a new file of the same recording.
func TestRecordingSurvivesABotLosingLiveKit(t *testing.T) {
	f := newFixture(t, 0)
	f.s.opts.ReconnectTimeout = 5 * time.Second
	ctx := context.Background()
	rec, _, err := f.s.Start(ctx, "r", "alice")
	if err != nil {
		t.Fatal(err)
	}
	f.feed("r", "alice", "TR_a", 60)
	f.waitState("r", "alice", StateRecording)
	old := f.bots["r"]
	// The dead connection ends the track, then the bot reports the loss.
	f.handler("r").TrackEnded(bot.TrackInfo{Room: "r", Participant: "alice", TrackSID: "TR_a"})
	f.handler("r").Disconnected("signal closed", true)
	f.waitJoins(2)
	f.mu.Lock()
	if f.joins != 2 || f.bots["r"] == old {
		t.Fatalf("%d joins, want a second bot", f.joins)
	}
	f.mu.Unlock()
	f.feed("r", "alice", "TR_b", 60)
	f.waitState("r", "alice", StateRecording)
	final, err := f.s.Stop(ctx, "r", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if final.ID != rec.ID || len(final.Tracks) != 2 || final.StopReason != "stopped by request" {
		t.Fatalf("recording after the rejoin: %+v", final)
	}
	for _, tr := range final.Tracks {
		if tr.State != "closed" || tr.Packets < 50 {
			t.Errorf("track %s: %s with %d packets", tr.TrackSID, tr.State, tr.Packets)
		}
	}
	if !f.bots["r"].hasLeft() {
		t.Error("the new bot stayed after the last recording stopped")
	}
}

// LiveKit stays unreachable past ReconnectTimeout: the recordings stop,
// their files closed, and say why.
func TestRecordingStopsWhenLiveKitStaysAway(t *testing.T) {
	f := newFixture(t, 0)
	f.s.opts.ReconnectTimeout = 300 * time.Millisecond
	ctx := context.Background()
	f.s.Start(ctx, "r", "alice")
	f.feed("r", "alice", "TR_a", 60)
	f.waitState("r", "alice", StateRecording)
	f.setJoinErr(errors.New("connection refused"))
	f.handler("r").TrackEnded(bot.TrackInfo{Room: "r", Participant: "alice", TrackSID: "TR_a"})
	f.handler("r").Disconnected("signal closed", true)
	r := f.waitState("r", "alice", StateStopped)
	if !strings.Contains(r.StopReason, "LiveKit connection lost") || len(r.Tracks) != 1 || r.Tracks[0].State != "closed" {
		t.Errorf("recording: %+v", r)
	}
	// A room whose recordings all stopped is free for a new start.
	f.setJoinErr(nil)
	if _, created, err := f.s.Start(ctx, "r", "alice"); err != nil || !created {
		t.Errorf("start after the outage: %v %v", created, err)
	}
}

// The room is gone (deleted, the bot removed): no new bot, recordings stop.
func TestUnrecoverableDisconnectStops(t *testing.T) {
	f := newFixture(t, 0)
	f.s.opts.ReconnectTimeout = 5 * time.Second
	f.s.Start(context.Background(), "r", "alice")
	f.handler("r").Disconnected("room deleted", false)
	r := f.waitState("r", "alice", StateStopped)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.joins != 1 || !strings.Contains(r.StopReason, "room deleted") {
		t.Errorf("%d joins, stop reason %q", f.joins, r.StopReason)
	}
}

// After a rejoin, late events of the dead bot (its handler) change nothing;
// a recording still waiting for its participant keeps waiting.
func TestRejoinIgnoresTheOldBotAndKeepsWaitingRecordings(t *testing.T) {
	f := newFixture(t, time.Second)
	f.s.opts.ReconnectTimeout = 300 * time.Millisecond
	ctx := context.Background()
	f.s.Start(ctx, "r", "alice")
	f.s.Start(ctx, "r", "carol", WaitForParticipant()) // not in the room
	f.feed("r", "alice", "TR_a", 60)
	f.waitState("r", "alice", StateRecording)
	old := f.handler("r")
	old.Disconnected("signal closed", true)
	f.waitJoins(2)
	f.feed("r", "alice", "TR_b", 60) // the new bot's track
	f.waitState("r", "alice", StateRecording)
	// The dead connection's late events: the old track id ends, alice
	// "leaves", the old bot reports another loss.
	old.TrackEnded(bot.TrackInfo{Room: "r", Participant: "alice", TrackSID: "TR_b"})
	old.ParticipantLeft("alice", true)
	old.Disconnected("signal closed", true)
	time.Sleep(500 * time.Millisecond) // past ReconnectTimeout
	a := f.state("r", "alice")
	if a.State != StateRecording || len(a.Tracks) != 2 || a.Tracks[1].State != "recording" {
		t.Errorf("alice after the old bot's late events: %+v", a)
	}
	if c := f.state("r", "carol"); c.State != StateWaiting {
		t.Errorf("carol, waiting for her participant, is %s after the rejoin", c.State)
	}
	f.mu.Lock()
	if f.joins != 2 {
		t.Errorf("%d joins, want 2", f.joins)
	}
	f.mu.Unlock()
}

// A start while the rejoin fails: when it gives up, that recording stops
// too, and the room is free again.
func TestStartDuringAFailedRejoinStops(t *testing.T) {
	f := newFixture(t, 0)
	f.s.opts.ReconnectTimeout = 400 * time.Millisecond
	ctx := context.Background()
	f.s.Start(ctx, "r", "alice")
	f.feed("r", "alice", "TR_a", 60)
	f.waitState("r", "alice", StateRecording)
	f.setJoinErr(errors.New("connection refused"))
	f.handler("r").Disconnected("signal closed", true)
	if _, _, err := f.s.Start(ctx, "r", "bob"); err != nil {
		t.Fatal(err)
	}
	f.waitState("r", "alice", StateStopped)
	f.waitState("r", "bob", StateStopped)
	f.setJoinErr(nil)
	if _, created, err := f.s.Start(ctx, "r", "bob"); err != nil || !created {
		t.Errorf("start after the outage: %v %v", created, err)
	}
}
