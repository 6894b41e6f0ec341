package recorder

import (
	"context"
	"errors"
	"fmt"
	"github.com/trackrec/trackrec/ownership"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pion/rtp"
	"github.com/trackrec/trackrec/bot"
)

// A start while the participant's last recording is still closing its
// files waits for that stop, then records anew in a new file: never
// refused as owned by another instance, nothing lost between the two.
func TestStartDuringAStopWaitsThenRecordsAnew(t *testing.T) {
	f := newFixture(t, 0)
	ctx := context.Background()
	first, _, err := f.s.Start(ctx, "r", "alice")
	if err != nil {
		t.Fatal(err)
	}
	slow := slowReader{newFakeReader()} // closes 1.5 s after its deadline
	f.handler("r").TrackSubscribed(&bot.Track{Info: bot.TrackInfo{Room: "r", Participant: "alice", TrackSID: "TR_a", MimeType: "audio/opus", Subscription: 1}, Remote: slow})
	for i := 0; i < 60; i++ {
		slow.ch <- &rtp.Packet{Header: rtp.Header{SequenceNumber: uint16(i), Timestamp: uint32(960 * i), SSRC: 1}, Payload: []byte{0xF8, 0xFF, 0xFE}}
	}
	f.waitState("r", "alice", StateRecording)
	stopped := make(chan RecordingInfo, 1)
	go func() {
		info, _ := f.s.Stop(ctx, "r", "alice")
		stopped <- info
	}()
	f.waitState("r", "alice", StateStopping)
	second, created, err := f.s.Start(ctx, "r", "alice")
	if err != nil || !created || second.ID == first.ID {
		t.Fatalf("start during the stop: %+v created=%v err=%v", second, created, err)
	}
	// When the second began, the first was stopped with its file closed.
	for _, r := range f.s.List() {
		if r.ID == first.ID && (r.State != StateStopped || len(r.Tracks) != 1 || r.Tracks[0].State != "closed") {
			t.Fatalf("the first recording when the second began: %+v", r)
		}
	}
	if old := <-stopped; old.State != StateStopped {
		t.Errorf("the racing stop answered %s", old.State)
	}
	f.feed("r", "alice", "TR_a", 60)
	f.waitState("r", "alice", StateRecording)
	final, err := f.s.Stop(ctx, "r", "alice")
	if err != nil {
		t.Fatal(err)
	}
	all := f.s.List()
	if len(all) != 2 || all[0].Tracks[0].File == final.Tracks[0].File {
		t.Errorf("want two recordings in two files: %+v", all)
	}
}

// A stop of a recording already stopping answers with its end once its
// files are closed, not a 404.
func TestStopWhileStoppingAnswersTheEnd(t *testing.T) {
	f := newFixture(t, 0)
	ctx := context.Background()
	f.s.Start(ctx, "r", "alice")
	slow := slowReader{newFakeReader()} // closes 1.5 s after its deadline
	f.handler("r").TrackSubscribed(&bot.Track{Info: bot.TrackInfo{Room: "r", Participant: "alice", TrackSID: "TR_a", MimeType: "audio/opus", Subscription: 1}, Remote: slow})
	f.waitState("r", "alice", StateRecording)
	f.handler("r").ParticipantLeft("alice", true)
	f.waitState("r", "alice", StateStopping)
	info, err := f.s.Stop(ctx, "r", "alice")
	if err != nil || info.State != StateStopped || info.Tracks[0].State != "closed" {
		t.Errorf("stop during the stop: %v, %s with %+v", err, info.State, info.Tracks)
	}
}

// An armed recording whose participant never comes stops after
// ARM_TIMEOUT with the reason; one whose participant came stays.
func TestArmTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, 0)
		f.s.opts.ArmTimeout = time.Hour
		ctx := context.Background()
		if _, _, err := f.s.Start(ctx, "r", "carol", WaitForParticipant()); err != nil {
			t.Fatal(err)
		}
		if _, _, err := f.s.Start(ctx, "r", "dave", WaitForParticipant()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(30 * time.Minute)
		f.handler("r").ParticipantJoined("dave")
		time.Sleep(30*time.Minute - time.Nanosecond)
		synctest.Wait()
		if r := f.state("r", "carol"); r.State != StateWaiting {
			t.Fatalf("carol before ARM_TIMEOUT: %s", r.State)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		r := f.state("r", "carol")
		if r.State != StateStopped || !strings.Contains(r.StopReason, "ARM_TIMEOUT") {
			t.Errorf("carol after ARM_TIMEOUT: %s %q", r.State, r.StopReason)
		}
		if r := f.state("r", "dave"); r.State != StateWaiting {
			t.Errorf("dave, who came, after ARM_TIMEOUT: %s %q", r.State, r.StopReason)
		}
		if f.bots["r"].hasLeft() {
			t.Error("the bot left while dave is recorded")
		}
		f.s.Shutdown(ctx)
	})
}

