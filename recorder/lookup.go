package recorder

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Presence is what LiveKit's server API says of a room and a participant.
type Presence int

const (
	NoRoom        Presence = iota // the room does not exist
	NoParticipant                 // the room exists; the participant is not in it
	Present                       // the participant is in the room
)

// LookupFunc asks LiveKit whether room exists and identity is in it now.
type LookupFunc func(ctx context.Context, room, identity string) (Presence, error)

// Errors of a start whose room or participant is not there (the API's 404),
// and of a check that could not be made.
var (
	ErrNoRoom        = errors.New("room does not exist")
	ErrNoParticipant = errors.New("participant is not in the room")
	ErrLookup        = errors.New("cannot check the room with LiveKit")
)

// StartOption changes what Start requires.
type StartOption func(*startOptions)

type startOptions struct {
	wait    bool
	id      string
	confirm func(context.Context) (bool, error)
	from    string // the owner handing the recording over
	track   string // one track of the participant, not all their audio
	output  Output
	format  string // container; empty: Options.Format
}

func parseStart(opts []StartOption) startOptions {
	var o startOptions
	for _, f := range opts {
		f(&o)
	}
	return o
}

// Waits says whether opts arm the recording (WaitForParticipant).
func Waits(opts ...StartOption) bool { return parseStart(opts).wait }

// ErrNotWanted is a resumed start whose recording ended meanwhile.
var ErrNotWanted = errors.New("recording no longer wanted")

// Confirm makes a start ask, once it holds the claim, whether the recording
// is still wanted: a takeover that raced the recording's own stop then
// starts nothing (the stop marks it unwanted before it frees the claim).
func Confirm(still func(context.Context) (bool, error)) StartOption {
	return func(o *startOptions) { o.confirm = still }
}

// Resume starts the recording under an id it already has: another instance
// recorded it until it died or handed it over, and this one goes on with it
// in new files.
func Resume(id string) StartOption {
	return func(o *startOptions) { o.id = id }
}

// Track records one audio track of the participant (a track egress)
// rather than all their audio: a recording of its own, beside one of the
// whole participant, which then does without that track. It ends with the
// track.
func Track(sid string) StartOption {
	return func(o *startOptions) { o.track = sid }
}

// InFormat writes the recording's files in format (muxer.FormatOgg or
// muxer.FormatWebM) whatever FILE_FORMAT says: a track egress is Ogg Opus.
func InFormat(format string) StartOption {
	return func(o *startOptions) { o.format = format }
}

// WithOutput names and follows the recording's files (Output).
func WithOutput(out Output) StartOption {
	return func(o *startOptions) { o.output = out }
}

// WaitForParticipant arms a recording for a participant who has not joined
// yet (and a room that may not exist yet): the bot joins and waits.
func WaitForParticipant() StartOption {
	return func(o *startOptions) { o.wait = true }
}

// checkPresent refuses a start whose room or participant LiveKit does not
// know, before anything joins: a bot must not be left in (or create) a room
// nobody is in.
func (s *Supervisor) checkPresent(ctx context.Context, room, identity string) error {
	if s.opts.Lookup == nil {
		return nil
	}
	p, err := s.opts.Lookup(ctx, room, identity)
	if err != nil {
		if ctx.Err() != nil {
			// The caller's deadline (JOIN_TIMEOUT) ran out: a slow LiveKit.
			return fmt.Errorf("%w: %w", ErrLookup, ctx.Err())
		}
		return fmt.Errorf("%w: %w", ErrLookup, err)
	}
	switch p {
	case NoRoom:
		return fmt.Errorf("%w on LiveKit: %q", ErrNoRoom, room)
	case NoParticipant:
		return fmt.Errorf("%w: %q is not in %q", ErrNoParticipant, identity, room)
	}
	return nil
}

// presenceGrace is how long a start waits for the bot to see a participant
// LiveKit's server API reported present.
const presenceGrace = 2 * time.Second

// waitPresent polls b until it sees identity, for up to presenceGrace.
func waitPresent(ctx context.Context, b Bot, identity string) bool {
	deadline := time.NewTimer(presenceGrace)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if b.Present(identity) {
				return true
			}
		case <-deadline.C:
			return b.Present(identity)
		case <-ctx.Done():
			return false
		}
	}
}
