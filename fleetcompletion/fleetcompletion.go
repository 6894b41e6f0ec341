// Package fleetcompletion makes a room's completion (mixdown, pipeline
// webhook) run once fleet-wide, with every instance's tracks.
//
// Each instance tells Redis (fleetstore.RoomTracks) of its files: pending
// from the moment one opens (Files.Opened), then published with its
// manifest once it is stored (Files.Stored, and again when its room's own
// completion runs). Each instance's room completion (package completion)
// still decides when its files of a room are stored; the pipeline it runs
// is wrapped here (Wrap), and runs the real one only when:
//
//   - no recording of the room is claimed or wanted anywhere (Busy),
//   - no file of the room is pending on a live instance of the fleet, and
//   - no file is pending on a dead one (an instance that died and has not
//     come back, whose files are still in its spool), or COMPLETION_WAIT
//     has passed since a completion began to wait for them;
//
// then over every stored track of the room not carried by an earlier
// completion, on the one instance that claims the run of that set. Its
// webhook lists the dead instances' files as missing. A file listed missing
// that is stored later (its instance came back and recovered it) is carried
// by a recordings_updated event instead. The others leave the run to that
// one; a room still recorded elsewhere asks its completion to try again
// later, and the instance whose recording ends last finds the room idle.
package fleetcompletion

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/trackrec/trackrec/completion"
	"github.com/trackrec/trackrec/fleetstore"
	"github.com/trackrec/trackrec/spool"
)

// Store is the fleet's per-room file lists (fleetstore.RoomTracks).
type Store interface {
	Publish(ctx context.Context, room string, manifests map[string]json.RawMessage) error
	Pending(ctx context.Context, room, key string, doc json.RawMessage) error
	Room(ctx context.Context, room string) (fleetstore.RoomState, error)
	WaitSince(ctx context.Context, room string, now time.Time) (time.Time, error)
	ClaimRun(ctx context.Context, room, set, instance string) (string, error)
	Finish(ctx context.Context, room, set string, completed, found []string, missing map[string]json.RawMessage) error
	Forget(ctx context.Context, room, key string) error
	Known(ctx context.Context, room, key string) (bool, error)
}

// Pipeline is what a complete room runs (mixdown.Pipeline): the room's
// completion, listing the files that are missing, and the update that
// carries files of a completed room that arrived late.
type Pipeline interface {
	CompleteMissing(ctx context.Context, room string, tracks []spool.Sealed, missing []json.RawMessage) ([]string, error)
	Updated(ctx context.Context, room string, tracks []spool.Sealed, missing []json.RawMessage) error
}

// Options configure Wrap.
type Options struct {
	Store    Store
	Instance string
	// Busy says whether a recording of room is claimed or wanted anywhere
	// in the fleet.
	Busy func(ctx context.Context, room string) (bool, error)
	// Alive says whether an instance is a live member of the fleet.
	Alive func(instance string) bool
	// Wait is how long a room waits for the files of a dead instance
	// (COMPLETION_WAIT).
	Wait   time.Duration
	Logger *slog.Logger
}

// File describes a file pending in the fleet: being written, or written
// and not yet stored. It is what a webhook lists as missing.
type File struct {
	Key         string    `json:"key"`
	Instance    string    `json:"instance"`
	Participant string    `json:"participant"`
	TrackSID    string    `json:"track_sid"`
	RoomSID     string    `json:"room_sid,omitempty"`
	Start       time.Time `json:"start"`
}

// Retry waits: for files a live instance is still storing, and at most for
// the files of a dead one.
const (
	liveRetry = 5 * time.Second
	deadRetry = 30 * time.Second
)

// Wrap returns p as it runs in a fleet.
func Wrap(p Pipeline, o Options) completion.Pipeline {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Alive == nil {
		o.Alive = func(string) bool { return true }
	}
	return func(ctx context.Context, room string, tracks []spool.Sealed) ([]string, error) {
		return run(ctx, p, o, room, tracks)
	}
}

