package recorder

import (
	"github.com/trackrec/trackrec/muxer/opus"
	"time"

	"github.com/trackrec/trackrec/muxer"
	"github.com/trackrec/trackrec/uploader"
)

// RecordingInfo is a snapshot of a recording, as the API shows it.
type RecordingInfo struct {
	ID          string `json:"id"`
	Room        string `json:"room"`
	Participant string `json:"participant"`
	// Instance is the recorder instance that holds the recording.
	Instance   string     `json:"instance,omitempty"`
	State      State      `json:"state"`
	StopReason string     `json:"stop_reason,omitempty"`
	StartedAt  time.Time  `json:"started_at"`
	StoppedAt  *time.Time `json:"stopped_at,omitempty"`
	// HandoverAt, on a recording another instance handed over while it
	// drained, is the instant this instance's files take over: the packets
	// that arrived before it are in the previous instance's files.
	HandoverAt *time.Time  `json:"handover_at,omitempty"`
	Tracks     []TrackInfo `json:"tracks"`
}

// TrackInfo is a snapshot of one track's file.
type TrackInfo struct {
	TrackSID string `json:"track_sid"`
	Source   string `json:"source"`
	State    string `json:"state"` // recording, closed, failed
	Error    string `json:"error,omitempty"`
	// File is the path relative to the local directory, the same as the
	// object key below its prefix. Empty until the file opens.
	File string `json:"file,omitempty"`
	Path string `json:"path,omitempty"`
	// Anchor is the wall-clock instant of the track's first RTP timestamp,
	// estimated from packet arrivals, to the microsecond.
	Anchor *time.Time `json:"anchor,omitempty"`
	// StartedAt is the file's start: the whole UTC second its name carries.
	// The first sample of audio plays at Anchor - StartedAt into the file.
	StartedAt *time.Time `json:"started_at,omitempty"`
	PreSkip   int        `json:"pre_skip"`
	// DurationMS is the media length on the decoded timeline.
	DurationMS int64 `json:"duration_ms"`
	Bytes      int64 `json:"bytes"`
	muxer.Counts

	// Key is the object key; Upload the state of the file and its manifest
	// in storage: pending, uploading, uploaded or failed (retrying).
	Key         string `json:"key,omitempty"`
	Upload      string `json:"upload,omitempty"`
	UploadError string `json:"upload_error,omitempty"`
}

// Info returns a snapshot of the recording.
func (r *Recording) Info() RecordingInfo {
	r.mu.Lock()
	info := RecordingInfo{
		ID:          r.id,
		Room:        r.key.Room,
		Participant: r.key.Participant,
		Instance:    r.instance,
		State:       r.state,
		StopReason:  r.stopReason,
		StartedAt:   r.startedAt,
		Tracks:      make([]TrackInfo, 0, len(r.tracks)),
	}
	if !r.stoppedAt.IsZero() {
		at := r.stoppedAt
		info.StoppedAt = &at
	}
	if !r.handoverAt.IsZero() {
		at := r.handoverAt
		info.HandoverAt = &at
	}
	tracks := append([]*track(nil), r.tracks...)
	r.mu.Unlock()
	for _, t := range tracks {
		info.Tracks = append(info.Tracks, t.Info())
	}
	return info
}

// Info returns a snapshot of the track.
func (t *track) Info() TrackInfo {
	st := t.mux.Stats()
	ti := TrackInfo{
		TrackSID:   t.info.TrackSID,
		Source:     t.info.Source,
		State:      "recording",
		PreSkip:    st.PreSkip,
		DurationMS: opus.Duration(st.Samples).Milliseconds(),
		Bytes:      st.Bytes,
		Counts:     st.Counts,
	}
	if !st.Anchor.IsZero() {
		at := st.Anchor.UTC().Truncate(time.Microsecond)
		ti.Anchor = &at
	}
	if !st.Start.IsZero() {
		at := st.Start.UTC()
		ti.StartedAt = &at
	}
	select {
	case <-t.done:
		ti.State = "closed"
	default:
	}
	t.mu.Lock()
	if t.file != nil {
		ti.File, ti.Path, ti.Key = t.file.Name(), t.file.Path(), t.file.Key()
	}
	if t.err != nil {
		ti.State, ti.Error = "failed", t.err.Error()
	}
	ups := t.sealed.Uploads
	t.mu.Unlock()
	ti.Upload, ti.UploadError = uploadState(ups)
	return ti
}

// uploadState sums up a file's uploads: the least advanced state wins.
func uploadState(ups []*uploader.Upload) (string, string) {
	if len(ups) == 0 {
		return "", ""
	}
	rank := func(s string) int {
		switch s {
		case uploader.StateFailed:
			return 0
		case uploader.StateUploading:
			return 1
		case uploader.StatePending:
			return 2
		}
		return 3
	}
	state, msg := uploader.StateUploaded, ""
	for _, u := range ups {
		info := u.Info()
		if rank(info.State) < rank(state) {
			state = info.State
		}
		if info.Error != "" && msg == "" {
			msg = info.Error
		}
	}
	return state, msg
}
