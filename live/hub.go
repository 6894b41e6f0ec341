package live

import (
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxLag is how far a consumer may fall behind before it is closed.
const DefaultMaxLag = 10 * time.Second

// Errors of a live session.
var (
	// ErrNotFound: nothing of that room and participant (and track) is
	// being recorded here.
	ErrNotFound = errors.New("live: not recording that participant here")
	// ErrBehind: the consumer fell behind the live edge by more than the
	// hub's MaxLag, and was closed.
	ErrBehind = errors.New("live: consumer fell behind")

	errEnded = errors.New("live: stream ended")
)

// Options configure a Hub.
type Options struct {
	// MaxLag bounds each consumer's buffer: one whose next unsent data is
	// older than this is closed (ErrBehind). Zero means DefaultMaxLag.
	MaxLag time.Duration
}

// Hub finds the live streams of what this process records, by room and
// participant. The recorder publishes each track's Stream; the API serves
// consumers from them.
type Hub struct {
	opts Options

	mu    sync.Mutex
	parts map[partKey]*part

	consumers atomic.Int64
	sent      atomic.Int64
	dropped   atomic.Int64
}

type partKey struct{ room, participant string }

// part is one recorded participant: its recordings (open) and the streams
// of its tracks, oldest first.
type part struct {
	open    int
	streams []*Stream
	changed chan struct{} // closed and replaced on every change
}

// NewHub returns an empty hub.
func NewHub(o Options) *Hub {
	if o.MaxLag <= 0 {
		o.MaxLag = DefaultMaxLag
	}
	return &Hub{opts: o, parts: make(map[partKey]*part)}
}

func (h *Hub) maxLag() time.Duration { return h.opts.MaxLag }

// ringSize holds MaxLag of 20 ms packets and half-second pages twice over,
// so a consumer is closed for its lag, not the ring's size, at any packet
// length down to 10 ms.
func (h *Hub) ringSize() int { return int(h.opts.MaxLag/time.Second)*104 + 64 }

// Recording says a recording of the participant runs; the function it
// returns says it ended. Consumers of the participant wait for its next track
// while any is open.
func (h *Hub) Recording(room, participant string) (done func()) {
	k := partKey{room, participant}
	h.mu.Lock()
	p := h.part(k)
	p.open++
	h.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			p.open--
			h.changed(k, p)
		})
	}
}

// part (under mu) returns the participant's entry, creating it.
func (h *Hub) part(k partKey) *part {
	p := h.parts[k]
	if p == nil {
		p = &part{changed: make(chan struct{})}
		h.parts[k] = p
	}
	return p
}

// changed (under mu) wakes the participant's waiting consumers and drops
// an entry nothing holds any more.
func (h *Hub) changed(k partKey, p *part) {
	close(p.changed)
	p.changed = make(chan struct{})
	if p.open <= 0 && len(p.streams) == 0 {
		delete(h.parts, k)
	}
}

// NewStream returns a track's stream, not yet found by consumers. The
// track passes it to the muxer as its Tap, then calls Publish, and End
// once its file is closed.
func (h *Hub) NewStream(info TrackInfo) *Stream {
	return &Stream{info: info, hub: h}
}

// Publish lets consumers find the stream. advance, if set, moves the
// track on through silences while anyone listens (muxer.Track.Advance).
func (s *Stream) Publish(advance func(now time.Time, idle time.Duration) error) {
	s.advance = advance
	s.hub.publish(s)
}

func (h *Hub) publish(s *Stream) {
	k := partKey{s.info.Room, s.info.Participant}
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.part(k)
	p.streams = append(p.streams, s)
	h.changed(k, p)
}

func (h *Hub) remove(s *Stream) {
	k := partKey{s.info.Room, s.info.Participant}
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.parts[k]
	if p == nil {
		return
	}
	if i := slices.Index(p.streams, s); i >= 0 {
		p.streams = slices.Delete(p.streams, i, i+1)
		h.changed(k, p)
	}
}

// pick returns the stream a consumer of the participant takes next: the
// named track's, else the newest microphone track's, else the newest; and
// a channel closed on the next change, and whether the participant is
// recorded at all. Streams in skip were served already.
func (h *Hub) pick(room, participant, track string, skip map[*Stream]bool) (*Stream, <-chan struct{}, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.parts[partKey{room, participant}]
	if p == nil {
		return nil, nil, false
	}
	var best *Stream
	for _, s := range p.streams {
		switch {
		case skip[s], track != "" && s.info.TrackSID != track:
		case best == nil, s.info.Source == "microphone" || best.info.Source != "microphone":
			best = s
		}
	}
	return best, p.changed, p.open > 0 || len(p.streams) > 0
}

// Stats are the hub's counters, for /metrics.
type Stats struct {
	Consumers int64 // live consumers connected now
	Bytes     int64 // audio bytes sent to consumers, in all
	Dropped   int64 // consumers closed for falling behind, in all
}

// Stats returns the counters.
func (h *Hub) Stats() Stats {
	return Stats{Consumers: h.consumers.Load(), Bytes: h.sent.Load(), Dropped: h.dropped.Load()}
}
