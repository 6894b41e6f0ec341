package probe

import (
	"context"
	"fmt"
	"strings"

	"github.com/livekit/protocol/livekit"
)

// Participants lists a room's participants (lksdk.RoomServiceClient).
type Participants interface {
	ListParticipants(ctx context.Context, req *livekit.ListParticipantsRequest) (*livekit.ListParticipantsResponse, error)
}

// Published is a track as LiveKit lists it, with who publishes it.
type Published struct {
	Identity string
	Kind     string // "audio", "video"
	MimeType string // "audio/opus"
	Source   string // lower case: "microphone"
}

// ErrNoTrack is FindTrack's answer for a track nobody in the room publishes.
var ErrNoTrack = fmt.Errorf("track not published in the room")

// FindTrack asks LiveKit who publishes the track sid in room, and what it
// is (an egress request names the track only).
func FindTrack(ctx context.Context, ps Participants, room, sid string) (Published, error) {
	res, err := ps.ListParticipants(ctx, &livekit.ListParticipantsRequest{Room: room})
	if isNotFound(err) {
		return Published{}, fmt.Errorf("%w: %s in %q, a room that is gone", ErrNoTrack, sid, room)
	}
	if err != nil {
		return Published{}, fmt.Errorf("list participants of %q: %w", room, cutBy(ctx, err))
	}
	for _, p := range res.GetParticipants() {
		for _, t := range p.GetTracks() {
			if t.GetSid() != sid {
				continue
			}
			return Published{
				Identity: p.GetIdentity(),
				Kind:     strings.ToLower(t.GetType().String()),
				MimeType: strings.ToLower(t.GetMimeType()),
				Source:   strings.ToLower(t.GetSource().String()),
			}, nil
		}
	}
	return Published{}, fmt.Errorf("%w: %s in %q", ErrNoTrack, sid, room)
}
