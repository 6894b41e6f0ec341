package bot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"
	sdkinterceptor "github.com/livekit/server-sdk-go/v2/pkg/interceptor"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// Config says where and as whom a bot joins.
type Config struct {
	URL       string // ws:// or wss:// signal URL
	APIKey    string
	APISecret string
	// Identity is the bot's own identity. It must differ between instances
	// sharing a room: LiveKit disconnects the older of two equal identities.
	Identity string
	Logger   *slog.Logger
	// ReconnectTimeout bounds the SDK's own attempts to resume a dropped
	// connection (default 5 s; a resume takes one or two). The SDK can
	// stall half-reconnected after a server restart; past this the bot
	// gives up and reports the loss as recoverable, so a fresh bot can
	// take over.
	ReconnectTimeout time.Duration
}

// defaultReconnectTimeout applies when Config.ReconnectTimeout is not set.
const defaultReconnectTimeout = 5 * time.Second

// TrackInfo describes a subscribed track.
type TrackInfo struct {
	Room            string
	RoomSID         string
	Participant     string // identity
	ParticipantSID  string
	ParticipantName string
	TrackSID        string
	Source          string // microphone, screen_share_audio, unknown
	MimeType        string
	// Muted says the publication was muted when it was subscribed (later
	// changes reach a MuteHandler).
	Muted bool
	// Subscription numbers one subscription the bot handed over: unique in
	// the process (across bots and rooms), never zero, and the same in the
	// TrackEnded that ends this subscription. A track that is unsubscribed
	// and subscribed again keeps its TrackSID but gets a new number, so a
	// late end of the old subscription never matches the new one.
	Subscription uint64
}

// RTPReader is the part of *webrtc.TrackRemote a Track reads from.
type RTPReader interface {
	ReadRTP() (*rtp.Packet, interceptor.Attributes, error)
	SetReadDeadline(time.Time) error
}

// Track is a subscribed audio track. Exactly one goroutine reads it.
type Track struct {
	Info   TrackInfo
	Remote RTPReader
}

// rawReader is *webrtc.TrackRemote's Read: a packet into the caller's
// buffer, no allocation.
type rawReader interface {
	Read(b []byte) (int, interceptor.Attributes, error)
}

// ReadInto reads the next RTP packet into p, its payload inside buf, and
// returns the time it was read, which is the arrival time the timeline is
// anchored on. p and buf are the caller's to reuse: the
// packet is valid until the next read. A Remote without a raw Read (a split
// subscription) hands over its own packet, shared, which p then points to.
func (t *Track) ReadInto(p *rtp.Packet, buf []byte) (time.Time, error) {
	if r, ok := t.Remote.(rawReader); ok {
		n, _, err := r.Read(buf)
		at := time.Now()
		if err != nil {
			return at, err
		}
		return at, p.Unmarshal(buf[:n])
	}
	q, _, err := t.Remote.ReadRTP()
	at := time.Now()
	if err != nil {
		return at, err
	}
	*p = *q
	return at, nil
}

// SetReadDeadline unblocks ReadRTP at the given time; packets already
// buffered are still returned before it.
func (t *Track) SetReadDeadline(at time.Time) error {
	return t.Remote.SetReadDeadline(at)
}

// Handler receives the bot's events. Calls may come from SDK goroutines and
// must not block.
type Handler interface {
	// TrackSubscribed hands over a new track of a recorded participant. It
	// returns false when nobody will read it, and the bot unsubscribes.
	TrackSubscribed(t *Track) bool
	// TrackEnded says a subscription TrackSubscribed handed over (and the
	// handler took) ended: the track was unpublished, or unsubscribed other
	// than by Forget. info is the handed-over TrackInfo, Subscription
	// included. It is called at most once per subscription, never before
	// the TrackSubscribed that handed it over has returned.
	TrackEnded(info TrackInfo)
	// ParticipantJoined says a recorded participant is (again) in the room.
	ParticipantJoined(identity string)
	// ParticipantLeft says a recorded participant left and no other session
	// of it is in the room. intentional is true when the participant itself
	// asked to leave, false for a dropped connection that may come back.
	ParticipantLeft(identity string, intentional bool)
	// Disconnected says the bot lost the room. recoverable is false when
	// the room is gone or the bot was removed on purpose, true when the
	// connection to LiveKit failed (a server restart, a network partition)
	// and a new bot may join again. It is not called after Leave.
	Disconnected(reason string, recoverable bool)
}

