package egress

import "encoding/json"

// Manifest is EG_<id>.json, written beside an egress's file: livekit/egress's
// fields, so consumers that read those keep working, and this recorder's
// own track manifest under "trackrec" (participant, anchor, duration,
// counts, sha256).
type Manifest struct {
	EgressID          string         `json:"egress_id,omitempty"`
	RoomID            string         `json:"room_id,omitempty"`
	RoomName          string         `json:"room_name,omitempty"`
	StartedAt         int64          `json:"started_at,omitempty"` // ns
	EndedAt           int64          `json:"ended_at,omitempty"`   // ns
	PublisherIdentity string         `json:"publisher_identity,omitempty"`
	TrackID           string         `json:"track_id,omitempty"`
	TrackKind         string         `json:"track_kind,omitempty"`
	TrackSource       string         `json:"track_source,omitempty"`
	Files             []ManifestFile `json:"files,omitempty"`
	// Trackrec is the recorder's own manifest of the file (spool.Manifest).
	Trackrec json.RawMessage `json:"trackrec,omitempty"`
}

// ManifestFile is one file of a Manifest.
type ManifestFile struct {
	Filename string `json:"filename,omitempty"`
	Location string `json:"location,omitempty"`
}
