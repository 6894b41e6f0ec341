package mixdown

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ManifestVersion is the version of the mixdown manifest format.
const ManifestVersion = 1

// ManifestDoc is the JSON manifest stored beside a mixdown (same name, .json
// extension, under the mixdown prefix). Example:
//
//	{
//	  "version": 1,
//	  "kind": "mixdown",
//	  "room": "standup",
//	  "key": "mixdown/standup/standup-2026-11-21T100000.mp3",
//	  "format": "mp3",
//	  "content_type": "audio/mpeg",
//	  "sample_rate": 48000,
//	  "channels": 1,
//	  "start": "2026-11-21T10:00:00Z",
//	  "duration_ms": 9500,
//	  "inputs": [
//	    {"key": "livekit/standup/alice-2026-11-21T100000-TR_AAA.ogg", "identity": "alice", "track_sid": "TR_AAA", "start": "2026-11-21T10:00:00Z", "offset_ms": 0},
//	    {"key": "livekit/standup/bob-2026-11-21T100002-TR_BBB.ogg", "identity": "bob", "track_sid": "TR_BBB", "start": "2026-11-21T10:00:02Z", "offset_ms": 2000}
//	  ]
//	}
//
// Position p in the mix plays at wall-clock time start + p; input i starts
// offset_ms into the mix.
type ManifestDoc struct {
	Version int    `json:"version"` // ManifestVersion
	Kind    string `json:"kind"`    // "mixdown"
	Room    string `json:"room"`
	// Key is the mixdown's object key. [Manifest] leaves it empty (the
	// placeholder); the recorder sets it when it knows where it uploads.
	Key         string          `json:"key"`
	Format      Format          `json:"format"`       // mp3 or opus
	ContentType string          `json:"content_type"` // audio/mpeg or audio/ogg
	SampleRate  int             `json:"sample_rate"`  // 48000
	Channels    int             `json:"channels"`
	Start       time.Time       `json:"start"`       // UTC: the earliest input's start
	DurationMS  int64           `json:"duration_ms"` // decoded length
	Inputs      []ManifestInput `json:"inputs"`      // in mix order
}

// ManifestInput is one input of a mixdown.
type ManifestInput struct {
	Key      string    `json:"key"` // object key of the track file
	Identity string    `json:"identity"`
	TrackSID string    `json:"track_sid"`
	Start    time.Time `json:"start"`     // UTC: the track file's start
	OffsetMS int64     `json:"offset_ms"` // delay applied: start minus the mix's start
}

// NewManifest describes r, a mix of room's tracks, with an empty Key.
func NewManifest(r Result, room string) ManifestDoc {
	start := r.Start.UTC()
	m := ManifestDoc{
		Version:     ManifestVersion,
		Kind:        "mixdown",
		Room:        room,
		Format:      r.Format,
		ContentType: r.Format.ContentType(),
		SampleRate:  SampleRate,
		Channels:    r.Channels,
		Start:       start,
		DurationMS:  r.Duration.Round(time.Millisecond).Milliseconds(),
		Inputs:      make([]ManifestInput, 0, len(r.Inputs)),
	}
	for _, in := range r.Inputs {
		m.Inputs = append(m.Inputs, ManifestInput{
			Key:      in.Key,
			Identity: in.Identity,
			TrackSID: in.TrackSID,
			Start:    start.Add(in.Offset),
			OffsetMS: in.Offset.Round(time.Millisecond).Milliseconds(),
		})
	}
	return m
}

// Manifest encodes [NewManifest](r, room) as indented JSON; its "key" is
// empty for the recorder to fill (decode into [ManifestDoc], set Key,
// encode; or build the document with NewManifest directly).
func Manifest(r Result, room string) ([]byte, error) {
	if room == "" {
		return nil, errors.New("mixdown manifest: no room")
	}
	if len(r.Inputs) == 0 {
		return nil, errors.New("mixdown manifest: no inputs")
	}
	b, err := json.MarshalIndent(NewManifest(r, room), "", "  ")
	if err != nil {
		return nil, fmt.Errorf("mixdown manifest: %w", err)
	}
	return append(b, '\n'), nil
}
