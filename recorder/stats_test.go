package recorder

import (
	"context"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/trackrec/trackrec/bot"
)

// listed sums the packets of the tracks List shows.
func listed(s *Supervisor) (packets int64) {
	for _, r := range s.List() {
		for _, t := range r.Tracks {
			packets += t.Packets
		}
	}
	return packets
}

// A track counts once while it is written, and still counts once its
// recording has stopped and fallen out of the history.
func TestStatsCountEachTrackOnce(t *testing.T) {
	f := newFixture(t, 0)
	f.s.opts.History = 1
	ctx := context.Background()
	if _, _, err := f.s.Start(ctx, "r", "alice"); err != nil {
		t.Fatal(err)
	}
	// Packets paced in real time, past the 1 s anchor window, so the file
	// opens and packets are written while the recording runs.
	r := newFakeReader()
	f.handler("r").TrackSubscribed(&bot.Track{
		Info:   bot.TrackInfo{Room: "r", Participant: "alice", TrackSID: "TR_s", Source: "microphone", MimeType: "audio/opus"},
		Remote: r,
	})
	const sent = 60
	for i := range sent {
		r.ch <- &rtp.Packet{
			Header:  rtp.Header{SequenceNumber: uint16(i), Timestamp: uint32(960 * i), SSRC: 1},
			Payload: []byte{0xF8, 0xFF, 0xFE},
		}
		time.Sleep(20 * time.Millisecond)
	}
	var live Stats
	for deadline := time.Now().Add(5 * time.Second); ; {
		live = f.s.Stats()
		if n := live.Tracks.Packets; n > 0 && n == listed(f.s) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("live stats %+v, List shows %d packets", live, listed(f.s))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if live.ActiveRecordings != 1 || live.Bots != 1 || live.OpenTracks != 1 {
		t.Errorf("while recording: %+v, want 1 recording, 1 bot, 1 open track", live)
	}

	alice, err := f.s.Stop(ctx, "r", "alice")
	if err != nil {
		t.Fatal(err)
	}
	st := f.s.Stats()
	if got := alice.Tracks[0].Packets; got != sent || st.Tracks.Packets != sent {
		t.Errorf("after stop: track wrote %d, stats %d, want %d", got, st.Tracks.Packets, sent)
	}
	if st.ActiveRecordings != 0 || st.Bots != 0 || st.OpenTracks != 0 {
		t.Errorf("after stop: %+v", st)
	}

	// bob's recording pushes alice's out of a history of one.
	if _, _, err := f.s.Start(ctx, "r", "bob"); err != nil {
		t.Fatal(err)
	}
	f.feed("r", "bob", "TR_t", 10)
	bob, err := f.s.Stop(ctx, "r", "bob")
	if err != nil {
		t.Fatal(err)
	}
	if l := f.s.List(); len(l) != 1 || l[0].ID != bob.ID {
		t.Fatalf("history holds %+v, want bob's recording only", l)
	}
	st = f.s.Stats()
	if want := int64(sent + 10); st.Tracks.Packets != want {
		t.Errorf("%d packets counted after alice left the history, want %d", st.Tracks.Packets, want)
	}
	if want := alice.Tracks[0].Bytes + bob.Tracks[0].Bytes; st.Tracks.Bytes != want || want == 0 {
		t.Errorf("%d bytes counted, want %d", st.Tracks.Bytes, want)
	}
}
