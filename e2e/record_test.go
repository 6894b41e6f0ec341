package e2e

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/trackrec/trackrec/recorder"
	"github.com/trackrec/trackrec/testbed"
)

const frame = 20 * time.Millisecond

// isFiller says whether an Opus packet was put in by the SFU (on mute) or
// the recorder (in gaps) rather than sent by the publisher: a concealment
// request (frames of zero length), or digital silence (CELT fullband frames
// of 2.5 to 20 ms whose whole content is the silence flag).
func isFiller(p []byte) bool {
	if len(p) == 1 || (len(p) == 2 && p[0]&3 == 3) {
		return true
	}
	if len(p) < 3 || p[0]>>3 < 28 {
		return false
	}
	body := p[1:]
	if p[0]&3 == 3 {
		body = body[1:]
	}
	if len(body) < 2 || body[0] != 0xFF || body[1] != 0xFE {
		return false
	}
	for i := 2; i < len(body); i++ {
		// repeated FF FE frames (recorder) or zero padding (SFU blank frame)
		if !(body[i] == 0 || (i%2 == 0 && body[i] == 0xFF) || (i%2 == 1 && body[i] == 0xFE)) {
			return false
		}
	}
	return true
}

// match finds the recorded publisher packets in what the publisher sent on
// that track: the longest run of sent[i:] that the recorded packets follow in
// order. It returns the matched sent packets and how many sent packets inside
// the run are missing from the file.
func match(t *testing.T, recorded [][]byte, sent []testbed.SentPacket, trackSID string) (matched []testbed.SentPacket, missing int) {
	t.Helper()
	return matchNear(t, recorded, sent, trackSID, time.Time{})
}

// matchNear is match that, of equally good alignments, takes the one whose
// first packet was sent nearest near (the earliest when near is zero).
func matchNear(t *testing.T, recorded [][]byte, sent []testbed.SentPacket, trackSID string, near time.Time) (matched []testbed.SentPacket, missing int) {
	t.Helper()
	var own []testbed.SentPacket
	for _, s := range sent {
		if s.TrackSID == trackSID {
			own = append(own, s)
		}
	}
	var pub [][]byte
	for _, p := range recorded {
		if !isFiller(p) {
			pub = append(pub, p)
		}
	}
	if len(pub) == 0 {
		t.Fatalf("track %s: no publisher packets in the file", trackSID)
	}
	best, bestMissing := []testbed.SentPacket(nil), 0
	for i := range own {
		if !bytes.Equal(own[i].Payload, pub[0]) {
			continue
		}
		j, k, miss := i, 0, 0
		var got []testbed.SentPacket
		for k < len(pub) && j < len(own) && miss <= 5 {
			if bytes.Equal(own[j].Payload, pub[k]) {
				got = append(got, own[j])
				k++
			} else {
				miss++
			}
			j++
		}
		closer := !near.IsZero() && best != nil && miss == bestMissing && absDur(got[0].At.Sub(near)) < absDur(best[0].At.Sub(near))
		if k == len(pub) && (best == nil || miss < bestMissing || closer) {
			best, bestMissing = got, miss
		}
	}
	if best == nil {
		// Say where the longest attempt broke off, to tell loss from corruption.
		longest, at := 0, -1
		for i := range own {
			k := 0
			for i+k < len(own) && k < len(pub) && bytes.Equal(own[i+k].Payload, pub[k]) {
				k++
			}
			if k > longest {
				longest, at = k, i
			}
		}
		next := []byte(nil)
		if longest < len(pub) {
			next = pub[longest]
		}
		t.Fatalf("track %s: the %d recorded packets are not the publisher's payloads in order: %d match sent[%d:], then recorded % x", trackSID, len(pub), longest, at, head(next, 16))
	}
	return best, bestMissing
}

