// Package recorder is the supervisor: it owns recordings (one participant of
// one room each), runs one bot per room, routes every subscribed track to its
// own file writer, and stops recordings when asked, when the participant
// leaves, or when the room closes.
package recorder

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trackrec/trackrec/bot"
	"github.com/trackrec/trackrec/muxer"
	"github.com/trackrec/trackrec/uploader"
)

// Recording states, in lifecycle order.
const (
	StateStarting  = "starting"  // the bot is joining
	StateWaiting   = "waiting"   // in the room, no audio from the participant yet
	StateRecording = "recording" // at least one track is being written
	StateAway      = "away"      // the participant dropped; waiting for a reconnect
	StateStopping  = "stopping"  // files are being closed
	StateStopped   = "stopped"   // every file is closed
)

// Errors the API maps to status codes.
var (
	ErrNotFound     = errors.New("recording not found")
	ErrOwned        = errors.New("participant is recorded by another instance")
	ErrShuttingDown = errors.New("recorder is shutting down")
)

// Bot is what the supervisor needs of a room participant (bot.Bot).
type Bot interface {
	Record(identity string) bool
	Forget(identity string)
	Present(identity string) bool
	Leave()
	SID() string
}

// JoinFunc joins a bot to a room; events go to h.
type JoinFunc func(ctx context.Context, room string, h bot.Handler) (Bot, error)

// Options configure a Supervisor.
type Options struct {
	Dir    string // local directory for track files
	Format string // muxer.FormatOgg (default) or muxer.FormatWebM
	// JitterWindow is how long a missing packet is waited for; zero means
	// the muxer's default.
	JitterWindow time.Duration
	Instance     string // this instance's owner id
	Join         JoinFunc
	Owners       Owners // nil = in-memory
	// RejoinTimeout is how long a recording waits for a participant whose
	// connection dropped. Zero stops at once.
	RejoinTimeout time.Duration
	// History is how many stopped recordings List keeps showing.
	History int
	Logger  *slog.Logger

	// Uploads takes finished files and their manifests; nil keeps them in
	// Dir only.
	Uploads Uploader
	// KeyPrefix is put before a file's path under Dir to make its object
	// key ("livekit" gives livekit/{room}/{file}); empty for none.
	KeyPrefix string
	// SpoolIsStore says the store keeps files where Dir has them (local
	// storage): a file with a manifest is already stored.
	SpoolIsStore bool
	// OnRoomComplete, if set, runs once a room's recordings are all stopped
	// and stored (the mixdown pipeline); SettleDelay is how long the room
	// must stay without recordings first.
	OnRoomComplete RoomComplete
	SettleDelay    time.Duration
	// ReconnectTimeout is how long the recordings of a room whose bot lost
	// LiveKit (a server restart, a network partition) wait for a new bot
	// to join and their participants to be back; then they stop. Zero
	// stops them at once.
	ReconnectTimeout time.Duration
	// RetryDelay is the first wait before running again a pipeline that
	// returned ErrRetryLater (doubling to 30 minutes); default 1 minute.
	RetryDelay time.Duration
	// Auto is the policy for LiveKit's webhook events (HandleEvent).
	Auto AutoRecord
	// Lookup, if set, checks with LiveKit that a room and participant exist
	// before a start joins anything.
	Lookup LookupFunc
}

// Uploader queues files for storage (uploader.Queue).
type Uploader interface {
	Submit(uploader.Item) (*uploader.Upload, error)
}

// objectKey is the storage key of a file at rel (slash-separated) under Dir.
func (o *Options) objectKey(rel string) string {
	if o.KeyPrefix == "" {
		return rel
	}
	return strings.TrimSuffix(o.KeyPrefix, "/") + "/" + rel
}

// Supervisor owns every recording of this instance.
type Supervisor struct {
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	rooms    map[string]*room
	active   map[Key]*Recording
	stopping map[*Recording]bool // left active, files still closing
	history  []*Recording
	closed   bool
	retired  TrackTotals // counters of the recordings moved to history (Stats)

	recovered []RecoveredFile

	finished       map[string][]CompletedTrack // by room, since its last completion
	closing        map[string]int              // by room: recordings whose files are closing
	settle         map[string]*time.Timer
	completions    sync.WaitGroup
	events         sync.WaitGroup // webhook events being acted on
	rejoins        sync.WaitGroup // rooms whose bot is being replaced
	completionsLog []*Completion
	life           context.Context // ends at Shutdown's deadline
	endLife        context.CancelFunc
}

