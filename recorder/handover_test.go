package recorder

import (
	"context"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/trackrec/trackrec/bot"
	"github.com/trackrec/trackrec/ownership"
	"github.com/trackrec/trackrec/testbed"
)

// successor is the instance a draining fixture hands its recordings to; its
// bot gets the same packets as the draining one's, as an SFU forwards them.
type successor struct {
	f      *fixture
	reader *fakeReader
	err    error // a refused takeover
}

func (s *successor) TakeOver(ctx context.Context, key Key, id, owner string, wait bool) (time.Time, string, error) {
	if s.err != nil {
		return time.Time{}, "", s.err
	}
	type started struct {
		info RecordingInfo
		err  error
	}
	done := make(chan started, 1)
	go func() {
		info, _, err := s.f.s.Start(ctx, key.Room, key.Participant, Resume(id), HandOverFrom(owner))
		done <- started{info, err}
	}()
	// The bot subscribes once it has joined.
	for s.f.handler(key.Room) == nil || s.f.s.activeRecording(key) == nil {
		time.Sleep(5 * time.Millisecond)
	}
	s.f.handler(key.Room).TrackSubscribed(&bot.Track{
		Info:   bot.TrackInfo{Room: key.Room, Participant: key.Participant, TrackSID: "TR_a", Source: "microphone", MimeType: "audio/opus"},
		Remote: s.reader,
	})
	st := <-done
	if st.err != nil {
		return time.Time{}, "", st.err
	}
	if st.info.ID != id || st.info.HandoverAt == nil {
		return time.Time{}, "", errors.New("successor's recording has no handover instant")
	}
	return *st.info.HandoverAt, "next", nil
}

func (s *successor) Cancel(ctx context.Context, key Key) error {
	_, err := s.f.s.Stop(ctx, key.Room, key.Participant)
	return err
}

// A draining instance hands its recording to a successor: the claim passes
// in one step, and the two files split the participant's packets between
// them, none missing and none in both (give or take the packet in flight
// at the cut).
func TestDrainHandsRecordingOver(t *testing.T) {
	owners := ownership.NewMemory()
	a := newFixtureOn(t, 0, owners, "a")
	b := newFixtureOn(t, 0, owners, "b")
	ctx := context.Background()
	first, _, err := a.s.Start(ctx, "r", "alice")
	if err != nil {
		t.Fatal(err)
	}
	ra := a.feed("r", "alice", "TR_a", 0)
	next := &successor{f: b, reader: newFakeReader()}
	// One packet every 20 ms to both bots, the payload numbering it.
	stop := make(chan struct{})
	sent := make(chan int)
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		i := 0
		for {
			select {
			case <-stop:
				sent <- i
				return
			case <-tick.C:
			}
			payload := []byte{0xF8, 0, 0}
			binary.BigEndian.PutUint16(payload[1:], uint16(i))
			for _, r := range []*fakeReader{ra, next.reader} {
				r.ch <- &rtp.Packet{Header: rtp.Header{SequenceNumber: uint16(i), Timestamp: uint32(960 * i), SSRC: 1}, Payload: payload}
			}
			i++
		}
	}()
	time.Sleep(1500 * time.Millisecond)
	if err := a.s.Drain(ctx, next); err != nil {
		t.Fatal(err)
	}
	old := a.state("r", "alice")
	if old.State != StateStopped || old.StopReason != reasonHandedOver {
		t.Fatalf("draining instance's recording: %+v", old)
	}
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	n := <-sent
	final, err := b.s.Stop(ctx, "r", "alice")
	if err != nil || final.ID != first.ID || len(final.Tracks) != 1 {
		t.Fatalf("successor's stop: %+v %v", final, err)
	}
	if ok, _ := owners.Claim(ctx, Key{Room: "r", Participant: "alice"}, "other"); !ok {
		t.Error("claim not free after the successor's stop")
	}
	seen := map[int]int{}
	for _, path := range []string{old.Tracks[0].Path, final.Tracks[0].Path} {
		f, err := testbed.ReadOpusFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range f.Packets {
			if len(p) == 3 && p[0] == 0xF8 {
				seen[int(binary.BigEndian.Uint16(p[1:]))]++
			}
		}
	}
	missing, doubled := 0, 0
	for i := range n {
		switch seen[i] {
		case 0:
			missing++
		case 1:
		default:
			doubled++
		}
	}
	t.Logf("%d packets sent: %d missing, %d in both files", n, missing, doubled)
	if missing > 1 || doubled > 1 {
		t.Errorf("%d packets missing and %d in both files, want at most one each (the packet at the cut)", missing, doubled)
	}
}

// With no successor able to take it, a draining instance stops the
// recording as a shutdown does, and the fleet still wants it.
func TestDrainWithoutSuccessorStops(t *testing.T) {
	a := newFixture(t, 0)
	ctx := context.Background()
	if _, _, err := a.s.Start(ctx, "r", "alice"); err != nil {
		t.Fatal(err)
	}
	a.feed("r", "alice", "TR_a", 60)
	a.waitState("r", "alice", StateRecording)
	if err := a.s.Drain(ctx, &successor{err: ErrFull}); err != nil {
		t.Fatal(err)
	}
	if got := a.state("r", "alice"); got.State != StateStopped || got.StopReason != reasonShutdown || got.Tracks[0].Packets != 60 {
		t.Errorf("after a drain nobody took: %+v", got)
	}
}

// handOutput is a track egress's Output that hears of handovers.
type handOutput struct{ fakeOutput }

func (o *handOutput) HandingOver()           { o.note("handing") }
func (o *handOutput) HandedOver(inst string) { o.note("handed:" + inst) }

// answering is a successor that takes every recording at once, cutting
// 100 ms later.
type answering struct{}

func (answering) TakeOver(context.Context, Key, string, string, bool) (time.Time, string, error) {
	return time.Now().Add(100 * time.Millisecond), "next", nil
}
func (answering) Cancel(context.Context, Key) error { return nil }

// A track egress's Output hears a handover begin and end: with the
// instance that goes on (which then reports the egress), or with none when
// nobody took it and the recording stops here.
func TestDrainTellsTheOutput(t *testing.T) {
	for _, tc := range []struct {
		name   string
		next   Successor
		events []string
		reason string
	}{
		{"taken", answering{}, []string{"handing", "handed:next"}, reasonHandedOver},
		{"refused", &successor{err: ErrFull}, []string{"handing", "handed:"}, reasonShutdown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 0)
			ctx := context.Background()
			out := &handOutput{fakeOutput{stopped: make(chan RecordingInfo, 1)}}
			if _, _, err := f.s.Start(ctx, "r", "alice", Track("TR_a"), WithOutput(out)); err != nil {
				t.Fatal(err)
			}
			f.feed("r", "alice", "TR_a", 60)
			if err := f.s.Drain(ctx, tc.next); err != nil {
				t.Fatal(err)
			}
			final := <-out.stopped
			out.mu.Lock()
			var hand []string
			for _, e := range out.events {
				if strings.HasPrefix(e, "hand") {
					hand = append(hand, e)
				}
			}
			out.mu.Unlock()
			if !slices.Equal(hand, tc.events) || final.StopReason != tc.reason {
				t.Errorf("output heard %v, stopped for %q; want %v and %q", hand, final.StopReason, tc.events, tc.reason)
			}
		})
	}
}
