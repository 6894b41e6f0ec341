package recorder

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/trackrec/trackrec/muxer"
	"github.com/trackrec/trackrec/spool"
	"github.com/trackrec/trackrec/uploader"
)

// RecoveredFile is a track file found in the spool at start-up.
type RecoveredFile struct {
	Path string `json:"path"`
	// Repaired says the file lacked its end (the process died writing it)
	// and was completed in place.
	Repaired bool                  `json:"repaired"`
	Uploads  []uploader.UploadInfo `json:"uploads,omitempty"`
	Error    string                `json:"error,omitempty"`

	uploads []*uploader.Upload
}

// spoolName is a track file as TrackKey names it.
var spoolName = regexp.MustCompile(`^(.+?)-(\d{4}-\d{2}-\d{2}T\d{6})-(.+)\.(ogg|webm)$`)

// Recover finds the track files an earlier process left in Dir (killed while
// recording, or before its uploads finished), repairs the ones it was
// writing, writes their manifests and queues their uploads. Run it once at
// start-up, before recording. Files that already have a manifest are queued
// again unless the store is Dir itself (Options.SpoolIsStore).
func (s *Supervisor) Recover(ctx context.Context) ([]RecoveredFile, error) {
	paths, err := filepath.Glob(filepath.Join(s.opts.Dir, "*", "*"))
	if err != nil {
		return nil, fmt.Errorf("scan spool: %w", err)
	}
	sort.Strings(paths)
	var found []RecoveredFile
	for _, path := range paths {
		if ctx.Err() != nil {
			return found, ctx.Err()
		}
		if rel, _ := filepath.Rel(s.opts.Dir, path); strings.HasPrefix(rel, ".") {
			continue // the service's own folders (.pending-rooms, .no-audio); rooms never start with a dot
		}
		if strings.HasSuffix(path, ".json") {
			if rf, ok := s.recoverManifest(path); ok {
				found = append(found, rf)
			}
			continue
		}
		m := spoolName.FindStringSubmatch(filepath.Base(path))
		if m == nil {
			continue
		}
		rf, ok := s.recoverFile(path, m)
		if !ok {
			continue
		}
		found = append(found, rf)
	}
	// Rooms an earlier process did not get to complete (stopped while
	// settling or waiting for uploads, or killed) complete in this one.
	uploads := map[string][]*uploader.Upload{}
	for _, rf := range found {
		uploads[rf.Path] = rf.uploads
		if base, ok := strings.CutSuffix(rf.Path, ".json"); ok {
			// A manifest whose file is stored: its track waits for it.
			for _, ext := range []string{".ogg", ".webm"} {
				uploads[base+ext] = rf.uploads
			}
		}
	}
	pending := s.loadPending(uploads)
	s.mu.Lock()
	s.recovered = append(s.recovered, found...)
	for room, tracks := range pending {
		s.log.Info("recover: room to complete", "room", room, "tracks", len(tracks))
		s.finished[room] = append(s.finished[room], tracks...)
		s.roomStopped(room)
	}
	s.mu.Unlock()
	return found, nil
}

