package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/trackrec/trackrec/bot"
	"github.com/trackrec/trackrec/recorder"
)

// Supervisor is this instance's recorder as the fleet drives it: the Local
// that a Fleet serves for the other instances.
type Supervisor struct {
	Sup       *recorder.Supervisor
	MaxTracks int // MAX_TRACKS
	// Capacity, if set, is what this instance takes while it records
	// tracks (capacity.Guard: MaxTracks, or no more while over the CPU
	// guard).
	Capacity func(tracks int) int
	// Homes, if set, gives each room one home instance while its first bot
	// joins, so that concurrent first starts of a room meet there.
	Homes    Homes
	Instance string
	HomeTTL  time.Duration // how long a home outlives its claim: the join's bound
	// Tracks, if set, goes on here with the track egresses other
	// instances hand over (egress.Worker).
	Tracks Tracks
}

// Tracks takes over track egresses (egress.Worker): it starts key's
// recording under egress id with opts and reports the egress from then on.
type Tracks interface {
	TakeOver(ctx context.Context, key recorder.Key, id string, opts ...recorder.StartOption) (recorder.RecordingInfo, error)
}

// Homes keeps rooms' home instances (fleetstore.RoomTracks).
type Homes interface {
	// TakeHome makes instance the home of room for ttl unless another
	// instance than from is, and returns the home.
	TakeHome(ctx context.Context, room, from, instance string, ttl time.Duration) (string, error)
	Home(ctx context.Context, room string) (string, error)
}

var _ Local = Supervisor{}

func (l Supervisor) Start(ctx context.Context, room, participant string, wait bool) (json.RawMessage, bool, error) {
	if err := l.home(ctx, room, participant, ""); err != nil {
		return nil, false, err
	}
	var opts []recorder.StartOption
	if wait {
		opts = append(opts, recorder.WaitForParticipant())
	}
	info, created, err := l.Sup.Start(ctx, room, participant, opts...)
	if err != nil {
		return nil, false, toFleet(err)
	}
	doc, err := json.Marshal(info)
	return doc, created, err
}

func (l Supervisor) HandOver(ctx context.Context, key recorder.Key, id, owner, from string, wait bool) (json.RawMessage, time.Time, error) {
	// The recordings of a room handed over at once meet on one instance,
	// as concurrent first starts do; the draining one's home is taken.
	if err := l.home(ctx, key.Room, key.Participant, from); err != nil {
		return nil, time.Time{}, err
	}
	opts := []recorder.StartOption{recorder.Resume(id), recorder.HandOverFrom(owner)}
	if wait {
		opts = append(opts, recorder.WaitForParticipant())
	}
	var info recorder.RecordingInfo
	var err error
	switch {
	case key.Track == "":
		info, _, err = l.Sup.Start(ctx, key.Room, key.Participant, opts...)
	case l.Tracks == nil:
		err = fmt.Errorf("%w: this instance serves no track egress", recorder.ErrFull)
	default:
		// A track egress: its worker here goes on reporting it.
		info, err = l.Tracks.TakeOver(ctx, key, id, opts...)
	}
	if err != nil {
		return nil, time.Time{}, toFleet(err)
	}
	if info.HandoverAt == nil {
		return nil, time.Time{}, fmt.Errorf("%s is recorded here already, not taken over", key)
	}
	doc, err := json.Marshal(info)
	return doc, *info.HandoverAt, err
}

// home makes this instance the home of room while its first bot joins
// here, unless another instance than from is: ErrElsewhere, the caller
// places the start again.
func (l Supervisor) home(ctx context.Context, room, participant, from string) error {
	if l.Homes == nil || l.Sup.HasRoom(room) || l.Sup.Has(room, participant) {
		return nil
	}
	home, err := l.Homes.TakeHome(ctx, room, from, l.Instance, l.HomeTTL)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if home != l.Instance {
		return fmt.Errorf("%w: %s", ErrElsewhere, home)
	}
	return nil
}

// TakesTracks: an egress worker here goes on with track egresses.
func (l Supervisor) TakesTracks() bool { return l.Tracks != nil }

// Draining: a shutting-down instance hands its recordings over.
func (l Supervisor) Draining() bool { return l.Sup.Closing() }

func (l Supervisor) Stop(ctx context.Context, key recorder.Key) (json.RawMessage, error) {
	info, err := l.Sup.StopKey(ctx, key, "stopped by request")
	if err != nil {
		return nil, toFleet(err)
	}
	return json.Marshal(info)
}

