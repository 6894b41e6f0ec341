package recorder

import (
	"context"
	"fmt"
	"testing"

	"github.com/trackrec/trackrec/completion"
	"github.com/trackrec/trackrec/ownership"
)

// With no pipeline (MIXDOWN=none, no webhook), a long-running instance
// retains only its bounded history: 1,000 recordings later, the stopped
// ones kept are History, no claim, room or bot is left, and room
// completion holds nothing.
func TestThousandRecordingsStayWithinTheHistory(t *testing.T) {
	f := newFixture(t, 0)
	rooms := completion.New(completion.Options{Logger: discard()})
	owners := ownership.NewMemory()
	f.s.opts.Rooms, f.s.opts.Owners, f.s.opts.History = rooms, owners, 50
	ctx := context.Background()
	for i := range 1000 {
		room := fmt.Sprintf("r%d", i%37)
		id := fmt.Sprintf("p%d", i)
		if _, _, err := f.s.Start(ctx, room, id, WaitForParticipant()); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			// Some with a file each, so sealed tracks go to completion.
			f.bots[room].setPresent(id, true)
			f.feed(room, id, "TR_"+id, 60)
			f.waitState(room, id, StateRecording)
		}
		if _, err := f.s.Stop(ctx, room, id); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.s.HistoryLen(); n != 50 {
		t.Errorf("history holds %d recordings, want its bound 50", n)
	}
	if n := len(f.s.List()); n != 50 {
		t.Errorf("List shows %d recordings, want 50", n)
	}
	st := f.s.Stats()
	if st.ActiveRecordings != 0 || st.Bots != 0 || st.Tracks.Packets != 100*60 {
		t.Errorf("stats after 1,000 stops: %+v (want no recordings, no bots, 6,000 packets counted)", st)
	}
	f.s.mu.Lock()
	left := len(f.s.rooms) + len(f.s.active) + len(f.s.stopping) + len(f.s.closing)
	f.s.mu.Unlock()
	if left != 0 || owners.Len() != 0 {
		t.Errorf("%d rooms/recordings and %d claims left", left, owners.Len())
	}
	if n := rooms.Retained(); n != 0 {
		t.Errorf("room completion without a pipeline retains %d tracks", n)
	}
	if runs := rooms.Runs(); len(runs) != 0 {
		t.Errorf("runs without a pipeline: %+v", runs)
	}
}
