package bot

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"
)

// What the bot asks the SFU for (SetSubscribed calls, in order) and what it
// tells the handler, room event by room event.
func TestSubscriptions(t *testing.T) {
	for _, tc := range []struct {
		name   string
		run    func(e *env)
		calls  []string
		events []string
	}{{
		name: "record asks for the audio of that participant only",
		run: func(e *env) {
			e.present("alice", "PA_1", e.mic("TR_a"),
				e.pub("TR_s", lksdk.TrackKindAudio, livekit.TrackSource_SCREEN_SHARE_AUDIO),
				e.pub("TR_v", lksdk.TrackKindVideo, livekit.TrackSource_CAMERA))
			e.present("bob", "PA_2", e.mic("TR_b"))
			e.record("alice", true)
		},
		calls: []string{"sub TR_a", "sub TR_s"},
	}, {
		name: "record of one track asks for that track only, now or once published",
		run: func(e *env) {
			p := e.present("alice", "PA_1", e.mic("TR_a"), e.pub("TR_s", lksdk.TrackKindAudio, livekit.TrackSource_SCREEN_SHARE_AUDIO))
			if !e.b.RecordTrack("alice", "TR_s") {
				e.t.Error("alice not present")
			}
			e.b.RecordTrack("alice", "TR_late")
			e.publish(p, e.mic("TR_other"))
			e.publish(p, e.mic("TR_late"))
		},
		calls: []string{"sub TR_s", "sub TR_late"},
	}, {
		name: "forgetting one track keeps the others, and the whole participant keeps a named track",
		run: func(e *env) {
			a, s := e.mic("TR_a"), e.pub("TR_s", lksdk.TrackKindAudio, livekit.TrackSource_SCREEN_SHARE_AUDIO)
			p := e.present("alice", "PA_1", a, s)
			e.b.RecordTrack("alice", "TR_s")
			e.record("alice", true)
			e.deliver(p, a)
			e.deliver(p, s)
			e.b.Forget("alice") // the track egress of TR_s goes on
			e.b.ForgetTrack("alice", "TR_s")
		},
		calls:  []string{"sub TR_s", "sub TR_a", "unsub TR_a", "unsub TR_s"},
		events: []string{"subscribed alice TR_a #1", "subscribed alice TR_s #2"},
	}, {
		name: "a second record does not ask again",
		run: func(e *env) {
			e.present("alice", "PA_1", e.mic("TR_a"))
			e.record("alice", true)
			e.record("alice", true)
		},
		calls: []string{"sub TR_a"},
	}, {
		name: "a participant recorded before it joins is subscribed when it joins",
		run: func(e *env) {
			e.record("alice", false)
			e.connect("alice", "PA_1", e.mic("TR_a"), e.pub("TR_v", lksdk.TrackKindVideo, livekit.TrackSource_CAMERA))
		},
		calls:  []string{"sub TR_a"},
		events: []string{"joined alice"},
	}, {
		name: "a participant recorded while it joins is subscribed when it is reported",
		run: func(e *env) {
			// The SDK offers the publications of a joining participant
			// before the room lists it, and reports it later.
			a := e.mic("TR_a")
			p := &fakeParticipant{room: e.room, identity: "alice", sid: "PA_1", pubs: []*fakePub{a}}
			e.b.onTrackPublished(a, p)
			e.record("alice", false)
			e.room.parts["alice"] = p
			e.b.onParticipantConnected(p)
		},
		calls:  []string{"sub TR_a"},
		events: []string{"joined alice"},
	}, {
		name: "a participant that joins but is not recorded is left alone",
		run: func(e *env) {
			e.record("alice", false)
			e.connect("bob", "PA_2", e.mic("TR_b"))
		},
	}, {
		name: "a late publish is asked for",
		run: func(e *env) {
			p := e.present("alice", "PA_1")
			e.record("alice", true)
			e.publish(p, e.mic("TR_a"))
			e.publish(p, e.pub("TR_v", lksdk.TrackKindVideo, livekit.TrackSource_CAMERA))
			e.publish(e.present("bob", "PA_2"), e.mic("TR_b"))
		},
		calls: []string{"sub TR_a"},
	}, {
		name: "a republished track is subscribed again under its new SID",
		run: func(e *env) {
			a := e.mic("TR_a")
			p := e.present("alice", "PA_1", a)
			e.record("alice", true)
			e.deliver(p, a)
			e.unpublish(p, a)
			a2 := e.mic("TR_a2")
			e.publish(p, a2)
			e.deliver(p, a2)
		},
		calls:  []string{"sub TR_a", "sub TR_a2"},
		events: []string{"subscribed alice TR_a #1", "ended alice TR_a #1", "subscribed alice TR_a2 #2"},
	}, {
		name: "a request that could not be sent is made on the next occasion",
		run: func(e *env) {
			a := e.mic("TR_a")
			a.fail = errors.New("signal closed")
			e.present("alice", "PA_1", a)
			e.record("alice", true)
			a.fail = nil
			e.record("alice", true)
		},
		calls: []string{"sub TR_a", "sub TR_a"},
	}, {
		name: "a failed subscription is asked for on the next occasion",
		run: func(e *env) {
			p := e.present("alice", "PA_1", e.mic("TR_a"))
			e.record("alice", true)
			e.b.onTrackSubscriptionFailed("TR_a", p)
			e.record("alice", true)
		},
		calls: []string{"sub TR_a", "sub TR_a"},
	}, {
		name: "a subscribed track is handed over",
		run: func(e *env) {
			a, s := e.mic("TR_a"), e.pub("TR_s", lksdk.TrackKindAudio, livekit.TrackSource_SCREEN_SHARE_AUDIO)
			p := e.present("alice", "PA_1", a, s)
			e.record("alice", true)
			e.deliver(p, a)
			e.deliver(p, s)
		},
		calls:  []string{"sub TR_a", "sub TR_s"},
		events: []string{"subscribed alice TR_a #1", "subscribed alice TR_s #2"},
	}, {
		name: "a video track is not handed over",
		run: func(e *env) {
			v := e.pub("TR_v", lksdk.TrackKindVideo, livekit.TrackSource_CAMERA)
			p := e.present("alice", "PA_1", v)
			e.record("alice", true)
			e.deliver(p, v)
			e.unpublish(p, v)
		},
	}, {
		name: "a track the handler refuses is unsubscribed and never ends",
		run: func(e *env) {
			e.h.refuse = true
			a := e.mic("TR_a")
			p := e.present("alice", "PA_1", a)
			e.record("alice", true)
			e.deliver(p, a)
			e.unpublish(p, a)
		},
		calls:  []string{"sub TR_a", "unsub TR_a"},
		events: []string{"refused alice TR_a #1"},
	}, {
		name: "forget unsubscribes what was asked for, and its tracks get no end",
		run: func(e *env) {
			a, v := e.mic("TR_a"), e.pub("TR_v", lksdk.TrackKindVideo, livekit.TrackSource_CAMERA)
			p := e.present("alice", "PA_1", a, v)
			e.present("bob", "PA_2", e.mic("TR_b"))
			e.record("alice", true)
			e.record("bob", true)
			e.deliver(p, a)
			e.b.Forget("alice")
			e.unpublish(p, a)
			e.publish(p, e.mic("TR_a2"))
		},
		calls:  []string{"sub TR_a", "sub TR_b", "unsub TR_a"},
		events: []string{"subscribed alice TR_a #1"},
	}, {
		name: "forget of an absent participant stops the wait for it",
		run: func(e *env) {
			e.record("alice", false)
			e.b.Forget("alice")
			e.connect("alice", "PA_1", e.mic("TR_a"))
		},
	}, {
		name: "a track that arrives after forget is not handed over",
		run: func(e *env) {
			a := e.mic("TR_a")
			p := e.present("alice", "PA_1", a)
			e.record("alice", true)
			e.b.Forget("alice")
			e.deliver(p, a)
		},
		calls: []string{"sub TR_a", "unsub TR_a"},
	}, {
		name: "a late unsubscribe after forget and record asks again",
		run: func(e *env) {
			a := e.mic("TR_a")
			p := e.present("alice", "PA_1", a)
			e.record("alice", true)
			old := e.deliver(p, a)
			e.b.Forget("alice")
			e.record("alice", true)
			e.unsubscribed(p, a, old)
			e.deliver(p, a)
		},
		calls:  []string{"sub TR_a", "unsub TR_a", "sub TR_a", "sub TR_a"},
		events: []string{"subscribed alice TR_a #1", "subscribed alice TR_a #2"},
	}, {
		name: "a late unsubscribe of an older subscription does not end the new one",
		run: func(e *env) {
			a := e.mic("TR_a")
			p := e.present("alice", "PA_1", a)
			e.record("alice", true)
			old := e.deliver(p, a)
			e.b.Forget("alice")
			e.record("alice", true)
			e.deliver(p, a)
			e.unsubscribed(p, a, old)
			e.mark()
			e.unpublish(p, a)
		},
		calls:  []string{"sub TR_a", "unsub TR_a", "sub TR_a", "sub TR_a"},
		events: []string{"subscribed alice TR_a #1", "subscribed alice TR_a #2", "--", "ended alice TR_a #2"},
	}, {
		name: "two subscriptions of one track end each with its own number",
		run: func(e *env) {
			a := e.mic("TR_a")
			p := e.present("alice", "PA_1", a)
			e.record("alice", true)
			first := e.deliver(p, a)
			e.deliver(p, a)
			e.unsubscribed(p, a, first)
			e.mark()
			e.unpublish(p, a)
		},
		calls:  []string{"sub TR_a", "sub TR_a"},
		events: []string{"subscribed alice TR_a #1", "subscribed alice TR_a #2", "ended alice TR_a #1", "--", "ended alice TR_a #2"},
	}, {
		name: "an unpublish ends the subscription once",
		run: func(e *env) {
			a := e.mic("TR_a")
			p := e.present("alice", "PA_1", a)
			e.record("alice", true)
			e.deliver(p, a)
			e.unpublish(p, a)
			e.b.onTrackUnpublished(a, p) // reported twice
		},
		calls:  []string{"sub TR_a"},
		events: []string{"subscribed alice TR_a #1", "ended alice TR_a #1"},
	}, {
		name: "an unpublish without an unsubscribe ends the subscription",
		run: func(e *env) {
			a := e.mic("TR_a")
			p := e.present("alice", "PA_1", a)
			e.record("alice", true)
			e.deliver(p, a)
			e.b.onTrackUnpublished(a, p)
		},
		calls:  []string{"sub TR_a"},
		events: []string{"subscribed alice TR_a #1", "ended alice TR_a #1"},
	}, {
		name: "an unpublish of a track never handed over ends nothing",
		run: func(e *env) {
			a := e.mic("TR_a")
			p := e.present("alice", "PA_1", a)
			e.record("alice", true)
			e.unpublish(p, a)
		},
		calls: []string{"sub TR_a"},
	}, {
		name: "a dropped participant's tracks end, it has left, and its next session is subscribed",
		run: func(e *env) {
			a := e.mic("TR_a")
			p := e.present("alice", "PA_1", a)
			e.record("alice", true)
			e.deliver(p, a)
			e.leave(p, livekit.DisconnectReason_SIGNAL_CLOSE)
			p2 := e.connect("alice", "PA_2", e.mic("TR_a2"))
			e.deliver(p2, p2.pubs[0])
		},
		calls:  []string{"sub TR_a", "sub TR_a2"},
		events: []string{"subscribed alice TR_a #1", "ended alice TR_a #1", "left alice dropped", "joined alice", "subscribed alice TR_a2 #2"},
	}, {
		name: "a participant that leaves on purpose has left intentionally",
		run: func(e *env) {
			p := e.present("alice", "PA_1")
			e.record("alice", true)
			e.leave(p, livekit.DisconnectReason_CLIENT_INITIATED)
		},
		events: []string{"left alice intentional"},
	}, {
		name: "a participant removed by the server has not left intentionally",
		run: func(e *env) {
			p := e.present("alice", "PA_1")
			e.record("alice", true)
			e.leave(p, livekit.DisconnectReason_PARTICIPANT_REMOVED)
		},
		events: []string{"left alice dropped"},
	}, {
		name: "an older session's departure after a newer session joined is not a departure",
		run: func(e *env) {
			old := e.present("alice", "PA_1")
			e.record("alice", true)
			e.connect("alice", "PA_2")
			old.reason = livekit.DisconnectReason_DUPLICATE_IDENTITY
			e.b.onParticipantDisconnected(old)
		},
		events: []string{"joined alice"},
	}, {
		name: "a participant not recorded comes and goes unreported",
		run: func(e *env) {
			e.record("alice", false)
			b := e.connect("bob", "PA_2", e.mic("TR_b"))
			e.deliver(b, b.pubs[0])
			e.leave(b, livekit.DisconnectReason_CLIENT_INITIATED)
		},
	}, {
		name: "a reconnect asks again for all audio of everyone recorded",
		run: func(e *env) {
			e.present("alice", "PA_1", e.mic("TR_a"), e.pub("TR_v", lksdk.TrackKindVideo, livekit.TrackSource_CAMERA))
			e.present("bob", "PA_2", e.mic("TR_b"))
			e.present("carol", "PA_3", e.mic("TR_c"))
			e.record("alice", true)
			e.record("bob", true)
			e.record("dave", false)
			e.b.onReconnecting()
			e.b.onReconnected()
			e.b.onReconnected() // and once more: nothing of the first is kept
		},
		calls: []string{"sub TR_a", "sub TR_b", "sub TR_a", "sub TR_b", "sub TR_a", "sub TR_b"},
	}, {
		name: "after leave nothing is asked for or reported",
		run: func(e *env) {
			a := e.mic("TR_a")
			p := e.present("alice", "PA_1", a)
			e.record("alice", true)
			first := e.deliver(p, a)
			e.b.Leave()
			e.unsubscribed(p, a, first)
			e.deliver(p, a)
			e.unpublish(p, a)
			e.publish(p, e.mic("TR_a2"))
			e.leave(p, livekit.DisconnectReason_CLIENT_INITIATED)
			e.connect("alice", "PA_2", e.mic("TR_a3"))
			e.record("alice", true)
			e.b.onReconnected()
		},
		// The track that arrived after Leave is let go of.
		calls:  []string{"sub TR_a", "unsub TR_a"},
		events: []string{"subscribed alice TR_a #1"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Config{})
			tc.run(e)
			if got := e.room.subscribeCalls(); !slices.Equal(got, tc.calls) {
				t.Errorf("SetSubscribed calls:\n got %q\nwant %q", got, tc.calls)
			}
			if got := e.h.eventLog(); !slices.Equal(got, tc.events) {
				t.Errorf("handler events:\n got %q\nwant %q", got, tc.events)
			}
		})
	}
}