func (l Supervisor) List() []json.RawMessage {
	var out []json.RawMessage
	for _, r := range l.Sup.List() {
		if doc, err := json.Marshal(r); err == nil {
			out = append(out, doc)
		}
	}
	return out
}

// HasRoom: its bot is in the room, or about to be (it is the room's home).
// A shutting-down instance has no room for anything.
func (l Supervisor) HasRoom(room string) bool {
	if l.Sup.Closing() {
		return false
	}
	if l.Sup.HasRoom(room) {
		return true
	}
	if l.Homes == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	home, err := l.Homes.Home(ctx, room)
	return err == nil && home == l.Instance
}

// Load reports a shutting-down instance as full, so it claims no start.
func (l Supervisor) Load() (int, int) {
	if l.Sup.Closing() {
		return l.MaxTracks, l.MaxTracks
	}
	tracks := l.Sup.Load()
	if l.Capacity != nil {
		return tracks, l.Capacity(tracks)
	}
	return tracks, l.MaxTracks
}
func (l Supervisor) Owns(key recorder.Key) bool { return l.Sup.HasKey(key) }

// errorPairs maps the recorder's errors to the fleet's, and back.
var errorPairs = [...]struct{ rec, fleet error }{
	{recorder.ErrNotFound, ErrNotFound},
	{recorder.ErrNoRoom, ErrNoRoom},
	{recorder.ErrNoParticipant, ErrNoParticipant},
	{recorder.ErrOwned, ErrOwned},
	{recorder.ErrFull, ErrFull},
	{recorder.ErrShuttingDown, ErrShuttingDown},
	{recorder.ErrLookup, ErrUnreachable},
	{bot.ErrUnreachable, ErrUnreachable},
	{recorder.ErrUnavailable, ErrUnavailable},
}

// toFleet marks a recorder error with the fleet error that crosses the bus.
func toFleet(err error) error {
	for _, p := range errorPairs {
		if errors.Is(err, p.rec) {
			return fmt.Errorf("%w: %w", p.fleet, err)
		}
	}
	return err
}

// toRecorder marks an error from another instance with the recorder error
// the API knows; one that is none of them (the bus, Redis) means the fleet
// cannot be asked now.
func toRecorder(err error) error {
	for _, p := range errorPairs {
		if errors.Is(err, p.fleet) {
			return fmt.Errorf("%w: %w", p.rec, err)
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return err
	}
	return fmt.Errorf("%w: %w", recorder.ErrUnavailable, err)
}

// listTimeout bounds how long a listing waits for the instances.
const listTimeout = 2 * time.Second

// Recorder answers for the whole fleet, whichever instance is asked: the
// API's starts, stops and listing, and the webhook policy's actions go
// through it.
type Recorder struct {
	Fleet *Fleet
	Local *recorder.Supervisor
	Log   *slog.Logger
	// Forget, if set, drops what the fleet wants of participant in room
	// (of every participant when ""), reporting whether anything was.
	Forget func(ctx context.Context, room, participant string) (bool, error)
}

// Start records participant on the instance the fleet places it on. A start
// placed on an instance while the room's first bot joins on another is
// placed again: it then goes to that one.
func (r Recorder) Start(ctx context.Context, room, participant string, opts ...recorder.StartOption) (recorder.RecordingInfo, bool, error) {
	var doc json.RawMessage
	var created bool
	var err error
	for attempt := 0; attempt < 4; attempt++ {
		doc, created, _, err = r.Fleet.Start(ctx, room, participant, recorder.Waits(opts...))
		if !errors.Is(err, ErrElsewhere) {
			break
		}
	}
	if err != nil {
		return recorder.RecordingInfo{}, false, toRecorder(err)
	}
	info, err := decode(doc)
	return info, created, err
}

// TakeOver hands this instance's recording of key (held as owner) to
// another instance while this one drains, and returns where the other's
// files take over and its name (recorder.Successor).
func (r Recorder) TakeOver(ctx context.Context, key recorder.Key, id, owner string, wait bool) (time.Time, string, error) {
	var doc json.RawMessage
	var in time.Duration
	var err error
	for attempt := 0; attempt < 4; attempt++ {
		doc, _, in, err = r.Fleet.HandOver(ctx, key, id, owner, wait)
		if !errors.Is(err, ErrElsewhere) {
			break
		}
	}
	if err != nil {
		return time.Time{}, "", toRecorder(err)
	}
	// The cut on this instance's clock: the answer's delay, not the
	// other's clock, so only the answer's latency separates the two.
	cut := time.Now().Add(in)
	info, err := decode(doc)
	if err != nil {
		return time.Time{}, "", err
	}
	if info.HandoverAt == nil || info.ID != id {
		return time.Time{}, "", fmt.Errorf("fleet: %s took %s/%s over as %q without a cut", info.Instance, key.Room, key.Participant, info.ID)
	}
	return cut, info.Instance, nil
}

// Cancel stops the recording of key on the instance that took it over: the
// one handing it over claims stops lower while it drains.
func (r Recorder) Cancel(ctx context.Context, key recorder.Key) error {
	_, _, err := r.Fleet.Stop(ctx, key)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return toRecorder(err)
	}
	return nil
}

