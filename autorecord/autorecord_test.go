package autorecord

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/trackrec/trackrec/recorder"
)

// fakeRecorder logs the calls the policy makes, in order.
type fakeRecorder struct {
	mu      sync.Mutex
	calls   []string
	sid     map[string]string // identity -> session the bot sees
	startFn func(wait bool) error
	slow    time.Duration // each call takes this long
}

func (f *fakeRecorder) log(c string) {
	time.Sleep(f.slow)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c)
}

func (f *fakeRecorder) Start(_ context.Context, room, p string, opts ...recorder.StartOption) (recorder.RecordingInfo, bool, error) {
	wait := len(opts) > 0
	if wait {
		f.log("start-wait " + room + "/" + p)
	} else {
		f.log("start " + room + "/" + p)
	}
	if f.startFn != nil {
		if err := f.startFn(wait); err != nil {
			return recorder.RecordingInfo{}, false, err
		}
	}
	return recorder.RecordingInfo{}, true, nil
}

func (f *fakeRecorder) Stop(_ context.Context, room, p string) (recorder.RecordingInfo, error) {
	f.log("stop " + room + "/" + p)
	return recorder.RecordingInfo{}, nil
}

func (f *fakeRecorder) StopRoom(_ context.Context, room, reason string) {
	f.log("stoproom " + room + " " + reason)
}

func (f *fakeRecorder) Refresh(room, p string) { f.log("refresh " + room + "/" + p) }

func (f *fakeRecorder) ParticipantSID(_, p string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sid[p]
}

func (f *fakeRecorder) got() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func event(name, room string, p *livekit.ParticipantInfo) *livekit.WebhookEvent {
	return &livekit.WebhookEvent{Event: name, Room: &livekit.Room{Name: room}, Participant: p}
}

func TestFilters(t *testing.T) {
	cases := []struct {
		name   string
		room   string
		p      *livekit.ParticipantInfo
		record bool
	}{
		{"person", "r", &livekit.ParticipantInfo{Identity: "alice"}, true},
		{"sip caller", "r", &livekit.ParticipantInfo{Identity: "+15550100", Kind: livekit.ParticipantInfo_SIP}, true},
		{"room glob", "team-a", &livekit.ParticipantInfo{Identity: "alice"}, true},
		{"our bot", "r", &livekit.ParticipantInfo{Identity: BotIdentityPrefix + "host-1"}, false},
		{"egress", "r", &livekit.ParticipantInfo{Identity: "EG_x", Kind: livekit.ParticipantInfo_EGRESS}, false},
		{"agent", "r", &livekit.ParticipantInfo{Identity: "agent-1", Kind: livekit.ParticipantInfo_AGENT}, false},
		{"hidden", "r", &livekit.ParticipantInfo{Identity: "spy", Permission: &livekit.ParticipantPermission{Hidden: true}}, false},
		{"recorder grant", "r", &livekit.ParticipantInfo{Identity: "rec", Permission: &livekit.ParticipantPermission{Recorder: true}}, false},
		{"ignored identity", "r", &livekit.ParticipantInfo{Identity: "test-probe-1"}, false},
		{"room not allowed", "other", &livekit.ParticipantInfo{Identity: "alice"}, false},
		{"no identity", "r", &livekit.ParticipantInfo{}, false},
		{"no room", "", &livekit.ParticipantInfo{Identity: "alice"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &fakeRecorder{}
			p := New(rec, Options{Enabled: true, Rooms: []string{"r", "team-*"}, IgnoreIdentities: []string{"test-probe-*"}, Logger: quiet()})
			defer p.Close()
			if got := p.HandleEvent(event("participant_joined", tc.room, tc.p)); got != tc.record {
				t.Fatalf("HandleEvent = %v, want %v", got, tc.record)
			}
			p.Wait()
			if got := len(rec.got()) == 1; got != tc.record {
				t.Errorf("calls %q, want a start: %v", rec.got(), tc.record)
			}
		})
	}
}

func TestEvents(t *testing.T) {
	alice := &livekit.ParticipantInfo{Identity: "alice", Sid: "PA_1"}
	cases := []struct {
		name     string
		enabled  bool
		ev       *livekit.WebhookEvent
		sid      string // the session the bot sees
		accepted bool
		want     []string
	}{
		{"joined", true, event("participant_joined", "r", alice), "", true, []string{"start r/alice"}},
		{"joined, auto-record off", false, event("participant_joined", "r", alice), "", false, nil},
		{"left", false, event("participant_left", "r", alice), "PA_1", true, []string{"stop r/alice"}},
		{"left, bot sees nobody", false, event("participant_left", "r", alice), "", true, []string{"stop r/alice"}},
		{"left of an older session", false, event("participant_left", "r", alice), "PA_2", true, nil},
		{"audio published", false, &livekit.WebhookEvent{Event: "track_published", Room: &livekit.Room{Name: "r"}, Participant: alice, Track: &livekit.TrackInfo{Type: livekit.TrackType_AUDIO}}, "", true, []string{"refresh r/alice"}},
		{"video published", false, &livekit.WebhookEvent{Event: "track_published", Room: &livekit.Room{Name: "r"}, Participant: alice, Track: &livekit.TrackInfo{Type: livekit.TrackType_VIDEO}}, "", false, nil},
		{"room finished", false, event("room_finished", "r", nil), "", true, []string{"stoproom r room finished"}},
		{"room started", true, event("room_started", "r", nil), "", false, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &fakeRecorder{sid: map[string]string{"alice": tc.sid}}
			p := New(rec, Options{Enabled: tc.enabled, Logger: quiet()})
			defer p.Close()
			if got := p.HandleEvent(tc.ev); got != tc.accepted {
				t.Errorf("HandleEvent = %v, want %v", got, tc.accepted)
			}
			p.Wait()
			if got := rec.got(); !slices.Equal(got, tc.want) {
				t.Errorf("calls %q, want %q", got, tc.want)
			}
		})
	}
}

