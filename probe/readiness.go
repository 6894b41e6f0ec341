package probe

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/livekit/protocol/livekit"
)

// CheckTimeout bounds one readiness check, LiveKit call and write together.
const CheckTimeout = 5 * time.Second

// Readiness says whether the service can record, at most one check per
// maxAge; see the package doc. Its zero value is not usable: use
// [NewReadiness].
type Readiness struct {
	rs       RoomService
	writable func() error
	maxAge   time.Duration

	mu       sync.Mutex
	at       time.Time // when err was found; zero before the first check
	err      error     // the last check's result
	inFlight *flight   // the running check; nil if none
}

// flight is one check and the callers waiting for it.
type flight struct {
	done chan struct{} // closed once err is set
	err  error
}

// NewReadiness returns a Readiness that asks rs to list rooms and calls
// writable to see that the local directory takes a write, serving a result
// for maxAge after its check ends.
func NewReadiness(rs RoomService, writable func() error, maxAge time.Duration) (*Readiness, error) {
	if rs == nil || writable == nil {
		return nil, errors.New("probe: readiness needs a RoomService and a write check")
	}
	if maxAge <= 0 {
		return nil, fmt.Errorf("probe: readiness max age must be positive, not %v", maxAge)
	}
	return &Readiness{rs: rs, writable: writable, maxAge: maxAge}, nil
}

// Check returns nil if the service can record, else why not. It serves a
// fresh cached result, joins a check in flight, or starts one; it returns
// ctx's error if ctx ends first (the check goes on and its result is kept).
func (r *Readiness) Check(ctx context.Context) error {
	r.mu.Lock()
	if !r.at.IsZero() && time.Since(r.at) <= r.maxAge {
		err := r.err
		r.mu.Unlock()
		return err
	}
	fl := r.inFlight
	if fl == nil {
		fl = &flight{done: make(chan struct{})}
		r.inFlight = fl
		go r.run(context.WithoutCancel(ctx), fl)
	}
	r.mu.Unlock()

	select {
	case <-fl.done:
		return fl.err
	case <-ctx.Done():
		return fmt.Errorf("readiness check: %w", ctx.Err())
	}
}

// run makes one check, detached from its callers, and publishes the result.
func (r *Readiness) run(ctx context.Context, fl *flight) {
	ctx, cancel := context.WithTimeout(ctx, CheckTimeout)
	defer cancel()
	fl.err = r.check(ctx)
	r.mu.Lock()
	r.at, r.err, r.inFlight = time.Now(), fl.err, nil
	r.mu.Unlock()
	close(fl.done)
}

func (r *Readiness) check(ctx context.Context) error {
	if _, err := r.rs.ListRooms(ctx, &livekit.ListRoomsRequest{}); err != nil {
		return fmt.Errorf("livekit: %w", cutBy(ctx, err))
	}
	if err := r.writable(); err != nil {
		return fmt.Errorf("local directory: %w", err)
	}
	return nil
}

// DirWritable returns a write check for [NewReadiness]: dir takes a small
// file, which is then removed.
func DirWritable(dir string) func() error {
	return func() error {
		f, err := os.CreateTemp(dir, ".ready-*")
		if err != nil {
			return err
		}
		name := f.Name()
		_, werr := f.Write([]byte("ok"))
		cerr := f.Close()
		rerr := os.Remove(name)
		return errors.Join(werr, cerr, rerr)
	}
}