// MuteHandler is a Handler that also hears publishers mute and unmute
// their tracks (LiveKit's signal, not a gap in the media).
type MuteHandler interface {
	TrackMuted(identity, trackSID string, muted bool)
}

func (b *Bot) muted(identity, sid string, muted bool) {
	if mh, ok := b.h.(MuteHandler); ok && b.wantsTrack(identity, sid) {
		mh.TrackMuted(identity, sid, muted)
	}
}

// subscriptionIDs numbers subscriptions for the whole process. It is the
// package's one piece of shared state: TrackInfo.Subscription must not
// repeat across bots, since a room's replacement bot can subscribe to the
// same track SIDs as the bot it replaces.
var subscriptionIDs atomic.Uint64

// Bot is one participant in one room.
type Bot struct {
	cfg  Config
	h    Handler
	log  *slog.Logger
	room room
	name string

	// handover orders track events for the handler: a subscription is
	// handed over and recorded in subs under it, and ended under it, so a
	// TrackEnded never overtakes the TrackSubscribed it ends. Only track
	// callbacks take it, never the methods the handler may call.
	handover sync.Mutex

	mu     sync.Mutex
	wanted map[string]*selection // by identity
	// requested holds the track SIDs the bot asked to receive. The SDK's own
	// IsSubscribed stays true after an unsubscribe, so it cannot tell.
	requested map[string]bool
	// subs holds the subscriptions handed over and not ended yet, by the
	// remote track the SDK delivered: a late unsubscribe of an older
	// subscription of a track SID names its own remote, not the new one.
	subs    map[remoteTrack]TrackInfo
	leaving bool
	// watchdog ends a reconnect that takes longer than ReconnectTimeout.
	// armed numbers the watchdogs, so one that fires as it is disarmed can
	// tell it is no longer the current one.
	watchdog *time.Timer
	armed    uint64
}

// ErrUnreachable wraps failures to join through LiveKit: connection refused,
// TLS or signalling failures, a refused token.
var ErrUnreachable = errors.New("could not join LiveKit")

func newBot(cfg Config, roomName string, h Handler) *Bot {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Bot{
		cfg:       cfg,
		h:         h,
		name:      roomName,
		wanted:    map[string]*selection{},
		requested: map[string]bool{},
		subs:      map[remoteTrack]TrackInfo{},
		log:       log.With("room", roomName),
	}
}

// Join connects a bot to room and returns once it has joined. ctx bounds the
// join. Errors wrap ErrUnreachable when LiveKit cannot be reached, and
// context.DeadlineExceeded when the join was too slow.
func Join(ctx context.Context, cfg Config, room string, h Handler) (*Bot, error) {
	b := newBot(cfg, room, h)
	token, err := b.token(room)
	if err != nil {
		return nil, fmt.Errorf("bot token: %w", err)
	}
	// The room is in place before the join: the SDK reports the
	// participants already there while it joins.
	lkroom := lksdk.NewRoom(b.callbacks())
	b.room = sdkRoom{lkroom}
	opts := []lksdk.ConnectOption{lksdk.WithAutoSubscribe(false), lksdk.WithLogger(sdkLogger(b.log)),
		// A subscribe-only recorder needs none of the SDK's default
		// interceptors but NACK generation: the others serve sending
		// (retransmission, pacing, size limits), bandwidth estimation
		// (transport-wide feedback) and reports nobody here reads, and
		// each costs work on every packet.
		lksdk.WithInterceptors([]interceptor.Factory{&sdkinterceptor.NackGeneratorInterceptorFactory{}}),
		lksdk.WithIncludeDefaultInterceptors(false)}
	if dl, ok := ctx.Deadline(); ok {
		opts = append(opts, lksdk.WithConnectTimeout(time.Until(dl)))
	}
	joined := make(chan error, 1)
	go func() { joined <- lkroom.JoinWithContextAndToken(ctx, cfg.URL, token, opts...) }()
	select {
	case err = <-joined:
	case <-ctx.Done():
		// The SDK may not give up at once; make sure a late join leaves.
		go func() {
			if <-joined == nil {
				lkroom.Disconnect()
			}
		}()
		return nil, fmt.Errorf("join room %q: %w", room, ctx.Err())
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("join room %q: %w", room, ctx.Err())
		}
		return nil, fmt.Errorf("join room %q: %w: %w", room, ErrUnreachable, err)
	}
	b.log.Info("bot joined", "identity", cfg.Identity, "room_sid", lkroom.SID())
	return b, nil
}

