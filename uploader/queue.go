package uploader

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"time"
)

// Upload states.
const (
	StatePending   = "pending"   // waiting for a worker or for its next attempt
	StateUploading = "uploading" // an attempt is running
	StateUploaded  = "uploaded"  // the store confirmed it
	StateFailed    = "failed"    // the last attempt failed; it will be tried again
)

// Item is one local file to store under Key.
type Item struct {
	Key         string
	Path        string
	ContentType string
	// SHA256 is the file's digest; computed by the queue when nil.
	SHA256 []byte
	// After, if set, must be stored first: a manifest never lands before
	// the file it describes.
	After *Upload
	// Store, if set, stores this item in place of the queue's (an egress
	// request's own bucket).
	Store Storage
}

// QueueOptions configure a Queue.
type QueueOptions struct {
	// DeleteAfter removes the local file once the store confirmed it. Off for
	// a store that keeps files where the spool has them.
	DeleteAfter bool
	Workers     int           // parallel uploads; default 2
	MinBackoff  time.Duration // first retry delay; default 1 s
	MaxBackoff  time.Duration // retry delay cap; default 30 s
	Logger      *slog.Logger
	// Observe, if set, is told of every attempt to store a file: its key,
	// how long the attempt took, and its error (nil: stored). It runs on
	// the worker, so it must be quick (a metrics update). Attempts ended
	// by shutdown count as failures.
	Observe func(key string, took time.Duration, err error)
}

// Queue uploads files in the background and retries each one, with
// exponential backoff and jitter, until the store confirms it. A local file
// is deleted only after that confirmation, so a failed or interrupted upload
// leaves it in the spool for the next attempt or the next start.
type Queue struct {
	store Storage
	opts  QueueOptions
	log   *slog.Logger

	jobs   chan *Upload
	ctx    context.Context // ends every attempt on Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	pending sync.WaitGroup
}

// Upload is one item's progress.
type Upload struct {
	Item
	done chan struct{}

	mu       sync.Mutex
	state    string
	attempts int
	lastErr  error
	backoff  time.Duration // before the next retry; only the worker running it touches it
}

// UploadInfo is a snapshot of an Upload.
type UploadInfo struct {
	Key      string `json:"key"`
	State    string `json:"state"`
	Attempts int    `json:"attempts"`
	Error    string `json:"error,omitempty"`
}

// NewQueue starts the workers.
func NewQueue(store Storage, o QueueOptions) *Queue {
	if o.Workers <= 0 {
		o.Workers = 2
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	q := &Queue{store: store, opts: o, log: o.Logger, jobs: make(chan *Upload, 4096), ctx: ctx, cancel: cancel}
	for range o.Workers {
		q.wg.Add(1)
		go q.work()
	}
	return q
}

// ErrQueueClosed is returned by Submit after Drain.
var ErrQueueClosed = errors.New("upload queue closed")

// Submit queues item. The returned Upload reports its progress.
func (q *Queue) Submit(item Item) (*Upload, error) {
	if err := CheckKey(item.Key); err != nil {
		return nil, err
	}
	u := &Upload{Item: item, done: make(chan struct{}), state: StatePending}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil, ErrQueueClosed
	}
	q.pending.Add(1)
	q.mu.Unlock()
	q.enqueue(u)
	return u, nil
}

// enqueue hands u to a worker without ever blocking the caller: a full
// channel (a stuck store, a large spool at start-up) parks it in a goroutine.
func (q *Queue) enqueue(u *Upload) {
	select {
	case q.jobs <- u:
	default:
		go func() {
			select {
			case q.jobs <- u:
			case <-q.ctx.Done():
				q.pending.Done()
			}
		}()
	}
}

// Drain stops taking items and waits until every submitted upload is
// confirmed or ctx ends; what is left stays in the spool. It then stops the
// workers.
func (q *Queue) Drain(ctx context.Context) error {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	done := make(chan struct{})
	go func() { q.pending.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("drain uploads: %w", ctx.Err())
	}
	q.cancel()
	q.wg.Wait()
	return err
}