// A handed-over track says where it comes from, with the codec the SDK
// negotiated, and ends with the same info.
func TestTrackInfo(t *testing.T) {
	e := newEnv(t, Config{})
	s := e.pub("TR_s", lksdk.TrackKindAudio, livekit.TrackSource_SCREEN_SHARE_AUDIO)
	s.muted = true // subscribed while muted
	p := e.present("alice", "PA_1", s)
	e.record("alice", true)
	remote := e.deliver(p, s)
	if len(e.h.tracks) != 1 {
		t.Fatalf("%d tracks handed over, want 1", len(e.h.tracks))
	}
	got := e.h.tracks[0]
	want := TrackInfo{
		Room: "r", RoomSID: "RM_1", Participant: "alice", ParticipantSID: "PA_1", ParticipantName: "Name of alice",
		TrackSID: "TR_s", Source: "screen_share_audio", MimeType: "audio/opus", Muted: true, Subscription: got.Info.Subscription,
	}
	if got.Info != want {
		t.Errorf("info\n got %+v\nwant %+v", got.Info, want)
	}
	if got.Info.Subscription == 0 {
		t.Error("subscription number is zero")
	}
	if got.Remote != remote {
		t.Error("the track does not read from the delivered remote")
	}
	e.unpublish(p, s)
	if log := e.h.eventLog(); len(log) != 2 || log[1] != "ended alice TR_s #1" {
		t.Errorf("events %q, want the subscription ended with its info", log)
	}
}