func run(ctx context.Context, p Pipeline, o Options, room string, tracks []spool.Sealed) ([]string, error) {
	log := o.Logger.With("room", room)
	mine, err := manifests(tracks)
	if err != nil {
		return nil, err
	}
	if err := o.Store.Publish(ctx, room, mine); err != nil {
		return nil, fmt.Errorf("%w: %w", completion.ErrRetryLater, err)
	}
	busy, err := o.Busy(ctx, room)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", completion.ErrRetryLater, err)
	}
	if busy {
		// Its last recording elsewhere completes it; this is a fallback.
		return nil, fmt.Errorf("%w: the room is still recorded elsewhere in the fleet", completion.ErrRetryLater)
	}
	st, err := o.Store.Room(ctx, room)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", completion.ErrRetryLater, err)
	}
	if len(st.Tracks) == 0 {
		log.Info("room completed by another instance of the fleet")
		return nil, nil
	}
	// Pending files: a live instance's are being stored; a dead one's
	// wait for it to come back, up to Wait, unless already listed missing.
	var live []string
	dead := map[string]json.RawMessage{}
	for key, doc := range st.Pending {
		var f File
		if err := json.Unmarshal(doc, &f); err != nil {
			log.Warn("unreadable pending file in the fleet's room list; left out", "key", key, "err", err)
			continue
		}
		switch {
		case o.Alive(f.Instance):
			live = append(live, f.Instance)
		case st.Missing[key] == nil:
			dead[key] = doc
		}
	}
	if len(live) > 0 {
		return nil, completion.RetryAfter(liveRetry, fmt.Errorf("files of the room are still being stored by %v", live))
	}
	late, fresh := map[string]json.RawMessage{}, map[string]json.RawMessage{}
	for key, doc := range st.Tracks {
		if st.Missing[key] != nil {
			late[key] = doc
		} else {
			fresh[key] = doc
		}
	}
	if len(fresh) > 0 && len(dead) > 0 {
		since, err := o.Store.WaitSince(ctx, room, time.Now())
		if err != nil {
			return nil, fmt.Errorf("%w: %w", completion.ErrRetryLater, err)
		}
		if left := o.Wait - time.Since(since); left > 0 {
			return nil, completion.RetryAfter(min(left, deadRetry), fmt.Errorf("%d files of the room are on an instance that is gone; waiting up to COMPLETION_WAIT (%s)", len(dead), o.Wait))
		}
		log.Warn("room completes without the files of an instance that is gone", "missing", len(dead), "waited", time.Since(since).Round(time.Second))
	}
	set := setID(st.Tracks)
	switch state, err := o.Store.ClaimRun(ctx, room, set, o.Instance); {
	case err != nil:
		return nil, fmt.Errorf("%w: %w", completion.ErrRetryLater, err)
	case state == fleetstore.RunDone:
		log.Info("room completed by another instance of the fleet", "tracks", len(st.Tracks))
		return nil, nil
	case state == fleetstore.RunRunning:
		return nil, fmt.Errorf("%w: another instance is completing the room", completion.ErrRetryLater)
	}
	if len(late) > 0 {
		stillMissing := make(map[string]json.RawMessage, len(st.Missing))
		for key, doc := range st.Missing {
			if late[key] == nil {
				stillMissing[key] = doc
			}
		}
		log.Info("late files of a completed room stored", "tracks", len(late), "still_missing", len(stillMissing))
		if err := p.Updated(ctx, room, sealedOf(log, late), values(stillMissing)); err != nil {
			return nil, err
		}
	}
	var outs []string
	if len(fresh) > 0 {
		log.Info("room complete fleet-wide", "tracks", len(fresh), "here", len(tracks), "missing", len(dead))
		if outs, err = p.CompleteMissing(ctx, room, sealedOf(log, fresh), values(dead)); err != nil {
			return outs, err
		}
	}
	if err := o.Store.Finish(ctx, room, set, sortedKeys(st.Tracks), sortedKeys(late), dead); err != nil {
		log.Warn("room completion not marked done", "err", err)
	}
	return outs, nil
}

func manifests(tracks []spool.Sealed) (map[string]json.RawMessage, error) {
	out := make(map[string]json.RawMessage, len(tracks))
	for _, t := range tracks {
		doc, err := json.Marshal(t.Manifest)
		if err != nil {
			return nil, err
		}
		out[t.Manifest.File.Key] = doc
	}
	return out, nil
}

// sealedOf reads published manifests, in key order.
func sealedOf(log *slog.Logger, docs map[string]json.RawMessage) []spool.Sealed {
	out := make([]spool.Sealed, 0, len(docs))
	for _, key := range sortedKeys(docs) {
		var m spool.Manifest
		if err := json.Unmarshal(docs[key], &m); err != nil {
			log.Warn("unreadable track manifest in the fleet's room list; left out", "key", key, "err", err)
			continue
		}
		out = append(out, spool.Sealed{Manifest: m})
	}
	return out
}

// values lists docs in key order.
func values(docs map[string]json.RawMessage) []json.RawMessage {
	out := make([]json.RawMessage, 0, len(docs))
	for _, key := range sortedKeys(docs) {
		out = append(out, docs[key])
	}
	return out
}

