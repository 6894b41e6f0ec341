package spool

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"github.com/trackrec/trackrec/uploader"
)

// Uploader queues files for storage (uploader.Queue).
type Uploader interface {
	Submit(uploader.Item) (*uploader.Upload, error)
}

// Options configure a Spool.
type Options struct {
	Dir string // LOCAL_DIRECTORY
	// KeyPrefix is put before a file's path under Dir to make its object
	// key ("livekit" gives livekit/{room}/{file}); empty for none.
	KeyPrefix string
	Instance  string // this instance's id, written into manifests
	// Uploads takes sealed files and their manifests; nil keeps them in
	// Dir only.
	Uploads Uploader
	// SpoolIsStore says the store keeps files where Dir has them (local
	// storage): a file with a manifest is already stored.
	SpoolIsStore bool
	// Markers gives closed files pending-room markers: set when a room
	// pipeline (mixdown, webhook) is configured.
	Markers bool
	// Reserved are top-level folder names under Dir used by others (the
	// first segment of the mixdown prefix with local storage). A room whose
	// folder would equal one (ignoring case) gets its first character
	// escaped instead, and Recover leaves these folders alone.
	Reserved []string
	Logger   *slog.Logger
	// Claimed, if set, says whether another instance sharing the store
	// writes or stored a file under an object key (a fleet: a recording
	// handed over within the second its old file began): Create takes the
	// next name, as for a clash in Dir, so no upload overwrites another.
	Claimed func(room, key string) bool
}

// ErrLocked is wrapped by Open's error when another process holds Dir.
var ErrLocked = errors.New("in use by another recorder")

// Spool is an instance's on-disk state under one directory, held under an
// exclusive lock for as long as it is open.
type Spool struct {
	dir    string // absolute
	prefix string // KeyPrefix without its slashes
	opts   Options
	log    *slog.Logger
	lock   *os.File
	closed atomic.Bool
}

// lockName is the lock file under Dir.
const lockName = ".lock"

// Open creates Dir if needed and takes an exclusive, non-blocking lock on it
// (flock on Dir/.lock, which holds the holder's pid). If another process
// holds it, Open returns an error wrapping ErrLocked that names the absolute
// directory and, when readable, the holder's pid, and changes nothing in Dir.
func Open(o Options) (*Spool, error) {
	if o.Dir == "" {
		return nil, errors.New("spool: no directory")
	}
	prefix := strings.Trim(o.KeyPrefix, "/")
	if prefix != "" {
		if err := uploader.CheckKey(prefix); err != nil {
			return nil, fmt.Errorf("spool: key prefix %q is not clean: %w", o.KeyPrefix, err)
		}
	}
	for _, r := range o.Reserved {
		// A reserved name made of characters Segment keeps, not starting
		// with a dot, keeps the escaping of room folders injective.
		if r == "" || uploader.Segment(r) != r {
			return nil, fmt.Errorf("spool: reserved folder %q: want a plain name (letters, digits, -_.~@+=,; no leading dot)", r)
		}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	abs, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("LOCAL_DIRECTORY %s: %w", o.Dir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("LOCAL_DIRECTORY: %w", err)
	}
	lock, err := lockDir(abs)
	if err != nil {
		return nil, err
	}
	return &Spool{dir: abs, prefix: prefix, opts: o, log: o.Logger, lock: lock}, nil
}

// Close releases the lock. The lock file stays: removing it would let a
// process that opened it just before lock a file no longer in Dir.
func (s *Spool) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	return unlockDir(s.lock)
}

// Dir is the spool's directory, absolute.
func (s *Spool) Dir() string { return s.dir }

// Writable checks that the directory takes a write (a temporary file
// written, synced and removed), for readiness.
func (s *Spool) Writable() error {
	f, err := os.CreateTemp(s.dir, ".ready-*")
	if err != nil {
		return fmt.Errorf("local directory: %w", err)
	}
	name := f.Name()
	_, werr := f.Write([]byte("ok"))
	serr := f.Sync()
	cerr := f.Close()
	rerr := os.Remove(name)
	if err := errors.Join(werr, serr, cerr, rerr); err != nil {
		return fmt.Errorf("local directory: %w", err)
	}
	return nil
}

// objectKey is the storage key of the file at name (slash-separated) under
// Dir.
func (s *Spool) objectKey(name string) string {
	if s.prefix == "" {
		return name
	}
	return s.prefix + "/" + name
}

// folder is the folder under Dir of a room's files: its escaped name, with
// the first character escaped too when that name is a reserved one.
func (s *Spool) folder(room string) string {
	seg := uploader.Segment(room)
	if !s.reserved(seg) {
		return seg
	}
	// Segment escapes a kept character never, so no other room's folder
	// starts with this escape.
	_, n := utf8.DecodeRuneInString(seg)
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "%%%02X", seg[i])
	}
	return b.String() + seg[n:]
}

// reserved says whether folder is one of Options.Reserved. Case is ignored:
// on a case-insensitive file system "Mixdown" is the mixes' folder too.
func (s *Spool) reserved(folder string) bool {
	for _, r := range s.opts.Reserved {
		if strings.EqualFold(folder, r) {
			return true
		}
	}
	return false
}

// errClosed is returned by the methods of a closed Spool.
var errClosed = errors.New("spool: closed")
