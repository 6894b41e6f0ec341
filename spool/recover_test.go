package spool

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/trackrec/trackrec/muxer"
)

// record writes n 20 ms packets of tr through a muxer.Track into a spool
// file in container. With crash, the track is never closed (the process
// died): the file holds what was written so far, and the last cut bytes
// are cut off, as a page or cluster half written.
func record(t *testing.T, s *Spool, tr Track, container string, n int, crash bool, cut int) (*File, muxer.Stats) {
	t.Helper()
	var f *File
	mux, err := muxer.NewTrack(muxer.Options{
		Format: container,
		Logger: discard(),
		Open: func(start time.Time, _ int) (io.WriteCloser, error) {
			var err error
			f, err = s.Create(tr, start, container)
			return f, err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 250_000_000, time.UTC)
	for i := range n {
		p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SSRC: 7, SequenceNumber: uint16(i), Timestamp: uint32(i * 960)},
			Payload: []byte{0xF8, 0xFF, 0xFE}} // CELT digital silence, 20 ms
		if err := mux.WriteRTP(p, at.Add(time.Duration(i)*20*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
	}
	if !crash {
		if err := mux.Close(); err != nil {
			t.Fatal(err)
		}
		return f, mux.Stats()
	}
	if f == nil {
		t.Fatal("file never opened")
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if cut > 0 {
		fi, err := os.Stat(f.Path())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(f.Path(), fi.Size()-int64(cut)); err != nil {
			t.Fatal(err)
		}
	}
	return f, mux.Stats()
}

// A file a crash cut short is repaired and sealed, from its pending
// manifest or, without one, from its name; its room completes.
func TestRecoverCrashedFiles(t *testing.T) {
	for _, tc := range []struct {
		name      string
		container string
		pending   bool // the pending manifest reached the disk
		store     bool // SpoolIsStore
	}{
		{"ogg", "ogg", true, false},
		{"webm", "webm", true, false},
		{"ogg without pending manifest", "ogg", false, false},
		{"webm without pending manifest", "webm", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, Options{Dir: dir, KeyPrefix: "livekit", Instance: "i-1", Markers: true})
			f, _ := record(t, s, alice, tc.container, 150, true, 20)
			if !tc.pending {
				os.Remove(pendingPath(f.Path()))
			}
			s.Close()
			before, _ := os.ReadFile(f.Path())

			q := &fakeUploads{}
			s = open(t, Options{Dir: dir, KeyPrefix: "livekit", Instance: "i-2", Uploads: q, Markers: true, SpoolIsStore: tc.store})
			rec, err := s.Recover(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(rec.Files) != 1 || rec.Files[0].Path != f.Path() || !rec.Files[0].Repaired || rec.Files[0].Error != "" {
				t.Fatalf("recovered %+v", rec.Files)
			}
			after, _ := os.ReadFile(f.Path())
			if len(after) == 0 || bytes.Equal(after, before) {
				t.Errorf("file not repaired (%d bytes, was %d)", len(after), len(before))
			}
			if _, err := muxer.Repair(f.Path()); err != nil {
				t.Errorf("repaired file: %v", err)
			}
			m, err := readManifest(manifestPath(f.Path()))
			if err != nil {
				t.Fatal(err)
			}
			if !m.Recorder.Recovered || m.File.Size != int64(len(after)) || len(m.File.SHA256) != 64 ||
				m.Timeline.DurationMS < 1000 || m.Timeline.DurationMS > 3000 || !m.Timeline.Start.Equal(t0) ||
				m.File.Key != "livekit/"+f.Name() || m.File.Container != tc.container || m.Track.SID != "TR_a" || m.Participant.Identity != "alice" {
				t.Errorf("manifest %+v", m)
			}
			if tc.pending && (m.Participant.Name != "Alice" || m.RoomSID != "RM_1" || m.Recorder.Instance != "i-1") {
				t.Errorf("manifest lost the pending manifest's details: %+v", m)
			}
			if _, err := os.Stat(pendingPath(f.Path())); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("pending manifest left: %v", err)
			}
			// A crash file is queued even when the spool is the store: it
			// never was stored.
			if keys := q.keys(); len(keys) != 2 || keys[0] != m.File.Key || keys[1] != "livekit/r/alice-2026-01-02T030405-TR_a.json" {
				t.Errorf("queued %q", keys)
			}
			room := rec.Rooms["r"]
			if len(rec.Rooms) != 1 || len(room) != 1 || room[0].Path != f.Path() || room[0].Manifest.File.SHA256 != m.File.SHA256 || len(room[0].Uploads) != 2 {
				t.Errorf("rooms %+v", rec.Rooms)
			}
			rec.Files[0].Refresh()
			if len(rec.Files[0].Uploads) != 2 || rec.Files[0].Uploads[0].Key != m.File.Key {
				t.Errorf("refreshed uploads %+v", rec.Files[0].Uploads)
			}
		})
	}
}

// cutOgg keeps the first pages of an Ogg file: OpusHead and OpusTags.
func cutOgg(t *testing.T, data []byte, pages int) []byte {
	t.Helper()
	at := 0
	for range pages {
		next := bytes.Index(data[at+4:], []byte("OggS"))
		if next < 0 {
			t.Fatal("too few pages")
		}
		at += 4 + next
	}
	return data[:at]
}

// cutWebM keeps what comes before the first Cluster.
func cutWebM(t *testing.T, data []byte) []byte {
	t.Helper()
	id := binary.BigEndian.AppendUint32(nil, 0x1F43B675)
	at := bytes.Index(data, id)
	if at < 0 {
		t.Fatal("no Cluster")
	}
	return data[:at]
}

// A file the crash left with headers only holds no audio: it is set aside,
// not deleted, and not reported again at the next start.
func TestRecoverSetsAsideFilesWithoutAudio(t *testing.T) {
	for _, container := range []string{"ogg", "webm"} {
		t.Run(container, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, Options{Dir: dir, Markers: true})
			f, _ := record(t, s, alice, container, 100, false, 0)
			os.Remove(manifestPath(f.Path()))
			data, _ := os.ReadFile(f.Path())
			if container == "ogg" {
				data = cutOgg(t, data, 2)
			} else {
				data = cutWebM(t, data)
			}
			os.WriteFile(f.Path(), data, 0o644)
			os.WriteFile(pendingPath(f.Path()), []byte(`{"version":1}`), 0o644)
			s.Close()
			rel, _ := filepath.Rel(dir, f.Path())
			aside := filepath.Join(dir, noAudioDir, rel)
			for run := 1; run <= 2; run++ {
				q := &fakeUploads{}
				s := open(t, Options{Dir: dir, Markers: true, Uploads: q})
				rec, err := s.Recover(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				s.Close()
				want := map[int]int{1: 1, 2: 0}[run]
				if len(rec.Files) != want || len(q.items) != 0 || len(rec.Rooms) != 0 {
					t.Fatalf("start %d: files %+v, queued %v, rooms %v; want %d files", run, rec.Files, q.keys(), rec.Rooms, want)
				}
				if run == 1 && (rec.Files[0].Path != aside || !strings.Contains(rec.Files[0].Error, "no audio")) {
					t.Errorf("reported %+v", rec.Files[0])
				}
			}
			if _, err := os.Stat(f.Path()); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("file without audio still in the spool: %v", err)
			}
			if kept, err := os.ReadFile(aside); err != nil || !bytes.Equal(kept, data) {
				t.Errorf("file not kept aside intact: %v", err)
			}
			if kept, err := os.ReadFile(pendingPath(aside)); err != nil || string(kept) != `{"version":1}` {
				t.Errorf("pending manifest not kept aside: %v", err)
			}
		})
	}
}