// Files tells the fleet of this instance's files as they open and once
// they are stored. Its calls never block the caller: Redis is written in
// the background, and a file the fleet was not told of only costs a room
// the wait for it should its instance die.
type Files struct {
	store    Store
	instance string
	publish  bool // a room completion reads the published manifests
	log      *slog.Logger
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// NewFiles returns the teller of instance's files. With publish, a stored
// file's manifest is published for the room's completion; without (no room
// pipeline), only its pending entry ends.
func NewFiles(store Store, instance string, publish bool, log *slog.Logger) *Files {
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Files{store: store, instance: instance, publish: publish, log: log, ctx: ctx, cancel: cancel}
}

// claimTimeout bounds Claimed's look: a new file waits for it in its
// track's read loop (once per file), so a slow Redis must not hold the
// packets long.
const claimTimeout = 250 * time.Millisecond

// Claimed says whether the fleet knows a file of room under object key
// (spool.Options.Claimed). Redis not answering is no: the clash it guards
// against needs a handover within the same second.
func (f *Files) Claimed(room, key string) bool {
	ctx, cancel := context.WithTimeout(f.ctx, claimTimeout)
	defer cancel()
	known, err := f.store.Known(ctx, room, key)
	if err != nil {
		f.log.Warn("cannot check the fleet for a file of the same name", "room", room, "key", key, "err", err)
	}
	return known
}

// writeTimeout bounds each write to Redis.
const writeTimeout = 5 * time.Second

// Opened says a file of t opened at key, starting at start.
func (f *Files) Opened(t spool.Track, key string, start time.Time) {
	doc, err := json.Marshal(File{Key: key, Instance: f.instance, Participant: t.Participant, TrackSID: t.TrackSID, RoomSID: t.RoomSID, Start: start.UTC()})
	if err != nil {
		return
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		ctx, cancel := context.WithTimeout(f.ctx, writeTimeout)
		defer cancel()
		if err := f.store.Pending(ctx, t.Room, key, doc); err != nil {
			f.log.Warn("fleet not told of an open file; its room will not wait for it if this instance dies", "room", t.Room, "key", key, "err", err)
		}
	}()
}

// Stored publishes t's manifest once its uploads are confirmed (at once
// for a file with none: the spool is the store), so the fleet's completion
// of its room finds it even if this instance shuts down before its own
// completion of the room runs.
func (f *Files) Stored(room string, t spool.Sealed) {
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for _, u := range t.Uploads {
			if u == nil {
				continue
			}
			select {
			case <-u.Done():
			case <-f.ctx.Done():
				return
			}
		}
		ctx, cancel := context.WithTimeout(f.ctx, writeTimeout)
		defer cancel()
		if !f.publish {
			if err := f.store.Forget(ctx, room, t.Manifest.File.Key); err != nil {
				f.log.Warn("stored file's pending entry not removed; it expires in a day", "room", room, "key", t.Manifest.File.Key, "err", err)
			}
			return
		}
		doc, err := manifests([]spool.Sealed{t})
		if err != nil {
			return
		}
		if err := f.store.Publish(ctx, room, doc); err != nil && !errors.Is(err, context.Canceled) {
			f.log.Warn("stored file not published to the fleet; its room's completion publishes it", "room", room, "key", t.Manifest.File.Key, "err", err)
		}
	}()
}

// Close waits up to ctx for the writes under way (the uploads that were
// still running, once they are drained), then drops the rest.
func (f *Files) Close(ctx context.Context) {
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	f.cancel()
	<-done
}

// setID names a set of track keys.
func setID(all map[string]json.RawMessage) string {
	h := sha256.New()
	for _, k := range sortedKeys(all) {
		h.Write([]byte(k))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func sortedKeys(m map[string]json.RawMessage) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Wanted lists the fleet's wanted recordings (fleetstore.Intents).
type Wanted interface {
	List(ctx context.Context) ([]fleetstore.Intent, error)
}

// Claims lists the fleet's live claims (fleetstore.Leases).
type Claims interface {
	List(ctx context.Context) ([]fleetstore.Lease, error)
}

// RoomBusy is Options.Busy over the fleet's wanted recordings and claims:
// a room is busy while any of its recordings is wanted (running, or
// waiting to be taken over) or claimed (still closing its files). A track
// egress's recording is none of the room's: its files are the egress's.
func RoomBusy(w Wanted, c Claims) func(ctx context.Context, room string) (bool, error) {
	return func(ctx context.Context, room string) (bool, error) {
		wanted, err := w.List(ctx)
		if err != nil {
			return false, err
		}
		for _, in := range wanted {
			if in.Key.Room == room && in.Key.Track == "" {
				return true, nil
			}
		}
		claims, err := c.List(ctx)
		if err != nil {
			return false, err
		}
		for _, l := range claims {
			if l.Key.Room == room && l.Key.Track == "" {
				return true, nil
			}
		}
		return false, nil
	}
}