// room is one bot and the recordings it serves.
type room struct {
	name  string
	ready chan struct{} // closed when the join finished; then bot or err is set
	bot   Bot
	err   error
	recs  map[string]*Recording // by participant identity
	// rejoining is set while a new bot replaces one that lost LiveKit;
	// gen counts the room's bots, so a replaced bot's events are dropped.
	rejoining bool
	gen       int
}

// list returns the room's recordings; the caller holds the supervisor's mu.
func (rm *room) list() []*Recording {
	out := make([]*Recording, 0, len(rm.recs))
	for _, r := range rm.recs {
		out = append(out, r)
	}
	return out
}

// live returns the recordings not yet stopped: active ones and those whose
// files are still closing. The caller holds s.mu.
func (s *Supervisor) live() []*Recording {
	out := make([]*Recording, 0, len(s.active)+len(s.stopping))
	for _, r := range s.active {
		out = append(out, r)
	}
	for r := range s.stopping {
		out = append(out, r)
	}
	return out
}

// New returns a Supervisor.
func New(o Options) *Supervisor {
	if o.Owners == nil {
		o.Owners = NewMemoryOwners()
	}
	if o.History == 0 {
		o.History = 256
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Format == "" {
		o.Format = muxer.FormatOgg
	}
	life, endLife := context.WithCancel(context.Background())
	return &Supervisor{
		opts:     o,
		log:      o.Logger,
		rooms:    map[string]*room{},
		active:   map[Key]*Recording{},
		stopping: map[*Recording]bool{},
		finished: map[string][]CompletedTrack{},
		closing:  map[string]int{},
		settle:   map[string]*time.Timer{},
		life:     life,
		endLife:  endLife,
	}
}

// Start records participant in roomName. It returns once the room's bot has
// joined. Starting a running recording returns it with created false. The
// participant must be in the room (ErrNoRoom, ErrNoParticipant) unless
// WaitForParticipant is given.
func (s *Supervisor) Start(ctx context.Context, roomName, participant string, opts ...StartOption) (info RecordingInfo, created bool, err error) {
	var o startOptions
	for _, f := range opts {
		f(&o)
	}
	key := Key{Room: roomName, Participant: participant}
	if info, ok, err := s.running(ctx, key); ok || err != nil {
		return info, false, err
	}
	if !o.wait {
		if err := s.checkPresent(ctx, roomName, participant); err != nil {
			return RecordingInfo{}, false, err
		}
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return RecordingInfo{}, false, ErrShuttingDown
	}
	if rec, ok := s.active[key]; ok {
		s.mu.Unlock()
		// A concurrent start of the same recording waits for the same join.
		if err := rec.waitJoined(ctx); err != nil {
			return RecordingInfo{}, false, err
		}
		return rec.Info(), false, nil
	}
	rec := newRecording(key, s.opts.Instance, s.log)
	s.active[key] = rec
	rm, joining := s.rooms[roomName], false
	if rm == nil {
		rm = &room{name: roomName, ready: make(chan struct{}), recs: map[string]*Recording{}}
		s.rooms[roomName] = rm
		s.roomResumed(roomName)
		joining = true
	}
	rm.recs[participant] = rec
	rec.room = rm
	s.mu.Unlock()

	fail := func(err error) (RecordingInfo, bool, error) {
		rec.joined(err)
		s.mu.Lock()
		delete(s.active, key)
		delete(rm.recs, participant)
		if joining && rm.bot == nil && rm.err == nil {
			// This request was to join and failed before it could (its
			// claim was refused): release whoever waits on the room.
			select {
			case <-rm.ready:
			default:
				rm.err = err
				close(rm.ready)
			}
		}
		var leave Bot
		if len(rm.recs) == 0 && s.rooms[roomName] == rm {
			// Nobody else waits on this room: drop it, and its bot if the
			// join got that far.
			select {
			case <-rm.ready:
				delete(s.rooms, roomName)
				leave = rm.bot
			default:
				// The join is still running; its own request cleans up.
			}
		}
		if s.rooms[roomName] == nil {
			// A room that was settling settles again.
			s.roomStopped(roomName)
		}
		s.mu.Unlock()
		if leave != nil {
			leave.Leave()
		}
		_ = s.opts.Owners.Release(context.WithoutCancel(ctx), key, rec.owner)
		return RecordingInfo{}, false, err
	}

	ok, err := s.opts.Owners.Claim(ctx, key, rec.owner)
	if err != nil {
		return fail(fmt.Errorf("claim %s/%s: %w", roomName, participant, err))
	}
	if !ok {
		return fail(ErrOwned)
	}

	if joining {
		// The bot serves every recording of the room, so its join does not
		// end with this request; JoinFunc bounds it.
		b, err := s.opts.Join(context.WithoutCancel(ctx), roomName, &handler{s: s, room: rm})
		s.mu.Lock()
		rm.bot, rm.err = b, err
		if err != nil && s.rooms[roomName] == rm {
			delete(s.rooms, roomName)
		}
		s.mu.Unlock()
		close(rm.ready)
	} else {
		select {
		case <-rm.ready:
		case <-ctx.Done():
			return fail(fmt.Errorf("join room %q: %w", roomName, ctx.Err()))
		}
	}
	if rm.err != nil {
		return fail(rm.err)
	}
	s.mu.Lock()
	b, rejoining := rm.bot, rm.rejoining
	s.mu.Unlock()
	present := b.Record(participant)
	if !present && !o.wait && s.opts.Lookup != nil && !rejoining {
		// LiveKit said the participant was there; the bot's view may lag
		// by a moment, or they left before it joined. A bot must not stay
		// waiting for someone gone (no participant_left will come).
		if present = waitPresent(ctx, b, participant); !present {
			b.Forget(participant)
			return fail(fmt.Errorf("%w: %q left %q before the recorder joined", ErrNoParticipant, participant, roomName))
		}
	}
	rec.joined(nil)
	s.log.Info("recording started", "room", roomName, "participant", participant, "recording", rec.id, "present", present)
	return rec.Info(), true, nil
}

// running returns key's recording if it is active (after its join), so a
// repeated start answers without asking LiveKit again.
func (s *Supervisor) running(ctx context.Context, key Key) (RecordingInfo, bool, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return RecordingInfo{}, false, ErrShuttingDown
	}
	rec, ok := s.active[key]
	s.mu.Unlock()
	if !ok {
		return RecordingInfo{}, false, nil
	}
	if err := rec.waitJoined(ctx); err != nil {
		return RecordingInfo{}, false, err
	}
	return rec.Info(), true, nil
}

