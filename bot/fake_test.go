package bot

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// fakeRoom stands in for *lksdk.Room. It logs every SetSubscribed call of
// its publications, in order.
type fakeRoom struct {
	mu          sync.Mutex
	sid         string
	reason      livekit.DisconnectReason
	parts       map[string]*fakeParticipant
	calls       []string // "sub TR_x", "unsub TR_x"
	disconnects int
}

func (r *fakeRoom) SID() string { return r.sid }

func (r *fakeRoom) participant(identity string) participant {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p := r.parts[identity]; p != nil {
		return p
	}
	return nil
}

func (r *fakeRoom) DisconnectReason() livekit.DisconnectReason {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reason
}

func (r *fakeRoom) Disconnect() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.disconnects++
}

func (r *fakeRoom) subscribeCalls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

func (r *fakeRoom) disconnectCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.disconnects
}

type fakeParticipant struct {
	room          *fakeRoom
	identity, sid string
	reason        livekit.DisconnectReason
	pubs          []*fakePub // guarded by room.mu
}

func (p *fakeParticipant) Identity() string { return p.identity }
func (p *fakeParticipant) SID() string      { return p.sid }
func (p *fakeParticipant) Name() string     { return "Name of " + p.identity }

func (p *fakeParticipant) DisconnectReason() livekit.DisconnectReason {
	p.room.mu.Lock()
	defer p.room.mu.Unlock()
	return p.reason
}

func (p *fakeParticipant) publications() []publication {
	p.room.mu.Lock()
	defer p.room.mu.Unlock()
	pubs := make([]publication, len(p.pubs))
	for i, pub := range p.pubs {
		pubs[i] = pub
	}
	return pubs
}

type fakePub struct {
	room   *fakeRoom
	sid    string
	kind   lksdk.TrackKind
	source livekit.TrackSource
	muted  bool
	fail   error // what SetSubscribed returns
}

func (p *fakePub) SID() string                 { return p.sid }
func (p *fakePub) Kind() lksdk.TrackKind       { return p.kind }
func (p *fakePub) Source() livekit.TrackSource { return p.source }
func (p *fakePub) IsMuted() bool               { return p.muted }

func (p *fakePub) SetSubscribed(on bool) error {
	p.room.mu.Lock()
	defer p.room.mu.Unlock()
	call := "unsub "
	if on {
		call = "sub "
	}
	p.room.calls = append(p.room.calls, call+p.sid)
	return p.fail
}

// fakeTrack stands in for *webrtc.TrackRemote.
type fakeTrack struct {
	kind webrtc.RTPCodecType
	mime string
}

func (t *fakeTrack) ReadRTP() (*rtp.Packet, interceptor.Attributes, error) { return nil, nil, io.EOF }
func (t *fakeTrack) SetReadDeadline(time.Time) error                       { return nil }
func (t *fakeTrack) Kind() webrtc.RTPCodecType                             { return t.kind }
func (t *fakeTrack) Codec() webrtc.RTPCodecParameters {
	return webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: t.mime}}
}

// fakeHandler logs the bot's events as text. Subscriptions are shown by
// the order they were first handed over (#1, #2, ...), since their numbers
// are process-wide; #? is a number never handed over, #0 a missing one.
type fakeHandler struct {
	mu      sync.Mutex
	start   time.Time
	refuse  bool // TrackSubscribed returns false
	events  []string
	at      []time.Duration
	numbers map[uint64]int
	handed  map[uint64]TrackInfo
	tracks  []*Track
}

func newFakeHandler() *fakeHandler {
	return &fakeHandler{start: time.Now(), numbers: map[uint64]int{}, handed: map[uint64]TrackInfo{}}
}

func (h *fakeHandler) log(format string, args ...any) {
	h.events = append(h.events, fmt.Sprintf(format, args...))
	h.at = append(h.at, time.Since(h.start))
}

func (h *fakeHandler) ordinal(n uint64) string {
	if n == 0 {
		return "#0"
	}
	if i, ok := h.numbers[n]; ok {
		return fmt.Sprintf("#%d", i)
	}
	return "#?"
}

func (h *fakeHandler) TrackSubscribed(t *Track) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, seen := h.numbers[t.Info.Subscription]; !seen && t.Info.Subscription != 0 {
		h.numbers[t.Info.Subscription] = len(h.numbers) + 1
	}
	what := "subscribed"
	if h.refuse {
		what = "refused"
	} else {
		h.handed[t.Info.Subscription] = t.Info
	}
	h.tracks = append(h.tracks, t)
	h.log("%s %s %s %s", what, t.Info.Participant, t.Info.TrackSID, h.ordinal(t.Info.Subscription))
	return !h.refuse
}

func (h *fakeHandler) TrackEnded(info TrackInfo) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if handed, ok := h.handed[info.Subscription]; ok && handed != info {
		h.log("ended with changed info %+v, handed over %+v", info, handed)
		return
	}
	h.log("ended %s %s %s", info.Participant, info.TrackSID, h.ordinal(info.Subscription))
}

func (h *fakeHandler) ParticipantJoined(identity string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.log("joined %s", identity)
}

func (h *fakeHandler) ParticipantLeft(identity string, intentional bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	how := "dropped"
	if intentional {
		how = "intentional"
	}
	h.log("left %s %s", identity, how)
}

