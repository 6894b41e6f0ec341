package recorder

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestStartChecksPresence(t *testing.T) {
	lookupErr := errors.New("connection refused")
	for _, tc := range []struct {
		name    string
		answer  Presence
		err     error
		wait    bool
		want    error // nil: the recording starts
		started bool
	}{
		{name: "present", answer: Present, started: true},
		{name: "no room", answer: NoRoom, want: ErrNoRoom},
		{name: "no participant", answer: NoParticipant, want: ErrNoParticipant},
		{name: "lookup fails", err: lookupErr, want: ErrLookup},
		{name: "wait skips the check", answer: NoRoom, wait: true, started: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 0)
			asked := 0
			f.s.opts.Lookup = func(_ context.Context, room, identity string) (Presence, error) {
				asked++
				if room != "r" || identity != "alice" {
					return 0, fmt.Errorf("asked about %s/%s", room, identity)
				}
				return tc.answer, tc.err
			}
			var opts []StartOption
			if tc.wait {
				opts = append(opts, WaitForParticipant())
			}
			_, created, err := f.s.Start(context.Background(), "r", "alice", opts...)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("start: %v, want %v", err, tc.want)
			}
			if created != tc.started {
				t.Errorf("created %v, want %v", created, tc.started)
			}
			if !tc.started {
				// Nothing joined, nothing listed: no bot left behind.
				if f.joins != 0 || len(f.s.List()) != 0 {
					t.Errorf("a refused start left %d joins and %+v", f.joins, f.s.List())
				}
				return
			}
			// A repeated start answers from the running recording.
			before := asked
			if _, created, err := f.s.Start(context.Background(), "r", "alice"); err != nil || created {
				t.Fatalf("second start: created %v, %v", created, err)
			}
			if asked != before {
				t.Errorf("a repeated start asked LiveKit again")
			}
		})
	}
}

// LiveKit reported the participant, but they left before the bot joined:
// the start is refused after a short grace and the bot does not stay.
func TestStartRefusedWhenTheBotNeverSeesTheParticipant(t *testing.T) {
	f := newFixture(t, 0)
	f.s.opts.Lookup = func(context.Context, string, string) (Presence, error) { return Present, nil }
	_, _, err := f.s.Start(context.Background(), "r", "carol") // the fake bot sees alice and bob only
	if !errors.Is(err, ErrNoParticipant) {
		t.Fatalf("start: %v, want ErrNoParticipant", err)
	}
	if !f.bots["r"].hasLeft() || len(f.s.List()) != 0 {
		t.Errorf("bot left: %v, recordings: %+v", f.bots["r"].hasLeft(), f.s.List())
	}
	// Someone the bot does see starts at once.
	if _, created, err := f.s.Start(context.Background(), "r", "alice"); err != nil || !created {
		t.Errorf("start alice: %v %v", created, err)
	}
}