// Closed files and manifests whose file is stored are queued again, unless
// the spool is the store or there is no queue.
func TestRecoverRequeues(t *testing.T) {
	const orphan = `{"version":1,"room":"r","file":{"key":"livekit/r/bob-2026-01-01T000000-TR_b.ogg"},"timeline":{"start":"2026-01-01T00:00:00Z"}}`
	for _, tc := range []struct {
		name   string
		store  bool
		queue  bool
		want   []string
		report int
	}{
		{"to a remote store", false, true, []string{
			"livekit/r/alice-2026-01-02T030405-TR_a.ogg", "livekit/r/alice-2026-01-02T030405-TR_a.json",
			"livekit/r/bob-2026-01-01T000000-TR_b.json"}, 2},
		{"spool is the store", true, true, nil, 0},
		{"no queue", false, false, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := open(t, Options{Dir: dir, KeyPrefix: "livekit", Markers: true})
			f, st := record(t, s, alice, "ogg", 100, false, 0)
			sealed, err := s.Seal(f, st)
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(dir, "r", "bob-2026-01-01T000000-TR_b.json"), []byte(orphan), 0o644)
			s.Close()

			q := &fakeUploads{}
			o := Options{Dir: dir, KeyPrefix: "livekit", Markers: true, SpoolIsStore: tc.store}
			if tc.queue {
				o.Uploads = q
			}
			s = open(t, o)
			rec, err := s.Recover(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if got := q.keys(); strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("queued %q, want %q", got, tc.want)
			}
			if len(rec.Files) != tc.report {
				t.Errorf("reported %+v, want %d", rec.Files, tc.report)
			}
			if tc.queue && !tc.store && (q.items[1].After != q.ups[0] || q.items[2].Path != filepath.Join(dir, "r", "bob-2026-01-01T000000-TR_b.json")) {
				t.Errorf("queued %+v", q.items)
			}
			if m, _ := readManifest(manifestPath(f.Path())); m.File.SHA256 != sealed.Manifest.File.SHA256 || m.Counts != st.Counts {
				t.Errorf("manifest changed: %+v", m)
			}
			room := rec.Rooms["r"]
			if len(room) != 1 || room[0].Path != f.Path() {
				t.Fatalf("rooms %+v", rec.Rooms)
			}
			if wantUps := map[bool]int{true: 2, false: 0}[tc.queue && !tc.store]; len(room[0].Uploads) != wantUps {
				t.Errorf("room track waits on %d uploads, want %d", len(room[0].Uploads), wantUps)
			}
		})
	}
}

