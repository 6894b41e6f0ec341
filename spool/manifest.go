package spool

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/trackrec/trackrec/muxer/opus"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/trackrec/trackrec/muxer"
	"github.com/trackrec/trackrec/uploader"
)

// Manifest describes one track file. It is stored beside the file under the
// same name with a .json extension: one manifest per audio file, so a
// consumer can count what to expect.
type Manifest struct {
	Version     int                 `json:"version"` // of this format: 1
	Room        string              `json:"room"`
	RoomSID     string              `json:"room_sid,omitempty"`
	Participant ManifestParticipant `json:"participant"`
	Track       ManifestTrack       `json:"track"`
	File        ManifestFile        `json:"file"`
	Timeline    ManifestTimeline    `json:"timeline"`
	Counts      muxer.Counts        `json:"counts"`
	Recorder    ManifestRecorder    `json:"recorder"`
}

type ManifestParticipant struct {
	Identity string `json:"identity"`
	Name     string `json:"name,omitempty"`
	SID      string `json:"sid,omitempty"`
}

type ManifestTrack struct {
	SID      string `json:"sid"`
	Source   string `json:"source,omitempty"`
	Codec    string `json:"codec"`               // opus
	MimeType string `json:"mime_type,omitempty"` // audio/opus
}

type ManifestFile struct {
	Key       string `json:"key"`       // object key
	Container string `json:"container"` // ogg or webm
	Size      int64  `json:"size"`
	SHA256    string `json:"sha256"` // hex
}

type ManifestTimeline struct {
	// Start is the file's start, the whole UTC second its name carries.
	Start time.Time `json:"start"`
	// Anchor is the wall-clock instant of the first packet's RTP timestamp
	// (microseconds, UTC); the first audio plays Anchor - Start into the file.
	// Absent for a file recovered after a crash.
	Anchor *time.Time `json:"anchor,omitempty"`
	// DurationMS is the decoded length of the file from Start.
	DurationMS int64 `json:"duration_ms"`
	PreSkip    int   `json:"pre_skip,omitempty"`
}

type ManifestRecorder struct {
	Instance string `json:"instance"`
	Version  string `json:"version"`
	// Recovered says the file was repaired after the recorder died while
	// writing it; counts are then unknown.
	Recovered bool `json:"recovered,omitempty"`
}

// manifestVersion is the version of the manifest format written here.
const manifestVersion = 1

// NewManifest fills what is known when a track's file opens.
func NewManifest(info Track, key, container, instance string, start time.Time) Manifest {
	return Manifest{
		Version: manifestVersion,
		Room:    info.Room,
		RoomSID: info.RoomSID,
		Participant: ManifestParticipant{
			Identity: info.Participant,
			Name:     info.ParticipantName,
			SID:      info.ParticipantSID,
		},
		Track: ManifestTrack{
			SID:      info.TrackSID,
			Source:   info.Source,
			Codec:    "opus",
			MimeType: strings.ToLower(info.MimeType),
		},
		File:     ManifestFile{Key: key, Container: container},
		Timeline: ManifestTimeline{Start: start.UTC()},
		Recorder: ManifestRecorder{Instance: instance, Version: version()},
	}
}

// complete adds what is known once the file is closed.
func (m *Manifest) complete(st muxer.Stats, size int64, sum []byte) {
	m.File.Size = size
	m.File.SHA256 = hex.EncodeToString(sum)
	if !st.Anchor.IsZero() {
		at := st.Anchor.UTC().Truncate(time.Microsecond)
		m.Timeline.Anchor = &at
	}
	m.Timeline.DurationMS = opus.Duration(st.Samples).Milliseconds()
	m.Timeline.PreSkip = st.PreSkip
	m.Counts = st.Counts
}

// manifestPath is the manifest's name beside a track file.
func manifestPath(media string) string {
	return strings.TrimSuffix(media, filepath.Ext(media)) + ".json"
}

// pendingPath holds the manifest while the file is being written, so a file
// recovered after a crash still has its room, participant and track details.
// Its extension is not .json, so it is never taken for a finished manifest.
func pendingPath(media string) string {
	return strings.TrimSuffix(media, filepath.Ext(media)) + ".pending"
}

// writeJSON writes v to path atomically and durably: temp file, fsync,
// rename, fsync of the folder, so the rename itself survives a power loss
// before anything written after it.
func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, werr := f.Write(append(data, '\n'))
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// syncDir makes the entries of the folder at path durable.
func syncDir(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	serr := d.Sync()
	cerr := d.Close()
	return errors.Join(serr, cerr)
}

func readManifest(path string) (Manifest, error) {
	var m Manifest
	data, err := os.ReadFile(path)
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("manifest %s: %w", path, err)
	}
	return m, nil
}

// version names this build: the module version, or the VCS revision.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}

// Sealed is a closed track file whose manifest is written and whose uploads
// are queued: what a room's completion waits for and hands to the pipeline.
type Sealed struct {
	Manifest Manifest
	// Path is the file in the spool; it may be gone once uploaded.
	Path    string
	Uploads []*uploader.Upload
}
