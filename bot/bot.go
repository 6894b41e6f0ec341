// Package bot is a LiveKit participant that joins a room hidden, publishes
// nothing, and subscribes only to the audio tracks of the participants it is
// asked to record. It follows the room (late publishes, republishes,
// reconnects) and reports what happens to a Handler.
package bot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"
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

// ReadRTP returns the next RTP packet and the time it was read, which is the
// arrival time the timeline is anchored on.
func (t *Track) ReadRTP() (*rtp.Packet, time.Time, error) {
	p, _, err := t.Remote.ReadRTP()
	return p, time.Now(), err
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
	// TrackEnded says a track was unpublished or unsubscribed.
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

// Bot is one participant in one room.
type Bot struct {
	cfg  Config
	h    Handler
	log  *slog.Logger
	room *lksdk.Room
	name string

	mu     sync.Mutex
	wanted map[string]bool
	// requested holds the track SIDs the bot asked to receive. The SDK's own
	// IsSubscribed stays true after an unsubscribe, so it cannot tell.
	requested map[string]bool
	leaving   bool
	// watchdog ends a reconnect that takes longer than ReconnectTimeout.
	watchdog *time.Timer
}

// ErrUnreachable wraps failures to join through LiveKit: connection refused,
// TLS or signalling failures, a refused token.
var ErrUnreachable = errors.New("could not join LiveKit")

// Join connects a bot to room and returns once it has joined. ctx bounds the
// join. Errors wrap ErrUnreachable when LiveKit cannot be reached, and
// context.DeadlineExceeded when the join was too slow.
func Join(ctx context.Context, cfg Config, room string, h Handler) (*Bot, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	b := &Bot{cfg: cfg, h: h, name: room, wanted: map[string]bool{}, requested: map[string]bool{}, log: log.With("room", room)}
	token, err := b.token(room)
	if err != nil {
		return nil, fmt.Errorf("bot token: %w", err)
	}
	cb := lksdk.NewRoomCallback()
	cb.ParticipantCallback = lksdk.ParticipantCallback{
		OnTrackPublished:          b.onTrackPublished,
		OnTrackSubscribed:         b.onTrackSubscribed,
		OnTrackUnsubscribed:       b.onTrackUnsubscribed,
		OnTrackUnpublished:        b.onTrackUnpublished,
		OnTrackSubscriptionFailed: b.onTrackSubscriptionFailed,
		OnTrackMuted:              b.onTrackMuted,
		OnTrackUnmuted:            b.onTrackUnmuted,
	}
	cb.OnParticipantConnected = b.onParticipantConnected
	cb.OnParticipantDisconnected = b.onParticipantDisconnected
	cb.OnDisconnectedWithReason = b.onDisconnected
	cb.OnReconnecting = b.onReconnecting
	cb.OnReconnected = b.onReconnected

	b.room = lksdk.NewRoom(cb)
	opts := []lksdk.ConnectOption{lksdk.WithAutoSubscribe(false), lksdk.WithLogger(sdkLogger(b.log))}
	if dl, ok := ctx.Deadline(); ok {
		opts = append(opts, lksdk.WithConnectTimeout(time.Until(dl)))
	}
	joined := make(chan error, 1)
	go func() { joined <- b.room.JoinWithContextAndToken(ctx, cfg.URL, token, opts...) }()
	select {
	case err = <-joined:
	case <-ctx.Done():
		// The SDK may not give up at once; make sure a late join leaves.
		go func() {
			if <-joined == nil {
				b.room.Disconnect()
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
	b.log.Info("bot joined", "identity", cfg.Identity, "room_sid", b.room.SID())
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

// Record subscribes to the audio tracks of identity, present and future.
// It reports whether the participant is in the room now.
func (b *Bot) Record(identity string) bool {
	b.mu.Lock()
	b.wanted[identity] = true
	b.mu.Unlock()
	rp := b.room.GetParticipantByIdentity(identity)
	if rp == nil {
		return false
	}
	for _, pub := range rp.TrackPublications() {
		if rpub, ok := pub.(*lksdk.RemoteTrackPublication); ok {
			b.subscribe(rpub, rp)
		}
	}
	return true
}

// Forget unsubscribes from identity's tracks. Their tracks end with EOF or
// the reader's deadline; TrackEnded is not called for them.
func (b *Bot) Forget(identity string) {
	b.mu.Lock()
	delete(b.wanted, identity)
	b.mu.Unlock()
	rp := b.room.GetParticipantByIdentity(identity)
	if rp == nil {
		return
	}
	for _, pub := range rp.TrackPublications() {
		if rpub, ok := pub.(*lksdk.RemoteTrackPublication); ok {
			b.unsubscribe(rpub, identity)
		}
	}
}

// Present says whether identity is in the room now.
func (b *Bot) Present(identity string) bool {
	return b.room.GetParticipantByIdentity(identity) != nil
}

// Leave disconnects the bot. It is safe to call more than once.
func (b *Bot) Leave() {
	b.mu.Lock()
	if b.leaving {
		b.mu.Unlock()
		return
	}
	b.leaving = true
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

func (b *Bot) wants(identity string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.wanted[identity] && !b.leaving
}

// subscribe asks for pub if it is audio of a recorded participant and not
// asked for already.
func (b *Bot) subscribe(pub *lksdk.RemoteTrackPublication, rp *lksdk.RemoteParticipant) {
	if pub.Kind() != lksdk.TrackKindAudio {
		return
	}
	sid := pub.SID()
	b.mu.Lock()
	ask := b.wanted[rp.Identity()] && !b.leaving && !b.requested[sid]
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
func (b *Bot) unsubscribe(pub *lksdk.RemoteTrackPublication, identity string) {
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

func (b *Bot) onTrackPublished(pub *lksdk.RemoteTrackPublication, rp *lksdk.RemoteParticipant) {
	b.subscribe(pub, rp)
}

func (b *Bot) onTrackSubscribed(track *webrtc.TrackRemote, pub *lksdk.RemoteTrackPublication, rp *lksdk.RemoteParticipant) {
	if track.Kind() != webrtc.RTPCodecTypeAudio {
		return
	}
	info := b.info(pub, rp)
	info.MimeType = track.Codec().MimeType
	// Subscribed before a Forget landed, or nobody to write it: let go.
	if !b.wants(rp.Identity()) || !b.h.TrackSubscribed(&Track{Info: info, Remote: track}) {
		b.unsubscribe(pub, rp.Identity())
	}
}

func (b *Bot) onTrackUnsubscribed(_ *webrtc.TrackRemote, pub *lksdk.RemoteTrackPublication, rp *lksdk.RemoteParticipant) {
	if pub.Kind() != lksdk.TrackKindAudio || b.left() {
		return
	}
	b.forgetTrack(pub.SID())
	b.h.TrackEnded(b.info(pub, rp))
	// An unsubscribe that lands after the participant was asked for again
	// (a stop quickly followed by a start) must not leave a published track
	// unsubscribed: ask for it again.
	if b.wants(rp.Identity()) && published(rp, pub.SID()) {
		b.subscribe(pub, rp)
	}
}

func published(rp *lksdk.RemoteParticipant, sid string) bool {
	for _, p := range rp.TrackPublications() {
		if p.SID() == sid {
			return true
		}
	}
	return false
}

func (b *Bot) onTrackUnpublished(pub *lksdk.RemoteTrackPublication, rp *lksdk.RemoteParticipant) {
	if pub.Kind() == lksdk.TrackKindAudio && !b.left() {
		b.forgetTrack(pub.SID())
		b.h.TrackEnded(b.info(pub, rp))
	}
}

func (b *Bot) onTrackSubscriptionFailed(sid string, rp *lksdk.RemoteParticipant) {
	// Forget the request so a later publication event can ask again.
	b.forgetTrack(sid)
	b.log.Error("track subscription failed", "participant", rp.Identity(), "track", sid)
}

func (b *Bot) onTrackMuted(pub lksdk.TrackPublication, p lksdk.Participant) {
	b.log.Debug("track muted", "participant", p.Identity(), "track", pub.SID())
}

func (b *Bot) onTrackUnmuted(pub lksdk.TrackPublication, p lksdk.Participant) {
	b.log.Debug("track unmuted", "participant", p.Identity(), "track", pub.SID())
}

func (b *Bot) onParticipantConnected(rp *lksdk.RemoteParticipant) {
	if !b.wants(rp.Identity()) {
		return
	}
	b.h.ParticipantJoined(rp.Identity())
	// Publications that arrived with the participant were offered before this
	// callback; subscribe to any the bot has not asked for yet.
	for _, pub := range rp.TrackPublications() {
		if rpub, ok := pub.(*lksdk.RemoteTrackPublication); ok {
			b.subscribe(rpub, rp)
		}
	}
}

func (b *Bot) onParticipantDisconnected(rp *lksdk.RemoteParticipant) {
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
		wait = 5 * time.Second
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.leaving || b.watchdog != nil {
		return
	}
	var t *time.Timer
	t = time.AfterFunc(wait, func() { b.giveUp(t) })
	b.watchdog = t
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
	ids := make([]string, 0, len(b.wanted))
	for id := range b.wanted {
		ids = append(ids, id)
	}
	// A restarted session has no subscriptions even where the track ids
	// are the same: ask for everything again (the SDK ignores a request
	// for a track it is subscribed to already).
	clear(b.requested)
	b.mu.Unlock()
	for _, id := range ids {
		b.Record(id)
	}
}

// giveUp ends a reconnect that did not finish in time; t is the watchdog
// that fired, ignored if a reconnect disarmed it meanwhile.
func (b *Bot) giveUp(t *time.Timer) {
	b.mu.Lock()
	if b.leaving || b.watchdog != t {
		b.mu.Unlock()
		return
	}
	b.leaving = true
	b.mu.Unlock()
	b.log.Warn("bot reconnect timed out; leaving for a fresh join")
	go b.room.Disconnect()
	b.h.Disconnected("reconnect timed out", true)
}

func (b *Bot) info(pub *lksdk.RemoteTrackPublication, rp *lksdk.RemoteParticipant) TrackInfo {
	return TrackInfo{
		Room:            b.name,
		RoomSID:         b.room.SID(),
		Participant:     rp.Identity(),
		ParticipantSID:  rp.SID(),
		ParticipantName: rp.Name(),
		TrackSID:        pub.SID(),
		Source:          source(pub),
		MimeType:        pub.MimeType(),
	}
}

func source(pub lksdk.TrackPublication) string {
	return strings.ToLower(pub.Source().String())
}