// MAX_RECORDINGS bounds what runs at once: the start beyond is ErrFull and
// changes nothing; a stop frees a place.
func TestMaxRecordings(t *testing.T) {
	f := newFixture(t, 0)
	f.s.opts.MaxRecordings = 2
	ctx := context.Background()
	for _, p := range []string{"alice", "bob"} {
		if _, _, err := f.s.Start(ctx, "r", p); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := f.s.Start(ctx, "r2", "carol", WaitForParticipant()); !errors.Is(err, ErrFull) {
		t.Fatalf("third start: %v, want ErrFull", err)
	}
	if n := len(f.s.List()); n != 2 || f.joins != 1 {
		t.Errorf("a refused start left %d recordings, %d joins", n, f.joins)
	}
	if _, _, err := f.s.Start(ctx, "r", "alice"); err != nil {
		t.Errorf("a running recording's start when full: %v", err)
	}
	f.s.Stop(ctx, "r", "bob")
	if _, _, err := f.s.Start(ctx, "r2", "carol", WaitForParticipant()); err != nil {
		t.Errorf("start after a stop freed a place: %v", err)
	}
}

// The end of an old subscription never ends a newer one of the same track.
func TestTrackEndedEndsOnlyItsSubscription(t *testing.T) {
	f := newFixture(t, 0)
	ctx := context.Background()
	f.s.Start(ctx, "r", "alice")
	info := bot.TrackInfo{Room: "r", Participant: "alice", TrackSID: "TR_a", MimeType: "audio/opus", Subscription: 7}
	r := newFakeReader()
	f.handler("r").TrackSubscribed(&bot.Track{Info: info, Remote: r})
	f.waitState("r", "alice", StateRecording)
	old := info
	old.Subscription = 6
	f.handler("r").TrackEnded(old)
	time.Sleep(3 * drainGrace)
	if st := f.state("r", "alice").Tracks[0].State; st != "recording" {
		t.Fatalf("an old subscription's end closed the new one: %s", st)
	}
	f.handler("r").TrackEnded(info)
	deadline := time.Now().Add(5 * time.Second)
	for f.state("r", "alice").Tracks[0].State != "closed" {
		if time.Now().After(deadline) {
			t.Fatal("its own end did not close the track")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The room goes away while a start still waits for the bot to see its
// participant: the start finishes first, then its recording is stopped like
// the others, reaching a final state and releasing its claim.
func TestStopWhileStarting(t *testing.T) {
	for _, arrives := range []bool{true, false} {
		t.Run(map[bool]string{true: "participant arrives", false: "participant never seen"}[arrives], func(t *testing.T) {
			f := newFixture(t, 0)
			owners := ownership.NewMemory()
			f.s.opts.Owners = owners
			f.s.opts.Lookup = func(context.Context, string, string) (Presence, error) { return Present, nil }
			ctx := context.Background()
			if _, _, err := f.s.Start(ctx, "r", "alice"); err != nil {
				t.Fatal(err)
			}
			f.bots["r"].setPresent("carol", false)
			started := make(chan error, 1)
			go func() {
				_, _, err := f.s.Start(ctx, "r", "carol")
				started <- err
			}()
			f.waitState("r", "carol", StateStarting) // in the presence grace
			f.handler("r").Disconnected("room deleted", false)
			if arrives {
				f.bots["r"].setPresent("carol", true)
			}
			err := <-started
			if arrives {
				if err != nil {
					t.Fatalf("start: %v", err)
				}
				if r := f.waitState("r", "carol", StateStopped); !strings.Contains(r.StopReason, "room deleted") {
					t.Errorf("carol stopped for %q", r.StopReason)
				}
			} else if !errors.Is(err, ErrNoParticipant) {
				t.Fatalf("start: %v, want ErrNoParticipant", err)
			}
			f.waitState("r", "alice", StateStopped)
			deadline := time.Now().Add(5 * time.Second)
			for owners.Len() != 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if owners.Len() != 0 {
				t.Errorf("%d claims left after every recording ended", owners.Len())
			}
			for _, r := range f.s.List() {
				if !r.State.Final() {
					t.Errorf("%s left in %s", r.Participant, r.State)
				}
			}
		})
	}
}

// A track that arrives while the start is still finishing is recorded.
func TestTrackDuringTheStartIsKept(t *testing.T) {
	f := newFixture(t, 0)
	f.s.opts.Lookup = func(context.Context, string, string) (Presence, error) { return Present, nil }
	ctx := context.Background()
	f.s.Start(ctx, "r", "alice") // the room's bot
	f.bots["r"].setPresent("carol", false)
	started := make(chan error, 1)
	go func() {
		_, _, err := f.s.Start(ctx, "r", "carol")
		started <- err
	}()
	f.waitState("r", "carol", StateStarting)
	took := f.handler("r").TrackSubscribed(&bot.Track{Info: bot.TrackInfo{Room: "r", Participant: "carol", TrackSID: "TR_c", MimeType: "audio/opus", Subscription: 9}, Remote: newFakeReader()})
	f.bots["r"].setPresent("carol", true)
	if err := <-started; err != nil || !took {
		t.Fatalf("start %v, track taken %v", err, took)
	}
	if r := f.state("r", "carol"); r.State != StateRecording || len(r.Tracks) != 1 {
		t.Errorf("after the start: %s with %d tracks", r.State, len(r.Tracks))
	}
}

// A dropped participant has exactly REJOIN_TIMEOUT to come back: back in
// time, the recording goes on; not back, it stops with the reason.
func TestRejoinTimeout(t *testing.T) {
	for _, back := range []bool{true, false} {
		t.Run(map[bool]string{true: "back in time", false: "not back"}[back], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFixture(t, 10*time.Second)
				ctx := context.Background()
				if _, _, err := f.s.Start(ctx, "r", "alice"); err != nil {
					t.Fatal(err)
				}
				f.bots["r"].setPresent("alice", false)
				f.handler("r").ParticipantLeft("alice", false)
				if r := f.state("r", "alice"); r.State != StateAway {
					t.Fatalf("after the drop: %s", r.State)
				}
				time.Sleep(10*time.Second - time.Nanosecond)
				synctest.Wait()
				if r := f.state("r", "alice"); r.State != StateAway {
					t.Fatalf("before REJOIN_TIMEOUT: %s", r.State)
				}
				if back {
					f.bots["r"].setPresent("alice", true)
					f.handler("r").ParticipantJoined("alice")
				}
				time.Sleep(time.Nanosecond)
				synctest.Wait()
				r := f.state("r", "alice")
				switch {
				case back && r.State != StateWaiting:
					t.Errorf("back in time, then: %s %q", r.State, r.StopReason)
				case !back && (r.State != StateStopped || r.StopReason != "participant did not reconnect"):
					t.Errorf("not back: %s %q", r.State, r.StopReason)
				}
				f.s.Shutdown(ctx)
			})
		})
	}
}

// boundedTracks admits while fewer than max tracks are recorded, and
// remembers what it was asked.
type boundedTracks struct {
	max   int
	asked []int
}

func (b *boundedTracks) Admit(tracks int) error {
	b.asked = append(b.asked, tracks)
	if tracks >= b.max {
		return fmt.Errorf("%d of %d tracks", tracks, b.max)
	}
	return nil
}

// Admission (MAX_TRACKS, the CPU guard) is asked with the tracks recorded
// now: a start it refuses is ErrFull and changes nothing; a repeated start
// of a running recording is not asked; a stop frees a place.
func TestAdmission(t *testing.T) {
	f := newFixture(t, 0)
	adm := &boundedTracks{max: 2}
	f.s.opts.Admission = adm
	ctx := context.Background()
	for _, p := range []string{"alice", "bob"} {
		if _, _, err := f.s.Start(ctx, "r", p); err != nil {
			t.Fatal(err)
		}
	}
	_, _, err := f.s.Start(ctx, "r2", "carol", WaitForParticipant())
	if !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "2 of 2 tracks") {
		t.Fatalf("third start: %v, want ErrFull naming the bound", err)
	}
	if n := len(f.s.List()); n != 2 || f.joins != 1 {
		t.Errorf("a refused start left %d recordings, %d joins", n, f.joins)
	}
	asked := len(adm.asked)
	if _, _, err := f.s.Start(ctx, "r", "alice"); err != nil || len(adm.asked) != asked {
		t.Errorf("a running recording's start: %v, admission asked %d times more", err, len(adm.asked)-asked)
	}
	f.s.Stop(ctx, "r", "bob")
	if _, _, err := f.s.Start(ctx, "r2", "carol", WaitForParticipant()); err != nil {
		t.Errorf("start after a stop freed a place: %v", err)
	}
	if !slices.Equal(adm.asked, []int{0, 1, 2, 1}) {
		t.Errorf("admission asked with %v tracks, want [0 1 2 1]", adm.asked)
	}
}
