package recorder

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/trackrec/trackrec/bot"
	"github.com/trackrec/trackrec/ownership"
	"github.com/trackrec/trackrec/spool"
)

// fakeRooms records what the supervisor tells room completion.
type fakeRooms struct {
	mu     sync.Mutex
	events []string // "busy r", "idle r", "track r TR_x"
}

func (f *fakeRooms) add(e string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, e)
}
func (f *fakeRooms) TrackClosed(room string, t spool.Sealed) {
	f.add("track " + room + " " + t.Manifest.Track.SID)
}
func (f *fakeRooms) RoomBusy(room string) { f.add("busy " + room) }
func (f *fakeRooms) RoomIdle(room string) { f.add("idle " + room) }
func (f *fakeRooms) log() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.events...)
}

// A start refused by Owners (409) leaves a room whose ready is never closed.
func TestRefusedClaimDoesNotBlockTheRoom(t *testing.T) {
	f := newFixture(t, 0)
	owners := ownership.NewMemory()
	owners.Claim(context.Background(), Key{Room: "r", Participant: "alice"}, "other-instance")
	f.s.opts.Owners = owners
	if _, _, err := f.s.Start(context.Background(), "r", "alice"); !errors.Is(err, ErrOwned) {
		t.Fatalf("want ErrOwned, got %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, _, err := f.s.Start(ctx, "r", "bob"); err != nil {
		t.Errorf("start of bob in the same room after a 409 for alice: %v (joins=%d)", err, f.joins)
	}
}

// A failing start after the room went idle leaves it idle again, so its
// completion is not held up for good.
func TestFailedStartLeavesTheRoomIdle(t *testing.T) {
	f := newFixture(t, 0)
	f.recordAndStop("r", "alice", "TR_a")
	f.setJoinErr(errors.New("livekit unreachable"))
	if _, _, err := f.s.Start(context.Background(), "r", "bob"); err == nil {
		t.Fatal("start should fail")
	}
	want := []string{"busy r", "track r TR_a", "idle r", "busy r", "idle r"}
	if got := f.rooms.log(); !slices.Equal(got, want) {
		t.Errorf("room events %q, want %q", got, want)
	}
}

// slowReader ends only 1.5 s after its deadline: a slow close.
type slowReader struct{ *fakeReader }

func (r slowReader) SetReadDeadline(at time.Time) error {
	return r.fakeReader.SetReadDeadline(at.Add(1500 * time.Millisecond))
}
func (r slowReader) ReadRTP() (*rtp.Packet, interceptor.Attributes, error) {
	return r.fakeReader.ReadRTP()
}

// A room whose recordings stop together is idle once, after the slowest
// one closed its file, with both tracks sealed before.
func TestRoomIdleOnceEveryRecordingClosed(t *testing.T) {
	f := newFixture(t, 0)
	ctx := context.Background()
	f.s.Start(ctx, "r", "alice")
	f.s.Start(ctx, "r", "bob")
	r := slowReader{newFakeReader()}
	f.handler("r").TrackSubscribed(&bot.Track{Info: bot.TrackInfo{Room: "r", Participant: "alice", TrackSID: "TR_a", MimeType: "audio/opus"}, Remote: r})
	for i := 0; i < 60; i++ {
		r.ch <- &rtp.Packet{Header: rtp.Header{SequenceNumber: uint16(i), Timestamp: uint32(960 * i), SSRC: 1}, Payload: []byte{0xF8, 0xFF, 0xFE}}
	}
	f.feed("r", "bob", "TR_b", 60)
	f.waitState("r", "alice", StateRecording)
	f.waitState("r", "bob", StateRecording)
	f.handler("r").Disconnected("room closed", false) // both stop at once
	f.waitState("r", "alice", StateStopped)
	f.waitState("r", "bob", StateStopped)
	got := f.rooms.log()
	if len(got) != 4 || got[0] != "busy r" || got[3] != "idle r" {
		t.Fatalf("room events %q, want busy, both tracks, then idle once", got)
	}
}
