package recorder

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trackrec/trackrec/bot"
	"github.com/trackrec/trackrec/live"
	"github.com/trackrec/trackrec/muxer"
	"github.com/trackrec/trackrec/ownership"
	"github.com/trackrec/trackrec/spool"
)

// BotIdentityPrefix starts every bot identity of this service; participants
// with it are never recorded.
const BotIdentityPrefix = "recorder-"

// Errors the API maps to status codes.
var (
	ErrNotFound     = errors.New("recording not found")
	ErrOwned        = errors.New("participant is recorded by another instance")
	ErrShuttingDown = errors.New("recorder is shutting down")
	ErrFull         = errors.New("recorder is at capacity")
	// ErrUnavailable: the state shared with the fleet (Redis) cannot be
	// reached, so no new recording can be claimed; running ones go on.
	ErrUnavailable = errors.New("the fleet's shared state is unavailable")
)

// Key identifies a recording: one participant of one room.
type Key = ownership.Key

// Owners records which instance records which participant, so that two bots
// (of this instance or of others sharing the store) never record the same
// participant at the same moment (ownership.Memory).
type Owners interface {
	// Claim makes owner the owner of key. It reports false, without error,
	// when another owner holds it. Claiming a key one already owns succeeds.
	Claim(ctx context.Context, key Key, owner string) (bool, error)
	// Release gives key up if owner holds it.
	Release(ctx context.Context, key Key, owner string) error
}

// Spool is where track files are written and sealed (spool.Spool).
type Spool interface {
	Create(t spool.Track, start time.Time, container string) (*spool.File, error)
	Seal(f *spool.File, st muxer.Stats) (spool.Sealed, error)
}

// Rooms is told what room completion needs to know (completion.Rooms): a
// track was sealed, a room has recordings, a room has none left.
type Rooms interface {
	TrackClosed(room string, t spool.Sealed)
	RoomBusy(room string)
	RoomIdle(room string)
}

// Bot is what the supervisor needs of a room participant (bot.Bot).
type Bot interface {
	Record(identity string) bool
	Forget(identity string)
	RecordTrack(identity, trackSID string) bool
	ForgetTrack(identity, trackSID string)
	Publishes(identity, trackSID string) bool
	Resubscribe(identity, trackSID string)
	Present(identity string) bool
	ParticipantSID(identity string) string
	Leave()
	SID() string
}

// JoinFunc joins a bot to a room; events go to h.
type JoinFunc func(ctx context.Context, room string, h bot.Handler) (Bot, error)

// Options configure a Supervisor.
type Options struct {
	Spool  Spool  // required
	Format string // muxer.FormatOgg (default) or muxer.FormatWebM
	// JitterWindow is how long a missing packet is waited for; zero means
	// the muxer's default.
	JitterWindow time.Duration
	Instance     string // this instance's owner id
	Join         JoinFunc
	Owners       Owners // required (ownership.Memory for one instance)
	// Rooms, if set, is told of sealed tracks and idle rooms.
	Rooms Rooms
	// RejoinTimeout is how long a recording waits for a participant whose
	// connection dropped. Zero stops at once.
	RejoinTimeout time.Duration
	// ReconnectTimeout is how long the recordings of a room whose bot lost
	// LiveKit (a server restart, a network partition) wait for a new bot
	// to join and their participants to be back; then they stop. Zero
	// stops them at once.
	ReconnectTimeout time.Duration
	// ArmTimeout ends a recording whose participant never came (armed with
	// WaitForParticipant); zero means an hour.
	ArmTimeout time.Duration
	// MaxRecordings bounds the recordings running at once; a start beyond
	// is ErrFull. Zero means no bound.
	MaxRecordings int
	// Admission, if set, bounds the tracks recorded at once (MAX_TRACKS,
	// the CPU guard): a start it refuses is ErrFull.
	Admission Admission
	// History is how many stopped recordings List keeps showing.
	History int
	Logger  *slog.Logger
	// Lookup, if set, checks with LiveKit that a room and participant exist
	// before a start joins anything.
	Lookup LookupFunc
	// Intents, if set, is told which recordings are wanted fleet-wide.
	Intents Intents
	// Opened, if set, is told of each track file as it opens, under its
	// object key (a fleet's room completion waits for the files it knows).
	// It must not block.
	Opened func(t spool.Track, key string, start time.Time)
	// Live, if set, publishes every track as it is written, for live
	// streams (GET /recordings/live).
	Live *live.Hub
}

