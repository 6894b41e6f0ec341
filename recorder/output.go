package recorder

import (
	"time"

	"github.com/trackrec/trackrec/spool"
	"github.com/trackrec/trackrec/uploader"
)

// Output names and follows a recording's files, for a recording started
// WithOutput (a track egress: package egress reports each step to
// livekit-server). Its calls come from the recording's goroutines and must
// not block.
type Output interface {
	// Key is the object key of t's file starting at start; "" keeps the
	// layout's.
	Key(t spool.Track, start time.Time) (string, error)
	// Storage is where the files go; nil: the upload queue's store.
	Storage() uploader.Storage
	// Opened says t's file opened under key: its first packet is written.
	Opened(t spool.Track, key string, start time.Time)
	// Closed says a file was sealed (its uploads queued), or failed (err).
	Closed(t spool.Sealed, err error)
	// Stopped says the recording reached its final state.
	Stopped(info RecordingInfo)
}

// reasonTrackEnded ends a recording of one track whose track ended.
const reasonTrackEnded = "track ended"

// subscribe asks b for what r records; it reports whether the participant
// is in the room.
func (r *Recording) subscribe(b Bot) bool {
	if r.key.Track != "" {
		return b.RecordTrack(r.key.Participant, r.key.Track)
	}
	return b.Record(r.key.Participant)
}

// unsubscribe lets b go of what r recorded.
func (r *Recording) unsubscribe(b Bot) {
	if r.key.Track != "" {
		b.ForgetTrack(r.key.Participant, r.key.Track)
		return
	}
	b.Forget(r.key.Participant)
}
