package recorder

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/trackrec/trackrec/uploader"
)

// pendingDir, inside Dir, holds one marker per track file whose room has not
// been through its pipeline (mixdown, webhook) yet: the track's final
// manifest at pendingDir/{room}/{file}.json, mirroring the file's own path.
// A marker outlives a shutdown or a crash, so the next process completes
// the room; the pipeline's stable keys and event id make a rerun harmless.
// The leading dot keeps it apart from rooms: Segment escapes a leading dot.
const pendingDir = ".pending-rooms"

// markerPath is the marker of the track file at path (inside dir).
func markerPath(dir, path string) (string, bool) {
	rel, err := filepath.Rel(dir, path)
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		return "", false
	}
	return filepath.Join(dir, pendingDir, rel+".json"), true
}

// markPending records that the closed track at path waits for its room's
// pipeline; only when there is a pipeline to wait for.
func markPending(o *Options, path string, m Manifest) error {
	if o.OnRoomComplete == nil {
		return nil
	}
	mp, ok := markerPath(o.Dir, path)
	if !ok {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(mp), 0o755); err != nil {
		return err
	}
	return writeJSON(mp, m)
}

// clearPending removes the markers of tracks whose room's pipeline ran.
func (s *Supervisor) clearPending(tracks []CompletedTrack) {
	for _, t := range tracks {
		mp, ok := markerPath(s.opts.Dir, t.Path)
		if !ok {
			continue
		}
		if err := os.Remove(mp); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("remove pending-room marker", "room", t.Manifest.Room, "file", t.Path, "err", err)
		}
		// The room's folder goes once empty; a failure means it is not.
		_ = os.Remove(filepath.Dir(mp))
	}
}

// loadPending reads every marker an earlier process left, as the tracks of
// rooms still to complete. uploads gives the re-queued uploads of recovered
// files by path, so the pipeline waits for them.
func (s *Supervisor) loadPending(uploads map[string][]*uploader.Upload) map[string][]CompletedTrack {
	root := filepath.Join(s.opts.Dir, pendingDir)
	markers, _ := filepath.Glob(filepath.Join(root, "*", "*.json"))
	sort.Strings(markers)
	rooms := map[string][]CompletedTrack{}
	for _, mp := range markers {
		m, err := readManifest(mp)
		if err != nil || m.Room == "" || m.File.Key == "" {
			s.log.Error("recover: unreadable pending-room marker; left in place", "marker", mp, "err", err)
			continue
		}
		rel, _ := filepath.Rel(root, strings.TrimSuffix(mp, ".json"))
		t := CompletedTrack{Manifest: m, Path: filepath.Join(s.opts.Dir, rel)}
		t.Uploads = uploads[t.Path]
		rooms[m.Room] = append(rooms[m.Room], t)
	}
	return rooms
}
