package spool

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trackrec/trackrec/muxer"
	"github.com/trackrec/trackrec/uploader"
	"github.com/trackrec/trackrec/uploader/local"
)

var (
	t0    = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	alice = Track{Room: "r", RoomSID: "RM_1", Participant: "alice", ParticipantName: "Alice", ParticipantSID: "PA_1",
		TrackSID: "TR_a", Source: "microphone", MimeType: "audio/OPUS"}
)

// closedFile creates a file for tr holding data, closed.
func closedFile(t *testing.T, s *Spool, tr Track, container string, data []byte) *File {
	t.Helper()
	f, err := s.Create(tr, t0, container)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return f
}

func stats() muxer.Stats {
	return muxer.Stats{
		Anchor:  t0.Add(123456789 * time.Nanosecond),
		Start:   t0,
		PreSkip: 3840,
		Counts:  muxer.Counts{Packets: 100, ConcealmentPackets: 2, SilencePackets: 5, Late: 1},
		Samples: 48000 * 5 / 2,
	}
}

func TestCreateWritesThePendingManifest(t *testing.T) {
	s := open(t, Options{KeyPrefix: "livekit", Instance: "i-1"})
	f, err := s.Create(alice, t0, "webm")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := readManifest(filepath.Join(s.Dir(), "r", "alice-2026-01-02T030405-TR_a.pending"))
	if err != nil {
		t.Fatal(err)
	}
	want := Manifest{
		Version:     1,
		Room:        "r",
		RoomSID:     "RM_1",
		Participant: ManifestParticipant{Identity: "alice", Name: "Alice", SID: "PA_1"},
		Track:       ManifestTrack{SID: "TR_a", Source: "microphone", Codec: "opus", MimeType: "audio/opus"},
		File:        ManifestFile{Key: "livekit/r/alice-2026-01-02T030405-TR_a.webm", Container: "webm"},
		Timeline:    ManifestTimeline{Start: t0},
		Recorder:    ManifestRecorder{Instance: "i-1", Version: version()},
	}
	if !equalJSON(t, m, want) {
		t.Errorf("pending manifest\n%+v\nwant\n%+v", m, want)
	}
	for _, bad := range []struct {
		start     time.Time
		container string
	}{{t0.Add(time.Millisecond), "ogg"}, {t0, "mp3"}, {t0, ""}} {
		if f, err := s.Create(alice, bad.start, bad.container); err == nil {
			f.Close()
			t.Errorf("Create at %s in %q succeeded", bad.start, bad.container)
		}
	}
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(ja, jb)
}

// The same track opened again within its second takes a numbered name; so
// does one whose name's manifest another container's file holds.
func TestCreateClash(t *testing.T) {
	s := open(t, Options{})
	var names []string
	for _, c := range []string{"ogg", "ogg", "ogg", "webm"} {
		f := closedFile(t, s, alice, c, []byte(c))
		names = append(names, f.Name())
	}
	want := []string{
		"r/alice-2026-01-02T030405-TR_a.ogg",
		"r/alice-2026-01-02T030405-TR_a_2.ogg",
		"r/alice-2026-01-02T030405-TR_a_3.ogg",
		"r/alice-2026-01-02T030405-TR_a_4.webm",
	}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("names %q, want %q", names, want)
	}
	if data, _ := os.ReadFile(filepath.Join(s.Dir(), "r", "alice-2026-01-02T030405-TR_a.ogg")); string(data) != "ogg" {
		t.Errorf("first file overwritten: %q", data)
	}
}

// A name another instance of the fleet holds (Claimed) is not taken
// either: the file gets the next one, so no upload overwrites the other's.
func TestCreateClaimedElsewhere(t *testing.T) {
	var asked []string
	s := open(t, Options{KeyPrefix: "livekit", Claimed: func(room, key string) bool {
		asked = append(asked, room+" "+key)
		return key == "livekit/r/alice-2026-01-02T030405-TR_a.ogg"
	}})
	f := closedFile(t, s, alice, "ogg", []byte("x"))
	if f.Name() != "r/alice-2026-01-02T030405-TR_a_2.ogg" || f.Key() != "livekit/r/alice-2026-01-02T030405-TR_a_2.ogg" {
		t.Errorf("name %q key %q, want the next name", f.Name(), f.Key())
	}
	if len(asked) != 2 || asked[0] != "r livekit/r/alice-2026-01-02T030405-TR_a.ogg" {
		t.Errorf("asked %q", asked)
	}
}