func (b *Bot) token(room string) (string, error) {
	no, yes := false, true
	return auth.NewAccessToken(b.cfg.APIKey, b.cfg.APISecret).
		SetVideoGrant(&auth.VideoGrant{
			RoomJoin:       true,
			Room:           room,
			Hidden:         true,
			Recorder:       true,
			CanPublish:     &no,
			CanPublishData: &no,
			CanSubscribe:   &yes,
		}).
		SetIdentity(b.cfg.Identity).
		SetKind(livekit.ParticipantInfo_EGRESS).
		SetValidFor(24 * time.Hour).
		ToJWT()
}

// selection is what the bot records of one participant: all their audio,
// and tracks named one by one (track egresses).
type selection struct {
	all    bool
	tracks map[string]bool
}

func (s *selection) has(sid string) bool { return s != nil && (s.all || s.tracks[sid]) }
func (s *selection) empty() bool         { return s == nil || !s.all && len(s.tracks) == 0 }

// sel is identity's selection, made when missing; the caller holds b.mu.
func (b *Bot) sel(identity string) *selection {
	s := b.wanted[identity]
	if s == nil {
		s = &selection{tracks: map[string]bool{}}
		b.wanted[identity] = s
	}
	return s
}

// Record subscribes to the audio tracks of identity, present and future.
// It reports whether the participant is in the room now.
func (b *Bot) Record(identity string) bool {
	b.mu.Lock()
	b.sel(identity).all = true
	b.mu.Unlock()
	return b.refresh(identity)
}

// RecordTrack subscribes to one audio track of identity (now or once it is
// published). It reports whether the participant is in the room now.
func (b *Bot) RecordTrack(identity, trackSID string) bool {
	b.mu.Lock()
	b.sel(identity).tracks[trackSID] = true
	b.mu.Unlock()
	return b.refresh(identity)
}

// refresh asks for what identity's selection holds, if they are here.
func (b *Bot) refresh(identity string) bool {
	rp := b.room.participant(identity)
	if rp == nil {
		return false
	}
	b.subscribeAll(rp)
	return true
}

// Forget unsubscribes from identity's tracks but those named by
// RecordTrack. Their tracks end with EOF or the reader's deadline;
// TrackEnded is not called for them.
func (b *Bot) Forget(identity string) {
	b.mu.Lock()
	if s := b.wanted[identity]; s != nil {
		s.all = false
	}
	b.mu.Unlock()
	b.drop(identity)
}

// ForgetTrack unsubscribes from one track named by RecordTrack, unless
// Record still wants all of identity's audio.
func (b *Bot) ForgetTrack(identity, trackSID string) {
	b.mu.Lock()
	if s := b.wanted[identity]; s != nil {
		delete(s.tracks, trackSID)
	}
	b.mu.Unlock()
	b.drop(identity)
}

// drop lets go of what identity's selection no longer holds.
func (b *Bot) drop(identity string) {
	b.mu.Lock()
	s := b.wanted[identity]
	if s.empty() {
		delete(b.wanted, identity)
		s = nil
	}
	for remote, info := range b.subs {
		if info.Participant == identity && !s.has(info.TrackSID) {
			delete(b.subs, remote)
		}
	}
	b.mu.Unlock()
	rp := b.room.participant(identity)
	if rp == nil {
		return
	}
	for _, pub := range rp.publications() {
		if !s.has(pub.SID()) {
			b.unsubscribe(pub, identity)
		}
	}
}

