package spool

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/trackrec/trackrec/muxer"
	"github.com/trackrec/trackrec/uploader"
)

// RecoveredFile is a track file (or a manifest whose file is stored) found
// in the spool at start-up.
type RecoveredFile struct {
	Path string `json:"path"`
	// Repaired says the file lacked its end (the process died writing it)
	// and was completed in place.
	Repaired bool                  `json:"repaired"`
	Uploads  []uploader.UploadInfo `json:"uploads,omitempty"`
	Error    string                `json:"error,omitempty"`

	uploads  []*uploader.Upload
	manifest Manifest
}

// Sealed is the recovered file as sealed: its manifest (its key) and its
// uploads, for whoever reports it (a track egress).
func (r *RecoveredFile) Sealed() Sealed {
	return Sealed{Manifest: r.manifest, Path: r.Path, Uploads: r.uploads}
}

// Refresh fills Uploads from the live state of the file's uploads.
func (r *RecoveredFile) Refresh() {
	r.Uploads = nil
	for _, u := range r.uploads {
		if u != nil {
			r.Uploads = append(r.Uploads, u.Info())
		}
	}
}

// Recovery is what Recover found.
type Recovery struct {
	Files []RecoveredFile
	// Rooms are the rooms an earlier process did not complete, from the
	// markers, by room name; their tracks wait on the re-queued uploads.
	Rooms map[string][]Sealed
}

// spoolName is a track file as TrackKey names it. The date is only shaped
// like one: month 13 passes, and the start then cannot be parsed.
var spoolName = regexp.MustCompile(`^(.+?)-(\d{4}-\d{2}-\d{2}T\d{6})-(.+)\.(ogg|webm)$`)

// noAudioDir, inside Dir, keeps the files a crash left without any audio.
const noAudioDir = ".no-audio"

