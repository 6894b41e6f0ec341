package recorder

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/trackrec/trackrec/spool"
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
func markPending(o *Options, path string, m spool.Manifest) error {
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
	return spool.WriteJSON(mp, m)
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
		// The room's folder stays: a track of the room closing now may be
		// writing its marker there. loadPending prunes empty ones.
	}
}

// loadPending reads every marker an earlier process left, as the tracks of
// rooms still to complete, by room name. uploads gives the re-queued
// uploads of recovered files by path, so the pipeline waits for them.
func (s *Supervisor) loadPending(uploads map[string][]*uploader.Upload) map[string][]CompletedTrack {
	root := filepath.Join(s.opts.Dir, pendingDir)
	folders, _ := filepath.Glob(filepath.Join(root, "*"))
	sort.Strings(folders)
	rooms := map[string][]CompletedTrack{}
	for _, folder := range folders {
		markers, _ := filepath.Glob(filepath.Join(folder, "*.json"))
		sort.Strings(markers)
		if len(markers) == 0 {
			_ = os.Remove(folder) // empty, or not a folder: fails harmlessly
			continue
		}
		if s.opts.OnRoomComplete == nil {
			s.log.Warn("recover: room tracks wait for a pipeline, but none is configured (MIXDOWN=none, no PIPELINE_WEBHOOK_URL); markers kept",
				"folder", folder, "tracks", len(markers))
			continue
		}
		var tracks []CompletedTrack
		for _, mp := range markers {
			m, err := spool.ReadManifest(mp)
			if err != nil || m.Room == "" || m.File.Key == "" {
				s.log.Error("recover: unreadable pending-room marker; left in place", "marker", mp, "err", err)
				continue
			}
			rel, _ := filepath.Rel(root, strings.TrimSuffix(mp, ".json"))
			t := CompletedTrack{Manifest: m, Path: filepath.Join(s.opts.Dir, rel)}
			t.Uploads = uploads[t.Path]
			tracks = append(tracks, t)
		}
		if len(tracks) > 0 {
			name := roomOfFolder(filepath.Base(folder), tracks)
			rooms[name] = append(rooms[name], tracks...)
		}
	}
	return rooms
}

// roomOfFolder is the room name of a folder's tracks. A manifest rebuilt
// from a file name after a crash only knows the escaped folder name; any
// other manifest of the folder carries the real one.
func roomOfFolder(folder string, tracks []CompletedTrack) string {
	for _, t := range tracks {
		if uploader.Segment(t.Manifest.Room) == folder {
			return t.Manifest.Room
		}
	}
	return tracks[0].Manifest.Room
}