// A start the name pattern lets through but no calendar has: the file is
// repaired, described and stored, but its room completes without it.
func TestRecoverUnparseableStart(t *testing.T) {
	dir := t.TempDir()
	s := open(t, Options{Dir: dir, Markers: true})
	good, _ := record(t, s, alice, "ogg", 150, true, 20)
	data, _ := os.ReadFile(good.Path())
	bad := filepath.Join(dir, "r", "bob-2026-13-01T000000-TR_b.ogg")
	os.WriteFile(bad, data, 0o644)
	s.Close()

	q := &fakeUploads{}
	s = open(t, Options{Dir: dir, Markers: true, Uploads: q})
	rec, err := s.Recover(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Files) != 2 {
		t.Fatalf("recovered %+v", rec.Files)
	}
	var rf RecoveredFile
	for _, f := range rec.Files {
		if f.Path == bad {
			rf = f
		}
	}
	if !rf.Repaired || !strings.Contains(rf.Error, `left out of room "r"'s completion`) || !strings.Contains(rf.Error, "month out of range") {
		t.Errorf("recovered %+v", rf)
	}
	m, err := readManifest(manifestPath(bad))
	fi, _ := os.Stat(bad)
	if err != nil || !m.Recorder.Recovered || m.Participant.Identity != "bob" || !m.Timeline.Start.IsZero() || fi == nil || m.File.Size != fi.Size() || m.Timeline.DurationMS < 1000 {
		t.Errorf("manifest %+v %v", m, err)
	}
	if keys := strings.Join(q.keys(), " "); !strings.Contains(keys, "r/bob-2026-13-01T000000-TR_b.ogg r/bob-2026-13-01T000000-TR_b.json") {
		t.Errorf("not queued: %s", keys)
	}
	if _, err := os.Stat(filepath.Join(dir, pendingDir, "r", "bob-2026-13-01T000000-TR_b.ogg.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("marker written: %v", err)
	}
	if room := rec.Rooms["r"]; len(room) != 1 || room[0].Path != good.Path() {
		t.Errorf("room %+v, want alice's track only", room)
	}
}

// A marker without a start (left by an earlier version) is dropped, not
// handed to the room's completion.
func TestRecoverDropsMarkersWithoutStart(t *testing.T) {
	dir := t.TempDir()
	folder := filepath.Join(dir, pendingDir, "r")
	os.MkdirAll(folder, 0o755)
	os.WriteFile(filepath.Join(folder, "bob-2026-13-01T000000-TR_b.ogg.json"), []byte(`{"room":"r","file":{"key":"r/bob-2026-13-01T000000-TR_b.ogg"}}`), 0o644)
	os.WriteFile(filepath.Join(folder, "alice-2026-01-01T000000-TR_a.ogg.json"), []byte(`{"room":"r","file":{"key":"r/alice-2026-01-01T000000-TR_a.ogg"},"timeline":{"start":"2026-01-01T00:00:00Z"}}`), 0o644)
	os.WriteFile(filepath.Join(folder, "carol-2026-01-01T000000-TR_c.ogg.json.tmp"), []byte(`{`), 0o644)
	s := open(t, Options{Dir: dir, Markers: true})
	rec, err := s.Recover(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if room := rec.Rooms["r"]; len(rec.Rooms) != 1 || len(room) != 1 || room[0].Path != filepath.Join(dir, "r", "alice-2026-01-01T000000-TR_a.ogg") {
		t.Errorf("rooms %+v", rec.Rooms)
	}
	if left, _ := filepath.Glob(filepath.Join(folder, "*")); len(left) != 1 {
		t.Errorf("marker folder holds %v", left)
	}
}

// Without a pipeline, markers left by an earlier run stay, with one
// warning, and no room completes.
func TestRecoverKeepsMarkersWithoutAPipeline(t *testing.T) {
	dir := t.TempDir()
	s := open(t, Options{Dir: dir, Markers: true})
	for _, room := range []string{"r1", "r2"} {
		tr := alice
		tr.Room = room
		f, st := record(t, s, tr, "ogg", 100, false, 0)
		if _, err := s.Seal(f, st); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	before := snapshot(t, filepath.Join(dir, pendingDir))
	var l logs
	s = open(t, Options{Dir: dir, Logger: l.logger()})
	rec, err := s.Recover(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Rooms) != 0 || len(rec.Files) != 0 {
		t.Errorf("recovered %+v", rec)
	}
	if n := l.lines("markers kept"); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, l.buf.String())
	}
	if after := snapshot(t, filepath.Join(dir, pendingDir)); !maps.Equal(after, before) || len(before) != 5 {
		t.Errorf("markers before %v, after %v", before, after)
	}
	// A file closed now gets no marker.
	tr := alice
	tr.Room = "r3"
	f, st := record(t, s, tr, "ogg", 100, false, 0)
	if _, err := s.Seal(f, st); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, pendingDir, "r3")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("marker written without a pipeline: %v", err)
	}
}