func head(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

func readPackets(t *testing.T, path string) [][]byte {
	t.Helper()
	f, err := testbed.ReadOpusFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return f.Packets
}

func within(t *testing.T, what string, got, want, tol time.Duration) {
	t.Helper()
	if d := got - want; d > tol || d < -tol {
		t.Errorf("%s = %v, want %v ± %v", what, got, want, tol)
	}
}

func fileOf(t *testing.T, info recorder.RecordingInfo, trackSID string) recorder.TrackInfo {
	t.Helper()
	for _, tr := range info.Tracks {
		if tr.TrackSID == trackSID {
			if tr.Path == "" {
				t.Fatalf("track %s has no file: %+v", trackSID, tr)
			}
			return tr
		}
	}
	t.Fatalf("recording has no track %s: %+v", trackSID, info)
	return recorder.TrackInfo{}
}

// checkTrackFile is what a user checks of a finished track file: it decodes
// cleanly, its duration is that of the audio sent, and its packets are the
// publisher's, byte for byte. It returns the matched sent packets.
func checkTrackFile(t *testing.T, path string, p *testbed.Publisher, trackSID string, maxMissing int) []testbed.SentPacket {
	t.Helper()
	return checkTrackFileNear(t, path, p, trackSID, maxMissing, time.Time{})
}

// checkTrackFileNear is checkTrackFile for a file whose first packet was
// sent near a known instant: a looping publisher sends the same payloads
// again, and a short file matches each time around; the one nearest wins.
func checkTrackFileNear(t *testing.T, path string, p *testbed.Publisher, trackSID string, maxMissing int, near time.Time) []testbed.SentPacket {
	t.Helper()
	packets := readPackets(t, path)
	matched, missing := matchNear(t, packets, p.Sent(), trackSID, near)
	if missing > maxMissing {
		t.Errorf("%d publisher packets missing inside the recording (allowed %d)", missing, maxMissing)
	}
	// When a track closes the SFU sends a short tail of silence frames; they
	// are real packets of the timeline, after the publisher's last one.
	tail := trailingFiller(t, packets)
	if tail > 300*time.Millisecond {
		t.Errorf("%v of silence after the publisher's last packet", tail)
	}
	// The file begins on the second its name carries, so the publisher's
	// first packet sits after a lead of silence shorter than a second.
	lead := firstPosition(t, path, matched[0].Payload)
	if lead < 0 || lead >= time.Second {
		t.Errorf("first publisher packet at %v into the file, want within its first second", lead)
	}
	want := lead + matched[len(matched)-1].RTPTime.Sub(matched[0].RTPTime) + frame + tail
	within(t, "decoded duration", decodedDuration(t, path), want, 60*time.Millisecond)
	// ffprobe reports an Ogg Opus stream's duration from its last granule,
	// pre-skip included (it does so for opusenc's files too).
	within(t, "container duration", probeDuration(t, path), want+preSkip(t, path), 60*time.Millisecond)
	return matched
}

// preSkip reads the OpusHead pre-skip of an Ogg Opus file.
func preSkip(t *testing.T, path string) time.Duration {
	t.Helper()
	f, err := testbed.ReadOpusFile(path)
	if err != nil || len(f.Head) < 12 {
		t.Fatalf("OpusHead of %s: %v", path, err)
	}
	return time.Duration(int(f.Head[10])|int(f.Head[11])<<8) * time.Second / 48000
}

// firstPosition is where ffprobe places the packet with this payload first.
func firstPosition(t *testing.T, path string, payload []byte) time.Duration {
	t.Helper()
	sum := md5.Sum(payload)
	hash := "MD5:" + hex.EncodeToString(sum[:])
	for _, p := range probePackets(t, path) {
		if p.hash == hash {
			return p.pts
		}
	}
	t.Fatalf("%s: first publisher packet not found by ffprobe", path)
	return 0
}

// trailingFiller is the length of the silence packets ending the file.
func trailingFiller(t *testing.T, packets [][]byte) time.Duration {
	var d time.Duration
	for i := len(packets) - 1; i >= 0 && isFiller(packets[i]); i-- {
		pd, err := testbed.OpusPacketDuration(packets[i])
		if err != nil {
			t.Fatal(err)
		}
		d += pd
	}
	return d
}

func TestStartStopRecordsPublisherBytes(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	room := "standup"
	p := publish(t, room, "alice")
	time.Sleep(time.Second)

	startedAt := time.Now()
	info := s.mustStart(room, "alice")
	joinedAt := time.Now()
	if info.Room != room || info.Participant != "alice" || info.ID == "" {
		t.Fatalf("start answered %+v", info)
	}
	// Starting again is idempotent: same recording, 200 not 201.
	code, again, _ := s.post("/recordings/start", room, "alice")
	if code != http.StatusOK || again.ID != info.ID {
		t.Errorf("second start: %d %+v, want 200 with id %s", code, again, info.ID)
	}
	time.Sleep(4 * time.Second)
	live := s.waitRecording(room, "alice", 5*time.Second, func(r recorder.RecordingInfo) bool {
		return r.State == recorder.StateRecording && len(r.Tracks) == 1 && r.Tracks[0].Bytes > 0
	})
	if live.Tracks[0].StartedAt == nil || live.Tracks[0].File == "" {
		t.Errorf("active track lacks start/file: %+v", live.Tracks[0])
	}
	stopAt := time.Now()
	final := s.mustStop(room, "alice")
	if final.State != recorder.StateStopped || final.StoppedAt == nil {
		t.Errorf("stop answered %+v", final)
	}
	tr := fileOf(t, final, p.TrackSID())
	if tr.State != "closed" {
		t.Errorf("track state %q after stop", tr.State)
	}
	// The layout downstream pipelines parse, under the local directory.
	wantPrefix := filepath.Join(s.dir, room, "alice-")
	if !strings.HasPrefix(tr.Path, wantPrefix) || !strings.HasSuffix(tr.Path, "-"+p.TrackSID()+".ogg") {
		t.Errorf("file %s does not follow {room}/{identity}-{time}-{track}.ogg", tr.Path)
	}
	if name := filepath.Base(tr.Path); tr.StartedAt == nil || !strings.Contains(name, tr.StartedAt.UTC().Format("2006-01-02T150405")) {
		t.Errorf("file name %s does not carry its start second %s", name, tr.StartedAt.UTC())
	}
	st, err := os.Stat(tr.Path)
	if err != nil || st.Size() != tr.Bytes {
		t.Errorf("file size %v (%v), API says %d bytes", st, err, tr.Bytes)
	}

	matched := checkTrackFile(t, tr.Path, p, p.TrackSID(), 0)
	// Nothing of the recorded interval is missing: the first packet follows
	// the join by about one subscription round trip, the last precedes stop.
	first, last := matched[0].At, matched[len(matched)-1].At
	if first.Before(startedAt) || first.After(joinedAt.Add(600*time.Millisecond)) {
		t.Errorf("first recorded packet sent at +%v after the start request (join took %v)", first.Sub(startedAt), joinedAt.Sub(startedAt))
	}
	// Stop drains for 100 ms what the SFU already sent.
	if last.After(stopAt.Add(150*time.Millisecond)) || last.Before(stopAt.Add(-300*time.Millisecond)) {
		t.Errorf("last recorded packet sent %v after the stop request", last.Sub(stopAt))
	}
	// The anchor is where the first packet's capture lands on the wall clock
	// (plus delivery delay); the file starts on the second before it.
	if tr.Anchor == nil {
		t.Fatalf("no anchor: %+v", tr)
	}
	within(t, "anchor vs capture of the first packet", tr.Anchor.Sub(matched[0].RTPTime), 0, 100*time.Millisecond)
	if !tr.StartedAt.Equal(tr.Anchor.Truncate(time.Second)) {
		t.Errorf("file start %v is not the second of the anchor %v", tr.StartedAt, tr.Anchor)
	}
}

func TestParticipantLeavingStopsRecording(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	room := "leave-room"
	p := publish(t, room, "bob")
	if resp, err := s.get("/readyz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("readyz with LiveKit up: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	s.mustStart(room, "bob")
	time.Sleep(3 * time.Second)
	if err := p.Leave(); err != nil {
		t.Fatal(err)
	}
	rec := s.waitRecording(room, "bob", 10*time.Second, func(r recorder.RecordingInfo) bool {
		return r.State == recorder.StateStopped
	})
	if rec.StopReason != "participant left" {
		t.Errorf("stop reason %q", rec.StopReason)
	}
	tr := fileOf(t, rec, p.TrackSID())
	checkTrackFile(t, tr.Path, p, p.TrackSID(), 0)
	code, _, _ := s.post("/recordings/stop", room, "bob")
	if code != http.StatusNotFound {
		t.Errorf("stopping a finished recording: %d, want 404", code)
	}
}

func TestOnlyRequestedParticipantIsRecordedAndBotIsShared(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	room := "two-people"
	carol := publish(t, room, "carol")
	dave := publish(t, room, "dave")
	erin := publish(t, room, "erin")
	s.mustStart(room, "carol")
	s.mustStart(room, "erin")
	time.Sleep(3 * time.Second)

	// Two recordings in the room, one bot, hidden from the others.
	rs := lksdk.NewRoomServiceClient(lk.HTTPURL, lk.APIKey, lk.APISecret)
	resp, err := rs.ListParticipants(context.Background(), &livekit.ListParticipantsRequest{Room: room})
	if err != nil {
		t.Fatal(err)
	}
	bots := 0
	for _, pi := range resp.Participants {
		if strings.HasPrefix(pi.Identity, "recorder-") {
			bots++
			if !pi.Permission.GetHidden() || pi.Permission.GetCanPublish() {
				t.Errorf("bot %s should be hidden and unable to publish: %+v", pi.Identity, pi.Permission)
			}
		}
	}
	if bots != 1 {
		t.Errorf("%d bots in the room, want 1", bots)
	}

	c := s.mustStop(room, "carol")
	e := s.mustStop(room, "erin")
	checkTrackFile(t, fileOf(t, c, carol.TrackSID()).Path, carol, carol.TrackSID(), 0)
	checkTrackFile(t, fileOf(t, e, erin.TrackSID()).Path, erin, erin.TrackSID(), 0)

	entries, err := os.ReadDir(filepath.Join(s.dir, room))
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range entries {
		if strings.HasPrefix(en.Name(), "dave-") || strings.Contains(en.Name(), dave.TrackSID()) {
			t.Errorf("dave was recorded without being asked: %s", en.Name())
		}
	}
	var media, manifests int
	for _, en := range entries {
		switch filepath.Ext(en.Name()) {
		case ".ogg":
			media++
		case ".json":
			manifests++
		default:
			t.Errorf("unexpected file %s in the room folder", en.Name())
		}
	}
	if media != 2 || manifests != 2 {
		t.Errorf("%d track files and %d manifests in the room folder, want 2 and 2", media, manifests)
	}
	// With nobody left to record, the bot leaves.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := rs.ListParticipants(context.Background(), &livekit.ListParticipantsRequest{Room: room})
		if err != nil {
			t.Fatal(err)
		}
		left := true
		for _, pi := range resp.Participants {
			if strings.HasPrefix(pi.Identity, "recorder-") {
				left = false
			}
		}
		if left {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("bot still in the room after its last recording stopped")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestMuteUnmuteStaysInOneFile(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	room := "mute-room"
	p := publish(t, room, "gina")
	s.mustStart(room, "gina")
	time.Sleep(2 * time.Second)
	if err := p.Mute(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if err := p.Unmute(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	final := s.mustStop(room, "gina")
	if len(final.Tracks) != 1 {
		t.Fatalf("mute/unmute produced %d tracks, want 1: %+v", len(final.Tracks), final.Tracks)
	}
	tr := fileOf(t, final, p.TrackSID())
	// The muted stretch stays in the timeline as silence, so the decoded
	// length is the wall-clock span of the packets sent. The SFU may drop
	// the packet that leaves with the unmute signal.
	checkTrackFile(t, tr.Path, p, p.TrackSID(), 2)
	if tr.SilencePackets == 0 {
		t.Errorf("no silence was filled in for the muted stretch: %+v", tr)
	}
}

func TestRepublishMakesANewFileInTheSameRecording(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	room := "republish-room"
	p := publish(t, room, "hank")
	s.mustStart(room, "hank")
	time.Sleep(2 * time.Second)
	firstSID := p.TrackSID()
	if err := p.Unpublish(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if err := p.Republish(); err != nil {
		t.Fatal(err)
	}
	secondSID := p.TrackSID()
	if secondSID == firstSID || secondSID == "" {
		t.Fatalf("republish kept SID %q", secondSID)
	}
	time.Sleep(2 * time.Second)
	final := s.mustStop(room, "hank")
	if len(final.Tracks) != 2 {
		t.Fatalf("want 2 track files, got %+v", final.Tracks)
	}
	checkTrackFile(t, fileOf(t, final, firstSID).Path, p, firstSID, 0)
	checkTrackFile(t, fileOf(t, final, secondSID).Path, p, secondSID, 0)
}

func TestScreenShareAudioIsASeparateFile(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	room := "share-room"
	p := publish(t, room, "ivy")
	s.mustStart(room, "ivy")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	share, err := p.PublishSecond(ctx, livekit.TrackSource_SCREEN_SHARE_AUDIO)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	final := s.mustStop(room, "ivy")
	mic, ss := fileOf(t, final, p.TrackSID()), fileOf(t, final, share.SID())
	if mic.Source != "microphone" || ss.Source != "screen_share_audio" {
		t.Errorf("sources %q %q", mic.Source, ss.Source)
	}
	checkTrackFile(t, mic.Path, p, p.TrackSID(), 0)
	checkTrackFile(t, ss.Path, p, share.SID(), 0)
}

func TestHostileNamesStayInsideTheDirectory(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	room := "../../etc"
	identity := "../x/y\u00e9"
	p := publish(t, room, identity)
	s.mustStart(room, identity)
	time.Sleep(2 * time.Second)
	final := s.mustStop(room, identity)
	tr := fileOf(t, final, p.TrackSID())
	rel, err := filepath.Rel(s.dir, tr.Path)
	if err != nil || strings.HasPrefix(rel, "..") || strings.Count(rel, string(filepath.Separator)) != 1 {
		t.Fatalf("file %s is not one level inside %s", tr.Path, s.dir)
	}
	checkTrackFile(t, tr.Path, p, p.TrackSID(), 0)
}

func TestShutdownClosesEveryFile(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	room := "shutdown-room"
	p := publish(t, room, "jack")
	s.mustStart(room, "jack")
	time.Sleep(3 * time.Second)
	s.terminate(t, 20*time.Second)
	files, _ := filepath.Glob(filepath.Join(s.dir, room, "jack-*.ogg"))
	if len(files) != 1 {
		t.Fatalf("files after shutdown: %v", files)
	}
	// Closed properly: the last page carries end-of-stream.
	data, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	last := bytes.LastIndex(data, []byte("OggS"))
	if last < 0 || data[last+5]&0x04 == 0 {
		t.Errorf("last page of %s lacks the end-of-stream flag", files[0])
	}
	checkTrackFile(t, files[0], p, p.TrackSID(), 0)
	if !strings.Contains(s.logs.String(), "shut down cleanly") {
		t.Errorf("no clean shutdown in the log")
	}
}

func TestUnreachableLiveKitIsABadGateway(t *testing.T) {
	t.Parallel()
	dead := freePort(t)
	s := startService(t, map[string]string{"LIVEKIT_URL": "ws://127.0.0.1:" + itoa(dead), "JOIN_TIMEOUT": "5s"})
	code, _, raw := s.post("/recordings/start", "r", "p")
	if code != http.StatusBadGateway && code != http.StatusGatewayTimeout {
		t.Fatalf("start against a dead LiveKit: %d %s", code, raw)
	}
	if !strings.Contains(raw, `"error"`) {
		t.Errorf("error body %s", raw)
	}
	if got := s.list(); len(got) != 0 {
		t.Errorf("a failed start left recordings behind: %+v", got)
	}
	if resp, err := s.get("/readyz"); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("readyz with LiveKit down: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
}

func TestBadConfigurationStopsStartup(t *testing.T) {
	t.Parallel()
	cases := map[string][]string{
		"LIVEKIT_URL":     {"LIVEKIT_API_KEY=k", "LIVEKIT_API_SECRET=s"},
		"APP_PORT":        {"LIVEKIT_URL=ws://127.0.0.1:1", "LIVEKIT_API_KEY=k", "LIVEKIT_API_SECRET=s", "APP_PORT=http"},
		"LOG_LEVEL":       {"LIVEKIT_URL=ws://127.0.0.1:1", "LIVEKIT_API_KEY=k", "LIVEKIT_API_SECRET=s", "LOG_LEVEL=loud"},
		"LOCAL_DIRECTORY": {"LIVEKIT_URL=ws://127.0.0.1:1", "LIVEKIT_API_KEY=k", "LIVEKIT_API_SECRET=s", "LOCAL_DIRECTORY=/dev/null/x", "APP_PORT=" + itoa(freePort(t))},
	}
	for setting, env := range cases {
		out, err := runBinary(env)
		if err == nil {
			t.Errorf("%s: recorder started with a bad setting", setting)
			continue
		}
		lines := outputLines(out)
		if len(lines) != 1 || !strings.Contains(lines[0], setting) || strings.Contains(out, "goroutine") {
			t.Errorf("%s: want one line naming the setting, got:\n%s", setting, out)
		}
	}
}

func TestParticipantWhoJoinsLaterIsRecorded(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	room := "late-room"
	info := s.mustArm(room, "lena")
	if info.State != recorder.StateWaiting {
		t.Errorf("state before the participant joined: %q", info.State)
	}
	time.Sleep(time.Second)
	p := publish(t, room, "lena")
	s.waitRecording(room, "lena", 10*time.Second, func(r recorder.RecordingInfo) bool {
		return r.State == recorder.StateRecording && len(r.Tracks) == 1 && r.Tracks[0].Packets > 50
	})
	final := s.mustStop(room, "lena")
	checkTrackFile(t, fileOf(t, final, p.TrackSID()).Path, p, p.TrackSID(), 0)
}

// A client that loses its connection joins again under the same identity;
// LiveKit replaces the old session. The recording carries on with the new
// session's track in a new file.
func TestReconnectingParticipantKeepsBeingRecorded(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	room := "reconnect-room"
	first := publish(t, room, "kim")
	rec := s.mustStart(room, "kim")
	time.Sleep(2 * time.Second)
	second := publish(t, room, "kim")
	time.Sleep(3 * time.Second)
	final := s.mustStop(room, "kim")
	if final.ID != rec.ID {
		t.Fatalf("a new recording replaced the old one")
	}
	if final.StopReason != "stopped by request" {
		t.Errorf("recording ended by %q before the stop request", final.StopReason)
	}
	checkTrackFile(t, fileOf(t, final, first.TrackSID()).Path, first, first.TrackSID(), 0)
	checkTrackFile(t, fileOf(t, final, second.TrackSID()).Path, second, second.TrackSID(), 0)
}

func TestSlowLiveKitIsAGatewayTimeout(t *testing.T) {
	t.Parallel()
	// A server that accepts connections and never answers.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	s := startService(t, map[string]string{"LIVEKIT_URL": "ws://" + l.Addr().String(), "JOIN_TIMEOUT": "2s"})
	began := time.Now()
	code, _, raw := s.post("/recordings/start", "r", "p")
	if code != http.StatusGatewayTimeout {
		t.Fatalf("start against a silent LiveKit: %d %s", code, raw)
	}
	if took := time.Since(began); took > 10*time.Second {
		t.Errorf("took %v with a 2s join timeout", took)
	}
}

func TestRoomClosingStopsRecording(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	room := "closing-room"
	p := publish(t, room, "liam")
	s.mustStart(room, "liam")
	time.Sleep(2 * time.Second)
	rs := lksdk.NewRoomServiceClient(lk.HTTPURL, lk.APIKey, lk.APISecret)
	if _, err := rs.DeleteRoom(context.Background(), &livekit.DeleteRoomRequest{Room: room}); err != nil {
		t.Fatal(err)
	}
	rec := s.waitRecording(room, "liam", 10*time.Second, func(r recorder.RecordingInfo) bool {
		return r.State == recorder.StateStopped
	})
	if !strings.Contains(rec.StopReason, "disconnected") {
		t.Errorf("stop reason %q", rec.StopReason)
	}
	checkTrackFile(t, fileOf(t, rec, p.TrackSID()).Path, p, p.TrackSID(), 0)
}

// Bots of two instances share a room, each recording its own participant.
func TestTwoInstancesShareARoom(t *testing.T) {
	t.Parallel()
	a, b := startService(t, nil), startService(t, nil)
	room := "shared-room"
	mia := publish(t, room, "mia")
	noah := publish(t, room, "noah")
	a.mustStart(room, "mia")
	b.mustStart(room, "noah")
	time.Sleep(3 * time.Second)
	ra, rb := a.mustStop(room, "mia"), b.mustStop(room, "noah")
	if ra.StopReason != "stopped by request" || rb.StopReason != "stopped by request" {
		t.Errorf("a bot was pushed out: %q %q", ra.StopReason, rb.StopReason)
	}
	checkTrackFile(t, fileOf(t, ra, mia.TrackSID()).Path, mia, mia.TrackSID(), 0)
	checkTrackFile(t, fileOf(t, rb, noah.TrackSID()).Path, noah, noah.TrackSID(), 0)
	if len(ra.Tracks) != 1 || len(rb.Tracks) != 1 {
		t.Errorf("tracks: %+v / %+v", ra.Tracks, rb.Tracks)
	}
}

// Stopping one participant and starting them again while the bot stays in the
// room for another records the participant anew.
func TestRestartWhileTheBotStays(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	room := "restart-room"
	amy := publish(t, room, "amy")
	publish(t, room, "ben")
	s.mustStart(room, "amy")
	s.mustStart(room, "ben")
	time.Sleep(2 * time.Second)
	s.mustStop(room, "amy")
	again := s.mustStart(room, "amy")
	s.waitRecording(room, "amy", 10*time.Second, func(r recorder.RecordingInfo) bool {
		return r.ID == again.ID && r.State == recorder.StateRecording && len(r.Tracks) == 1 && r.Tracks[0].Packets > 50
	})
	final := s.mustStop(room, "amy")
	checkTrackFile(t, fileOf(t, final, amy.TrackSID()).Path, amy, amy.TrackSID(), 0)
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
