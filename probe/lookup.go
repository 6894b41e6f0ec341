package probe

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/twitchtv/twirp"

	"github.com/trackrec/trackrec/recorder"
)

// RoomService is what probe needs of LiveKit's server API; an
// lksdk.RoomServiceClient is one.
type RoomService interface {
	GetParticipant(ctx context.Context, req *livekit.RoomParticipantIdentity) (*livekit.ParticipantInfo, error)
	ListRooms(ctx context.Context, req *livekit.ListRoomsRequest) (*livekit.ListRoomsResponse, error)
}

// NewLookup returns a recorder.LookupFunc over rs whose calls together take
// at most timeout (the service uses JOIN_TIMEOUT, like the join it comes
// before).
func NewLookup(rs RoomService, timeout time.Duration) (recorder.LookupFunc, error) {
	if rs == nil {
		return nil, errors.New("probe: lookup needs a RoomService")
	}
	if timeout <= 0 {
		return nil, fmt.Errorf("probe: lookup timeout must be positive, not %v", timeout)
	}
	return func(ctx context.Context, room, identity string) (recorder.Presence, error) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		_, err := rs.GetParticipant(ctx, &livekit.RoomParticipantIdentity{Room: room, Identity: identity})
		if err == nil {
			return recorder.Present, nil
		}
		if !isNotFound(err) {
			return 0, fmt.Errorf("get participant: %w", cutBy(ctx, err))
		}
		// Not found: the participant, or the whole room? Ask for the room.
		rooms, err := rs.ListRooms(ctx, &livekit.ListRoomsRequest{Names: []string{room}})
		if err != nil {
			return 0, fmt.Errorf("list rooms: %w", cutBy(ctx, err))
		}
		if len(rooms.GetRooms()) == 0 {
			return recorder.NoRoom, nil
		}
		return recorder.NoParticipant, nil
	}, nil
}

func isNotFound(err error) bool {
	var te twirp.Error
	return errors.As(err, &te) && te.Code() == twirp.NotFound
}

// cutBy makes an error of a call that ctx ended say so: twirp reports it as
// an internal error that need not wrap ctx.Err().
func cutBy(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%w: %w", cerr, err)
	}
	return err
}
