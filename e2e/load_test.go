package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/trackrec/trackrec/recorder"
)

// 200 concurrent start requests for 100 participants in 10 rooms (each
// participant asked twice): exactly 100 recordings, one bot per room, every
// answer a 201 or a 200, and after stopping them all no bot is left.
// Bounded: 200 requests on loopback.
func TestConcurrentStarts(t *testing.T) {
	t.Parallel()
	s := startService(t, map[string]string{"MIXDOWN": "none"})
	const rooms, perRoom = 10, 10
	type key struct{ room, id string }
	var keys []key
	for r := 0; r < rooms; r++ {
		for p := 0; p < perRoom; p++ {
			keys = append(keys, key{fmt.Sprintf("load-%d", r), fmt.Sprintf("p%d", p)})
		}
	}
	codes := make(chan int, 2*len(keys))
	var wg sync.WaitGroup
	for round := 0; round < 2; round++ {
		for _, k := range keys {
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, _, _ := s.postJSON("/recordings/start", map[string]any{"room": k.room, "participant": k.id, "wait_for_participant": true})
				codes <- code
			}()
		}
	}
	wg.Wait()
	close(codes)
	created := 0
	for c := range codes {
		switch c {
		case http.StatusCreated:
			created++
		case http.StatusOK:
		default:
			t.Errorf("start answered %d", c)
		}
	}
	if created != len(keys) {
		t.Errorf("%d recordings created, want %d", created, len(keys))
	}
	active := 0
	for _, r := range s.list() {
		if r.State != recorder.StateStopped {
			active++
		}
	}
	if active != len(keys) {
		t.Errorf("%d active recordings, want %d", active, len(keys))
	}
	rs := lksdk.NewRoomServiceClient(lk.HTTPURL, lk.APIKey, lk.APISecret)
	bots := func(room string) int {
		resp, err := rs.ListParticipants(context.Background(), &livekit.ListParticipantsRequest{Room: room})
		if err != nil {
			return -1
		}
		n := 0
		for _, p := range resp.Participants {
			if strings.HasPrefix(p.Identity, recorder.BotIdentityPrefix) {
				n++
			}
		}
		return n
	}
	for r := 0; r < rooms; r++ {
		if n := bots(fmt.Sprintf("load-%d", r)); n != 1 {
			t.Errorf("room load-%d has %d bots, want 1", r, n)
		}
	}
	for _, k := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if code, _, raw := s.post("/recordings/stop", k.room, k.id); code != http.StatusOK {
				t.Errorf("stop %s/%s: %d %s", k.room, k.id, code, raw)
			}
		}()
	}
	wg.Wait()
	waitFor(t, 20*time.Second, "every bot to leave", func() bool {
		for r := 0; r < rooms; r++ {
			if bots(fmt.Sprintf("load-%d", r)) > 0 {
				return false
			}
		}
		return true
	})
}