// A file whose key its request names (a track egress) keeps its layout
// name in the spool; a clash numbers the key too.
func TestCreateWithKey(t *testing.T) {
	s := open(t, Options{KeyPrefix: "livekit"})
	tr := alice
	tr.Key = "rec/standup/alice-2026-01-02T030405-TR_a.ogg"
	var got []string
	for range 2 {
		f := closedFile(t, s, tr, "ogg", []byte("x"))
		got = append(got, f.Name()+" "+f.Key())
	}
	want := []string{
		"r/alice-2026-01-02T030405-TR_a.ogg rec/standup/alice-2026-01-02T030405-TR_a.ogg",
		"r/alice-2026-01-02T030405-TR_a_2.ogg rec/standup/alice-2026-01-02T030405-TR_a_2.ogg",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestSeal(t *testing.T) {
	for _, tc := range []struct {
		name    string
		markers bool
	}{{"with markers", true}, {"without markers", false}} {
		t.Run(tc.name, func(t *testing.T) {
			q := &fakeUploads{}
			s := open(t, Options{KeyPrefix: "livekit", Instance: "i-1", Uploads: q, Markers: tc.markers})
			data := []byte("OggS and some audio")
			f := closedFile(t, s, alice, "ogg", data)
			sealed, err := s.Seal(f, stats())
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(data)
			m := sealed.Manifest
			anchor := t0.Add(123456 * time.Microsecond)
			if m.File.Size != int64(len(data)) || m.File.SHA256 != hex.EncodeToString(sum[:]) ||
				m.Timeline.Anchor == nil || !m.Timeline.Anchor.Equal(anchor) || m.Timeline.DurationMS != 2500 ||
				m.Timeline.PreSkip != 3840 || m.Counts != stats().Counts || m.Recorder.Recovered ||
				m.Participant.Name != "Alice" || m.File.Key != "livekit/r/alice-2026-01-02T030405-TR_a.ogg" {
				t.Errorf("sealed manifest %+v", m)
			}
			beside, err := readManifest(manifestPath(f.Path()))
			if err != nil || !equalJSON(t, beside, m) {
				t.Errorf("manifest beside the file %+v (%v), want %+v", beside, err, m)
			}
			if _, err := os.Stat(pendingPath(f.Path())); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("pending manifest left: %v", err)
			}
			marker, err := readManifest(filepath.Join(s.Dir(), pendingDir, "r", "alice-2026-01-02T030405-TR_a.ogg.json"))
			if tc.markers && (err != nil || !equalJSON(t, marker, m)) {
				t.Errorf("marker %+v (%v), want the manifest", marker, err)
			}
			if !tc.markers && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("marker written without Markers: %v", err)
			}
			// The file, then its manifest, after the file.
			if len(q.items) != 2 || len(sealed.Uploads) != 2 {
				t.Fatalf("queued %+v, sealed uploads %d", q.items, len(sealed.Uploads))
			}
			file, man := q.items[0], q.items[1]
			if file.Key != m.File.Key || file.Path != f.Path() || file.ContentType != "audio/ogg" || !bytes.Equal(file.SHA256, sum[:]) || file.After != nil {
				t.Errorf("file upload %+v", file)
			}
			if man.Key != "livekit/r/alice-2026-01-02T030405-TR_a.json" || man.Path != manifestPath(f.Path()) ||
				man.ContentType != "application/json" || man.After != sealed.Uploads[0] || sealed.Uploads[0] != q.ups[0] {
				t.Errorf("manifest upload %+v", man)
			}
			if _, err := s.Seal(f, stats()); err == nil {
				t.Error("a second Seal succeeded")
			}
		})
	}
}

func TestSealRefuses(t *testing.T) {
	s := open(t, Options{})
	other := open(t, Options{})
	f, err := s.Create(alice, t0, "ogg")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Seal(f, stats()); err == nil {
		t.Error("Seal of an open file succeeded")
	}
	f.Close()
	if _, err := other.Seal(f, stats()); err == nil {
		t.Error("Seal by another spool succeeded")
	}
	s.Close()
	if _, err := s.Seal(f, stats()); err == nil {
		t.Error("Seal on a closed spool succeeded")
	}
	if _, err := os.Stat(manifestPath(f.Path())); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a refused Seal wrote the manifest: %v", err)
	}
}

// The marker is written before the manifest: a marker that cannot be
// written stops Seal before the manifest; a manifest that cannot be written
// finds the marker there. Either way recovery seals the file again.
func TestSealWritesTheMarkerFirst(t *testing.T) {
	for _, tc := range []struct {
		name         string
		block        func(s *Spool, f *File) string // makes one step fail; returns what it blocked
		wantMarker   bool
		wantManifest bool
	}{
		{"marker fails", func(s *Spool, f *File) string {
			p := filepath.Join(s.Dir(), pendingDir)
			os.WriteFile(p, nil, 0o644) // a file where the folder goes
			return p
		}, false, false},
		{"manifest fails", func(s *Spool, f *File) string {
			p := manifestPath(f.Path())
			os.Mkdir(p, 0o755) // a folder where the manifest goes
			return p
		}, true, false},
		{"upload refused", func(s *Spool, f *File) string {
			s.opts.Uploads.(*fakeUploads).fail = uploader.ErrQueueClosed
			return "queue"
		}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t, Options{Markers: true, Uploads: &fakeUploads{}})
			f := closedFile(t, s, alice, "ogg", []byte("OggS"))
			tc.block(s, f)
			if _, err := s.Seal(f, stats()); err == nil {
				t.Fatal("Seal succeeded")
			}
			_, merr := readManifest(filepath.Join(s.Dir(), pendingDir, "r", "alice-2026-01-02T030405-TR_a.ogg.json"))
			if (merr == nil) != tc.wantMarker {
				t.Errorf("marker: %v, want it %v", merr, tc.wantMarker)
			}
			_, err := readManifest(manifestPath(f.Path()))
			if (err == nil) != tc.wantManifest {
				t.Errorf("manifest: %v, want it %v", err, tc.wantManifest)
			}
			if tc.wantManifest {
				return
			}
			if _, err := os.Stat(pendingPath(f.Path())); err != nil {
				t.Errorf("pending manifest gone before the manifest was written: %v", err)
			}
		})
	}
}