// Subscription numbers do not repeat across bots: a room's replacement bot
// subscribes to the same track SIDs.
func TestSubscriptionNumbersUniqueAcrossBots(t *testing.T) {
	seen := map[uint64]bool{}
	for range 3 {
		e := newEnv(t, Config{})
		a := e.mic("TR_a")
		p := e.present("alice", "PA_1", a)
		e.record("alice", true)
		e.deliver(p, a)
		e.deliver(p, a)
		for _, tr := range e.h.tracks {
			n := tr.Info.Subscription
			if n == 0 || seen[n] {
				t.Fatalf("subscription number %d zero or repeated (seen %v)", n, seen)
			}
			seen[n] = true
		}
	}
}

func TestParticipantSID(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(e *env)
		want string
	}{
		{"absent", func(e *env) {}, ""},
		{"present", func(e *env) { e.present("alice", "PA_1") }, "PA_1"},
		{"someone else present", func(e *env) { e.present("bob", "PA_2") }, ""},
		{"left", func(e *env) { e.leave(e.present("alice", "PA_1"), livekit.DisconnectReason_CLIENT_INITIATED) }, ""},
		{"reconnected as a new session", func(e *env) {
			e.leave(e.present("alice", "PA_1"), livekit.DisconnectReason_SIGNAL_CLOSE)
			e.connect("alice", "PA_3")
		}, "PA_3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Config{})
			tc.run(e)
			if got := e.b.ParticipantSID("alice"); got != tc.want {
				t.Errorf("ParticipantSID = %q, want %q", got, tc.want)
			}
			if got, want := e.b.Present("alice"), tc.want != ""; got != want {
				t.Errorf("Present = %v, want %v", got, want)
			}
		})
	}
}

