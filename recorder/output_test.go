package recorder

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/trackrec/trackrec/bot"
	"github.com/trackrec/trackrec/spool"
	"github.com/trackrec/trackrec/uploader"
)

// fakeOutput names files and notes what it is told.
type fakeOutput struct {
	mu      sync.Mutex
	events  []string
	stopped chan RecordingInfo
}

func (o *fakeOutput) note(e string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.events = append(o.events, e)
}

func (o *fakeOutput) Key(t spool.Track, start time.Time) (string, error) {
	return "egress/" + t.Room + "/" + t.TrackSID + "-" + start.UTC().Format("150405") + ".ogg", nil
}
func (o *fakeOutput) Storage() uploader.Storage                     { return nil }
func (o *fakeOutput) Opened(t spool.Track, key string, _ time.Time) { o.note("opened " + key) }
func (o *fakeOutput) Closed(t spool.Sealed, err error) {
	o.note("closed " + t.Manifest.File.Key)
}
func (o *fakeOutput) Stopped(info RecordingInfo) { o.stopped <- info }

// One track of a participant recorded on its own (a track egress), beside
// a recording of the whole participant: the shared track's subscription is
// split between them, the track's file is named by its output, and the
// track's end ends its recording alone.
func TestTrackRecordingBesideTheParticipants(t *testing.T) {
	f := newFixture(t, 0)
	ctx := context.Background()
	whole, _, err := f.s.Start(ctx, "r", "alice")
	if err != nil {
		t.Fatal(err)
	}
	out := &fakeOutput{stopped: make(chan RecordingInfo, 1)}
	one, created, err := f.s.Start(ctx, "r", "alice", Track("TR_s"), WithOutput(out))
	if err != nil || !created || one.ID == whole.ID {
		t.Fatalf("track start: %+v %v %v", one, created, err)
	}
	b := f.bots["r"]
	if !b.wanted["alice"] || !b.wanted["alice/TR_s"] {
		t.Errorf("bot asked for %v", b.wanted)
	}
	for _, sid := range []string{"TR_a", "TR_s"} {
		r := newFakeReader()
		if !f.handler("r").TrackSubscribed(&bot.Track{Info: bot.TrackInfo{Room: "r", Participant: "alice", TrackSID: sid, Subscription: uint64(len(sid)), MimeType: "audio/opus"}, Remote: r}) {
			t.Fatalf("%s not taken", sid)
		}
		for i := 0; i < 60; i++ {
			r.ch <- &rtp.Packet{Header: rtp.Header{SequenceNumber: uint16(i), Timestamp: uint32(960 * i), SSRC: 1}, Payload: []byte{0xF8, 0xFF, 0xFE}}
		}
	}
	waitTracks := func(id string, n int) RecordingInfo {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			for _, r := range f.s.List() {
				if r.ID == id && len(r.Tracks) == n {
					return r
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("%s never had %d tracks", id, n)
		return RecordingInfo{}
	}
	// The track the egress records is the whole participant's too: one
	// subscription, split (asked for again when the egress began).
	if n := b.resubscribed["alice/TR_s"]; n != 1 {
		t.Errorf("TR_s subscribed again %d times when its egress began, want 1", n)
	}
	got := waitTracks(whole.ID, 2)
	if got.Tracks[0].TrackSID != "TR_a" || got.Tracks[1].TrackSID != "TR_s" {
		t.Errorf("the whole participant's recording took %+v", got.Tracks)
	}

	if got := waitTracks(one.ID, 1); got.Tracks[0].TrackSID != "TR_s" {
		t.Errorf("the track's recording took %s", got.Tracks[0].TrackSID)
	}
	// A subscription that ends while the track is still published (the
	// bot subscribes again) does not end the track's recording.
	b.mu.Lock()
	b.published = map[string]bool{"alice/TR_s": true}
	b.mu.Unlock()
	f.handler("r").TrackEnded(bot.TrackInfo{Room: "r", Participant: "alice", TrackSID: "TR_s", Subscription: uint64(len("TR_s"))})
	select {
	case info := <-out.stopped:
		t.Fatalf("the track's recording stopped while its track is published: %+v", info)
	case <-time.After(300 * time.Millisecond):
	}
	r2 := newFakeReader()
	if !f.handler("r").TrackSubscribed(&bot.Track{Info: bot.TrackInfo{Room: "r", Participant: "alice", TrackSID: "TR_s", Subscription: 99, MimeType: "audio/opus"}, Remote: r2}) {
		t.Fatal("the new subscription was not taken")
	}
	b.mu.Lock()
	b.published = nil
	b.mu.Unlock()
	f.handler("r").TrackEnded(bot.TrackInfo{Room: "r", Participant: "alice", TrackSID: "TR_s", Subscription: 99})
	var final RecordingInfo
	select {
	case final = <-out.stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("the track's recording did not stop with its track")
	}
	if final.StopReason != reasonTrackEnded || final.Tracks[0].Packets != 60 {
		t.Errorf("track recording ended: %+v", final)
	}
	key := final.Tracks[0].Key
	if len(key) < 8 || key[:9] != "egress/r/" {
		t.Errorf("key %q, not the output's", key)
	}
	out.mu.Lock()
	events := append([]string(nil), out.events...)
	out.mu.Unlock()
	if len(events) != 2 || events[0] != "opened "+key || events[1] != "closed "+key {
		t.Errorf("output told %q", events)
	}
	for _, r := range f.s.List() {
		if r.ID == whole.ID && r.State != StateRecording {
			t.Errorf("the whole participant's recording: %+v", r)
		}
	}
	if b.wanted["alice/TR_s"] || !b.wanted["alice"] {
		t.Errorf("after the track's end the bot wants %v", b.wanted)
	}
	// Its share of the split subscription ended with the subscription,
	// every packet in its file too.
	w, err := f.s.Stop(ctx, "r", "alice")
	if err != nil || len(w.Tracks) < 2 || w.Tracks[1].TrackSID != "TR_s" || w.Tracks[1].Packets != 60 {
		t.Errorf("the whole participant's recording: %+v %v", w.Tracks, err)
	}
}
