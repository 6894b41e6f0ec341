package testbed

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	"github.com/livekit/protocol/logger"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/pion/webrtc/v4"
	"google.golang.org/protobuf/encoding/protojson"
)

const toneFile = "../testdata/tone.ogg"

// startupTimeout bounds starting a server; nothing is installed by tests.
const startupTimeout = time.Minute

func TestMain(m *testing.M) {
	// The SDK logs every signalling step at info; keep test output readable.
	if os.Getenv("TESTBED_SDK_LOG") == "" {
		lksdk.SetLogger(logger.GetDiscardLogger())
	}
	os.Exit(m.Run())
}

func serverLog(t *testing.T) io.Writer {
	if testing.Verbose() && os.Getenv("TESTBED_SERVER_LOG") != "" {
		return os.Stderr
	}
	return nil
}

func startServer(t *testing.T, o LiveKitOptions) *LiveKit {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startupTimeout)
	defer cancel()
	if o.LogWriter == nil {
		o.LogWriter = serverLog(t)
	}
	lk, err := StartLiveKit(ctx, o)
	if err != nil {
		t.Fatalf("StartLiveKit: %v", err)
	}
	t.Cleanup(func() {
		if err := lk.Close(); err != nil {
			t.Errorf("close livekit: %v", err)
		}
	})
	return lk
}

func TestReadOpusFile(t *testing.T) {
	f, err := ReadOpusFile(toneFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Head) != 19 || !bytes.HasPrefix(f.Tags, []byte("OpusTags")) {
		t.Fatalf("bad headers: head %d bytes, tags %q", len(f.Head), f.Tags[:8])
	}
	seen := map[string]int{}
	for i, p := range f.Packets {
		d, err := OpusPacketDuration(p)
		if err != nil || d != 20*time.Millisecond {
			t.Fatalf("packet %d: duration %v, %v", i, d, err)
		}
		if j, ok := seen[string(p)]; ok {
			t.Errorf("packets %d and %d are equal; tone.ogg should have distinct packets", j, i)
		}
		seen[string(p)] = i
	}

	// Cross-check packet boundaries with an independent demuxer.
	if err := CheckTools("ffprobe"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ffprobe", "-v", "error", "-select_streams", "a:0",
		"-show_entries", "packet=size", "-of", "csv=p=0", toneFile).Output()
	if err != nil {
		t.Fatalf("ffprobe: %v", err)
	}
	var sizes []string
	for _, line := range strings.Fields(string(out)) {
		sizes = append(sizes, strings.Split(line, ",")[0])
	}
	if len(sizes) != len(f.Packets) {
		t.Fatalf("ffprobe sees %d packets, we read %d", len(sizes), len(f.Packets))
	}
	for i, s := range sizes {
		if n, _ := strconv.Atoi(s); n != len(f.Packets[i]) {
			t.Fatalf("packet %d: ffprobe size %s, ours %d", i, s, len(f.Packets[i]))
		}
	}
}

func TestCacheDir(t *testing.T) {
	t.Setenv("TRACKREC_CACHE", "/x/y")
	if d, _ := CacheDir(); d != "/x/y" {
		t.Errorf("TRACKREC_CACHE: got %s", d)
	}
	t.Setenv("TRACKREC_CACHE", "")
	t.Setenv("XDG_CACHE_HOME", "/c")
	if d, _ := CacheDir(); d != "/c/trackrec" {
		t.Errorf("XDG_CACHE_HOME: got %s", d)
	}
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", "/h")
	if d, _ := CacheDir(); d != "/h/.cache/trackrec" {
		t.Errorf("HOME: got %s", d)
	}
}

// received is one RTP packet as the subscriber read it.
type received struct {
	sid     string
	payload []byte
	seq     uint16
	ts      uint32
	at      time.Time
}

type subscriber struct {
	mu      sync.Mutex
	pkts    []received
	sources map[string]livekit.TrackSource
	muted   map[string]bool
}

func (s *subscriber) since(sid string, from, to time.Time) []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []received
	for _, r := range s.pkts {
		if r.sid == sid && !r.at.Before(from) && r.at.Before(to) {
			out = append(out, r)
		}
	}
	return out
}