// Supervisor owns every recording of this instance.
type Supervisor struct {
	opts Options
	log  *slog.Logger
	// starting counts the starts admitted and not over, by key, so that
	// concurrent starts do not all fit in one free place (repeated starts
	// of one key count once).
	startMu  sync.Mutex
	starting map[Key]int

	mu       sync.Mutex
	rooms    map[string]*room
	active   map[Key]*Recording
	stopping map[Key]*Recording // left active, files still closing
	history  []*Recording
	closed   bool
	retired  TrackTotals           // counters of the recordings moved to history (Stats)
	closing  map[string]int        // by room: recordings whose files are closing
	claiming map[Key]chan struct{} // starts between their claim and their reservation

	rejoins sync.WaitGroup // rooms whose bot is being replaced
	life    context.Context
	endLife context.CancelFunc
}

// room is one bot and the recordings it serves.
type room struct {
	name  string
	ready chan struct{} // closed when the join finished; then bot or err is set
	bot   Bot
	err   error
	recs  map[Key]*Recording
	// rejoining is set while a new bot replaces one that lost LiveKit;
	// gen counts the room's bots, so a replaced bot's events are dropped.
	rejoining bool
	gen       int
}

// of returns identity's recordings in the room; the caller holds the
// supervisor's mu.
func (rm *room) of(identity string) []*Recording {
	var out []*Recording
	for k, r := range rm.recs {
		if k.Participant == identity {
			out = append(out, r)
		}
	}
	return out
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
	for _, r := range s.stopping {
		out = append(out, r)
	}
	return out
}

