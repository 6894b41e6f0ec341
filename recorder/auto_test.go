package recorder

import (
	"context"
	"testing"

	"github.com/livekit/protocol/livekit"
)

func joinedEvent(room string, p *livekit.ParticipantInfo) *livekit.WebhookEvent {
	return &livekit.WebhookEvent{Event: "participant_joined", Room: &livekit.Room{Name: room}, Participant: p}
}

func TestAutoRecordFilters(t *testing.T) {
	cases := []struct {
		name   string
		room   string
		p      *livekit.ParticipantInfo
		record bool
	}{
		{"person", "r", &livekit.ParticipantInfo{Identity: "alice"}, true},
		{"sip caller", "r", &livekit.ParticipantInfo{Identity: "+15550100", Kind: livekit.ParticipantInfo_SIP}, true},
		{"our bot", "r", &livekit.ParticipantInfo{Identity: BotIdentityPrefix + "host-1"}, false},
		{"egress", "r", &livekit.ParticipantInfo{Identity: "EG_x", Kind: livekit.ParticipantInfo_EGRESS}, false},
		{"agent", "r", &livekit.ParticipantInfo{Identity: "agent-1", Kind: livekit.ParticipantInfo_AGENT}, false},
		{"hidden", "r", &livekit.ParticipantInfo{Identity: "spy", Permission: &livekit.ParticipantPermission{Hidden: true}}, false},
		{"recorder grant", "r", &livekit.ParticipantInfo{Identity: "rec", Permission: &livekit.ParticipantPermission{Recorder: true}}, false},
		{"ignored identity", "r", &livekit.ParticipantInfo{Identity: "test-probe-1"}, false},
		{"room not allowed", "other", &livekit.ParticipantInfo{Identity: "alice"}, false},
		{"no identity", "r", &livekit.ParticipantInfo{}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 0)
			f.s.opts.Auto = AutoRecord{Enabled: true, Rooms: []string{"r", "team-*"}, IgnoreIdentities: []string{"test-probe-*"}}
			if got := f.s.HandleEvent(joinedEvent(tc.room, tc.p)); got != tc.record {
				t.Fatalf("HandleEvent = %v, want %v", got, tc.record)
			}
			f.s.events.Wait()
			if got := len(f.s.List()) == 1; got != tc.record {
				t.Errorf("recorded %v, want %v: %+v", got, tc.record, f.s.List())
			}
		})
	}
}

func TestAutoRecordLateJoinAfterLeave(t *testing.T) {
	f := newFixture(t, 0)
	f.s.opts.Auto = AutoRecord{Enabled: true}
	f.s.opts.Lookup = func(context.Context, string, string) (Presence, error) { return NoParticipant, nil }
	// participant_left overtook participant_joined: the join finds nobody.
	f.s.HandleEvent(&livekit.WebhookEvent{Event: "participant_left", Room: &livekit.Room{Name: "r"}, Participant: &livekit.ParticipantInfo{Identity: "alice"}})
	f.s.HandleEvent(joinedEvent("r", &livekit.ParticipantInfo{Identity: "alice"}))
	f.s.events.Wait()
	if l := f.s.List(); len(l) != 0 || f.joins != 0 {
		t.Errorf("a late join for someone gone started %+v (%d joins)", l, f.joins)
	}
}

func TestAutoRecordLeftAndRoomFinished(t *testing.T) {
	f := newFixture(t, 0)
	f.s.opts.Auto = AutoRecord{Enabled: true}
	f.s.HandleEvent(joinedEvent("r", &livekit.ParticipantInfo{Identity: "alice"}))
	f.s.HandleEvent(joinedEvent("r", &livekit.ParticipantInfo{Identity: "bob"}))
	f.s.events.Wait()
	f.s.HandleEvent(&livekit.WebhookEvent{Event: "participant_left", Room: &livekit.Room{Name: "r"}, Participant: &livekit.ParticipantInfo{Identity: "alice"}})
	f.s.events.Wait()
	if r := f.state("r", "alice"); r.State != StateStopped {
		t.Errorf("alice after participant_left: %s", r.State)
	}
	f.s.HandleEvent(&livekit.WebhookEvent{Event: "room_finished", Room: &livekit.Room{Name: "r"}})
	f.s.events.Wait()
	if r := f.state("r", "bob"); r.State != StateStopped || r.StopReason != "room finished" {
		t.Errorf("bob after room_finished: %s %q", r.State, r.StopReason)
	}
	if !f.bots["r"].hasLeft() {
		t.Error("bot stayed after room_finished")
	}
}