// Stop ends a recording, closing its files before it returns.
func (s *Supervisor) Stop(ctx context.Context, roomName, participant string) (RecordingInfo, error) {
	s.mu.Lock()
	rec, ok := s.active[Key{Room: roomName, Participant: participant}]
	s.mu.Unlock()
	if !ok {
		return RecordingInfo{}, ErrNotFound
	}
	if err := rec.waitJoined(ctx); err != nil {
		return RecordingInfo{}, err
	}
	// A client hanging up does not leave a stop half done.
	s.stop(context.WithoutCancel(ctx), rec, "stopped by request")
	return rec.Info(), nil
}

// List returns the active recordings and the most recent stopped ones,
// oldest first.
func (s *Supervisor) List() []RecordingInfo {
	s.mu.Lock()
	recs := make([]*Recording, 0, len(s.active)+len(s.stopping)+len(s.history))
	for _, r := range s.active {
		recs = append(recs, r)
	}
	for r := range s.stopping {
		recs = append(recs, r)
	}
	recs = append(recs, s.history...)
	s.mu.Unlock()
	out := make([]RecordingInfo, 0, len(recs))
	for _, r := range recs {
		out = append(out, r.Info())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].StartedAt.Before(out[j].StartedAt) })
	return out
}

// Shutdown refuses new work, stops every recording (closing every file) and
// makes every bot leave. ctx bounds the wait.
func (s *Supervisor) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	// Stops already under way (participant left, room closed) must finish
	// too before the process may exit.
	recs := s.live()
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, r := range recs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r.waitJoined(ctx) == nil {
				s.stop(ctx, r, "recorder shutting down")
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("shutdown: %w", ctx.Err())
	}
	// Rooms that were settling do not complete in this process.
	s.mu.Lock()
	for room, t := range s.settle {
		t.Stop()
		delete(s.settle, room)
	}
	s.mu.Unlock()
	return err
}

// Close ends room completions still running (they wait for uploads) and
// waits for them to return. Call it after Shutdown and the upload drain.
func (s *Supervisor) Close() {
	s.endLife()
	s.completions.Wait()
	s.events.Wait()
	s.rejoins.Wait()
}