// New returns a Supervisor.
func New(o Options) (*Supervisor, error) {
	switch {
	case o.Spool == nil:
		return nil, errors.New("recorder: Options.Spool is required")
	case o.Owners == nil:
		return nil, errors.New("recorder: Options.Owners is required")
	case o.Join == nil:
		return nil, errors.New("recorder: Options.Join is required")
	}
	if err := muxer.CheckFormat(o.Format); err != nil {
		return nil, fmt.Errorf("recorder: %w", err)
	}
	if o.History <= 0 {
		o.History = 256
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Format == "" {
		o.Format = muxer.FormatOgg
	}
	if o.ArmTimeout <= 0 {
		o.ArmTimeout = time.Hour
	}
	life, endLife := context.WithCancel(context.Background())
	return &Supervisor{
		opts:     o,
		log:      o.Logger,
		rooms:    map[string]*room{},
		active:   map[Key]*Recording{},
		stopping: map[Key]*Recording{},
		closing:  map[string]int{},
		claiming: map[Key]chan struct{}{},
		life:     life,
		endLife:  endLife,
	}, nil
}

// Start records participant in roomName. It returns once the room's bot has
// joined. Starting a running recording returns it with created false; a
// start whose previous recording is still closing its files waits for it,
// then starts a new one (new files). The participant must be in the room
// (ErrNoRoom, ErrNoParticipant) unless WaitForParticipant is given.
func (s *Supervisor) Start(ctx context.Context, roomName, participant string, opts ...StartOption) (info RecordingInfo, created bool, err error) {
	o := parseStart(opts)
	key := Key{Room: roomName, Participant: participant, Track: o.track}
	if info, ok, err := s.running(ctx, key); ok || err != nil {
		return info, false, err
	}
	if err := s.afterStop(ctx, key); err != nil {
		return RecordingInfo{}, false, err
	}
	release, err := s.admit(key)
	if err != nil {
		return RecordingInfo{}, false, err
	}
	defer release()
	if !o.wait {
		if err := s.checkPresent(ctx, roomName, participant); err != nil {
			return RecordingInfo{}, false, err
		}
	}
	rec, rm, joining, existing, err := s.claim(ctx, key, o)
	if err != nil {
		return RecordingInfo{}, false, err
	}
	release() // reserved: Load counts it from here
	if existing != nil {
		return s.joinedInfo(ctx, existing)
	}
	if err := s.joinRoom(ctx, rm, joining); err != nil {
		return s.abandon(ctx, rec, joining, err)
	}
	s.mu.Lock()
	b, rejoining := rm.bot, rm.rejoining
	s.mu.Unlock()
	present := rec.subscribe(b)
	s.share(rm, b, rec)
	if !present && !o.wait && s.opts.Lookup != nil && !rejoining {
		// LiveKit said the participant was there; the bot's view may lag
		// by a moment, or they left before it joined. A bot must not stay
		// waiting for someone gone (no participant_left will come).
		if present = waitPresent(ctx, b, participant); !present {
			rec.unsubscribe(b)
			return s.abandon(ctx, rec, joining, fmt.Errorf("%w: %q left %q before the recorder joined", ErrNoParticipant, participant, roomName))
		}
	}
	// Wanted and renewed before the start completes: a stop may follow the
	// moment it does, and must find both in place.
	s.want(ctx, rec)
	if r, ok := s.opts.Owners.(Renewer); ok {
		rec.keeper = make(chan struct{})
		go s.keepClaim(rec, r)
	}
	rec.joined(nil)
	if !present {
		rec.arm(s.opts.ArmTimeout, func() {
			s.stop(context.Background(), rec, fmt.Sprintf("participant did not join within ARM_TIMEOUT (%s)", s.opts.ArmTimeout))
		})
		if b.Present(participant) {
			// They arrived while the timer was being set.
			rec.participantBack()
		}
	}
	if o.from != "" && rec.span.heard != nil {
		cut := rec.cutover(ctx)
		s.log.Info("recording taken over", "room", roomName, "participant", participant, "recording", rec.id, "cut", cut)
	}
	s.log.Info("recording started", "room", roomName, "participant", participant, "recording", rec.id, "present", present)
	return rec.Info(), true, nil
}

// Admission is what bounds an instance's load (capacity.Guard): Admit says
// whether one more recording may start while tracks are recorded.
type Admission interface {
	Admit(tracks int) error
}

// admit asks Admission for room for one more recording, key's; release,
// once the start is over (the recording then counts in Load, or failed).
func (s *Supervisor) admit(key Key) (release func(), err error) {
	if s.opts.Admission == nil {
		return func() {}, nil
	}
	s.startMu.Lock()
	if s.starting == nil {
		s.starting = map[Key]int{}
	}
	others := len(s.starting)
	if s.starting[key] > 0 {
		others-- // a repeated start: the first one asked already
	}
	s.starting[key]++
	s.startMu.Unlock()
	var once sync.Once
	release = func() {
		once.Do(func() {
			s.startMu.Lock()
			if s.starting[key]--; s.starting[key] <= 0 {
				delete(s.starting, key)
			}
			s.startMu.Unlock()
		})
	}
	if err := s.opts.Admission.Admit(s.Load() + others); err != nil {
		release()
		return nil, fmt.Errorf("%w: %w", ErrFull, err)
	}
	return release, nil
}

// running returns key's recording if it is active (after its join), so a
// repeated start answers without asking LiveKit again.
func (s *Supervisor) running(ctx context.Context, key Key) (RecordingInfo, bool, error) {
	// A draining instance still answers for what it records.
	rec := s.activeRecording(key)
	if rec == nil {
		if s.Closing() {
			return RecordingInfo{}, false, ErrShuttingDown
		}
		return RecordingInfo{}, false, nil
	}
	info, _, err := s.joinedInfo(ctx, rec)
	return info, err == nil, err
}

// claim makes key's recording, claims it with Owners and reserves it in
// its room (joining: this start joins the room's bot). The claim comes
// before the room, so a refused claim fails this start alone, never the
// others waiting on the room. Concurrent starts of one participant take
// turns from the claim to the reservation, so the second finds the first's
// recording (existing) rather than its claim.
func (s *Supervisor) claim(ctx context.Context, key Key, o startOptions) (rec *Recording, rm *room, joining bool, existing *Recording, err error) {
	unlock, err := s.lockKey(ctx, key)
	if err != nil {
		return nil, nil, false, nil, err
	}
	defer unlock()
	rec = newRecording(key, o.id, s.opts.Instance, s.log)
	rec.wait = o.wait
	rec.output = o.output
	rec.format = o.format
	var ok bool
	if tr, can := s.opts.Owners.(Transferer); can && o.from != "" {
		ok, err = tr.Transfer(ctx, key, o.from, rec.owner)
		rec.span.hold()
	} else {
		ok, err = s.opts.Owners.Claim(ctx, key, rec.owner)
	}
	switch {
	case err != nil:
		return nil, nil, false, nil, fmt.Errorf("%w: claim %s/%s: %w", ErrUnavailable, key.Room, key.Participant, err)
	case !ok:
		if existing := s.activeRecording(key); existing != nil {
			return nil, nil, false, existing, nil
		}
		return nil, nil, false, nil, ErrOwned
	}
	release := func() { _ = s.opts.Owners.Release(context.WithoutCancel(ctx), key, rec.owner) }
	if o.confirm != nil {
		if still, err := o.confirm(ctx); err != nil || !still {
			release()
			return nil, nil, false, nil, errors.Join(ErrNotWanted, err)
		}
	}
	rm, joining, existing, err = s.reserve(ctx, rec)
	if err != nil || existing != nil {
		release()
		return nil, nil, false, existing, err
	}
	if s.opts.Live != nil {
		// Live consumers may come before the first track: they wait for it.
		rec.mu.Lock()
		rec.liveDone = s.opts.Live.Recording(key.Room, key.Participant)
		rec.mu.Unlock()
	}
	return rec, rm, joining, nil, nil
}

// lockKey waits until no other start of key is between its claim and its
// reservation, and holds that place; the returned func gives it up.
func (s *Supervisor) lockKey(ctx context.Context, key Key) (func(), error) {
	for {
		s.mu.Lock()
		busy := s.claiming[key]
		if busy == nil {
			done := make(chan struct{})
			s.claiming[key] = done
			s.mu.Unlock()
			return func() {
				s.mu.Lock()
				delete(s.claiming, key)
				s.mu.Unlock()
				close(done)
			}, nil
		}
		s.mu.Unlock()
		select {
		case <-busy:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// activeRecording is key's recording if one is active.
func (s *Supervisor) activeRecording(key Key) *Recording {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active[key]
}

// joinedInfo answers a start that found rec (a concurrent start of the same
// recording) once rec's join is done.
func (s *Supervisor) joinedInfo(ctx context.Context, rec *Recording) (RecordingInfo, bool, error) {
	if err := rec.waitJoined(ctx); err != nil {
		return RecordingInfo{}, false, err
	}
	return rec.Info(), false, nil
}

// afterStop waits until no recording of key is closing its files, so a new
// recording of key never runs beside the end of the old one.
func (s *Supervisor) afterStop(ctx context.Context, key Key) error {
	for {
		s.mu.Lock()
		old := s.stopping[key]
		s.mu.Unlock()
		if old == nil {
			return nil
		}
		select {
		case <-old.retired:
		case <-ctx.Done():
			return fmt.Errorf("waiting for the previous recording of %q to close: %w", key.Participant, ctx.Err())
		}
	}
}

// reserve makes rec the active recording of its key and adds it to its
// room, creating the room (joining true) when it has none. If a concurrent
// start got there first it returns that recording as existing.
func (s *Supervisor) reserve(ctx context.Context, rec *Recording) (rm *room, joining bool, existing *Recording, err error) {
	key := rec.key
	for {
		s.mu.Lock()
		switch {
		case s.closed:
			s.mu.Unlock()
			return nil, false, nil, ErrShuttingDown
		case s.active[key] != nil:
			existing = s.active[key]
			s.mu.Unlock()
			return nil, false, existing, nil
		case s.stopping[key] != nil:
			// A stop began since afterStop looked: wait for it too.
			s.mu.Unlock()
			if err := s.afterStop(ctx, key); err != nil {
				return nil, false, nil, err
			}
			continue
		case s.opts.MaxRecordings > 0 && len(s.active) >= s.opts.MaxRecordings:
			s.mu.Unlock()
			return nil, false, nil, fmt.Errorf("%w: %d recordings running (MAX_RECORDINGS)", ErrFull, s.opts.MaxRecordings)
		}
		s.active[key] = rec
		rm = s.rooms[key.Room]
		if rm == nil {
			rm = &room{name: key.Room, ready: make(chan struct{}), recs: map[Key]*Recording{}}
			s.rooms[key.Room] = rm
			joining = true
			if s.opts.Rooms != nil {
				s.opts.Rooms.RoomBusy(key.Room)
			}
		}
		rm.recs[key] = rec
		rec.room = rm
		s.mu.Unlock()
		return rm, joining, nil, nil
	}
}

// joinRoom joins the room's bot (joining) or waits for the join another
// start began.
func (s *Supervisor) joinRoom(ctx context.Context, rm *room, joining bool) error {
	if joining {
		// The bot serves every recording of the room, so its join does not
		// end with this request; JoinFunc bounds it.
		b, err := s.opts.Join(context.WithoutCancel(ctx), rm.name, &handler{s: s, room: rm})
		s.mu.Lock()
		rm.bot, rm.err = b, err
		if err != nil && s.rooms[rm.name] == rm {
			delete(s.rooms, rm.name)
		}
		s.mu.Unlock()
		close(rm.ready)
	} else {
		select {
		case <-rm.ready:
		case <-ctx.Done():
			return fmt.Errorf("join room %q: %w", rm.name, ctx.Err())
		}
	}
	return rm.err
}

// abandon undoes a start that failed before it recorded: the recording
// fails with err, leaves its room, and the room (and its bot) goes when
// nobody else waits on it.
func (s *Supervisor) abandon(ctx context.Context, rec *Recording, joining bool, err error) (RecordingInfo, bool, error) {
	rec.joined(err)
	defer rec.retire() // a stop that found it waiting is done too
	rm, key := rec.room, rec.key
	s.mu.Lock()
	if s.active[key] == rec {
		delete(s.active, key)
	}
	if rm.recs[key] == rec {
		delete(rm.recs, key)
	}
	var leave Bot
	if len(rm.recs) == 0 && s.rooms[key.Room] == rm {
		// Nobody else waits on this room: drop it, and its bot if the join
		// got that far.
		select {
		case <-rm.ready:
			delete(s.rooms, key.Room)
			leave = rm.bot
		default:
			// The join is still running; its own request cleans up.
		}
	}
	s.roomMaybeIdle(key.Room)
	s.mu.Unlock()
	if leave != nil {
		leave.Leave()
	}
	_ = s.opts.Owners.Release(context.WithoutCancel(ctx), key, rec.owner)
	return RecordingInfo{}, false, err
}

// roomMaybeIdle tells room completion that room has nothing running or
// closing any more. The caller holds s.mu.
func (s *Supervisor) roomMaybeIdle(room string) {
	if s.opts.Rooms != nil && s.rooms[room] == nil && s.closing[room] == 0 {
		s.opts.Rooms.RoomIdle(room)
	}
}

// Stop ends a recording, closing its files before it returns. A stop
// already under way answers with its end, not ErrNotFound; a client
// hanging up does not leave a stop half done.
func (s *Supervisor) Stop(ctx context.Context, roomName, participant string) (RecordingInfo, error) {
	return s.StopKey(ctx, Key{Room: roomName, Participant: participant}, "stopped by request")
}

// StopKey ends the recording of key (a single track's, too) for reason,
// closing its files before it returns.
func (s *Supervisor) StopKey(ctx context.Context, key Key, reason string) (RecordingInfo, error) {
	s.mu.Lock()
	rec, ok := s.active[key]
	if !ok {
		rec, ok = s.stopping[key]
	}
	s.mu.Unlock()
	if !ok {
		return RecordingInfo{}, ErrNotFound
	}
	if err := rec.waitJoined(ctx); err != nil {
		return RecordingInfo{}, err
	}
	s.stop(context.WithoutCancel(ctx), rec, reason)
	return rec.Info(), nil
}

// List returns the active recordings and the most recent stopped ones,
// oldest first.
func (s *Supervisor) List() []RecordingInfo {
	s.mu.Lock()
	recs := append(s.live(), s.history...)
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
func (s *Supervisor) Shutdown(ctx context.Context) error { return s.Drain(ctx, nil) }

// Close ends bot replacements still running and waits for them. Call it
// after Shutdown.
func (s *Supervisor) Close() {
	s.endLife()
	s.rejoins.Wait()
}

// StopRoom stops every recording of room.
func (s *Supervisor) StopRoom(ctx context.Context, room, reason string) {
	s.mu.Lock()
	var recs []*Recording
	if rm := s.rooms[room]; rm != nil {
		recs = rm.list()
	}
	s.mu.Unlock()
	for _, r := range recs {
		if r.waitJoined(ctx) == nil {
			s.stop(ctx, r, reason)
		}
	}
}

// Refresh makes the room's bot subscribe to any audio of identity it lacks
// (a track published that the bot has not caught up with).
func (s *Supervisor) Refresh(room, identity string) {
	s.mu.Lock()
	var recs []*Recording
	var b Bot
	if rm := s.rooms[room]; rm != nil {
		recs, b = rm.of(identity), rm.bot
	}
	s.mu.Unlock()
	// Each asks again for what it records: a track's own recording never
	// widens to all of the participant's audio.
	for _, r := range recs {
		if b != nil {
			r.subscribe(b)
		}
	}
}

// ParticipantSID is the session of identity the bot of room sees now, ""
// when the room has no bot recording identity or the bot sees no session.
func (s *Supervisor) ParticipantSID(room, identity string) string {
	if b := s.botFor(room, identity); b != nil {
		return b.ParticipantSID(identity)
	}
	return ""
}

// botFor is room's bot if it records identity.
func (s *Supervisor) botFor(room, identity string) Bot {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rm := s.rooms[room]; rm != nil && len(rm.of(identity)) > 0 {
		return rm.bot
	}
	return nil
}

// stop ends rec: forget the participant, drain and close its tracks, release
// ownership, and let the bot go when it records nobody.
func (s *Supervisor) stop(ctx context.Context, rec *Recording, reason string) {
	// A recording still starting finishes its start first: it then either
	// records (and is stopped here) or failed (and is already gone).
	if rec.waitJoined(ctx) != nil {
		return
	}
	s.mu.Lock()
	if s.active[rec.key] != rec {
		s.mu.Unlock()
		rec.waitRetired(ctx)
		return
	}
	delete(s.active, rec.key)
	s.stopping[rec.key] = rec
	s.closing[rec.key.Room]++
	rm := rec.room
	delete(rm.recs, rec.key)
	leave := len(rm.recs) == 0
	if leave && s.rooms[rm.name] == rm {
		delete(s.rooms, rm.name)
	}
	b := rm.bot
	s.mu.Unlock()

	// Drain and close the files first, then unsubscribe: unsubscribing makes
	// the SFU end the track with silence frames that are not the recording's.
	rec.stop(reason)
	if rec.keeper != nil {
		<-rec.keeper // no renewal may follow the release
	}
	if b != nil {
		rec.unsubscribe(b)
		if leave {
			b.Leave()
		}
	}
	switch {
	case s.opts.Intents == nil || reason == reasonClaimLost || reason == reasonHandedOver:
	case reason == reasonShutdown && rec.key.Track == "":
		// Resumed elsewhere at once. A track egress nobody took over
		// ends here instead (default): its end is reported.
		if err := s.opts.Intents.Free(context.WithoutCancel(ctx), rec.key, rec.id, rec.wait); err != nil {
			rec.log.Warn("handover not announced; another instance resumes it once its claim lapses", "err", err)
		}
	default:
		s.unwant(ctx, rec)
	}
	if err := s.opts.Owners.Release(context.WithoutCancel(ctx), rec.key, rec.owner); err != nil {
		s.log.Error("release ownership", "room", rec.key.Room, "participant", rec.key.Participant, "recording", rec.id, "err", err)
	}
	final := rec.totals() // its tracks are closed: final counts
	s.mu.Lock()
	delete(s.stopping, rec.key)
	// In the same critical section as leaving stopping, so Stats counts
	// the recording's tracks either live or here, never both.
	s.retired.add(final)
	s.history = append(s.history, rec)
	if over := len(s.history) - s.opts.History; over > 0 {
		clear(s.history[:over])
		s.history = append(s.history[:0], s.history[over:]...)
	}
	if s.closing[rec.key.Room]--; s.closing[rec.key.Room] <= 0 {
		delete(s.closing, rec.key.Room)
	}
	s.roomMaybeIdle(rec.key.Room)
	s.mu.Unlock()
	rec.retire()
}

// HistoryLen is how many stopped recordings are retained.
func (s *Supervisor) HistoryLen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.history)
}

// recordings are identity's recordings in rm: the whole participant's
// and those of single tracks.
func (s *Supervisor) recordings(rm *room, identity string) []*Recording {
	s.mu.Lock()
	defer s.mu.Unlock()
	return rm.of(identity)
}

// share makes a track's own recording (a track egress) share its track
// with its participant's recording, which holds the subscription: asked
// for again, the subscription is split between them (the participant's
// recording goes on in a new file of that track). The reverse, a
// participant's recording started while an egress holds one of its
// tracks, does not cut the egress's file: it does without that track.
func (s *Supervisor) share(rm *room, b Bot, rec *Recording) {
	if rec.key.Track == "" {
		s.mu.Lock()
		held := 0
		for k := range rm.recs {
			if k.Participant == rec.key.Participant && k.Track != "" {
				held++
			}
		}
		s.mu.Unlock()
		if held > 0 {
			rec.log.Warn("tracks of this participant recorded by track egresses here are not in this recording", "tracks", held)
		}
		return
	}
	s.mu.Lock()
	whole := rm.recs[Key{Room: rm.name, Participant: rec.key.Participant}]
	s.mu.Unlock()
	if whole != nil {
		b.Resubscribe(rec.key.Participant, rec.key.Track)
	}
}

// trackRecordings are the recordings that take identity's track sid: the
// track's own (a track egress) and the whole participant's, either nil.
func (s *Supervisor) trackRecordings(rm *room, identity, sid string) (own, whole *Recording) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return rm.recs[Key{Room: rm.name, Participant: identity, Track: sid}], rm.recs[Key{Room: rm.name, Participant: identity}]
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
	own, whole := h.s.trackRecordings(h.room, t.Info.Participant, t.Info.TrackSID)
	switch {
	case own == nil && whole == nil:
		return false
	case own == nil:
		return whole.addTrack(t, &h.s.opts)
	case whole == nil:
		return own.addTrack(t, &h.s.opts)
	}
	// Both want it: one subscription, split.
	sp := newSplit(t.Remote, 2)
	took := false
	for i, rec := range []*Recording{own, whole} {
		r := sp.readers[i]
		if rec.addTrack(&bot.Track{Info: t.Info, Remote: r}, &h.s.opts) {
			took = true
		} else {
			_ = r.SetReadDeadline(time.Now()) // nobody reads it
		}
	}
	if took {
		go sp.run()
	}
	return took
}

// TrackMuted implements bot.MuteHandler: live streams say so.
func (h *handler) TrackMuted(identity, sid string, muted bool) {
	if !h.current() || h.s.opts.Live == nil {
		return
	}
	own, whole := h.s.trackRecordings(h.room, identity, sid)
	for _, r := range []*Recording{own, whole} {
		if r != nil {
			r.muted(sid, muted)
		}
	}
}

func (h *handler) TrackEnded(info bot.TrackInfo) {
	if !h.current() {
		return
	}
	own, whole := h.s.trackRecordings(h.room, info.Participant, info.TrackSID)
	if whole != nil {
		whole.endTrack(info)
	}
	if own == nil {
		return
	}
	rec := own
	rec.endTrack(info)
	if h.trackGone(info) {
		// A track's own recording ends with its track (livekit-server
		// never stops a track egress). A subscription that ended while
		// the track is still published (a resubscription, a bot that lost
		// LiveKit) goes on in a new file once subscribed again.
		go h.s.stop(context.Background(), rec, reasonTrackEnded)
	}
}

// trackGone says whether the ended subscription's track is gone for good:
// not while the room's bot is being replaced, nor while it is published.
func (h *handler) trackGone(info bot.TrackInfo) bool {
	h.s.mu.Lock()
	b, rejoining := h.room.bot, h.room.rejoining
	h.s.mu.Unlock()
	return !rejoining && !h.lost.Load() && (b == nil || !b.Publishes(info.Participant, info.TrackSID))
}

func (h *handler) ParticipantJoined(identity string) {
	if !h.current() {
		return
	}
	for _, rec := range h.s.recordings(h.room, identity) {
		rec.participantBack()
	}
}

func (h *handler) ParticipantLeft(identity string, intentional bool) {
	if !h.current() {
		return
	}
	for _, rec := range h.s.recordings(h.room, identity) {
		if intentional || h.s.opts.RejoinTimeout <= 0 {
			go h.s.stop(context.Background(), rec, "participant left")
			continue
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

// NewID returns a new recording id.
func NewID() string { return newID("RC_") }

func newID(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// Has says whether participant's recording in room is active here, or
// still closing its files (a start then waits here for the stop).
func (s *Supervisor) Has(room, participant string) bool {
	key := Key{Room: room, Participant: participant}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active[key] != nil || s.stopping[key] != nil
}

// HasKey says whether key's recording is active here, or still closing.
func (s *Supervisor) HasKey(key Key) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active[key] != nil || s.stopping[key] != nil
}

// Closing says whether Shutdown began: this instance takes no new work.
func (s *Supervisor) Closing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// HasRoom says whether this instance has a bot in room.
func (s *Supervisor) HasRoom(room string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	rm := s.rooms[room]
	return rm != nil && rm.bot != nil
}

// Load is what this instance records now, in tracks: each open file, and
// at least one for each recording still waiting for its first.
func (s *Supervisor) Load() int {
	s.mu.Lock()
	recs := s.live()
	s.mu.Unlock()
	n := 0
	for _, r := range recs {
		open := 0
		for _, t := range r.trackList() {
			if t.fileOpen() {
				open++
			}
		}
		n += max(open, 1)
	}
	return n
}
