package spool

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/trackrec/trackrec/uploader"
)

// pendingDir, inside Dir, holds one marker per track file whose room has not
// been through its pipeline (mixdown, webhook) yet: the file's final
// manifest at pendingDir/{room}/{file}.json, mirroring the file's own path.
// A marker outlives a shutdown or a crash, so the next process completes the
// room; the pipeline's stable keys and event id make a rerun harmless. The
// leading dot keeps it apart from rooms: Segment escapes a leading dot.
const pendingDir = ".pending-rooms"

// markerPath is the marker of the track file at path (inside Dir).
func (s *Spool) markerPath(path string) (string, bool) {
	rel, err := filepath.Rel(s.dir, path)
	if err != nil || rel == "." || !filepath.IsLocal(rel) || strings.HasPrefix(rel, ".") {
		return "", false
	}
	return filepath.Join(s.dir, pendingDir, rel+".json"), true
}

// mark records that the closed track at path waits for its room's pipeline.
func (s *Spool) mark(path string, m Manifest) error {
	mp, ok := s.markerPath(path)
	if !ok {
		return errors.New("track file outside the spool")
	}
	folder := filepath.Dir(mp)
	if _, err := os.Stat(folder); err != nil {
		if err := os.MkdirAll(folder, 0o755); err != nil {
			return err
		}
		// The new folders' entries must be as durable as the marker.
		if err := errors.Join(syncDir(filepath.Dir(folder)), syncDir(s.dir)); err != nil {
			return err
		}
	}
	return writeJSON(mp, m)
}

// ClearMarkers removes the markers of tracks whose room's pipeline ran.
// Their room folders stay (a track of the room closing now may be writing
// its marker there); Recover prunes empty ones.
func (s *Spool) ClearMarkers(tracks []Sealed) {
	if s.closed.Load() {
		s.log.Warn("pending-room markers not cleared: spool closed", "tracks", len(tracks))
		return
	}
	for _, t := range tracks {
		mp, ok := s.markerPath(t.Path)
		if !ok {
			continue
		}
		if err := os.Remove(mp); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("remove pending-room marker", "room", t.Manifest.Room, "file", t.Path, "err", err)
		}
	}
}

// loadMarkers reads every marker an earlier process left, as the tracks of
// rooms still to complete, by room name. uploads gives the re-queued
// uploads of recovered files by path, so the pipeline waits for them.
func (s *Spool) loadMarkers(uploads map[string][]*uploader.Upload) map[string][]Sealed {
	root := filepath.Join(s.dir, pendingDir)
	folders, err := os.ReadDir(root)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Error("recover: pending-room markers unreadable", "folder", root, "err", err)
	}
	rooms := map[string][]Sealed{}
	keptFolders, kept := 0, 0
	for _, d := range folders {
		if !d.IsDir() {
			continue
		}
		folder := filepath.Join(root, d.Name())
		markers := s.listMarkers(folder)
		if len(markers) == 0 {
			_ = os.Remove(folder) // fails harmlessly unless empty
			continue
		}
		if !s.opts.Markers {
			keptFolders++
			kept += len(markers)
			continue
		}
		var tracks []Sealed
		for _, mp := range markers {
			m, err := readManifest(mp)
			if err != nil || m.Room == "" || m.File.Key == "" {
				s.log.Error("recover: unreadable pending-room marker; left in place", "marker", mp, "err", err)
				continue
			}
			if m.Timeline.Start.IsZero() {
				// No mix can place it, and it must not hold the others back;
				// the manifest beside the file still describes it.
				s.log.Warn("recover: track without a start left out of its room's completion; marker removed", "room", m.Room, "marker", mp)
				_ = os.Remove(mp)
				continue
			}
			rel, _ := filepath.Rel(root, strings.TrimSuffix(mp, ".json"))
			t := Sealed{Manifest: m, Path: filepath.Join(s.dir, rel)}
			t.Uploads = uploads[t.Path]
			tracks = append(tracks, t)
		}
		if len(tracks) > 0 {
			name := s.roomOfFolder(d.Name(), tracks)
			rooms[name] = append(rooms[name], tracks...)
		}
	}
	if kept > 0 {
		s.log.Warn("recover: room tracks wait for a pipeline, but none is configured (MIXDOWN=none, no PIPELINE_WEBHOOK_URL); markers kept",
			"folder", root, "rooms", keptFolders, "tracks", kept)
	}
	return rooms
}

// listMarkers lists the markers in a room's marker folder, sorted, and
// removes what an interrupted write of one left.
func (s *Spool) listMarkers(folder string) []string {
	entries, err := os.ReadDir(folder)
	if err != nil {
		s.log.Error("recover: pending-room markers unreadable", "folder", folder, "err", err)
		return nil
	}
	var out []string
	for _, e := range entries {
		path := filepath.Join(folder, e.Name())
		switch {
		case !e.Type().IsRegular():
		case strings.HasSuffix(e.Name(), ".json"):
			out = append(out, path)
		case strings.HasSuffix(e.Name(), ".json.tmp"):
			_ = os.Remove(path)
		}
	}
	return out
}

// roomOfFolder is the room name of a folder's tracks. A manifest rebuilt
// from a file name after a crash only knows the escaped folder name; any
// other manifest of the folder carries the real one.
func (s *Spool) roomOfFolder(folder string, tracks []Sealed) string {
	for _, t := range tracks {
		if s.folder(t.Manifest.Room) == folder {
			return t.Manifest.Room
		}
	}
	return tracks[0].Manifest.Room
}