// stop ends rec: forget the participant, drain and close its tracks, release
// ownership, and let the bot go when it records nobody.
func (s *Supervisor) stop(ctx context.Context, rec *Recording, reason string) {
	s.mu.Lock()
	if s.active[rec.key] != rec {
		s.mu.Unlock()
		rec.waitStopped(ctx)
		return
	}
	delete(s.active, rec.key)
	s.stopping[rec] = true
	s.closing[rec.key.Room]++
	rm := rec.room
	delete(rm.recs, rec.key.Participant)
	leave := len(rm.recs) == 0
	if leave && s.rooms[rm.name] == rm {
		delete(s.rooms, rm.name)
	}
	b := rm.bot
	s.mu.Unlock()

	// Drain and close the files first, then unsubscribe: unsubscribing makes
	// the SFU end the track with silence frames that are not the recording's.
	rec.stop(reason)
	if b != nil {
		b.Forget(rec.key.Participant)
		if leave {
			b.Leave()
		}
	}
	if err := s.opts.Owners.Release(context.WithoutCancel(ctx), rec.key, rec.owner); err != nil {
		s.log.Error("release ownership", "room", rec.key.Room, "participant", rec.key.Participant, "recording", rec.id, "err", err)
	}
	s.collect(rec)
	final := rec.totals() // its tracks are closed: final counts
	s.mu.Lock()
	delete(s.stopping, rec)
	// In the same critical section as leaving stopping, so Stats counts
	// the recording's tracks either live or here, never both.
	s.retired.add(final)
	s.history = append(s.history, rec)
	if over := len(s.history) - s.opts.History; over > 0 {
		s.history = append(s.history[:0:0], s.history[over:]...)
	}
	s.mu.Unlock()
}

func (s *Supervisor) recording(rm *room, identity string) *Recording {
	s.mu.Lock()
	defer s.mu.Unlock()
	return rm.recs[identity]
}

// handler turns one room's bot events into supervisor actions.
type handler struct {
	s    *Supervisor
	room *room
	gen  int // the room's bot generation this handler serves
	// lost is set when this bot lost LiveKit before rejoin installed it.
	lost atomic.Bool
}

// current says whether h serves the room's bot now: events of a bot that
// was replaced (late callbacks of a dead connection) are dropped.
func (h *handler) current() bool {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	return h.room.gen == h.gen
}

func (h *handler) TrackSubscribed(t *bot.Track) bool {
	if !h.current() {
		return false
	}
	rec := h.s.recording(h.room, t.Info.Participant)
	return rec != nil && rec.addTrack(t, &h.s.opts)
}

func (h *handler) TrackEnded(info bot.TrackInfo) {
	if !h.current() {
		return
	}
	if rec := h.s.recording(h.room, info.Participant); rec != nil {
		rec.endTrack(info.TrackSID)
	}
}

func (h *handler) ParticipantJoined(identity string) {
	if !h.current() {
		return
	}
	if rec := h.s.recording(h.room, identity); rec != nil {
		rec.participantBack()
	}
}

func (h *handler) ParticipantLeft(identity string, intentional bool) {
	if !h.current() {
		return
	}
	rec := h.s.recording(h.room, identity)
	if rec == nil {
		return
	}
	if intentional || h.s.opts.RejoinTimeout <= 0 {
		go h.s.stop(context.Background(), rec, "participant left")
		return
	}
	rec.participantAway(h.s.opts.RejoinTimeout, func() {
		// A reconnect whose event raced the departure's is still a return.
		if b := h.bot(); b != nil && b.Present(identity) {
			rec.participantBack()
			return
		}
		h.s.stop(context.Background(), rec, "participant did not reconnect")
	})
}

func (h *handler) bot() Bot {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	return h.room.bot
}

func (h *handler) Disconnected(reason string, recoverable bool) {
	if !h.current() {
		return
	}
	if recoverable {
		// LiveKit restarted or the network dropped: the recordings stay,
		// a new bot joins and picks their participants up again. A bot
		// lost while rejoin is still installing it is marked, and rejoin
		// tries again.
		h.lost.Store(true)
		h.s.startRejoin(h.room, reason)
		return
	}
	h.s.mu.Lock()
	recs := h.room.list()
	h.s.mu.Unlock()
	for _, r := range recs {
		go h.s.stop(context.Background(), r, "bot disconnected: "+reason)
	}
}

func newID(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}
