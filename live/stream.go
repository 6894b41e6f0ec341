package live

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/trackrec/trackrec/muxer"
	"github.com/trackrec/trackrec/muxer/ogg"
)

// TrackInfo names a recorded track.
type TrackInfo struct {
	Room            string
	Participant     string // identity
	ParticipantName string
	TrackSID        string
	Source          string // microphone, screen_share_audio, unknown
	Format          string // the recording's container: muxer.FormatOgg or FormatWebM
}

// kind says what a ring entry holds.
type kind uint8

const (
	kindPage   kind = iota + 1 // an Ogg audio page, as written to the file
	kindPacket                 // an Opus packet on the raw timeline
	kindMuted
	kindUnmuted
)

// entry is one thing a track wrote, as a consumer reads it.
type entry struct {
	kind    kind
	data    []byte
	pos     int64  // packet: raw start; page: granule
	seq     uint32 // page: sequence number
	samples int    // packet: duration at 48 kHz
	at      time.Time
}

// Stream is the live side of one recorded track: a muxer.Tap that keeps
// what the track writes in a ring while anyone listens, and nothing while
// nobody does. One writer (the track's) and any number of cursors.
type Stream struct {
	info    TrackInfo
	hub     *Hub
	advance func(time.Time, time.Duration) error
	// listening is set while a consumer is attached: the tap's per-packet
	// work is this one load while nobody listens.
	listening atomic.Bool
	headDone  bool // writer only: the header pages have passed

	mu       sync.Mutex
	path     string // the file being written, for replay
	begun    bool
	start    time.Time // the file's start (UTC second)
	channels int
	preSkip  int
	head     []byte // Ogg: the OpusHead and OpusTags pages
	muted    bool
	ended    bool
	ring     []entry
	next     uint64 // number of the next entry written
	cursors  map[*cursor]struct{}
	stopTick chan struct{}
}

var _ muxer.Tap = (*Stream)(nil)

// Info returns what the stream records.
func (s *Stream) Info() TrackInfo { return s.info }

// SetPath tells the stream where its file is being written (for replays
// from a position). The recorder calls it when the file opens.
func (s *Stream) SetPath(path string) {
	s.mu.Lock()
	s.path = path
	s.mu.Unlock()
}

// Begin implements muxer.Tap.
func (s *Stream) Begin(start time.Time, channels, preSkip int) {
	s.mu.Lock()
	s.begun, s.start, s.channels, s.preSkip = true, start, channels, preSkip
	s.wake()
	s.mu.Unlock()
}

// Wrote implements muxer.Tap: the header pages are kept for every
// consumer to come; the audio pages go to the ring while anyone listens.
func (s *Stream) Wrote(b []byte) {
	if s.info.Format != muxer.FormatOgg || s.headDone && !s.listening.Load() {
		return
	}
	granule, seq, ok := ogg.PageHeader(b)
	if !ok {
		return
	}
	if !s.headDone {
		if granule == 0 { // OpusHead and OpusTags: audio pages end past the pre-skip
			s.mu.Lock()
			s.head = append(s.head, b...)
			s.mu.Unlock()
			return
		}
		s.headDone = true
		if !s.listening.Load() {
			return
		}
	}
	s.mu.Lock()
	s.add(entry{kind: kindPage, pos: granule, seq: seq}, b)
	s.mu.Unlock()
}

// Packet implements muxer.Tap.
func (s *Stream) Packet(payload []byte, start int64, samples int) {
	if !s.listening.Load() {
		return
	}
	s.mu.Lock()
	s.add(entry{kind: kindPacket, pos: start, samples: samples}, payload)
	s.mu.Unlock()
}

// SetMuted records the publisher's mute state, as LiveKit signals it.
func (s *Stream) SetMuted(muted bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.muted == muted || s.ended {
		return
	}
	s.muted = muted
	if s.listening.Load() {
		k := kindUnmuted
		if muted {
			k = kindMuted
		}
		s.add(entry{kind: k}, nil)
	}
}

// End says the track's file is closed: consumers get what is left, then
// the end. The recorder calls it after the muxer's Close.
func (s *Stream) End() {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended = true
	s.stopTicker()
	s.wake()
	s.mu.Unlock()
	s.hub.remove(s)
}

// maxRing bounds a ring's growth (entries): a long silence written at
// once (120 ms packets, half-second pages) must not close consumers that
// keep up.
const maxRing = 1 << 16