// Resubscribe lets go of identity's track sid and asks for it again, so
// that a new subscription is handed over (to recordings that now share it).
func (b *Bot) Resubscribe(identity, sid string) {
	rp := b.room.participant(identity)
	if rp == nil {
		return
	}
	for _, pub := range rp.publications() {
		if pub.SID() != sid {
			continue
		}
		b.unsubscribe(pub, identity)
		// Asked for again once the server had the unsubscribe (the SDK
		// does not always report it); a request made meanwhile (by the
		// unsubscribe's event) is not made twice.
		time.AfterFunc(resubscribeAfter, func() { b.subscribe(pub, rp) })
	}
}

// resubscribeAfter is how long Resubscribe leaves the server to unsubscribe.
const resubscribeAfter = 300 * time.Millisecond

// Publishes says whether identity is in the room now publishing the track
// sid.
func (b *Bot) Publishes(identity, sid string) bool {
	rp := b.room.participant(identity)
	return rp != nil && published(rp, sid)
}

// Present says whether identity is in the room now.
func (b *Bot) Present(identity string) bool {
	return b.room.participant(identity) != nil
}

// ParticipantSID is the SID of identity's current session in the room as
// the bot sees it, "" when identity is not in the room. A participant that
// reconnects gets a new SID, so an event naming an older SID is stale.
func (b *Bot) ParticipantSID(identity string) string {
	if rp := b.room.participant(identity); rp != nil {
		return rp.SID()
	}
	return ""
}

// Leave disconnects the bot. It is safe to call more than once.
func (b *Bot) Leave() {
	b.mu.Lock()
	if b.leaving {
		b.mu.Unlock()
		return
	}
	b.leaving = true
	if b.watchdog != nil {
		b.watchdog.Stop()
	}
	b.mu.Unlock()
	b.room.Disconnect()
	b.log.Info("bot left")
}

// SID is the room's session id.
func (b *Bot) SID() string { return b.room.SID() }

// left says the bot is leaving or gave up: a dead connection's late
// events must not reach the handler, which may serve a new bot by now.
func (b *Bot) left() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.leaving
}

// wants says whether anything of identity is recorded.
func (b *Bot) wants(identity string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.wanted[identity].empty() && !b.leaving
}

// wantsTrack says whether identity's track sid is recorded.
func (b *Bot) wantsTrack(identity, sid string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.wanted[identity].has(sid) && !b.leaving
}

// subscribeAll asks for every publication of rp the rules allow.
func (b *Bot) subscribeAll(rp participant) {
	for _, pub := range rp.publications() {
		b.subscribe(pub, rp)
	}
}

// subscribe asks for pub if it is audio of a recorded participant and not
// asked for already.
func (b *Bot) subscribe(pub publication, rp participant) {
	if pub.Kind() != lksdk.TrackKindAudio {
		return
	}
	sid := pub.SID()
	b.mu.Lock()
	ask := b.wanted[rp.Identity()].has(sid) && !b.leaving && !b.requested[sid]
	if ask {
		b.requested[sid] = true
	}
	b.mu.Unlock()
	if !ask {
		return
	}
	if err := pub.SetSubscribed(true); err != nil {
		b.mu.Lock()
		delete(b.requested, sid)
		b.mu.Unlock()
		b.log.Error("subscribe failed", "participant", rp.Identity(), "track", sid, "err", err)
		return
	}
	b.log.Debug("subscribing", "participant", rp.Identity(), "track", sid, "source", source(pub))
}

// unsubscribe lets go of pub if the bot asked for it.
func (b *Bot) unsubscribe(pub publication, identity string) {
	sid := pub.SID()
	b.mu.Lock()
	had := b.requested[sid]
	delete(b.requested, sid)
	b.mu.Unlock()
	if !had {
		return
	}
	if err := pub.SetSubscribed(false); err != nil {
		b.log.Warn("unsubscribe failed", "participant", identity, "track", sid, "err", err)
	}
}

