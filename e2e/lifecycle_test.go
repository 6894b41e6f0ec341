package e2e

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trackrec/trackrec/recorder"
	"github.com/trackrec/trackrec/testbed"
)

// A participant who leaves and comes back within a second (a page refresh)
// is recorded both times through LiveKit's own webhooks: participant_left
// ends the first recording, participant_joined starts a second one with new
// files, and the first file holds every packet of the first stretch.
func TestLeaveAndRejoinWithinASecondRecordsBoth(t *testing.T) {
	t.Parallel()
	server, s := webhookService(t, map[string]string{"MIXDOWN": "none"})
	room, who := "refresh-room", "uma"
	first := publishOn(t, server, room, who)
	rec1 := s.waitRecording(room, who, 20*time.Second, func(r recorder.RecordingInfo) bool {
		return r.State == recorder.StateRecording && len(r.Tracks) == 1 && r.Tracks[0].Packets > 100
	})
	if err := first.Leave(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	second := publishOn(t, server, room, who)

	var rec2 recorder.RecordingInfo
	waitFor(t, 30*time.Second, "a second recording of the returning participant", func() bool {
		for _, r := range s.list() {
			if r.Participant == who && r.ID != rec1.ID && r.State == recorder.StateRecording && len(r.Tracks) == 1 && r.Tracks[0].Packets > 100 {
				rec2 = r
				return true
			}
		}
		return false
	})
	if err := second.Leave(); err != nil {
		t.Fatal(err)
	}
	var final1, final2 recorder.RecordingInfo
	waitFor(t, 20*time.Second, "both recordings stopped", func() bool {
		n := 0
		for _, r := range s.list() {
			switch {
			case r.ID == rec1.ID && r.State == recorder.StateStopped:
				final1, n = r, n+1
			case r.ID == rec2.ID && r.State == recorder.StateStopped:
				final2, n = r, n+1
			}
		}
		return n == 2
	})
	if l := s.list(); len(l) != 2 {
		t.Errorf("%d recordings, want exactly the two stretches: %+v", len(l), l)
	}
	f1, f2 := fileOf(t, final1, first.TrackSID()).Path, fileOf(t, final2, second.TrackSID()).Path
	if f1 == f2 {
		t.Fatalf("both stretches in one file %s", f1)
	}
	// The first stretch: every packet sent, to the last.
	m1 := checkTrackFile(t, f1, first, first.TrackSID(), 0)
	if sent := ownSent(first, first.TrackSID()); !bytes.Equal(m1[len(m1)-1].Payload, sent[len(sent)-1].Payload) {
		t.Errorf("the first file ends before the participant left: %d of %d packets", len(m1), len(sent))
	}
	// The second stretch: from its first seconds on, nothing missing inside.
	m2 := checkTrackFile(t, f2, second, second.TrackSID(), 0)
	sent2 := ownSent(second, second.TrackSID())
	lost := m2[0].RTPTime.Sub(sent2[0].RTPTime)
	t.Logf("second stretch: first recorded packet %v after the participant's first", lost)
	if lost > 3*time.Second {
		t.Errorf("the second stretch lost its first %v", lost)
	}
}

// An API stop answered, a start at once is a new recording (201) with new
// files; a start sent while the stop is still closing waits for it rather
// than being refused.
func TestStopThenStartAtOnceMakesTwoRecordings(t *testing.T) {
	t.Parallel()
	s := startService(t, map[string]string{"MIXDOWN": "none"})
	room, who := "restart-room", "vera"
	p := publish(t, room, who)
	s.mustStart(room, who)
	s.waitRecording(room, who, 20*time.Second, func(r recorder.RecordingInfo) bool {
		return len(r.Tracks) == 1 && r.Tracks[0].Packets > 100
	})
	code, stopped, body := s.post("/recordings/stop", room, who)
	if code != http.StatusOK || stopped.State != recorder.StateStopped {
		t.Fatalf("stop: %d %s", code, body)
	}
	code, started, body := s.post("/recordings/start", room, who)
	if code != http.StatusCreated || started.ID == stopped.ID {
		t.Fatalf("start right after the stop: %d %s", code, body)
	}
	s.waitRecording(room, who, 20*time.Second, func(r recorder.RecordingInfo) bool {
		return r.ID == started.ID && len(r.Tracks) == 1 && r.Tracks[0].Packets > 100
	})

	// The stop and the next start race: the start waits, then creates.
	stopDone := make(chan int, 1)
	go func() {
		code, _, _ := s.post("/recordings/stop", room, who)
		stopDone <- code
	}()
	time.Sleep(20 * time.Millisecond)
	code, third, body := s.post("/recordings/start", room, who)
	if code != http.StatusCreated || third.ID == started.ID {
		t.Fatalf("start during the stop: %d %s", code, body)
	}
	if code := <-stopDone; code != http.StatusOK {
		t.Fatalf("racing stop: %d", code)
	}
	s.waitRecording(room, who, 20*time.Second, func(r recorder.RecordingInfo) bool {
		return r.ID == third.ID && len(r.Tracks) == 1 && r.Tracks[0].Packets > 50
	})
	s.mustStop(room, who)

	paths := map[string]bool{}
	for _, r := range s.list() {
		if r.Participant != who || r.State != recorder.StateStopped {
			t.Errorf("recording %s in %s", r.ID, r.State)
			continue
		}
		tr := fileOf(t, r, p.TrackSID())
		paths[tr.Path] = true
		checkTrackFile(t, tr.Path, p, p.TrackSID(), 0)
	}
	if len(paths) != 3 {
		t.Errorf("%d distinct files, want 3 (one per recording)", len(paths))
	}
}

// A second recorder pointed at a LOCAL_DIRECTORY in use exits at start-up
// with one line naming it, and the first one's files are untouched: its
// recording goes on and ends whole.
func TestSecondRecorderOnTheSameDirectoryRefuses(t *testing.T) {
	t.Parallel()
	s := startService(t, map[string]string{"MIXDOWN": "none"})
	room, who := "locked-room", "wes"
	p := publish(t, room, who)
	s.mustStart(room, who)
	rec := s.waitRecording(room, who, 20*time.Second, func(r recorder.RecordingInfo) bool {
		return len(r.Tracks) == 1 && r.Tracks[0].Path != "" && r.Tracks[0].Packets > 100
	})
	path := rec.Tracks[0].Path
	before := snapshot(t, s.dir)

	out, err := runBinary([]string{
		"LIVEKIT_URL=" + lk.URL, "LIVEKIT_API_KEY=" + lk.APIKey, "LIVEKIT_API_SECRET=" + lk.APISecret,
		"APP_HOST=127.0.0.1", "APP_PORT=" + strconv.Itoa(freePort(t)), "LOCAL_DIRECTORY=" + s.dir,
	})
	if err == nil {
		t.Fatalf("a second recorder on %s started: %s", s.dir, out)
	}
	lines := outputLines(out)
	if len(lines) != 1 || !strings.Contains(lines[0], s.dir) || !strings.Contains(lines[0], "LOCAL_DIRECTORY") {
		t.Errorf("second recorder said %q; want one line naming LOCAL_DIRECTORY %s", out, s.dir)
	}
	// Every file of the first recorder is as it was (the open track file
	// only grew), and nothing was added.
	after := snapshot(t, s.dir)
	for name, b := range before {
		a, ok := after[name]
		switch {
		case !ok:
			t.Errorf("%s disappeared", name)
		case name == path:
			if len(a) < len(b) || !bytes.Equal(a[:len(b)], b) {
				t.Errorf("the open track file was changed: %d bytes before, %d after", len(b), len(a))
			}
		case !bytes.Equal(a, b):
			t.Errorf("%s changed", name)
		}
	}
	for name := range after {
		if _, ok := before[name]; !ok {
			t.Errorf("%s appeared", name)
		}
	}
	rec = s.mustStop(room, who)
	checkTrackFile(t, fileOf(t, rec, p.TrackSID()).Path, p, p.TrackSID(), 0)
}

// snapshot reads every file under dir, by path.
func snapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		b, err := io.ReadAll(f)
		files[path] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func ownSent(p *testbed.Publisher, trackSID string) []testbed.SentPacket {
	var own []testbed.SentPacket
	for _, s := range p.Sent() {
		if s.TrackSID == trackSID {
			own = append(own, s)
		}
	}
	return own
}