// Recover finds what an earlier process left in Dir (killed while
// recording, or before its uploads finished). Files it was writing are
// repaired in place (muxer.Repair) and sealed, with the pending manifest or,
// when that never reached the disk, one rebuilt from the file name; files
// holding no audio are set aside in .no-audio/. Closed files and manifests
// whose file is already stored are queued again, unless the store is Dir
// itself (Options.SpoolIsStore) or there is no upload queue. Then it loads
// the pending-room markers. Run it once at start-up, before recording.
func (s *Spool) Recover(ctx context.Context) (Recovery, error) {
	if s.closed.Load() {
		return Recovery{}, errClosed
	}
	folders, err := os.ReadDir(s.dir)
	if err != nil {
		return Recovery{}, fmt.Errorf("spool: scan %s: %w", s.dir, err)
	}
	var found []RecoveredFile
	for _, d := range folders {
		// The service's own folders start with a dot (rooms never do);
		// reserved ones hold others' files (the mixes).
		if !d.IsDir() || strings.HasPrefix(d.Name(), ".") || s.reserved(d.Name()) {
			continue
		}
		folder := filepath.Join(s.dir, d.Name())
		entries, err := os.ReadDir(folder)
		if err != nil {
			s.log.Error("recover: room folder unreadable", "folder", folder, "err", err)
			continue
		}
		for _, e := range entries {
			if err := ctx.Err(); err != nil {
				return Recovery{Files: found}, err
			}
			name, path := e.Name(), filepath.Join(folder, e.Name())
			if !e.Type().IsRegular() || strings.HasPrefix(name, ".") {
				continue // not ours: Segment escapes a leading dot
			}
			switch {
			case strings.HasSuffix(name, ".json.tmp"), strings.HasSuffix(name, ".pending.tmp"):
				_ = os.Remove(path) // an interrupted write of a manifest
			case strings.HasSuffix(name, ".json"):
				if rf, ok := s.recoverManifest(path); ok {
					found = append(found, rf)
				}
			default:
				if m := spoolName.FindStringSubmatch(name); m != nil {
					if rf, ok := s.recoverFile(path, m); ok {
						found = append(found, rf)
					}
				}
			}
		}
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
	rooms := s.loadMarkers(uploads)
	for room, tracks := range rooms {
		s.log.Info("recover: room to complete", "room", room, "tracks", len(tracks))
	}
	return Recovery{Files: found, Rooms: rooms}, nil
}

// recoverFile handles a track file; name is its spoolName match. It reports
// false for a file with nothing to do.
func (s *Spool) recoverFile(path string, name []string) (RecoveredFile, bool) {
	rf := RecoveredFile{Path: path}
	log := s.log.With("file", path)
	if _, err := os.Stat(manifestPath(path)); err == nil {
		// Closed properly; its uploads may not have finished.
		if s.opts.SpoolIsStore || s.opts.Uploads == nil {
			return rf, false
		}
		man, err := readManifest(manifestPath(path))
		if err != nil {
			rf.Error = err.Error()
			log.Error("recover: unreadable manifest", "err", err)
			return rf, true
		}
		sealed, err := s.seal(path, man, s.placed(&rf, man, nil), nil, func(m *Manifest, size int64, sum []byte) {
			m.File.Size = size
			m.File.SHA256 = hex.EncodeToString(sum)
		})
		rf.uploads, rf.manifest = sealed.Uploads, sealed.Manifest
		rf.addError(err)
		log.Info("recover: uploading a closed file left in the spool", "room", man.Room)
		return rf, true
	}

	if man, ok := s.sealedBefore(path); ok {
		// Died between the marker and the manifest: the marker is the
		// manifest, and the file is the one it describes.
		sealed, err := s.seal(path, man, s.placed(&rf, man, nil), nil, func(*Manifest, int64, []byte) {})
		rf.uploads, rf.manifest = sealed.Uploads, sealed.Manifest
		rf.addError(err)
		log.Info("recover: manifest restored from the pending-room marker", "room", man.Room)
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
	start, perr := time.Parse(uploader.TimeLayout, name[2])
	man, err := readManifest(pendingPath(path))
	if err != nil {
		// The pending manifest did not make it to disk: rebuild what the
		// name says (escaped names stay escaped).
		rel, _ := filepath.Rel(s.dir, path)
		man = Manifest{
			Version:     manifestVersion,
			Room:        filepath.Base(filepath.Dir(path)),
			Participant: ManifestParticipant{Identity: name[1]},
			Track:       ManifestTrack{SID: name[3], Codec: "opus"},
			File:        ManifestFile{Key: s.objectKey(filepath.ToSlash(rel)), Container: name[4]},
			Recorder:    ManifestRecorder{Version: version()},
		}
	}
	if man.Timeline.Start.IsZero() && perr == nil {
		man.Timeline.Start = start.UTC()
	}
	sealed, err := s.seal(path, man, s.placed(&rf, man, perr), nil, func(m *Manifest, size int64, sum []byte) {
		m.File.Size = size
		m.File.SHA256 = hex.EncodeToString(sum)
		m.Timeline.DurationMS = res.Duration.Milliseconds()
		m.Recorder.Recovered = true
	})
	rf.uploads, rf.manifest = sealed.Uploads, sealed.Manifest
	rf.addError(err)
	log.Info("recover: repaired a file left by a crash", "room", man.Room, "repaired", res.Repaired, "truncated_bytes", res.Truncated, "duration", res.Duration)
	return rf, true
}

// sealedBefore returns the marker of the file at path when it describes
// the file as it is (same checksum): Seal wrote it, then stopped.
func (s *Spool) sealedBefore(path string) (Manifest, bool) {
	mp, ok := s.markerPath(path)
	if !ok {
		return Manifest{}, false
	}
	m, err := readManifest(mp)
	if err != nil || m.File.SHA256 == "" {
		return Manifest{}, false
	}
	sum, err := uploader.FileSHA256(path)
	if err != nil || hex.EncodeToString(sum) != m.File.SHA256 {
		return Manifest{}, false
	}
	return m, true
}

// placed says whether the track of m can take part in its room's
// completion: a mix places a track by its start, and one without would fail
// the whole room's. If not, rf says so; perr is why the file name gave none.
func (s *Spool) placed(rf *RecoveredFile, m Manifest, perr error) bool {
	if !m.Timeline.Start.IsZero() {
		return true
	}
	if !s.opts.Markers {
		return false // no completion to be left out of
	}
	why := "the manifest has no start"
	if perr != nil {
		why = fmt.Sprintf("no start in the file name: %v", perr)
	}
	rf.addError(fmt.Errorf("left out of room %q's completion: %s", m.Room, why))
	s.log.Warn("recover: track left out of its room's completion", "room", m.Room, "file", rf.Path, "why", why)
	return false
}

func (r *RecoveredFile) addError(err error) {
	switch {
	case err == nil:
	case r.Error == "":
		r.Error = err.Error()
	default:
		r.Error += "; " + err.Error()
	}
}

// setAside moves the file at path and its pending manifest under noAudioDir,
// keeping their place in the room's folder.
func (s *Spool) setAside(path string) (string, error) {
	rel, err := filepath.Rel(s.dir, path)
	if err != nil {
		return "", err
	}
	dst := filepath.Join(s.dir, noAudioDir, rel)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	if err := os.Rename(path, dst); err != nil {
		return "", err
	}
	if err := os.Rename(pendingPath(path), pendingPath(dst)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return dst, err
	}
	return dst, nil
}

// recoverManifest queues a manifest whose file is no longer in the spool:
// the file was stored (and removed) but the process stopped before the
// manifest followed it.
func (s *Spool) recoverManifest(path string) (RecoveredFile, bool) {
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
	man, err := readManifest(path)
	if err == nil && man.File.Key == "" {
		err = fmt.Errorf("manifest %s: no file key", path)
	}
	if err != nil {
		rf.Error = err.Error()
		s.log.Error("recover: unreadable manifest", "file", path, "err", err)
		return rf, true
	}
	u, err := s.opts.Uploads.Submit(uploader.Item{Key: manifestPath(man.File.Key), Path: path, ContentType: "application/json"})
	if err != nil {
		rf.Error = err.Error()
		return rf, true
	}
	rf.uploads = []*uploader.Upload{u}
	s.log.Info("recover: uploading a manifest whose file is already stored", "room", man.Room, "file", path)
	return rf, true
}