// Which disconnects a new bot may undo by joining again.
func TestRecoverable(t *testing.T) {
	for reason, want := range map[livekit.DisconnectReason]bool{
		livekit.DisconnectReason_ROOM_DELETED:        false, // deleted through the API
		livekit.DisconnectReason_ROOM_CLOSED:         false, // closed when empty
		livekit.DisconnectReason_PARTICIPANT_REMOVED: false, // an operator removed the bot
		livekit.DisconnectReason_DUPLICATE_IDENTITY:  false,
		livekit.DisconnectReason_CLIENT_INITIATED:    false,
		livekit.DisconnectReason_SERVER_SHUTDOWN:     true, // a deploy, a node drained
		livekit.DisconnectReason_SIGNAL_CLOSE:        true, // the SDK gave up reconnecting
		livekit.DisconnectReason_MIGRATION:           true,
		livekit.DisconnectReason_STATE_MISMATCH:      true,
		livekit.DisconnectReason_JOIN_FAILURE:        true,
		livekit.DisconnectReason_CONNECTION_TIMEOUT:  true,
		livekit.DisconnectReason_MEDIA_FAILURE:       true,
		livekit.DisconnectReason_UNKNOWN_REASON:      true, // a killed server says nothing
	} {
		t.Run(reason.String(), func(t *testing.T) {
			e := newEnv(t, Config{})
			e.room.reason = reason
			e.b.onDisconnected(lksdk.GetDisconnectionReason(reason))
			e.b.onDisconnected(lksdk.GetDisconnectionReason(reason)) // the SDK may say it twice
			log := e.h.eventLog()
			if len(log) != 1 {
				t.Fatalf("events %q, want one Disconnected", log)
			}
			wantEvent := `disconnected "` + string(lksdk.GetDisconnectionReason(reason)) + ` (` + reason.String() + `)" recoverable=`
			if want {
				wantEvent += "true"
			} else {
				wantEvent += "false"
			}
			if log[0] != wantEvent {
				t.Errorf("event %q, want %q", log[0], wantEvent)
			}
		})
	}
}

