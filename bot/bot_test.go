package bot

import (
	"testing"

	"github.com/livekit/protocol/livekit"
)

// Which disconnects a new bot may undo by joining again.
func TestRecoverable(t *testing.T) {
	for reason, want := range map[livekit.DisconnectReason]bool{
		livekit.DisconnectReason_ROOM_DELETED:        false, // deleted through the API
		livekit.DisconnectReason_ROOM_CLOSED:         false, // closed when empty
		livekit.DisconnectReason_PARTICIPANT_REMOVED: false, // an operator removed the bot
		livekit.DisconnectReason_DUPLICATE_IDENTITY:  false,
		livekit.DisconnectReason_CLIENT_INITIATED:    false,
		livekit.DisconnectReason_SERVER_SHUTDOWN:     true, // a deploy, a node drained
		livekit.DisconnectReason_SIGNAL_CLOSE:        true, // the SDK gave up reconnecting
		livekit.DisconnectReason_MIGRATION:           true,
		livekit.DisconnectReason_STATE_MISMATCH:      true,
		livekit.DisconnectReason_JOIN_FAILURE:        true,
		livekit.DisconnectReason_CONNECTION_TIMEOUT:  true,
		livekit.DisconnectReason_MEDIA_FAILURE:       true,
		livekit.DisconnectReason_UNKNOWN_REASON:      true, // a killed server says nothing
	} {
		if got := recoverable(reason); got != want {
			t.Errorf("%s: recoverable %v, want %v", reason, got, want)
		}
	}
}