// Through a real queue into a local store: both land, byte-identical, the
// manifest after its file.
func TestSealUploads(t *testing.T) {
	store, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	q := uploader.NewQueue(store, uploader.QueueOptions{DeleteAfter: true, Logger: discard()})
	s := open(t, Options{KeyPrefix: "livekit", Uploads: q})
	data := bytes.Repeat([]byte("OggS"), 1000)
	f := closedFile(t, s, alice, "ogg", data)
	sealed, err := s.Seal(f, stats())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := q.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	for _, u := range sealed.Uploads {
		if i := u.Info(); i.State != uploader.StateUploaded {
			t.Errorf("upload %+v", i)
		}
	}
	var got bytes.Buffer
	if err := store.Get(ctx, "livekit/r/alice-2026-01-02T030405-TR_a.ogg", &got); err != nil || !bytes.Equal(got.Bytes(), data) {
		t.Errorf("stored file: %v (%d bytes)", err, got.Len())
	}
	got.Reset()
	var m Manifest
	if err := store.Get(ctx, "livekit/r/alice-2026-01-02T030405-TR_a.json", &got); err != nil || json.Unmarshal(got.Bytes(), &m) != nil || !equalJSON(t, m, sealed.Manifest) {
		t.Errorf("stored manifest: %v %s", err, got.Bytes())
	}
	if left, _ := filepath.Glob(filepath.Join(s.Dir(), "r", "*")); len(left) != 0 {
		t.Errorf("spool still holds %v after the uploads", left)
	}
}

// Outside names stay single segments inside Dir, and their rooms come back
// by their real names from the markers.
func TestHostileRoomNames(t *testing.T) {
	for _, room := range []string{"r/../x.json", "..", ".", ".pending-rooms", ".no-audio", ".lock", "a\x00b", "mixdown", "Mixdown", "%6Dixdown"} {
		t.Run(room, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, Options{Dir: dir, Markers: true, Reserved: []string{"mixdown"}})
			tr := alice
			tr.Room, tr.Participant, tr.TrackSID = room, "../"+room, room+"/.."
			f := closedFile(t, s, tr, "ogg", []byte("OggS"))
			if _, err := s.Seal(f, stats()); err != nil {
				t.Fatal(err)
			}
			rel, err := filepath.Rel(dir, f.Path())
			parts := strings.Split(filepath.ToSlash(rel), "/")
			if err != nil || len(parts) != 2 || parts[0] != strings.Split(f.Name(), "/")[0] || !filepath.IsLocal(rel) ||
				strings.HasPrefix(parts[0], ".") || strings.HasPrefix(parts[1], ".") || strings.EqualFold(parts[0], "mixdown") {
				t.Fatalf("file at %q (name %q)", rel, f.Name())
			}
			if err := uploader.CheckKey(f.Key()); err != nil {
				t.Error(err)
			}
			s.Close()
			s2 := open(t, Options{Dir: dir, Markers: true, Reserved: []string{"mixdown"}})
			rec, err := s2.Recover(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(rec.Rooms) != 1 || len(rec.Rooms[room]) != 1 || rec.Rooms[room][0].Path != f.Path() {
				t.Errorf("rooms %+v", rec.Rooms)
			}
		})
	}
}

// A room named like a reserved folder gets its first character escaped;
// the escape is one no other room's folder takes.
func TestReservedFolders(t *testing.T) {
	s := open(t, Options{Reserved: []string{"mixdown", "ébauche"}})
	folders := map[string]string{}
	for _, room := range []string{"mixdown", "MixDown", "%6Dixdown", "mixdown2", "ébauche", "Ébauche", "%C3%A9bauche"} {
		f := closedFile(t, s, Track{Room: room, Participant: "a", TrackSID: "T"}, "ogg", nil)
		folder := strings.Split(f.Name(), "/")[0]
		if other, ok := folders[folder]; ok {
			t.Errorf("rooms %q and %q share folder %q", room, other, folder)
		}
		folders[folder] = room
	}
	want := map[string]string{
		"%6Dixdown":        "mixdown",
		"%4DixDown":        "MixDown",
		"%256Dixdown":      "%6Dixdown",
		"mixdown2":         "mixdown2",
		"%C3%A9bauche":     "ébauche",
		"%C3%89bauche":     "Ébauche",
		"%25C3%25A9bauche": "%C3%A9bauche",
	}
	for folder, room := range want {
		if folders[folder] != room {
			t.Errorf("folder %q holds %q, want %q (all: %v)", folder, folders[folder], room, folders)
		}
	}
}