// Leave is never followed by Disconnected, and disconnects once.
func TestLeave(t *testing.T) {
	e := newEnv(t, Config{})
	e.b.Leave()
	e.b.Leave()
	e.room.reason = livekit.DisconnectReason_CLIENT_INITIATED
	e.b.onDisconnected(lksdk.LeaveRequested)
	if n := e.room.disconnectCount(); n != 1 {
		t.Errorf("room disconnected %d times, want 1", n)
	}
	if log := e.h.eventLog(); len(log) != 0 {
		t.Errorf("events after Leave: %q", log)
	}
}

// The watchdog gives a reconnect ReconnectTimeout, then gives up for a fresh
// join. Times are on the synctest clock from the start of the test.
func TestReconnectWatchdog(t *testing.T) {
	const gaveUp = `disconnected "reconnect timed out" recoverable=true`
	type step struct {
		at time.Duration
		do func(e *env)
	}
	reconnecting := func(e *env) { e.b.onReconnecting() }
	reconnected := func(e *env) { e.b.onReconnected() }
	for _, tc := range []struct {
		name        string
		timeout     time.Duration
		steps       []step
		events      []string
		disconnects int
	}{{
		name:        "gives up after the timeout",
		timeout:     3 * time.Second,
		steps:       []step{{0, reconnecting}},
		events:      []string{"3s " + gaveUp},
		disconnects: 1,
	}, {
		name:        "gives up after 5 s by default",
		steps:       []step{{time.Second, reconnecting}},
		events:      []string{"6s " + gaveUp},
		disconnects: 1,
	}, {
		name:    "a reconnect in time disarms it",
		timeout: 3 * time.Second,
		steps:   []step{{0, reconnecting}, {3*time.Second - time.Millisecond, reconnected}},
	}, {
		name:        "further reconnecting events do not extend it",
		timeout:     3 * time.Second,
		steps:       []step{{0, reconnecting}, {2 * time.Second, reconnecting}},
		events:      []string{"3s " + gaveUp},
		disconnects: 1,
	}, {
		name:        "it is armed afresh after a reconnect",
		timeout:     3 * time.Second,
		steps:       []step{{0, reconnecting}, {time.Second, reconnected}, {2 * time.Second, reconnecting}},
		events:      []string{"5s " + gaveUp},
		disconnects: 1,
	}, {
		name:        "leave during a reconnect reports nothing",
		timeout:     3 * time.Second,
		steps:       []step{{0, reconnecting}, {time.Second, func(e *env) { e.b.Leave() }}},
		disconnects: 1, // Leave's own
	}, {
		// A watchdog whose timer fired just as it was stopped.
		name:    "a watchdog firing as Leave stops it reports nothing",
		timeout: 3 * time.Second,
		steps: []step{{0, reconnecting}, {time.Second, func(e *env) {
			n := e.b.armed
			e.b.Leave()
			e.b.giveUp(n)
		}}},
		disconnects: 1, // Leave's own
	}, {
		name:    "a watchdog firing as a reconnect disarms it reports nothing",
		timeout: 3 * time.Second,
		steps: []step{{0, reconnecting}, {time.Second, func(e *env) {
			n := e.b.armed
			reconnected(e)
			reconnecting(e)
			e.b.giveUp(n)
		}}, {2 * time.Second, reconnected}},
	}, {
		name:    "a reconnect that fails before the timeout is reported once",
		timeout: 3 * time.Second,
		steps: []step{{0, reconnecting}, {time.Second, func(e *env) {
			e.room.reason = livekit.DisconnectReason_SIGNAL_CLOSE
			e.b.onDisconnected(lksdk.Failed)
		}}},
		events: []string{`1s disconnected "connection to room failed (SIGNAL_CLOSE)" recoverable=true`},
	}, {
		name:    "after giving up, the dead connection's events are not reported",
		timeout: 3 * time.Second,
		steps: []step{
			{0, func(e *env) {
				p := e.present("alice", "PA_1", e.mic("TR_a"))
				e.record("alice", true)
				e.deliver(p, p.pubs[0])
				reconnecting(e)
			}},
			{4 * time.Second, func(e *env) {
				p := e.room.parts["alice"]
				e.leave(p, livekit.DisconnectReason_CLIENT_INITIATED) // ends TR_a's subscription
				e.deliver(p, p.pubs[0])
				e.connect("alice", "PA_2", e.mic("TR_a2"))
				e.room.reason = livekit.DisconnectReason_SIGNAL_CLOSE
				e.b.onDisconnected(lksdk.Failed)
				reconnected(e)
			}},
		},
		events:      []string{"0s subscribed alice TR_a #1", "3s " + gaveUp},
		disconnects: 1,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newEnv(t, Config{ReconnectTimeout: tc.timeout})
				start := time.Now()
				for _, s := range tc.steps {
					time.Sleep(s.at - time.Since(start))
					s.do(e)
					synctest.Wait()
				}
				time.Sleep(time.Minute)
				synctest.Wait()
				if got := e.h.timedLog(); !slices.Equal(got, tc.events) {
					t.Errorf("events:\n got %q\nwant %q", got, tc.events)
				}
				if got := e.room.disconnectCount(); got != tc.disconnects {
					t.Errorf("room disconnected %d times, want %d", got, tc.disconnects)
				}
			})
		})
	}
}

// Join tells an unreachable LiveKit from a join that ran out of time.
func TestJoinFailures(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "ws://" + l.Addr().String()
	l.Close()
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want error
	}{
		{"connection refused", context.Background(), ErrUnreachable},
		{"context canceled", canceled, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{URL: closed, APIKey: "key", APISecret: "a-secret-of-thirty-two-characters", Identity: "bot",
				Logger: slog.New(slog.DiscardHandler)}
			b, err := Join(tc.ctx, cfg, "r", newFakeHandler())
			if b != nil || !errors.Is(err, tc.want) {
				t.Fatalf("Join = %v, %v; want an error wrapping %v", b, err, tc.want)
			}
			if tc.want != ErrUnreachable && errors.Is(err, ErrUnreachable) {
				t.Errorf("%v wraps ErrUnreachable", err)
			}
		})
	}
}