func (b *Bot) forgetTrack(sid string) {
	b.mu.Lock()
	delete(b.requested, sid)
	b.mu.Unlock()
}

func (b *Bot) onTrackPublished(pub publication, rp participant) {
	b.subscribe(pub, rp)
}

func (b *Bot) onTrackSubscribed(track remoteTrack, pub publication, rp participant) {
	if track.Kind() != webrtc.RTPCodecTypeAudio {
		return
	}
	info := b.info(track, pub, rp)
	info.Subscription = subscriptionIDs.Add(1)
	// Subscribed before a Forget landed, or nobody to read it: let go.
	if !b.handOver(track, info) {
		b.unsubscribe(pub, rp.Identity())
	}
}

// handOver gives a new subscription to the handler and, when it is taken,
// remembers it until it ends.
func (b *Bot) handOver(track remoteTrack, info TrackInfo) bool {
	b.handover.Lock()
	defer b.handover.Unlock()
	if !b.wantsTrack(info.Participant, info.TrackSID) || !b.h.TrackSubscribed(&Track{Info: info, Remote: track}) {
		return false
	}
	b.mu.Lock()
	// A Forget during the handover already let go of it.
	if b.wanted[info.Participant].has(info.TrackSID) && !b.leaving {
		b.subs[track] = info
	}
	b.mu.Unlock()
	return true
}

// end reports the end of the handed-over subscriptions that match.
func (b *Bot) end(match func(remoteTrack, TrackInfo) bool) {
	b.handover.Lock()
	defer b.handover.Unlock()
	var ended []TrackInfo
	b.mu.Lock()
	for remote, info := range b.subs {
		if match(remote, info) {
			ended = append(ended, info)
			delete(b.subs, remote)
		}
	}
	b.mu.Unlock()
	for _, info := range ended {
		b.h.TrackEnded(info)
	}
}

func (b *Bot) onTrackUnsubscribed(track remoteTrack, pub publication, rp participant) {
	if pub.Kind() != lksdk.TrackKindAudio || b.left() {
		return
	}
	sid := pub.SID()
	b.forgetTrack(sid)
	b.end(func(remote remoteTrack, _ TrackInfo) bool { return remote == track })
	// An unsubscribe that lands after the participant was asked for again
	// (a stop quickly followed by a start) must not leave a published track
	// unsubscribed: ask for it again. Not for a session that left (the SDK
	// unsubscribes its tracks while they are still listed): a new session
	// brings new publications.
	if b.wantsTrack(rp.Identity(), sid) && published(rp, sid) && b.ParticipantSID(rp.Identity()) == rp.SID() {
		b.subscribe(pub, rp)
	}
}

func published(rp participant, sid string) bool {
	for _, p := range rp.publications() {
		if p.SID() == sid {
			return true
		}
	}
	return false
}

func (b *Bot) onTrackUnpublished(pub publication, _ participant) {
	if pub.Kind() != lksdk.TrackKindAudio || b.left() {
		return
	}
	sid := pub.SID()
	b.forgetTrack(sid)
	// The SDK reports the unsubscribe of a subscribed track first; this
	// ends what is left, a subscription whose remote it no longer names.
	b.end(func(_ remoteTrack, info TrackInfo) bool { return info.TrackSID == sid })
}

func (b *Bot) onTrackSubscriptionFailed(sid string, rp participant) {
	// Forget the request so a later publication event can ask again.
	b.forgetTrack(sid)
	b.log.Error("track subscription failed", "participant", rp.Identity(), "track", sid)
}

func (b *Bot) onParticipantConnected(rp participant) {
	if !b.wants(rp.Identity()) {
		return
	}
	b.h.ParticipantJoined(rp.Identity())
	// Publications that arrived with the participant were offered before this
	// callback; subscribe to any the bot has not asked for yet.
	b.subscribeAll(rp)
}

