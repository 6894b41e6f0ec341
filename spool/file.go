package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/trackrec/trackrec/muxer"
	"github.com/trackrec/trackrec/uploader"
)

// Track is what is known of a track when its file opens. Every field comes
// from outside: none is used raw in a path or a key.
type Track struct {
	Room, RoomSID                                string
	Participant, ParticipantName, ParticipantSID string // Participant is the identity
	TrackSID, Source, MimeType                   string
	// Key, if set, is the file's object key in place of the layout's (a
	// track egress names it; it ends in the container's extension). The
	// file keeps its layout name in Dir; a clash numbers both.
	Key string
	// Store, if set, stores the file and its manifest in place of the
	// upload queue's (an egress request's own bucket). It is not kept on
	// disk: a file recovered after a crash goes to the queue's.
	Store uploader.Storage
}

// maxClash bounds the numbered names tried when a track's name is taken.
const maxClash = 100

// Create opens a new file for t's track starting at start (a whole UTC
// second), in container (muxer.FormatOgg or muxer.FormatWebM), named by
// uploader.TrackKey under Dir. An existing file is never overwritten
// (O_EXCL): a clash (the same track resubscribed within one second) takes a
// numbered track id, TR_x_2, TR_x_3 and so on. The pending manifest is
// written beside the file for crash recovery; its failure is only logged.
func (s *Spool) Create(t Track, start time.Time, container string) (*File, error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	if container != muxer.FormatOgg && container != muxer.FormatWebM {
		return nil, fmt.Errorf("spool: create: container %q (want %q or %q)", container, muxer.FormatOgg, muxer.FormatWebM)
	}
	if !start.Equal(start.Truncate(time.Second)) {
		return nil, fmt.Errorf("spool: create: start %s is not a whole second", start.UTC().Format(time.RFC3339Nano))
	}
	log := s.log.With("room", t.Room, "participant", t.Participant, "track", t.TrackSID)
	folder := s.folder(t.Room)
	if err := os.MkdirAll(filepath.Join(s.dir, folder), 0o755); err != nil {
		return nil, fmt.Errorf("spool: track folder: %w", err)
	}
	sid := t.TrackSID
	for n := 2; ; n++ {
		name := s.trackName(folder, t.Participant, sid, start, container)
		path := filepath.Join(s.dir, filepath.FromSlash(name))
		// A manifest of this name belongs to another file (the same track
		// in the other container): this file takes the next name too.
		key := s.objectKey(name)
		if t.Key != "" {
			ext := "." + container
			key = strings.TrimSuffix(t.Key, ext) + sid[len(t.TrackSID):] + ext
		}
		f, err := (*os.File)(nil), error(os.ErrExist)
		if !taken(path) && (s.opts.Claimed == nil || !s.opts.Claimed(t.Room, key)) {
			f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		}
		if err == nil {
			file := &File{s: s, f: f, path: path, name: name, key: key, store: t.Store}
			file.manifest = NewManifest(t, file.key, container, s.opts.Instance, start)
			if err := writeJSON(pendingPath(path), file.manifest); err != nil {
				// Only crash recovery needs it; the recording goes on.
				log.Warn("pending manifest", "file", path, "err", err)
			}
			log.Info("track file opened", "file", path, "start", start.UTC())
			return file, nil
		}
		if !errors.Is(err, os.ErrExist) || n > maxClash {
			return nil, fmt.Errorf("spool: create track file: %w", err)
		}
		sid = fmt.Sprintf("%s_%d", t.TrackSID, n)
	}
}

// taken says whether the manifest or pending manifest of a file at path
// exists: a file of the same name in the other container has them.
func taken(path string) bool {
	for _, p := range []string{manifestPath(path), pendingPath(path)} {
		if _, err := os.Lstat(p); err == nil {
			return true
		}
	}
	return false
}

// trackName is uploader.TrackKey with the room's folder (escaped from the
// reserved names) in front.
func (s *Spool) trackName(folder, identity, sid string, start time.Time, container string) string {
	key := uploader.TrackKey("", identity, sid, start, container)
	_, file, _ := strings.Cut(key, "/")
	return folder + "/" + file
}

// File is a track file being written in the spool. Write, Seek and Close
// are for the container writer, from one goroutine.
type File struct {
	s        *Spool
	f        *os.File
	path     string
	name     string
	key      string
	manifest Manifest // as at Create
	store    uploader.Storage

	closed atomic.Bool
	sealed atomic.Bool
}