// decode reads a recording another instance sent.
func decode(doc json.RawMessage) (recorder.RecordingInfo, error) {
	var info recorder.RecordingInfo
	if err := json.Unmarshal(doc, &info); err != nil {
		return info, fmt.Errorf("recording from the fleet: %w", err)
	}
	return info, nil
}

// Stop stops the recording on the instance that holds it: this one when it
// does (no bus needed), else the owner over the bus. A recording no instance
// holds now but the fleet still wants (its instance died; nobody resumed it
// yet) is no longer wanted: the stop is answered for it.
func (r Recorder) Stop(ctx context.Context, room, participant string) (recorder.RecordingInfo, error) {
	// A draining instance's recording may be under way on its successor
	// too: the fleet finds the one that goes on.
	if r.Local.Has(room, participant) && !r.Local.Closing() {
		info, err := r.Local.Stop(ctx, room, participant)
		if !errors.Is(err, recorder.ErrNotFound) {
			return info, err
		}
	}
	doc, _, err := r.Fleet.Stop(ctx, recorder.Key{Room: room, Participant: participant})
	if errors.Is(err, ErrNotFound) && r.Forget != nil {
		if wanted, ferr := r.Forget(ctx, room, participant); ferr == nil && wanted {
			return recorder.RecordingInfo{Room: room, Participant: participant, State: recorder.StateStopped,
				StopReason: "stopped by request while its instance was away"}, nil
		}
	}
	if err != nil {
		return recorder.RecordingInfo{}, toRecorder(err)
	}
	return decode(doc)
}

// ListFleet returns every instance's recordings, and the instances that did
// not answer in time.
func (r Recorder) ListFleet(ctx context.Context) ([]recorder.RecordingInfo, []string) {
	// An instance that died is still a member until the fleet forgets it:
	// a listing names it rather than waiting on it.
	ctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	entries, err := r.Fleet.List(ctx)
	var missing []string
	var ue *UnansweredError
	if errors.As(err, &ue) {
		missing = ue.Instances
	} else if err != nil {
		r.Log.Warn("fleet listing failed; showing this instance's recordings", "err", err)
		return r.Local.List(), []string{"fleet"}
	}
	out := make([]recorder.RecordingInfo, 0, len(entries))
	for _, e := range entries {
		if info, err := decode(e.Recording); err == nil {
			if info.Instance == "" {
				info.Instance = e.Instance
			}
			out = append(out, info)
		}
	}
	return out, missing
}

// StopRoom stops every recording of room, wherever it runs.
func (r Recorder) StopRoom(ctx context.Context, room, reason string) {
	list, _ := r.ListFleet(ctx)
	for _, rec := range list {
		if rec.Room != room || rec.State.Final() {
			continue
		}
		if _, err := r.Stop(ctx, room, rec.Participant); err != nil && !errors.Is(err, recorder.ErrNotFound) {
			r.Log.Warn("room finished: stop failed", "room", room, "participant", rec.Participant, "err", err)
		}
	}
	// Recordings of the room waiting for a takeover end with it.
	if r.Forget != nil {
		if _, err := r.Forget(ctx, room, ""); err != nil {
			r.Log.Warn("room finished: wanted recordings not dropped", "room", room, "err", err)
		}
	}
}

// Refresh and ParticipantSID are this instance's view: the webhook policy
// asks them of the bot that may be recording here.
func (r Recorder) Refresh(room, identity string) { r.Local.Refresh(room, identity) }
func (r Recorder) ParticipantSID(room, identity string) string {
	return r.Local.ParticipantSID(room, identity)
}