func (b *Bot) onParticipantDisconnected(rp participant) {
	if !b.wants(rp.Identity()) {
		return
	}
	// The SDK removes a participant before reporting it gone, so one still
	// there is a newer session of the same identity (a reconnect that
	// overtook this event): nothing left.
	if b.Present(rp.Identity()) {
		b.log.Info("participant session replaced", "participant", rp.Identity(), "old_sid", rp.SID())
		return
	}
	intentional := rp.DisconnectReason() == livekit.DisconnectReason_CLIENT_INITIATED
	b.h.ParticipantLeft(rp.Identity(), intentional)
}

func (b *Bot) onDisconnected(reason lksdk.DisconnectionReason) {
	b.mu.Lock()
	leaving := b.leaving
	b.leaving = true
	if b.watchdog != nil {
		b.watchdog.Stop()
	}
	b.mu.Unlock()
	if leaving {
		return
	}
	raw := b.room.DisconnectReason()
	recoverable := recoverable(raw)
	b.log.Warn("bot disconnected", "reason", string(reason), "detail", raw.String(), "recoverable", recoverable)
	b.h.Disconnected(fmt.Sprintf("%s (%s)", reason, raw), recoverable)
}

// recoverable says whether a disconnect may be undone by joining again: not
// when the room is gone or someone removed the bot on purpose.
func recoverable(r livekit.DisconnectReason) bool {
	switch r {
	case livekit.DisconnectReason_ROOM_DELETED, livekit.DisconnectReason_ROOM_CLOSED,
		livekit.DisconnectReason_PARTICIPANT_REMOVED, livekit.DisconnectReason_DUPLICATE_IDENTITY,
		livekit.DisconnectReason_CLIENT_INITIATED:
		return false
	}
	return true
}

// onReconnecting arms the watchdog: the SDK gets ReconnectTimeout to
// resume or restart the connection.
func (b *Bot) onReconnecting() {
	b.log.Warn("bot reconnecting")
	wait := b.cfg.ReconnectTimeout
	if wait <= 0 {
		wait = defaultReconnectTimeout
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.leaving || b.watchdog != nil {
		return
	}
	b.armed++
	n := b.armed
	b.watchdog = time.AfterFunc(wait, func() { b.giveUp(n) })
}

// onReconnected disarms the watchdog and asks again for every wanted
// participant's audio: after a full restart the server has new
// publications, and the SDK does not always announce them.
func (b *Bot) onReconnected() {
	b.log.Info("bot reconnected")
	b.mu.Lock()
	if b.watchdog != nil {
		b.watchdog.Stop()
		b.watchdog = nil
	}
	ids := slices.Sorted(maps.Keys(b.wanted))
	// A restarted session has no subscriptions even where the track ids
	// are the same: ask for everything again (the SDK ignores a request
	// for a track it is subscribed to already).
	clear(b.requested)
	b.mu.Unlock()
	for _, id := range ids {
		b.refresh(id)
	}
}

// giveUp ends a reconnect that did not finish in time; n is the watchdog
// that fired, ignored if a reconnect disarmed it meanwhile.
func (b *Bot) giveUp(n uint64) {
	b.mu.Lock()
	if b.leaving || b.watchdog == nil || b.armed != n {
		b.mu.Unlock()
		return
	}
	b.leaving = true
	b.mu.Unlock()
	b.log.Warn("bot reconnect timed out; leaving for a fresh join")
	go b.room.Disconnect()
	b.h.Disconnected("reconnect timed out", true)
}

// info describes a subscribed track; its codec is the one the SFU sends.
func (b *Bot) info(track remoteTrack, pub publication, rp participant) TrackInfo {
	return TrackInfo{
		Room:            b.name,
		RoomSID:         b.room.SID(),
		Participant:     rp.Identity(),
		ParticipantSID:  rp.SID(),
		ParticipantName: rp.Name(),
		TrackSID:        pub.SID(),
		Source:          source(pub),
		MimeType:        track.Codec().MimeType,
		Muted:           pub.IsMuted(),
	}
}

func source(pub publication) string {
	return strings.ToLower(pub.Source().String())
}