func (q *Queue) work() {
	defer q.wg.Done()
	for {
		select {
		case u := <-q.jobs:
			q.run(u)
		case <-q.ctx.Done():
			return
		}
	}
}

// run tries u until it is stored or the queue is closed.
func (q *Queue) run(u *Upload) {
	log := q.log.With("key", u.Key)
	if u.After != nil {
		select {
		case <-u.After.done:
		default:
			// Wait for the dependency off the workers, so a file that
			// keeps failing never holds one.
			go func() {
				select {
				case <-u.After.done:
					q.enqueue(u)
				case <-q.ctx.Done():
					q.pending.Done()
				}
			}()
			return
		}
	}
	u.set(StateUploading, nil)
	began := time.Now()
	err := q.put(u)
	if q.opts.Observe != nil {
		q.opts.Observe(u.Key, time.Since(began), err)
	}
	if err == nil {
		u.set(StateUploaded, nil)
		if q.opts.DeleteAfter {
			if err := os.Remove(u.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
				log.Warn("remove uploaded file", "path", u.Path, "err", err)
			}
		}
		log.Info("uploaded", "store", u.storage(q).String(), "attempts", u.Attempts())
		close(u.done)
		q.pending.Done()
		return
	}
	u.set(StateFailed, err)
	if q.ctx.Err() != nil {
		log.Warn("upload abandoned at shutdown; the file stays in the spool", "path", u.Path, "err", err)
		q.pending.Done()
		return
	}
	// Retry later from a timer, not in the worker, so other files go on.
	// Full jitter spreads the retries of many files after an outage.
	u.backoff = min(max(u.backoff*2, q.opts.MinBackoff), q.opts.MaxBackoff)
	wait := time.Duration(rand.Int64N(int64(u.backoff))) + u.backoff/2
	log.Warn("upload failed; retrying", "attempt", u.Attempts(), "in", wait.Round(time.Millisecond), "err", err)
	time.AfterFunc(wait, func() {
		if q.ctx.Err() != nil {
			log.Warn("upload abandoned at shutdown; the file stays in the spool", "path", u.Path)
			q.pending.Done()
			return
		}
		q.enqueue(u)
	})
}

func (q *Queue) put(u *Upload) error {
	u.mu.Lock()
	u.attempts++
	u.mu.Unlock()
	if u.SHA256 == nil {
		sum, err := FileSHA256(u.Path)
		if err != nil {
			return err
		}
		u.SHA256 = sum
	}
	ctx, cancel := context.WithTimeout(q.ctx, 10*time.Minute)
	defer cancel()
	return u.storage(q).Put(ctx, u.Key, u.Path, u.ContentType, u.SHA256)
}

// storage is where u goes: its own store, else the queue's.
func (u *Upload) storage(q *Queue) Storage {
	if u.Store != nil {
		return u.Store
	}
	return q.store
}

func (u *Upload) set(state string, err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.state = state
	if err != nil {
		u.lastErr = err
	}
}

// Attempts is how many times the upload was tried.
func (u *Upload) Attempts() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.attempts
}

// Done is closed once the store confirmed the upload.
func (u *Upload) Done() <-chan struct{} { return u.done }

// Info returns a snapshot.
func (u *Upload) Info() UploadInfo {
	u.mu.Lock()
	defer u.mu.Unlock()
	info := UploadInfo{Key: u.Key, State: u.state, Attempts: u.attempts}
	if u.lastErr != nil && u.state != StateUploaded {
		info.Error = u.lastErr.Error()
	}
	return info
}

// FileSHA256 is the SHA-256 of the file at path.
func FileSHA256(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("checksum: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, fmt.Errorf("checksum %s: %w", path, err)
	}
	return h.Sum(nil), nil
}