func (f *File) Write(p []byte) (int, error) { return f.f.Write(p) }

// Seek lets the WebM writer go back at close to fill in Duration and Cues.
func (f *File) Seek(off int64, whence int) (int64, error) { return f.f.Seek(off, whence) }

// Close syncs then closes the file: its bytes are on disk before the
// recording reports it closed.
func (f *File) Close() error {
	if f.closed.Swap(true) {
		return os.ErrClosed
	}
	serr := f.f.Sync()
	cerr := f.f.Close()
	if err := errors.Join(serr, cerr); err != nil {
		return fmt.Errorf("spool: close %s: %w", f.path, err)
	}
	return nil
}

// Path is the file's path on this system, absolute.
func (f *File) Path() string { return f.path }

// Name is the file's slash-separated path under Dir: its object key below
// the prefix.
func (f *File) Name() string { return f.name }

// Key is the file's object key.
func (f *File) Key() string { return f.key }

// Seal completes the closed file's manifest from st (size, SHA-256, anchor,
// duration, pre-skip, counts), writes the pending-room marker (with
// Options.Markers), then the manifest beside the file, removes the pending
// manifest, and queues the file and then its manifest (after the file) for
// upload. The package doc says why in this order. On error the Sealed holds
// what was done.
func (s *Spool) Seal(f *File, st muxer.Stats) (Sealed, error) {
	switch {
	case f == nil || f.s != s:
		return Sealed{}, errors.New("spool: seal: not a file of this spool")
	case !f.closed.Load():
		return Sealed{Manifest: f.manifest, Path: f.path}, fmt.Errorf("spool: seal %s: file not closed", f.path)
	case s.closed.Load():
		// The lock is gone: Dir may be another process's now.
		return Sealed{Manifest: f.manifest, Path: f.path}, errClosed
	case f.sealed.Swap(true):
		return Sealed{Manifest: f.manifest, Path: f.path}, fmt.Errorf("spool: seal %s: sealed already", f.path)
	}
	return s.seal(f.path, f.manifest, true, f.store, func(m *Manifest, size int64, sum []byte) { m.complete(st, size, sum) })
}

// seal is Seal for a closed file at path, new or recovered: fill completes
// m once the file's size and checksum are known; mark says the file may get
// a marker (its start is known).
func (s *Spool) seal(path string, m Manifest, mark bool, store uploader.Storage, fill func(m *Manifest, size int64, sum []byte)) (Sealed, error) {
	out := Sealed{Manifest: m, Path: path}
	sum, err := uploader.FileSHA256(path)
	if err != nil {
		return out, fmt.Errorf("spool: seal: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return out, fmt.Errorf("spool: seal: %w", err)
	}
	fill(&out.Manifest, fi.Size(), sum)
	m = out.Manifest
	// The marker goes first: a crash before the manifest leaves a file that
	// recovery seals (and marks) again, never a closed file without its
	// marker.
	if mark && s.opts.Markers {
		if err := s.mark(path, m); err != nil {
			return out, fmt.Errorf("spool: pending-room marker: %w", err)
		}
	}
	mpath := manifestPath(path)
	if err := writeJSON(mpath, m); err != nil {
		return out, fmt.Errorf("spool: manifest: %w", err)
	}
	if err := os.Remove(pendingPath(path)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("remove pending manifest", "room", m.Room, "file", path, "err", err)
	}
	if s.opts.Uploads == nil {
		return out, nil
	}
	media, err := s.opts.Uploads.Submit(uploader.Item{Key: m.File.Key, Path: path, ContentType: contentType(m.File.Container), SHA256: sum, Store: store})
	if err != nil {
		return out, fmt.Errorf("spool: queue upload: %w", err)
	}
	out.Uploads = []*uploader.Upload{media}
	man, err := s.opts.Uploads.Submit(uploader.Item{Key: manifestPath(m.File.Key), Path: mpath, ContentType: "application/json", After: media, Store: store})
	if err != nil {
		return out, fmt.Errorf("spool: queue manifest upload: %w", err)
	}
	out.Uploads = append(out.Uploads, man)
	return out, nil
}

func contentType(container string) string {
	if container == muxer.FormatWebM {
		return "audio/webm"
	}
	return "audio/ogg"
}