func (s *Supervisor) recoverFile(path string, name []string) (RecoveredFile, bool) {
	rf := RecoveredFile{Path: path}
	log := s.log.With("file", path)
	if _, err := os.Stat(spool.ManifestPath(path)); err == nil {
		// Closed properly; its uploads may not have finished.
		if s.opts.SpoolIsStore || s.opts.Uploads == nil {
			return rf, false
		}
		man, err := spool.ReadManifest(spool.ManifestPath(path))
		if err != nil {
			rf.Error = err.Error()
			log.Error("recover: unreadable manifest", "err", err)
			return rf, true
		}
		_, ups, err := publish(&s.opts, path, man, func(m *spool.Manifest, size int64, sum []byte) {
			m.File.Size = size
			m.File.SHA256 = fmt.Sprintf("%x", sum)
		})
		rf.uploads = ups
		if err != nil {
			rf.Error = err.Error()
		}
		log.Info("recover: uploading a closed file left in the spool")
		return rf, true
	}

	// No manifest: the recorder died while writing this file.
	res, err := muxer.Repair(path)
	if err != nil {
		rf.Error = err.Error()
		if errors.Is(err, muxer.ErrNoAudio) {
			// Killed before its first page of audio: nothing to store. Set
			// aside (not deleted) so later starts do not report it again.
			if dst, merr := s.setAside(path); merr != nil {
				log.Warn("recover: file holds no audio; left in place", "err", err, "move_err", merr)
			} else {
				rf.Path = dst
				log.Warn("recover: file holds no audio; set aside", "to", dst)
			}
		} else {
			log.Error("recover: repair failed; left in place", "err", err)
		}
		return rf, true
	}
	rf.Repaired = res.Repaired
	man, err := spool.ReadManifest(spool.PendingPath(path))
	if err != nil {
		// The pending manifest did not make it to disk: rebuild what the
		// name says (escaped names stay escaped).
		rel, _ := filepath.Rel(s.opts.Dir, path)
		start, _ := time.Parse(uploader.TimeLayout, name[2])
		man = spool.Manifest{
			Version:     1,
			Room:        filepath.Base(filepath.Dir(path)),
			Participant: spool.ManifestParticipant{Identity: name[1]},
			Track:       spool.ManifestTrack{SID: name[3], Codec: "opus"},
			File:        spool.ManifestFile{Key: s.opts.objectKey(filepath.ToSlash(rel)), Container: name[4]},
			Timeline:    spool.ManifestTimeline{Start: start.UTC()},
			Recorder:    spool.ManifestRecorder{Version: spool.Version()},
		}
	}
	_, ups, err := publish(&s.opts, path, man, func(m *spool.Manifest, size int64, sum []byte) {
		m.File.Size = size
		m.File.SHA256 = fmt.Sprintf("%x", sum)
		m.Timeline.DurationMS = res.Duration.Milliseconds()
		m.Recorder.Recovered = true
	})
	rf.uploads = ups
	if err != nil {
		rf.Error = err.Error()
	}
	log.Info("recover: repaired a file left by a crash", "repaired", res.Repaired, "truncated_bytes", res.Truncated, "duration", res.Duration)
	return rf, true
}

// noAudioDir, inside Dir, keeps files a crash left without any audio.
const noAudioDir = ".no-audio"

// setAside moves the file at path and its pending manifest under noAudioDir,
// keeping their place in the room's folder.
func (s *Supervisor) setAside(path string) (string, error) {
	rel, err := filepath.Rel(s.opts.Dir, path)
	if err != nil {
		return "", err
	}
	dst := filepath.Join(s.opts.Dir, noAudioDir, rel)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	if err := os.Rename(path, dst); err != nil {
		return "", err
	}
	if err := os.Rename(spool.PendingPath(path), spool.PendingPath(dst)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return dst, err
	}
	return dst, nil
}

// recoverManifest queues a manifest whose file is no longer in the spool:
// the file was stored (and removed) but the process stopped before the
// manifest followed it.
func (s *Supervisor) recoverManifest(path string) (RecoveredFile, bool) {
	rf := RecoveredFile{Path: path}
	if s.opts.SpoolIsStore || s.opts.Uploads == nil {
		return rf, false
	}
	base := strings.TrimSuffix(path, ".json")
	for _, ext := range []string{".ogg", ".webm"} {
		if _, err := os.Stat(base + ext); err == nil {
			return rf, false // recoverFile handles the pair
		}
	}
	man, err := spool.ReadManifest(path)
	if err != nil || man.File.Key == "" {
		rf.Error = fmt.Sprintf("unreadable manifest: %v", err)
		s.log.Error("recover: unreadable manifest", "file", path, "err", err)
		return rf, true
	}
	u, err := s.opts.Uploads.Submit(uploader.Item{Key: spool.ManifestPath(man.File.Key), Path: path, ContentType: "application/json"})
	if err != nil {
		rf.Error = err.Error()
		return rf, true
	}
	rf.uploads = []*uploader.Upload{u}
	s.log.Info("recover: uploading a manifest whose file is already stored", "file", path)
	return rf, true
}

// Recovered lists the files Recover found, with their upload progress.
func (s *Supervisor) Recovered() []RecoveredFile {
	s.mu.Lock()
	out := append([]RecoveredFile(nil), s.recovered...)
	s.mu.Unlock()
	for i := range out {
		out[i].Uploads = nil
		for _, u := range out[i].uploads {
			out[i].Uploads = append(out[i].Uploads, u.Info())
		}
	}
	return out
}