// One participant's events act in the order they arrived, even when each
// takes a while: a leave then a join (a page refresh) stops, then starts.
func TestOneParticipantsEventsInOrder(t *testing.T) {
	rec := &fakeRecorder{slow: 20 * time.Millisecond}
	p := New(rec, Options{Enabled: true, Logger: quiet()})
	defer p.Close()
	alice := &livekit.ParticipantInfo{Identity: "alice"}
	for i := 0; i < 3; i++ {
		p.HandleEvent(event("participant_left", "r", alice))
		p.HandleEvent(event("participant_joined", "r", alice))
	}
	p.Wait()
	want := []string{"stop r/alice", "start r/alice", "stop r/alice", "start r/alice", "stop r/alice", "start r/alice"}
	if got := rec.got(); !slices.Equal(got, want) {
		t.Errorf("calls %q, want %q", got, want)
	}
	p.mu.Lock()
	left := len(p.tail)
	p.mu.Unlock()
	if left != 0 {
		t.Errorf("%d participant queues left after the events", left)
	}
}

// LiveKit's server API being down does not lose a participant_joined: the
// recording is armed and waits for the participant.
func TestJoinedRecordsWhenTheCheckFails(t *testing.T) {
	rec := &fakeRecorder{startFn: func(wait bool) error {
		if !wait {
			return recorder.ErrLookup
		}
		return nil
	}}
	p := New(rec, Options{Enabled: true, Logger: quiet()})
	defer p.Close()
	p.HandleEvent(event("participant_joined", "r", &livekit.ParticipantInfo{Identity: "alice"}))
	p.Wait()
	if got, want := rec.got(), []string{"start r/alice", "start-wait r/alice"}; !slices.Equal(got, want) {
		t.Errorf("calls %q, want %q", got, want)
	}
}

// A participant already gone is not recorded, and nothing is retried.
func TestJoinedForSomeoneGone(t *testing.T) {
	rec := &fakeRecorder{startFn: func(bool) error { return errors.Join(recorder.ErrNoParticipant) }}
	p := New(rec, Options{Enabled: true, Logger: quiet()})
	defer p.Close()
	p.HandleEvent(event("participant_joined", "r", &livekit.ParticipantInfo{Identity: "alice"}))
	p.Wait()
	if got, want := rec.got(), []string{"start r/alice"}; !slices.Equal(got, want) {
		t.Errorf("calls %q, want %q", got, want)
	}
}

// A start refused for capacity is kept for later when the policy can (a
// fleet), and only then; other failures are not.
func TestJoinedWhileFull(t *testing.T) {
	for _, tc := range []struct {
		name  string
		err   error
		later bool
		want  []string
	}{
		{"full, with later", recorder.ErrFull, true, []string{"start r/alice", "later r/alice"}},
		{"full, alone", recorder.ErrFull, false, []string{"start r/alice"}},
		{"unavailable", recorder.ErrUnavailable, true, []string{"start r/alice"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &fakeRecorder{startFn: func(bool) error { return fmt.Errorf("fleet: %w", tc.err) }}
			o := Options{Enabled: true, Logger: quiet()}
			if tc.later {
				o.Later = func(_ context.Context, room, identity string) error {
					rec.log("later " + room + "/" + identity)
					return nil
				}
			}
			p := New(rec, o)
			defer p.Close()
			p.HandleEvent(event("participant_joined", "r", &livekit.ParticipantInfo{Identity: "alice"}))
			p.Wait()
			if got := rec.got(); !slices.Equal(got, tc.want) {
				t.Errorf("calls %q, want %q", got, tc.want)
			}
		})
	}
}

// A participant_joined of a new session that overtook the participant_left
// of the old one: the left stops nothing. In arrival order, it does.
func TestLeftOfAnOlderSession(t *testing.T) {
	s1 := &livekit.ParticipantInfo{Identity: "alice", Sid: "PA_1"}
	s2 := &livekit.ParticipantInfo{Identity: "alice", Sid: "PA_2"}
	cases := []struct {
		name   string
		events []*livekit.WebhookEvent
		want   []string
	}{
		{"in order", []*livekit.WebhookEvent{event("participant_joined", "r", s1), event("participant_left", "r", s1), event("participant_joined", "r", s2)},
			[]string{"start r/alice", "stop r/alice", "start r/alice"}},
		{"joined overtook left", []*livekit.WebhookEvent{event("participant_joined", "r", s1), event("participant_joined", "r", s2), event("participant_left", "r", s1)},
			[]string{"start r/alice", "start r/alice"}},
		{"the new session leaves too", []*livekit.WebhookEvent{event("participant_joined", "r", s2), event("participant_left", "r", s1), event("participant_left", "r", s2)},
			[]string{"start r/alice", "stop r/alice"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &fakeRecorder{} // the bot sees nobody yet
			p := New(rec, Options{Enabled: true, Logger: quiet()})
			defer p.Close()
			for _, ev := range tc.events {
				p.HandleEvent(ev)
			}
			p.Wait()
			if got := rec.got(); !slices.Equal(got, tc.want) {
				t.Errorf("calls %q, want %q", got, tc.want)
			}
		})
	}
}
