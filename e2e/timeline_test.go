package e2e

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/trackrec/trackrec/testbed"
)

var nameTime = regexp.MustCompile(`-(\d{4}-\d{2}-\d{2}T\d{6})-TR_\w+\.(ogg|webm)$`)

// fileSecond is the UTC second a track file's name carries.
func fileSecond(t *testing.T, path string) time.Time {
	t.Helper()
	m := nameTime.FindStringSubmatch(filepath.Base(path))
	if m == nil {
		t.Fatalf("%s does not carry a timestamp", path)
	}
	at, err := time.Parse("2006-01-02T150405", m[1])
	if err != nil {
		t.Fatal(err)
	}
	return at
}

type probed struct {
	pts  time.Duration
	hash string
}

// probePackets lists the file's packets with their presentation time on the
// decoded timeline and the MD5 of their payload, as ffprobe reads them.
func probePackets(t *testing.T, path string) []probed {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-show_packets", "-show_data_hash", "MD5",
		"-show_entries", "packet=pts_time,data_hash", "-of", "json", path).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	var doc struct {
		Packets []struct {
			PTS  string `json:"pts_time"`
			Hash string `json:"data_hash"`
		} `json:"packets"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	ps := make([]probed, 0, len(doc.Packets))
	for _, p := range doc.Packets {
		sec, err := strconv.ParseFloat(p.PTS, 64)
		if err != nil {
			t.Fatalf("pts %q", p.PTS)
		}
		ps = append(ps, probed{pts: time.Duration(sec * float64(time.Second)), hash: p.Hash})
	}
	return ps
}

// placement is, for the publisher packets found in the file, the median of
// (second named by the file + packet position in the file - moment the
// packet was captured): how late the file places the audio on the wall
// clock. Tracks that line up have the same placement.
func placement(t *testing.T, path string, sent []testbed.SentPacket, trackSID string) time.Duration {
	t.Helper()
	byHash := map[string]testbed.SentPacket{}
	for _, s := range sent {
		if s.TrackSID == trackSID {
			sum := md5.Sum(s.Payload)
			byHash["MD5:"+hex.EncodeToString(sum[:])] = s
		}
	}
	base := fileSecond(t, path)
	var offs []time.Duration
	for _, p := range probePackets(t, path) {
		if s, ok := byHash[p.hash]; ok {
			offs = append(offs, base.Add(p.pts).Sub(s.RTPTime))
		}
	}
	if len(offs) < 50 {
		t.Fatalf("%s: only %d publisher packets found", path, len(offs))
	}
	sort.Slice(offs, func(i, j int) bool { return offs[i] < offs[j] })
	return offs[len(offs)/2]
}

// Two participants who start speaking 1.37 s apart: the second named by
// each file plus the position of the audio in it reproduces that offset.
func TestTracksLineUpByFileName(t *testing.T) {
	t.Parallel()
	s := startService(t, nil)
	room := "align-room"
	s.mustArm(room, "olga")
	s.mustArm(room, "pete")
	olga := publish(t, room, "olga")
	time.Sleep(1370 * time.Millisecond)
	pete := publish(t, room, "pete")
	time.Sleep(4 * time.Second)
	ro, rp := s.mustStop(room, "olga"), s.mustStop(room, "pete")
	fo, fp := fileOf(t, ro, olga.TrackSID()), fileOf(t, rp, pete.TrackSID())

	po := placement(t, fo.Path, olga.Sent(), olga.TrackSID())
	pp := placement(t, fp.Path, pete.Sent(), pete.TrackSID())
	if d := pp - po; d > 20*time.Millisecond || d < -20*time.Millisecond {
		t.Errorf("tracks are %v apart on the wall clock (olga %v, pete %v), want within 20 ms", d, po, pp)
	}
	// Both are placed where the audio arrived: capture plus a little
	// network and scheduling delay, never before it was captured.
	for name, p := range map[string]time.Duration{"olga": po, "pete": pp} {
		if p < -5*time.Millisecond || p > 100*time.Millisecond {
			t.Errorf("%s's audio is placed %v after its capture", name, p)
		}
	}
}

// FILE_FORMAT=webm writes the same timeline into WebM: the publisher's
// payloads in order, on the second its name carries, validated by mkvinfo.
func TestWebMRecording(t *testing.T) {
	t.Parallel()
	if err := testbed.CheckTools("mkvinfo"); err != nil {
		t.Fatal(err)
	}
	s := startService(t, map[string]string{"FILE_FORMAT": "webm"})
	room := "webm-room"
	p := publish(t, room, "quinn")
	s.mustStart(room, "quinn")
	time.Sleep(4 * time.Second)
	final := s.mustStop(room, "quinn")
	tr := fileOf(t, final, p.TrackSID())
	if !strings.HasSuffix(tr.Path, "-"+p.TrackSID()+".webm") {
		t.Errorf("file %s is not .webm", tr.Path)
	}
	if out, err := exec.Command("mkvinfo", tr.Path).CombinedOutput(); err != nil || strings.Contains(strings.ToLower(string(out)), "warning") || strings.Contains(strings.ToLower(string(out)), "error") {
		t.Errorf("mkvinfo: %v\n%s", err, out)
	}

	// Publisher packets in order, each once, nothing else but fillers.
	sent := map[string]int{}
	var own []testbed.SentPacket
	for _, sp := range p.Sent() {
		if sp.TrackSID == p.TrackSID() {
			sum := md5.Sum(sp.Payload)
			sent["MD5:"+hex.EncodeToString(sum[:])] = len(own)
			own = append(own, sp)
		}
	}
	next, first, last := -1, -1, -1
	var lead time.Duration
	for _, pk := range probePackets(t, tr.Path) {
		i, ok := sent[pk.hash]
		if !ok {
			continue // silence or concealment put in by the SFU or the recorder
		}
		if next >= 0 && i != next {
			t.Fatalf("publisher packet %d follows %d", i, next-1)
		}
		if first < 0 {
			first, lead = i, pk.pts
		}
		last, next = i, i+1
	}
	if first < 0 || last-first < 150 {
		t.Fatalf("only packets %d..%d of the publisher found", first, last)
	}
	want := lead + own[last].RTPTime.Sub(own[first].RTPTime) + frame
	within(t, "decoded duration", decodedDuration(t, tr.Path), want, 60*time.Millisecond)
	if pl := placement(t, tr.Path, p.Sent(), p.TrackSID()); pl < -5*time.Millisecond || pl > 100*time.Millisecond {
		t.Errorf("audio placed %v after its capture", pl)
	}
}
