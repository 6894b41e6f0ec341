package recorder

import "github.com/trackrec/trackrec/muxer"

// Stats is what the supervisor holds now and has written since it started,
// read by the metrics endpoint at scrape time.
type Stats struct {
	ActiveRecordings int // recordings not stopped yet (stopping ones included)
	Bots             int // rooms whose bot has joined and not left
	OpenTracks       int // track files open and being written
	// Tracks sums every track of this process: those of recordings still
	// active or stopping, read live, plus those of recordings that reached
	// the history (which forgets old ones), kept here from the moment they
	// moved there. So the sums only grow and count each track once.
	Tracks TrackTotals
}

// TrackTotals are the summed counters of tracks, and their container bytes.
type TrackTotals struct {
	muxer.Counts
	Bytes int64
}

func (t *TrackTotals) add(o TrackTotals) {
	t.Counts.Add(o.Counts)
	t.Bytes += o.Bytes
}

func trackTotals(st muxer.Stats) TrackTotals {
	return TrackTotals{Counts: st.Counts, Bytes: st.Bytes}
}

// Stats returns a snapshot. The set of live recordings and the retired sums
// are read under one lock, and stop moves a recording from one to the other
// under that lock, so no track is counted twice or missed.
func (s *Supervisor) Stats() Stats {
	s.mu.Lock()
	st := Stats{Tracks: s.retired}
	for _, rm := range s.rooms {
		if rm.bot != nil {
			st.Bots++
		}
	}
	live := s.live()
	s.mu.Unlock()
	st.ActiveRecordings = len(live)
	for _, r := range live {
		for _, t := range r.trackList() {
			st.Tracks.add(trackTotals(t.mux.Stats()))
			if t.fileOpen() {
				st.OpenTracks++
			}
		}
	}
	return st
}

// totals sums the counters of r's tracks; final once r is stopped.
func (r *Recording) totals() TrackTotals {
	var tt TrackTotals
	for _, t := range r.trackList() {
		tt.add(trackTotals(t.mux.Stats()))
	}
	return tt
}

func (r *Recording) trackList() []*track {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*track(nil), r.tracks...)
}

// fileOpen: the file exists (the anchor window has passed) and the track's
// reader has not finished with it.
func (t *track) fileOpen() bool {
	select {
	case <-t.done:
		return false
	default:
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.file != nil
}
