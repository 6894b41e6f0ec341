package mixdown

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/trackrec/trackrec/completion"
	"github.com/trackrec/trackrec/spool"
)

// Complete is the pipeline of a complete room as room completion runs it
// (a completion.Pipeline): the room's sealed track files in, the stored
// keys out. A webhook receiver that stayed down asks for a later run
// (completion.ErrRetryLater) rather than lose the event.
func (p *Pipeline) Complete(ctx context.Context, room string, tracks []spool.Sealed) ([]string, error) {
	return p.CompleteMissing(ctx, room, tracks, nil)
}

// CompleteMissing is Complete for a fleet's room whose files listed in
// missing (JSON descriptions) are not stored: the webhook lists them.
func (p *Pipeline) CompleteMissing(ctx context.Context, room string, tracks []spool.Sealed, missing []json.RawMessage) ([]string, error) {
	outs, err := p.run(ctx, room, roomSID(tracks), roomTracks(tracks), missing)
	return outs, retryUndelivered(err)
}

// Updated is Update for sealed tracks, as a fleet's room completion calls it.
func (p *Pipeline) Updated(ctx context.Context, room string, tracks []spool.Sealed, missing []json.RawMessage) error {
	return retryUndelivered(p.Update(ctx, room, roomSID(tracks), roomTracks(tracks), missing))
}

// retryUndelivered asks for a later run when the receiver stayed down.
func retryUndelivered(err error) error {
	if errors.Is(err, ErrUndelivered) {
		return fmt.Errorf("%w: %w", completion.ErrRetryLater, err)
	}
	return err
}

// roomTracks describes sealed track files for the mixdown and the webhook.
func roomTracks(tracks []spool.Sealed) []RoomTrack {
	out := make([]RoomTrack, 0, len(tracks))
	for _, t := range tracks {
		doc, _ := json.Marshal(t.Manifest)
		out = append(out, RoomTrack{
			Key:      t.Manifest.File.Key,
			Start:    t.Manifest.Timeline.Start,
			Identity: t.Manifest.Participant.Identity,
			TrackSID: t.Manifest.Track.SID,
			Manifest: doc,
		})
	}
	return out
}

func roomSID(tracks []spool.Sealed) string {
	for _, t := range tracks {
		if t.Manifest.RoomSID != "" {
			return t.Manifest.RoomSID
		}
	}
	return ""
}