func connectSubscriber(t *testing.T, lk *LiveKit, room string) *subscriber {
	t.Helper()
	s := &subscriber{sources: map[string]livekit.TrackSource{}, muted: map[string]bool{}}
	cb := lksdk.NewRoomCallback()
	cb.ParticipantCallback.OnTrackSubscribed = func(track *webrtc.TrackRemote, pub *lksdk.RemoteTrackPublication, _ *lksdk.RemoteParticipant) {
		sid := pub.SID()
		s.mu.Lock()
		s.sources[sid] = pub.Source()
		s.mu.Unlock()
		go func() {
			for {
				p, _, err := track.ReadRTP()
				if err != nil {
					return
				}
				s.mu.Lock()
				s.pkts = append(s.pkts, received{sid: sid, payload: append([]byte(nil), p.Payload...),
					seq: p.SequenceNumber, ts: p.Timestamp, at: time.Now()})
				s.mu.Unlock()
			}
		}()
	}
	cb.ParticipantCallback.OnTrackMuted = func(pub lksdk.TrackPublication, _ lksdk.Participant) {
		s.mu.Lock()
		s.muted[pub.SID()] = true
		s.mu.Unlock()
	}
	token, err := lk.Token(room, "subscriber")
	if err != nil {
		t.Fatal(err)
	}
	r, err := lksdk.ConnectToRoomWithToken(lk.URL, token, cb, lksdk.WithAutoSubscribe(true))
	if err != nil {
		t.Fatalf("subscriber connect: %v", err)
	}
	t.Cleanup(r.Disconnect)
	return s
}

// isBlank reports whether p is the SFU's own filler: an Opus silence frame
// (TOC 0xF8, then 0xFF 0xFE and zero padding), not something we sent.
func isBlank(p []byte) bool {
	if len(p) < 3 || p[0] != 0xF8 || p[1] != 0xFF || p[2] != 0xFE {
		return false
	}
	for _, b := range p[3:] {
		if b != 0 {
			return false
		}
	}
	return true
}

// contiguous reports the index in sent where got starts, if got is exactly
// sent[start : start+len(got)].
func contiguous(got []received, sent []SentPacket) (int, bool) {
	if len(got) == 0 {
		return 0, false
	}
	for start := range sent {
		if start+len(got) > len(sent) {
			break
		}
		ok := true
		for i := range got {
			if !bytes.Equal(got[i].payload, sent[start+i].Payload) {
				ok = false
				break
			}
		}
		if ok {
			return start, true
		}
	}
	return 0, false
}

func sentFor(p *Publisher, sid string) []SentPacket {
	var out []SentPacket
	for _, s := range p.Sent() {
		if s.TrackSID == sid {
			out = append(out, s)
		}
	}
	return out
}

func nonBlank(rs []received) (real []received, blanks int) {
	for _, r := range rs {
		if isBlank(r.payload) {
			blanks++
		} else {
			real = append(real, r)
		}
	}
	return real, blanks
}

