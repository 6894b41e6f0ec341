// Package fleetcompletion makes a room's completion (mixdown, pipeline
// webhook) run once fleet-wide, with every instance's tracks. Each
// instance's own room completion (package completion) still decides when
// its files of a room are stored; the pipeline it runs is wrapped here: it
// publishes those tracks to Redis, and runs the real pipeline only when no
// recording of the room is claimed or wanted anywhere in the fleet, over
// every track published for the room, on the one instance that claims the
// run of that set of tracks. The others leave it to that one. A room still
// recorded elsewhere asks its completion to try again later; the instance
// whose recording ends last finds the room idle and runs it.
package fleetcompletion

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"

	"github.com/trackrec/trackrec/completion"
	"github.com/trackrec/trackrec/fleetstore"
	"github.com/trackrec/trackrec/spool"
)

// Store is the fleet's per-room track lists (fleetstore.RoomTracks).
type Store interface {
	Publish(ctx context.Context, room string, manifests map[string]json.RawMessage) error
	Tracks(ctx context.Context, room string) (map[string]json.RawMessage, error)
	ClaimRun(ctx context.Context, room, set, instance string) (string, error)
	RunDone(ctx context.Context, room, set string) error
}

// Options configure Wrap.
type Options struct {
	Store    Store
	Instance string
	// Busy says whether a recording of room is claimed or wanted anywhere
	// in the fleet.
	Busy   func(ctx context.Context, room string) (bool, error)
	Logger *slog.Logger
}

// Wrap returns p as it runs in a fleet.
func Wrap(p completion.Pipeline, o Options) completion.Pipeline {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return func(ctx context.Context, room string, tracks []spool.Sealed) ([]string, error) {
		return run(ctx, p, o, room, tracks)
	}
}

func run(ctx context.Context, p completion.Pipeline, o Options, room string, tracks []spool.Sealed) ([]string, error) {
	log := o.Logger.With("room", room)
	mine := make(map[string]json.RawMessage, len(tracks))
	for _, t := range tracks {
		doc, err := json.Marshal(t.Manifest)
		if err != nil {
			return nil, err
		}
		mine[t.Manifest.File.Key] = doc
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
	all, err := o.Store.Tracks(ctx, room)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", completion.ErrRetryLater, err)
	}
	set := setID(all)
	switch state, err := o.Store.ClaimRun(ctx, room, set, o.Instance); {
	case err != nil:
		return nil, fmt.Errorf("%w: %w", completion.ErrRetryLater, err)
	case state == fleetstore.RunDone:
		log.Info("room completed by another instance of the fleet", "tracks", len(all))
		return nil, nil
	case state == fleetstore.RunRunning:
		return nil, fmt.Errorf("%w: another instance is completing the room", completion.ErrRetryLater)
	}
	sealed := make([]spool.Sealed, 0, len(all))
	for _, key := range sortedKeys(all) {
		var m spool.Manifest
		if err := json.Unmarshal(all[key], &m); err != nil {
			log.Warn("unreadable track manifest in the fleet's room list; left out", "key", key, "err", err)
			continue
		}
		sealed = append(sealed, spool.Sealed{Manifest: m})
	}
	log.Info("room complete fleet-wide", "tracks", len(sealed), "here", len(tracks))
	outs, err := p(ctx, room, sealed)
	if err == nil {
		if derr := o.Store.RunDone(ctx, room, set); derr != nil {
			log.Warn("room completion not marked done", "err", derr)
		}
	}
	return outs, err
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
// waiting to be taken over) or claimed (still closing its files).
func RoomBusy(w Wanted, c Claims) func(ctx context.Context, room string) (bool, error) {
	return func(ctx context.Context, room string) (bool, error) {
		wanted, err := w.List(ctx)
		if err != nil {
			return false, err
		}
		for _, in := range wanted {
			if in.Key.Room == room {
				return true, nil
			}
		}
		claims, err := c.List(ctx)
		if err != nil {
			return false, err
		}
		for _, l := range claims {
			if l.Key.Room == room {
				return true, nil
			}
		}
		return false, nil
	}
}
