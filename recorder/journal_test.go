package recorder

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/trackrec/trackrec/spool"
	"github.com/trackrec/trackrec/uploader"
)

// A room whose recordings stopped but whose pipeline had not run when the
// process stopped (settling, uploads unfinished) completes in the next
// process, once, with the same track; then its marker is gone.
func TestPendingRoomCompletesAfterRestart(t *testing.T) {
	f := newFixture(t, 0)
	var first completions
	f.s.opts.OnRoomComplete = first.fn
	f.s.opts.SettleDelay = time.Hour // never settles in this process
	ctx := context.Background()
	if _, _, err := f.s.Start(ctx, "r/../x.json", "alice"); err != nil {
		t.Fatal(err)
	}
	f.feed("r/../x.json", "alice", "TR_a", 60)
	f.waitState("r/../x.json", "alice", StateRecording)
	final, err := f.s.Stop(ctx, "r/../x.json", "alice")
	if err != nil || len(final.Tracks) != 1 {
		t.Fatalf("stop: %+v %v", final, err)
	}
	if err := f.s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	f.s.Close()
	track := final.Tracks[0].Path
	marker, _ := markerPath(f.dir, track)
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("no pending-room marker after shutdown: %v", err)
	}
	beside, err := spool.ReadManifest(spool.ManifestPath(track))
	if err != nil {
		t.Fatal(err)
	}

	var next completions
	s := New(Options{Dir: f.dir, OnRoomComplete: next.fn, SettleDelay: 50 * time.Millisecond, Uploads: &memQueue{},
		Logger: discard()})
	defer s.Close()
	found, err := s.Recover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, rf := range found {
		if rel, _ := filepath.Rel(f.dir, rf.Path); rel[0] == '.' {
			t.Errorf("a marker was taken for a spool file: %+v", rf)
		}
	}
	next.wait()
	if next.n() != 1 || len(next.calls[0]) != 1 {
		t.Fatalf("completions after restart: %v", next.calls)
	}
	got := next.calls[0][0]
	if got.Manifest.Room != "r/../x.json" || got.Manifest.File.SHA256 != beside.File.SHA256 || got.Path != track {
		t.Errorf("completed track %+v, want the manifest beside %s (%s)", got, track, beside.File.SHA256)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(marker); os.IsNotExist(err) {
			break
		}
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Errorf("marker still there after the pipeline ran: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(f.dir, pendingDir, "*", "*")); len(left) != 0 {
		t.Errorf("pending markers left: %v", left)
	}

	// A third process has nothing left to complete.
	var third completions
	s3 := New(Options{Dir: f.dir, OnRoomComplete: third.fn, SettleDelay: time.Millisecond,
		Logger: discard()})
	defer s3.Close()
	if _, err := s3.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if third.n() != 0 {
		t.Errorf("a completed room completed again: %v", third.calls)
	}
	if left, _ := filepath.Glob(filepath.Join(f.dir, pendingDir, "*")); len(left) != 0 {
		t.Errorf("empty room folders not pruned at start-up: %v", left)
	}
}

// A pipeline cut short by shutdown (the upload queue closes under a running
// mix) keeps its markers: the next process reruns it.
func TestPipelineCutByShutdownKeepsMarkers(t *testing.T) {
	f := newFixture(t, 0)
	running, release := make(chan struct{}), make(chan struct{})
	f.s.opts.OnRoomComplete = func(ctx context.Context, room string, tr []CompletedTrack) ([]string, error) {
		close(running)
		<-release
		return nil, errors.New("store mixdown: upload queue closed")
	}
	f.s.opts.SettleDelay = 10 * time.Millisecond
	ctx := context.Background()
	final := f.recordAndStop("r", "alice", "TR_a")
	<-running
	if err := f.s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	close(release)
	f.s.Close()
	marker, _ := markerPath(f.dir, final.Tracks[0].Path)
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("marker gone after a pipeline cut by shutdown: %v", err)
	}
}

// failingQueue refuses every upload, as a drained queue does.
type failingQueue struct{}

func (failingQueue) Submit(uploader.Item) (*uploader.Upload, error) {
	return nil, uploader.ErrQueueClosed
}

// A track closed after the queue was drained (a stop outlasting the
// shutdown timeout) still gets its marker: its room completes next time.
func TestMarkerWrittenWhenTheUploadCannotBeQueued(t *testing.T) {
	f := newFixture(t, 0)
	var c completions
	f.s.opts.OnRoomComplete = c.fn
	f.s.opts.SettleDelay = time.Hour
	f.s.opts.Uploads = failingQueue{}
	final := f.recordAndStop("r", "alice", "TR_a")
	marker, _ := markerPath(f.dir, final.Tracks[0].Path)
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("no marker for a track whose upload could not be queued: %v", err)
	}
}

// A file cut by a crash is repaired at start-up and its room completes.
func TestCrashedRecordingsRoomCompletes(t *testing.T) {
	f := newFixture(t, 0)
	ctx := context.Background()
	final := f.recordAndStop("r", "alice", "TR_a")
	// What a SIGKILL leaves: the file without its manifest.
	track := final.Tracks[0].Path
	if err := os.Remove(spool.ManifestPath(track)); err != nil {
		t.Fatal(err)
	}
	var next completions
	s := New(Options{Dir: f.dir, OnRoomComplete: next.fn, SettleDelay: 10 * time.Millisecond,
		Logger: discard()})
	defer s.Close()
	if _, err := s.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	next.wait()
	if next.n() != 1 || len(next.calls[0]) != 1 || !next.calls[0][0].Manifest.Recorder.Recovered {
		t.Fatalf("completions after the crash: %+v", next.calls)
	}
}

// A file the crash left with headers only holds no audio: it is set aside,
// not deleted, and not reported again at the next start.
func TestFileWithoutAudioIsSetAside(t *testing.T) {
	f := newFixture(t, 0)
	ctx := context.Background()
	final := f.recordAndStop("r", "alice", "TR_a")
	track := final.Tracks[0].Path
	data, err := os.ReadFile(track)
	if err != nil {
		t.Fatal(err)
	}
	// Keep OpusHead and OpusTags: cut at the third page.
	third := bytes.Index(data[bytes.Index(data[4:], []byte("OggS"))+8:], []byte("OggS"))
	if third < 0 {
		t.Fatal("no third page")
	}
	cut := bytes.Index(data[4:], []byte("OggS")) + 8 + third
	if err := os.WriteFile(track, data[:cut], 0o644); err != nil {
		t.Fatal(err)
	}
	os.Remove(spool.ManifestPath(track))
	for run := 1; run <= 2; run++ {
		s := New(Options{Dir: f.dir, Logger: discard()})
		found, err := s.Recover(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := map[int]int{1: 1, 2: 0}[run]
		if len(found) != want {
			t.Errorf("start %d reported %d files (%+v), want %d", run, len(found), found, want)
		}
	}
	if _, err := os.Stat(track); !os.IsNotExist(err) {
		t.Errorf("file without audio still in the spool: %v", err)
	}
	rel, _ := filepath.Rel(f.dir, track)
	kept, err := os.ReadFile(filepath.Join(f.dir, noAudioDir, rel))
	if err != nil || !bytes.Equal(kept, data[:cut]) {
		t.Errorf("file not kept aside intact: %v", err)
	}
}
