package recorder

import (
	"context"
	"errors"
	"path"
	"strings"
	"time"

	"github.com/livekit/protocol/livekit"
)

// BotIdentityPrefix starts every bot identity of this service; participants
// with it are never recorded.
const BotIdentityPrefix = "recorder-"

// AutoRecord is the policy for LiveKit's webhooks.
type AutoRecord struct {
	// Enabled starts a recording on participant_joined.
	Enabled bool
	// Rooms, if set, limits auto-recording to rooms matching one of these
	// globs (path.Match syntax: *, ?, [a-z]).
	Rooms []string
	// IgnoreIdentities are globs of identities never auto-recorded.
	IgnoreIdentities []string
}

// eventTimeout bounds the work one webhook event starts.
const eventTimeout = 30 * time.Second

// HandleEvent acts on a verified LiveKit webhook event in the background
// (LiveKit expects a quick answer and retries on failure; start and stop are
// idempotent, so a retried event does no harm). It reports whether the
// event is one the recorder acts on.
func (s *Supervisor) HandleEvent(ev *livekit.WebhookEvent) bool {
	room := ev.GetRoom().GetName()
	p := ev.GetParticipant()
	var act func(ctx context.Context)
	switch ev.GetEvent() {
	case "participant_joined":
		if !s.opts.Auto.Enabled || !s.recordable(room, p) {
			return false
		}
		act = func(ctx context.Context) { s.autoStart(ctx, room, p.GetIdentity()) }
	case "participant_left":
		if p == nil || room == "" {
			return false
		}
		act = func(ctx context.Context) {
			if _, err := s.Stop(ctx, room, p.GetIdentity()); err != nil && !errors.Is(err, ErrNotFound) {
				s.log.Warn("webhook: stop failed", "room", room, "participant", p.GetIdentity(), "err", err)
			}
		}
	case "track_published":
		if p == nil || room == "" || ev.GetTrack().GetType() != livekit.TrackType_AUDIO {
			return false
		}
		act = func(context.Context) { s.refresh(room, p.GetIdentity()) }
	case "room_finished":
		if room == "" {
			return false
		}
		act = func(ctx context.Context) { s.StopRoom(ctx, room, "room finished") }
	default:
		return false
	}
	s.events.Add(1)
	go func() {
		defer s.events.Done()
		ctx, cancel := context.WithTimeout(s.life, eventTimeout)
		defer cancel()
		act(ctx)
	}()
	return true
}

// recordable filters out what must never be recorded: bots (ours by
// identity prefix, any recorder, egress or agent by kind or permission),
// hidden participants, and what the allow/deny rules exclude.
func (s *Supervisor) recordable(room string, p *livekit.ParticipantInfo) bool {
	if p == nil || room == "" || p.GetIdentity() == "" {
		return false
	}
	id := p.GetIdentity()
	switch {
	case strings.HasPrefix(id, BotIdentityPrefix):
		return false
	case p.GetKind() == livekit.ParticipantInfo_EGRESS || p.GetKind() == livekit.ParticipantInfo_AGENT:
		return false
	case p.GetPermission().GetHidden() || p.GetPermission().GetRecorder() || p.GetPermission().GetAgent():
		return false
	}
	if len(s.opts.Auto.Rooms) > 0 && !matchAny(s.opts.Auto.Rooms, room) {
		return false
	}
	return !matchAny(s.opts.Auto.IgnoreIdentities, id)
}

func matchAny(globs []string, name string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

func (s *Supervisor) autoStart(ctx context.Context, room, identity string) {
	log := s.log.With("room", room, "participant", identity)
	// Start checks the room's live state (Options.Lookup), so a late
	// participant_joined for someone who already left starts nothing.
	_, created, err := s.Start(ctx, room, identity)
	if errors.Is(err, ErrLookup) {
		// LiveKit just sent the event, so the participant most likely is
		// there: better a recording that waits than a lost one.
		log.Warn("webhook: cannot check the room; recording anyway", "err", err)
		_, created, err = s.Start(ctx, room, identity, WaitForParticipant())
	}
	switch {
	case errors.Is(err, ErrNoRoom) || errors.Is(err, ErrNoParticipant):
		log.Info("webhook: participant already gone; not recording", "err", err)
	case err != nil:
		log.Error("webhook: start failed", "err", err)
	case created:
		log.Info("webhook: recording started")
	}
}

// refresh makes the room's bot subscribe to any audio of identity it lacks.
func (s *Supervisor) refresh(room, identity string) {
	s.mu.Lock()
	rm := s.rooms[room]
	var b Bot
	if rm != nil && rm.recs[identity] != nil {
		b = rm.bot
	}
	s.mu.Unlock()
	if b != nil {
		b.Record(identity)
	}
}

// StopRoom stops every recording of room.
func (s *Supervisor) StopRoom(ctx context.Context, room, reason string) {
	s.mu.Lock()
	var recs []*Recording
	if rm := s.rooms[room]; rm != nil {
		recs = rm.list()
	}
	s.mu.Unlock()
	for _, r := range recs {
		if r.waitJoined(ctx) == nil {
			s.stop(ctx, r, reason)
		}
	}
}
