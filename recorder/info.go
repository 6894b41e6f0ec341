package recorder

import "time"

// RecordingInfo is a snapshot of a recording, as the API shows it.
type RecordingInfo struct {
	ID          string      `json:"id"`
	Room        string      `json:"room"`
	Participant string      `json:"participant"`
	State       string      `json:"state"`
	StopReason  string      `json:"stop_reason,omitempty"`
	StartedAt   time.Time   `json:"started_at"`
	StoppedAt   *time.Time  `json:"stopped_at,omitempty"`
	Tracks      []TrackInfo `json:"tracks"`
}

// TrackInfo is a snapshot of one track's file.
type TrackInfo struct {
	TrackSID string `json:"track_sid"`
	Source   string `json:"source"`
	State    string `json:"state"` // recording, closed, failed
	Error    string `json:"error,omitempty"`
	// File is the path relative to the local directory, the same as the
	// object key below its prefix. Empty until the first packet arrives.
	File string `json:"file,omitempty"`
	Path string `json:"path,omitempty"`
	// StartedAt is the file's start on the wall clock (arrival of its first
	// packet); the file name carries its UTC second.
	StartedAt      *time.Time `json:"started_at,omitempty"`
	Bytes          int64      `json:"bytes"`
	Packets        int64      `json:"packets"`
	DurationMS     int64      `json:"duration_ms"`
	SilencePackets int64      `json:"silence_packets"`
	Duplicates     int64      `json:"duplicates"`
	Late           int64      `json:"late"`
	Malformed      int64      `json:"malformed"`
}

// Info returns a snapshot of the recording.
func (r *Recording) Info() RecordingInfo {
	r.mu.Lock()
	info := RecordingInfo{
		ID:          r.id,
		Room:        r.key.Room,
		Participant: r.key.Participant,
		State:       r.state,
		StopReason:  r.stopReason,
		StartedAt:   r.startedAt,
		Tracks:      make([]TrackInfo, 0, len(r.tracks)),
	}
	if !r.stoppedAt.IsZero() {
		at := r.stoppedAt
		info.StoppedAt = &at
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
		TrackSID:       t.info.TrackSID,
		Source:         t.info.Source,
		State:          "recording",
		Bytes:          st.Bytes,
		Packets:        st.Packets,
		DurationMS:     samplesDuration(st.Samples).Milliseconds(),
		SilencePackets: st.SilencePackets,
		Duplicates:     st.Duplicates,
		Late:           st.Late,
		Malformed:      st.Malformed,
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
	ti.File, ti.Path = t.key, t.path
	if t.err != nil {
		ti.State, ti.Error = "failed", t.err.Error()
	}
	t.mu.Unlock()
	return ti
}
