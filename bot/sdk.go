package bot

import (
	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/pion/webrtc/v4"
)

// The bot's logic sees the SDK only through these interfaces, so tests can
// drive its callbacks with fakes. The adapters below are the only code that
// knows the SDK's concrete types.

// room is what the bot uses of *lksdk.Room.
type room interface {
	SID() string
	// participant is identity's current session, nil when it is not in
	// the room.
	participant(identity string) participant
	// DisconnectReason is the server's reason for the last disconnect.
	DisconnectReason() livekit.DisconnectReason
	Disconnect()
}

// participant is what the bot uses of *lksdk.RemoteParticipant.
type participant interface {
	Identity() string
	SID() string
	Name() string
	// DisconnectReason is why the participant left, once it has.
	DisconnectReason() livekit.DisconnectReason
	publications() []publication
}

// publication is what the bot uses of *lksdk.RemoteTrackPublication.
type publication interface {
	SID() string
	Kind() lksdk.TrackKind
	Source() livekit.TrackSource
	IsMuted() bool
	SetSubscribed(subscribed bool) error
}

// remoteTrack is what the bot uses of *webrtc.TrackRemote. Its values are
// map keys: implementations must be comparable (pointers).
type remoteTrack interface {
	RTPReader
	Kind() webrtc.RTPCodecType
	Codec() webrtc.RTPCodecParameters
}

var (
	_ publication = (*lksdk.RemoteTrackPublication)(nil)
	_ remoteTrack = (*webrtc.TrackRemote)(nil)
)

// sdkRoom adapts *lksdk.Room.
type sdkRoom struct{ *lksdk.Room }

func (r sdkRoom) participant(identity string) participant {
	if rp := r.GetParticipantByIdentity(identity); rp != nil {
		return sdkParticipant{rp}
	}
	return nil // not a typed nil
}

// sdkParticipant adapts *lksdk.RemoteParticipant.
type sdkParticipant struct{ *lksdk.RemoteParticipant }

func (p sdkParticipant) publications() []publication {
	all := p.TrackPublications()
	pubs := make([]publication, 0, len(all))
	for _, pub := range all {
		if rpub, ok := pub.(*lksdk.RemoteTrackPublication); ok {
			pubs = append(pubs, rpub)
		}
	}
	return pubs
}

// callbacks routes the SDK's room events to b.
func (b *Bot) callbacks() *lksdk.RoomCallback {
	cb := lksdk.NewRoomCallback()
	cb.ParticipantCallback = lksdk.ParticipantCallback{
		OnTrackPublished: func(pub *lksdk.RemoteTrackPublication, rp *lksdk.RemoteParticipant) {
			b.onTrackPublished(pub, sdkParticipant{rp})
		},
		OnTrackSubscribed: func(track *webrtc.TrackRemote, pub *lksdk.RemoteTrackPublication, rp *lksdk.RemoteParticipant) {
			b.onTrackSubscribed(track, pub, sdkParticipant{rp})
		},
		OnTrackUnsubscribed: func(track *webrtc.TrackRemote, pub *lksdk.RemoteTrackPublication, rp *lksdk.RemoteParticipant) {
			b.onTrackUnsubscribed(track, pub, sdkParticipant{rp})
		},
		OnTrackUnpublished: func(pub *lksdk.RemoteTrackPublication, rp *lksdk.RemoteParticipant) {
			b.onTrackUnpublished(pub, sdkParticipant{rp})
		},
		OnTrackSubscriptionFailed: func(sid string, rp *lksdk.RemoteParticipant) {
			b.onTrackSubscriptionFailed(sid, sdkParticipant{rp})
		},
		OnTrackMuted: func(pub lksdk.TrackPublication, p lksdk.Participant) {
			b.log.Debug("track muted", "participant", p.Identity(), "track", pub.SID())
			b.muted(p.Identity(), pub.SID(), true)
		},
		OnTrackUnmuted: func(pub lksdk.TrackPublication, p lksdk.Participant) {
			b.log.Debug("track unmuted", "participant", p.Identity(), "track", pub.SID())
			b.muted(p.Identity(), pub.SID(), false)
		},
	}
	cb.OnParticipantConnected = func(rp *lksdk.RemoteParticipant) { b.onParticipantConnected(sdkParticipant{rp}) }
	cb.OnParticipantDisconnected = func(rp *lksdk.RemoteParticipant) { b.onParticipantDisconnected(sdkParticipant{rp}) }
	cb.OnDisconnectedWithReason = b.onDisconnected
	cb.OnReconnecting = b.onReconnecting
	cb.OnReconnected = b.onReconnected
	return cb
}
