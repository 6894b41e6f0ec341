package loadbench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"sync"
	"time"

	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/pion/webrtc/v4"
)

// SubscriberStats is what the bare subscriber received, per track.
type SubscriberStats struct {
	Tracks  int   `json:"tracks"`
	Packets int64 `json:"packets"`
	// Lost sums the gaps in each track's sequence numbers; MaxLost is the
	// most of one track.
	Lost    int64 `json:"lost"`
	MaxLost int64 `json:"max_lost"`
}

// Subscribe is the bare server-sdk-go subscriber (its own process): one
// participant per room with the SDK's defaults, subscribing to every audio
// track, reading its packets and discarding them. It writes "ready" to out
// once want tracks deliver packets, and its stats as JSON when ctx ends.
// With profile set, a CPU profile of the process, from the moment every
// track delivers until ctx ends, is written there.
func Subscribe(ctx context.Context, lk Server, rooms []string, want int, profile string, out io.Writer) error {
	var mu sync.Mutex
	type counter struct {
		packets, lost int64
		last          uint16
		seen          bool
	}
	tracks := map[string]*counter{}
	readyOnce := sync.Once{}
	ready := func() {
		n := 0
		for _, c := range tracks {
			if c.seen {
				n++
			}
		}
		if n >= want {
			readyOnce.Do(func() {
				if profile != "" {
					startProfile(profile)
				}
				fmt.Fprintln(out, "ready")
			})
		}
	}
	var wg sync.WaitGroup
	var joined []*lksdk.Room
	defer func() {
		for _, r := range joined {
			r.Disconnect()
		}
		wg.Wait()
	}()
	if want == 0 {
		readyOnce.Do(func() { fmt.Fprintln(out, "ready") })
	}
	for _, name := range rooms {
		if name == "" {
			continue
		}
		cb := lksdk.NewRoomCallback()
		cb.ParticipantCallback.OnTrackSubscribed = func(t *webrtc.TrackRemote, _ *lksdk.RemoteTrackPublication, _ *lksdk.RemoteParticipant) {
			if t.Kind() != webrtc.RTPCodecTypeAudio {
				return
			}
			c := &counter{}
			mu.Lock()
			tracks[name+"/"+t.ID()] = c
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					p, _, err := t.ReadRTP()
					if err != nil {
						return
					}
					mu.Lock()
					if c.seen {
						if gap := int64(p.SequenceNumber - c.last - 1); gap > 0 && gap < 1000 {
							c.lost += gap
						}
					}
					first := !c.seen
					c.seen, c.last = true, p.SequenceNumber
					c.packets++
					if first {
						ready()
					}
					mu.Unlock()
				}
			}()
		}
		r, err := lksdk.ConnectToRoom(lk.URL, lksdk.ConnectInfo{APIKey: lk.APIKey, APISecret: lk.APISecret,
			RoomName: name, ParticipantIdentity: "bare-subscriber"}, cb)
		if err != nil {
			return fmt.Errorf("join %s: %w", name, err)
		}
		joined = append(joined, r)
	}
	<-ctx.Done()
	pprof.StopCPUProfile()
	mu.Lock()
	st := SubscriberStats{Tracks: len(tracks)}
	for _, c := range tracks {
		st.Packets += c.packets
		st.Lost += c.lost
		st.MaxLost = max(st.MaxLost, c.lost)
	}
	mu.Unlock()
	return json.NewEncoder(out).Encode(st)
}

// startProfile starts the process's CPU profile into path; a failure only
// leaves the profile out.
func startProfile(path string) {
	f, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "subscriber: no CPU profile:", err)
	}
}

// settle is how long a child gets to write its last words after its
// context ends.
const settle = 5 * time.Second