// A room whose recordings stopped but whose pipeline had not run when the
// process stopped completes in the next process, once, with the same
// track; a third has nothing left, and the empty folders are pruned.
func TestPendingRoomCompletesAfterRestart(t *testing.T) {
	dir := t.TempDir()
	const room = "r/../x.json"
	s := open(t, Options{Dir: dir, Markers: true, Uploads: &fakeUploads{}})
	tr := alice
	tr.Room = room
	f, st := record(t, s, tr, "ogg", 100, false, 0)
	sealed, err := s.Seal(f, st)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = open(t, Options{Dir: dir, Markers: true, Uploads: &fakeUploads{}})
	rec, err := s.Recover(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, rf := range rec.Files {
		if rel, _ := filepath.Rel(dir, rf.Path); rel[0] == '.' {
			t.Errorf("a marker was taken for a spool file: %+v", rf)
		}
	}
	got := rec.Rooms[room]
	if len(rec.Rooms) != 1 || len(got) != 1 || got[0].Path != f.Path() || got[0].Manifest.File.SHA256 != sealed.Manifest.File.SHA256 ||
		got[0].Manifest.Room != room || len(got[0].Uploads) != 2 {
		t.Fatalf("rooms %+v", rec.Rooms)
	}
	s.ClearMarkers(got)
	if left, _ := filepath.Glob(filepath.Join(dir, pendingDir, "*", "*")); len(left) != 0 {
		t.Errorf("markers left: %v", left)
	}
	s.Close()

	s = open(t, Options{Dir: dir, Markers: true})
	rec, err = s.Recover(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Rooms) != 0 {
		t.Errorf("a completed room completes again: %+v", rec.Rooms)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, pendingDir, "*")); len(left) != 0 {
		t.Errorf("empty room folders not pruned: %v", left)
	}
}