func (h *fakeHandler) Disconnected(reason string, recoverable bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.log("disconnected %q recoverable=%v", reason, recoverable)
}

// mark puts "--" in the log, to tell which step an event came from.
func (e *env) mark() {
	e.h.mu.Lock()
	defer e.h.mu.Unlock()
	e.h.log("--")
}

func (h *fakeHandler) eventLog() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.events)
}

// timedLog is the event log with each event's time since the handler was
// made, for tests on a synctest clock.
func (h *fakeHandler) timedLog() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, len(h.events))
	for i, e := range h.events {
		out[i] = fmt.Sprintf("%v %s", h.at[i], e)
	}
	return out
}

// env is a bot in a fake room, with helpers that replay what the SDK does
// on each room event.
type env struct {
	t    *testing.T
	room *fakeRoom
	h    *fakeHandler
	b    *Bot
	// delivered is the remote track each publication was last subscribed
	// with, which the SDK names when it reports the unsubscribe.
	delivered map[*fakePub]*fakeTrack
}

func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	cfg.Logger = slog.New(slog.DiscardHandler)
	room := &fakeRoom{sid: "RM_1", parts: map[string]*fakeParticipant{}}
	h := newFakeHandler()
	b := newBot(cfg, "r", h)
	b.room = room
	return &env{t: t, room: room, h: h, b: b, delivered: map[*fakePub]*fakeTrack{}}
}

// pub makes a publication: "TR_a" audio from the microphone, "TR_s"
// screen-share audio, "TR_v" video.
func (e *env) pub(sid string, kind lksdk.TrackKind, source livekit.TrackSource) *fakePub {
	return &fakePub{room: e.room, sid: sid, kind: kind, source: source}
}

func (e *env) mic(sid string) *fakePub {
	return e.pub(sid, lksdk.TrackKindAudio, livekit.TrackSource_MICROPHONE)
}

// present puts a participant in the room without any event, as if it was
// there when the bot joined and the bot was not interested yet.
func (e *env) present(identity, sid string, pubs ...*fakePub) *fakeParticipant {
	p := &fakeParticipant{room: e.room, identity: identity, sid: sid, pubs: pubs}
	e.room.mu.Lock()
	e.room.parts[identity] = p
	e.room.mu.Unlock()
	return p
}

// connect is a participant joining: the SDK offers its publications, then
// reports the participant.
func (e *env) connect(identity, sid string, pubs ...*fakePub) *fakeParticipant {
	p := e.present(identity, sid, pubs...)
	for _, pub := range pubs {
		e.b.onTrackPublished(pub, p)
	}
	e.b.onParticipantConnected(p)
	return p
}

// publish is a participant publishing a track.
func (e *env) publish(p *fakeParticipant, pub *fakePub) {
	e.room.mu.Lock()
	p.pubs = append(p.pubs, pub)
	e.room.mu.Unlock()
	e.b.onTrackPublished(pub, p)
}

// deliver is the SDK receiving media for pub.
func (e *env) deliver(p *fakeParticipant, pub *fakePub) *fakeTrack {
	t := &fakeTrack{kind: webrtc.RTPCodecTypeAudio, mime: "audio/opus"}
	if pub.kind == lksdk.TrackKindVideo {
		t = &fakeTrack{kind: webrtc.RTPCodecTypeVideo, mime: "video/VP8"}
	}
	e.delivered[pub] = t
	e.b.onTrackSubscribed(t, pub, p)
	return t
}

// unsubscribed is the SDK reporting that track of pub is no longer received.
func (e *env) unsubscribed(p *fakeParticipant, pub *fakePub, track *fakeTrack) {
	e.b.onTrackUnsubscribed(track, pub, p)
}

// unpublish is a participant unpublishing a track: the SDK drops it, reports
// the unsubscribe when it was receiving it, then the unpublish.
func (e *env) unpublish(p *fakeParticipant, pub *fakePub) {
	e.room.mu.Lock()
	p.pubs = slices.DeleteFunc(p.pubs, func(q *fakePub) bool { return q == pub })
	e.room.mu.Unlock()
	if t := e.delivered[pub]; t != nil {
		e.b.onTrackUnsubscribed(t, pub, p)
	}
	e.b.onTrackUnpublished(pub, p)
}

// leave is a participant's session ending: the SDK drops it from the room,
// reports the unsubscribe of each track it was receiving (the publications
// still listed), then the participant.
func (e *env) leave(p *fakeParticipant, reason livekit.DisconnectReason) {
	e.room.mu.Lock()
	if e.room.parts[p.identity] == p {
		delete(e.room.parts, p.identity)
	}
	p.reason = reason
	pubs := slices.Clone(p.pubs)
	e.room.mu.Unlock()
	for _, pub := range pubs {
		if t := e.delivered[pub]; t != nil {
			e.b.onTrackUnsubscribed(t, pub, p)
		}
	}
	e.b.onParticipantDisconnected(p)
}

func (e *env) record(identity string, wantPresent bool) {
	e.t.Helper()
	if got := e.b.Record(identity); got != wantPresent {
		e.t.Errorf("Record(%q) = %v, want %v", identity, got, wantPresent)
	}
}