// Not parallel: checkPacing measures real-time scheduling, which other tests
// starting servers alongside would disturb.
func TestPublishSubscribeMuteRepublish(t *testing.T) {
	lk := startServer(t, LiveKitOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const room = "testbed-room"
	sub := connectSubscriber(t, lk, room)

	begun := time.Now()
	pub, err := Publish(ctx, PublisherOptions{
		URL: lk.URL, APIKey: lk.APIKey, APISecret: lk.APISecret,
		Room: room, Identity: "alice", File: toneFile, Loop: true,
	})
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	defer pub.Leave()
	sid1 := pub.TrackSID()
	if !strings.HasPrefix(sid1, "TR_") {
		t.Fatalf("track SID %q", sid1)
	}
	joined := time.Now()
	t.Logf("published %s in %v", sid1, joined.Sub(begun).Round(time.Millisecond))

	// Phase 1: plain streaming, timed from the subscriber's first packet
	// (subscribing takes from tens of ms to over a second).
	for deadline := time.Now().Add(10 * time.Second); len(sub.since(sid1, joined, time.Now())) == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("subscriber received nothing in 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("subscriber's first packet %v after Publish returned", sub.since(sid1, joined, time.Now())[0].at.Sub(joined).Round(time.Millisecond))
	time.Sleep(2500 * time.Millisecond)
	sent := sentFor(pub, sid1)
	got1, blanks := nonBlank(sub.since(sid1, joined, time.Now()))
	if len(got1) < 100 || blanks != 0 {
		t.Fatalf("phase 1: received %d packets (%d blank), sent %d", len(got1), blanks, len(sent))
	}
	start, ok := contiguous(got1, sent)
	if !ok {
		t.Fatalf("phase 1: received payloads are not a contiguous run of Sent()")
	}
	t.Logf("phase 1: sent %d, received %d starting at sent[%d]; its one-way latency %v",
		len(sent), len(got1), start, got1[0].at.Sub(sent[start].At).Round(time.Millisecond))
	checkPacing(t, sent)

	// Phase 2: mute. No payload of ours may follow Mute.
	if err := pub.Mute(); err != nil {
		t.Fatal(err)
	}
	muted := time.Now()
	lastBefore := len(sentFor(pub, sid1))
	time.Sleep(2500 * time.Millisecond)
	if n := len(sentFor(pub, sid1)); n != lastBefore {
		t.Fatalf("mute: %d packets sent while muted", n-lastBefore)
	}
	duringMute := sub.since(sid1, muted, time.Now())
	realMute, blankMute := nonBlank(duringMute)
	lateReal := 0
	for _, r := range realMute {
		if r.at.Sub(muted) > 200*time.Millisecond {
			lateReal++
		}
	}
	if lateReal > 0 {
		t.Fatalf("mute: %d of our packets arrived more than 200 ms after Mute", lateReal)
	}
	if quiet := sub.since(sid1, muted.Add(1500*time.Millisecond), time.Now()); len(quiet) != 0 {
		t.Fatalf("mute: %d packets 1.5-2.5 s after Mute (expected silence)", len(quiet))
	}
	var blankSpan time.Duration
	if blankMute > 0 {
		var first, last time.Time
		for _, r := range duringMute {
			if isBlank(r.payload) {
				if first.IsZero() {
					first = r.at
				}
				last = r.at
			}
		}
		blankSpan = last.Sub(first)
	}
	sub.mu.Lock()
	sawMute := sub.muted[sid1]
	sub.mu.Unlock()
	var blankLen int
	for _, r := range duringMute {
		if isBlank(r.payload) {
			blankLen = len(r.payload)
		}
	}
	t.Logf("mute: %d in-flight packets, %d SFU blank frames of %d bytes over %v; subscriber saw mute: %v",
		len(realMute), blankMute, blankLen, blankSpan.Round(time.Millisecond), sawMute)
	if !sawMute {
		t.Errorf("subscriber was not told about the mute")
	}

	// Phase 3: unmute. Packets resume from where the file was.
	if err := pub.Unmute(); err != nil {
		t.Fatal(err)
	}
	unmuted := time.Now()
	time.Sleep(2 * time.Second)
	sent = sentFor(pub, sid1)
	if len(sent) <= lastBefore+50 {
		t.Fatalf("unmute: only %d packets sent after unmute", len(sent)-lastBefore)
	}
	gotAll, _ := nonBlank(sub.since(sid1, joined, time.Now()))
	if _, ok := contiguous(gotAll, sent); !ok {
		after, _ := nonBlank(sub.since(sid1, unmuted, time.Now()))
		s2, ok2 := contiguous(after, sent)
		before, _ := nonBlank(sub.since(sid1, joined, unmuted))
		s1, ok1 := contiguous(before, sent)
		t.Fatalf("unmute: received payloads across the mute are not a contiguous run of Sent(): "+
			"before unmute %d packets contiguous=%v from sent[%d] (ends at sent[%d]); "+
			"after unmute contiguous=%v from sent[%d]; muted after sent[%d]",
			len(before), ok1, s1, s1+len(before)-1, ok2, s2, lastBefore-1)
	}
	resume := sent[lastBefore]
	after, _ := nonBlank(sub.since(sid1, unmuted, time.Now()))
	t.Logf("unmute: first packet handed to SDK %v after Unmute, received %v after Unmute; "+
		"RTP ts gap across mute %d samples (%v) for %v wall",
		resume.At.Sub(unmuted).Round(time.Millisecond), after[0].at.Sub(unmuted).Round(time.Millisecond),
		after[0].ts-got1[len(got1)-1].ts,
		time.Duration(after[0].ts-got1[len(got1)-1].ts)*time.Second/48000,
		after[0].at.Sub(got1[len(got1)-1].at).Round(time.Millisecond))

	// Phase 4: unpublish and republish: a new SID, continuing the file.
	unpublished := time.Now()
	if err := pub.Unpublish(); err != nil {
		t.Fatal(err)
	}
	if pub.TrackSID() != "" {
		t.Errorf("SID after Unpublish: %q", pub.TrackSID())
	}
	lastSent := sentFor(pub, sid1)
	file, err := ReadOpusFile(toneFile)
	if err != nil {
		t.Fatal(err)
	}
	nextIdx := fileIndex(t, file, lastSent[len(lastSent)-1].Payload) + 1
	if err := pub.Republish(); err != nil {
		t.Fatal(err)
	}
	sid2 := pub.TrackSID()
	if sid2 == "" || sid2 == sid1 {
		t.Fatalf("republish: SID %q (was %q)", sid2, sid1)
	}
	second, err := pub.PublishSecond(ctx, livekit.TrackSource_SCREEN_SHARE_AUDIO)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	sent2 := sentFor(pub, sid2)
	if len(sent2) == 0 || !bytes.Equal(sent2[0].Payload, file.Packets[nextIdx%len(file.Packets)]) {
		t.Fatalf("republish did not continue the file at packet %d", nextIdx)
	}
	got2, _ := nonBlank(sub.since(sid2, joined, time.Now()))
	if _, ok := contiguous(got2, sent2); !ok || len(got2) < 50 {
		t.Fatalf("republish: %d received payloads, contiguous run of Sent(): %v", len(got2), ok)
	}
	tailReal, tailBlank := nonBlank(sub.since(sid1, unpublished, time.Now()))
	t.Logf("unpublish: after Unpublish the old track delivered %d of our packets and %d blank frames",
		len(tailReal), tailBlank)
	sid3 := second.SID()
	sent3 := sentFor(pub, sid3)
	got3, _ := nonBlank(sub.since(sid3, joined, time.Now()))
	if _, ok := contiguous(got3, sent3); !ok || len(got3) < 50 || !bytes.Equal(sent3[0].Payload, file.Packets[0]) {
		t.Fatalf("second track: %d received payloads, contiguous run of Sent(): %v", len(got3), ok)
	}
	sub.mu.Lock()
	src2, src3 := sub.sources[sid2], sub.sources[sid3]
	sub.mu.Unlock()
	if src2 != livekit.TrackSource_MICROPHONE || src3 != livekit.TrackSource_SCREEN_SHARE_AUDIO {
		t.Errorf("sources seen by subscriber: %v, %v", src2, src3)
	}
	t.Logf("republish: %s -> %s continuing at file packet %d; second track %s (%v)", sid1, sid2, nextIdx, sid3, src3)

	if err := pub.Leave(); err != nil {
		t.Fatal(err)
	}
	n := len(pub.Sent())
	time.Sleep(100 * time.Millisecond)
	if len(pub.Sent()) != n {
		t.Errorf("packets sent after Leave")
	}
}

func fileIndex(t *testing.T, f *OpusFile, payload []byte) int {
	t.Helper()
	for i, p := range f.Packets {
		if bytes.Equal(p, payload) {
			return i
		}
	}
	t.Fatalf("payload not in file")
	return -1
}

// checkPacing verifies slots sit on an exact 20 ms grid, that no packet left
// before its slot, and that packets left close to their slots. A loaded
// machine stalls the sender now and then (the packets after a stall leave
// late, then it catches up), so a few late ones are allowed, not a drift.
func checkPacing(t *testing.T, sent []SentPacket) {
	t.Helper()
	const lateAfter = 50 * time.Millisecond
	var worst time.Duration
	late := 0
	for i, s := range sent {
		if i > 0 {
			if d := s.RTPTime.Sub(sent[i-1].RTPTime); d != 20*time.Millisecond {
				t.Fatalf("slot %d is %v after the previous one", i, d)
			}
		}
		lag := s.At.Sub(s.RTPTime)
		worst = max(worst, lag)
		if lag < 0 {
			t.Errorf("packet %d handed over %v before its slot", i, -lag)
		}
		if lag > lateAfter {
			late++
			t.Logf("packet %d handed over %v after its slot", i, lag)
		}
	}
	if late > len(sent)/20 {
		t.Errorf("%d of %d packets handed over more than %v after their slots", late, len(sent), lateAfter)
	}
	if last := sent[len(sent)-1]; last.At.Sub(last.RTPTime) > lateAfter {
		t.Errorf("the sender fell behind: the last packet left %v after its slot", last.At.Sub(last.RTPTime))
	}
	span := sent[len(sent)-1].At.Sub(sent[0].At)
	t.Logf("pacing: %d packets over %v (ideal %v), worst lag %v",
		len(sent), span.Round(time.Millisecond), time.Duration(len(sent)-1)*20*time.Millisecond, worst)
}

func TestWebhook(t *testing.T) {
	t.Parallel()
	type event struct{ name, room, identity string }
	events := make(chan event, 64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ev, err := verifyWebhook(r, devAPIKey, devAPISecret)
		if err != nil {
			t.Errorf("webhook: %v", err)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		e := event{name: ev.GetEvent(), room: ev.GetRoom().GetName(), identity: ev.GetParticipant().GetIdentity()}
		select {
		case events <- e:
		default:
		}
	}))
	defer srv.Close()

	lk := startServer(t, LiveKitOptions{WebhookURLs: []string{srv.URL + "/webhooks"}})
	token, err := lk.Token("hooked", "bob")
	if err != nil {
		t.Fatal(err)
	}
	r, err := lksdk.ConnectToRoomWithToken(lk.URL, token, lksdk.NewRoomCallback())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Disconnect()

	want := map[string]bool{"room_started": false, "participant_joined": false}
	timeout := time.After(20 * time.Second)
	for !(want["room_started"] && want["participant_joined"]) {
		select {
		case e := <-events:
			if e.room != "hooked" {
				t.Fatalf("webhook for room %q", e.room)
			}
			if e.name == "participant_joined" && e.identity != "bob" {
				t.Fatalf("participant_joined for %q", e.identity)
			}
			want[e.name] = true
		case <-timeout:
			t.Fatalf("webhooks seen: %v", want)
		}
	}
}

func TestStartLiveKitTwice(t *testing.T) {
	t.Parallel()
	a := startServer(t, LiveKitOptions{})
	b := startServer(t, LiveKitOptions{})
	if a.URL == b.URL {
		t.Fatalf("two servers on %s", a.URL)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := lksdk.NewRoomServiceClient(b.HTTPURL, b.APIKey, b.APISecret).
		ListRooms(ctx, &livekit.ListRoomsRequest{}); err != nil {
		t.Fatalf("second server after first closed: %v", err)
	}
}

// verifyWebhook checks a LiveKit webhook as protocol/webhook does (a JWT in
// Authorization whose sha256 claim is the body's hash), without pulling that
// package's dependencies into the module.
func verifyWebhook(r *http.Request, key, secret string) (*livekit.WebhookEvent, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	v, err := auth.ParseAPIToken(r.Header.Get("Authorization"))
	if err != nil {
		return nil, fmt.Errorf("parse token: %w", err)
	}
	if v.APIKey() != key {
		return nil, fmt.Errorf("signed with key %q", v.APIKey())
	}
	_, claims, err := v.Verify(secret)
	if err != nil {
		return nil, fmt.Errorf("verify token: %w", err)
	}
	sum := sha256.Sum256(body)
	if claims.Sha256 != base64.StdEncoding.EncodeToString(sum[:]) {
		return nil, errors.New("body checksum mismatch")
	}
	var ev livekit.WebhookEvent
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(body, &ev); err != nil {
		return nil, fmt.Errorf("decode event: %w", err)
	}
	return &ev, nil
}