// add (under mu) appends an entry, its data copied into the slot's own
// buffer, and wakes the cursors. A ring about to overwrite an entry a
// cursor has not read, and that is younger than MaxLag, grows instead:
// only lag closes a consumer.
func (s *Stream) add(e entry, data []byte) {
	if s.ended || len(s.ring) == 0 {
		return
	}
	if n := uint64(len(s.ring)); s.next >= n && len(s.ring) < maxRing {
		if oldest := &s.ring[s.next%n]; time.Since(oldest.at) <= s.hub.maxLag() && s.unread(s.next-n) {
			s.grow()
		}
	}
	slot := &s.ring[s.next%uint64(len(s.ring))]
	e.data = append(slot.data[:0], data...)
	if e.at.IsZero() {
		e.at = time.Now()
	}
	*slot = e
	s.next++
	s.wake()
}

// unread (under mu) says whether a cursor has still to read entry n.
func (s *Stream) unread(n uint64) bool {
	for c := range s.cursors {
		if c.next <= n {
			return true
		}
	}
	return false
}

// grow (under mu) doubles the ring, keeping its entries' numbers.
func (s *Stream) grow() {
	old, n := s.ring, uint64(len(s.ring))
	s.ring = make([]entry, 2*n)
	for i := s.next - n; i < s.next; i++ {
		s.ring[i%(2*n)] = old[i%n]
	}
}

// wake (under mu) tells every cursor there is news.
func (s *Stream) wake() {
	for c := range s.cursors {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// cursor is one consumer's place in the ring.
type cursor struct {
	next uint64
	wake chan struct{}
}

// attach adds a cursor at the ring's head; the first one makes the tap
// work and starts moving the track on through silences.
func (s *Stream) attach() *cursor {
	c := &cursor{wake: make(chan struct{}, 1)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ring == nil {
		s.ring = make([]entry, s.hub.ringSize())
	}
	c.next = s.next
	if s.cursors == nil {
		s.cursors = make(map[*cursor]struct{})
	}
	s.cursors[c] = struct{}{}
	if len(s.cursors) == 1 && !s.ended {
		s.listening.Store(true)
		s.startTicker()
	}
	return c
}

// detach removes a cursor; the last one stops the tap.
func (s *Stream) detach(c *cursor) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.cursors, c)
	if len(s.cursors) == 0 {
		s.listening.Store(false)
		s.stopTicker()
		s.ring = nil // its buffers go; the next consumer starts a new one
	}
}

// A listened track is moved on (muxer.Track.Advance) every advanceEvery:
// once nothing arrived for 40 ms while it is muted, or for stallIdle
// otherwise (a pause in an unmuted track's packets may be a delivery stall
// whose packets are still coming: they must land where they belong).
const (
	advanceEvery = 20 * time.Millisecond
	stallIdle    = 2 * time.Second
)

// startTicker (under mu) moves the track on while nothing arrives, so a
// live stream keeps pace with the wall clock through a mute (within about
// 0.3 s) or a publisher's pause (within about 2 s).
func (s *Stream) startTicker() {
	if s.advance == nil || s.stopTick != nil {
		return
	}
	stop := make(chan struct{})
	s.stopTick = stop
	go func() {
		t := time.NewTicker(advanceEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				idle := stallIdle
				if s.isMuted() {
					idle = 0
				}
				if err := s.advance(time.Now(), idle); err != nil {
					return
				}
			}
		}
	}()
}

func (s *Stream) stopTicker() {
	if s.stopTick != nil {
		close(s.stopTick)
		s.stopTick = nil
	}
}

// read copies the cursor's next entry into e (reusing e.data). It returns
// false when there is nothing new yet; ErrBehind when the entry was
// overwritten or waited longer than the hub's MaxLag; errEnded when the
// stream ended and everything was read.
func (s *Stream) read(c *cursor, e *entry) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.next == s.next {
		if s.ended {
			return false, errEnded
		}
		return false, nil
	}
	if s.next-c.next > uint64(len(s.ring)) {
		return false, ErrBehind
	}
	slot := &s.ring[c.next%uint64(len(s.ring))]
	if time.Since(slot.at) > s.hub.maxLag() {
		return false, ErrBehind
	}
	data := append(e.data[:0], slot.data...)
	*e = *slot
	e.data = data
	c.next++
	return true, nil
}

func (s *Stream) isMuted() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.muted
}

// snapshot is what a consumer needs of a begun stream.
type snapshot struct {
	path     string
	start    time.Time
	channels int
	preSkip  int
	head     []byte
	muted    bool
}

// begunOrEnded reports the stream's state for a consumer waiting for its
// file to open.
func (s *Stream) begunOrEnded() (snapshot, bool, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return snapshot{
		path: s.path, start: s.start, channels: s.channels, preSkip: s.preSkip,
		head: append([]byte(nil), s.head...), muted: s.muted,
	}, s.begun, s.ended
}
