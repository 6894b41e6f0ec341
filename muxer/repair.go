package muxer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/trackrec/trackrec/muxer/ogg"
	"github.com/trackrec/trackrec/muxer/webm"
)

// ErrNoAudio is wrapped by Repair's error when a file is too damaged to hold
// any audio (a crash before the first page or Cluster of audio was written,
// say). Such a file is left as it was.
var ErrNoAudio = errors.New("no audio in file")

// RepairResult describes what Repair did and what the file now holds.
type RepairResult struct {
	Repaired  bool          // false: the file was already complete and is untouched
	Truncated int64         // bytes cut off the end
	Duration  time.Duration // decoded length (pre-skip removed)
}

// Repair finishes in place a track file left unfinished by a process that
// died while writing it (SIGKILL, crash), without re-encoding: the format is
// chosen by the extension (".ogg" or ".webm"); see ogg.Repair and
// webm.Repair. Every packet written whole is kept. A complete file is left
// untouched. The file is synced before Repair returns.
func Repair(path string) (RepairResult, error) {
	var repair func(*os.File) (RepairResult, error)
	switch ext := filepath.Ext(path); ext {
	case "." + FormatOgg:
		repair = repairOgg
	case "." + FormatWebM:
		repair = repairWebM
	default:
		return RepairResult{}, fmt.Errorf("muxer: repair %s: unknown extension %q", path, ext)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return RepairResult{}, fmt.Errorf("muxer: repair: %w", err)
	}
	res, err := repair(f)
	if err == nil {
		// The upload that follows may delete the local copy: what it read
		// must be on disk, repaired or not.
		if err = f.Sync(); err != nil {
			err = fmt.Errorf("muxer: repair %s: sync: %w", path, err)
		}
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("muxer: repair %s: close: %w", path, cerr)
	}
	if err != nil {
		return RepairResult{}, err
	}
	return res, nil
}

func repairOgg(f *os.File) (RepairResult, error) {
	r, err := ogg.Repair(f)
	if errors.Is(err, ogg.ErrNoAudio) {
		err = noAudio{err}
	}
	return RepairResult{r.Repaired, r.Truncated, r.Duration}, err
}

func repairWebM(f *os.File) (RepairResult, error) {
	r, err := webm.Repair(f)
	if errors.Is(err, webm.ErrNoAudio) {
		err = noAudio{err}
	}
	return RepairResult{r.Repaired, r.Truncated, r.Duration}, err
}

// noAudio makes a container's no-audio error match ErrNoAudio too, with its
// own message.
type noAudio struct{ err error }

func (e noAudio) Error() string   { return e.err.Error() }
func (e noAudio) Unwrap() []error { return []error{ErrNoAudio, e.err} }