// A sealed file whose manifest is missing (the process died between the
// marker and the manifest) gets the marker back as its manifest. A file
// whose manifest is rebuilt from its name knows only the escaped folder
// name; the room keeps its real one from the other track.
func TestCrashBeforeTheManifestKeepsTheRoom(t *testing.T) {
	dir := t.TempDir()
	const room = "a b"
	s := open(t, Options{Dir: dir, Markers: true})
	tr := alice
	tr.Room = room
	f, st := record(t, s, tr, "ogg", 100, false, 0)
	sealedF, err := s.Seal(f, st)
	if err != nil {
		t.Fatal(err)
	}
	sealed := sealedF.Manifest
	tr.Participant = "bob"
	g, _ := record(t, s, tr, "ogg", 100, false, 0)
	os.Remove(manifestPath(f.Path()))
	os.Remove(pendingPath(g.Path()))
	s.Close()

	s = open(t, Options{Dir: dir, Markers: true})
	rec, err := s.Recover(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Files) != 2 || len(rec.Rooms) != 1 || len(rec.Rooms[room]) != 2 {
		t.Fatalf("recovered %+v, rooms %+v", rec.Files, rec.Rooms)
	}
	restored, err := readManifest(manifestPath(f.Path()))
	if err != nil || !equalJSON(t, restored, sealed) {
		t.Errorf("manifest %+v (%v), want the one sealed %+v", restored, err, sealed)
	}
	rebuilt, err := readManifest(manifestPath(g.Path()))
	if err != nil || !rebuilt.Recorder.Recovered || rebuilt.Room != "a%20b" {
		t.Errorf("rebuilt manifest %+v (%v)", rebuilt, err)
	}
}

// Recover leaves the reserved folders (the mixes) and the spool's own
// alone, whatever they hold.
func TestRecoverSkipsOthersFolders(t *testing.T) {
	dir := t.TempDir()
	s := open(t, Options{Dir: dir})
	f, _ := record(t, s, alice, "ogg", 150, true, 20)
	data, _ := os.ReadFile(f.Path())
	s.Close()
	os.RemoveAll(filepath.Join(dir, "r"))
	for _, p := range []string{
		"mixdown/alice-2026-01-02T030405-TR_a.ogg",
		"mixdown/r/alice-2026-01-02T030405-TR_a.ogg",
		".no-audio/r/alice-2026-01-02T030405-TR_a.ogg",
		"r/.trackrec-tmp-alice-2026-01-02T030405-TR_a.ogg",
	} {
		path := filepath.Join(dir, filepath.FromSlash(p))
		os.MkdirAll(filepath.Dir(path), 0o755)
		os.WriteFile(path, data, 0o644)
	}
	before := snapshot(t, dir)
	q := &fakeUploads{}
	s = open(t, Options{Dir: dir, Markers: true, Uploads: q, Reserved: []string{"mixdown"}})
	rec, err := s.Recover(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Files) != 0 || len(q.items) != 0 {
		t.Errorf("recovered %+v, queued %v", rec.Files, q.keys())
	}
	if after := snapshot(t, dir); !maps.Equal(after, before) {
		t.Errorf("files changed:\nbefore %v\nafter %v", before, after)
	}
}

func TestRecoverStopsWithItsContext(t *testing.T) {
	dir := t.TempDir()
	s := open(t, Options{Dir: dir})
	record(t, s, alice, "ogg", 150, true, 20)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Recover(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Recover: %v, want context.Canceled", err)
	}
}
