package egress

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/livekit/protocol/rpc"
	"github.com/livekit/psrpc"

	"github.com/trackrec/trackrec/muxer"
	"github.com/trackrec/trackrec/recorder"
	"github.com/trackrec/trackrec/spool"
	"github.com/trackrec/trackrec/uploader"
)

// Publisher is what the worker learns of a track from LiveKit before it
// claims a request.
type Publisher struct {
	Identity string
	Kind     string // "audio", "video"
	MimeType string // "audio/opus"
	Source   string // lower case: "microphone"
}

// Recorder records the egresses' tracks (recorder.Supervisor).
type Recorder interface {
	Start(ctx context.Context, room, participant string, opts ...recorder.StartOption) (recorder.RecordingInfo, bool, error)
	StopKey(ctx context.Context, key recorder.Key, reason string) (recorder.RecordingInfo, error)
}

// Uploads stores the egresses' manifests (uploader.Queue).
type Uploads interface {
	Submit(uploader.Item) (*uploader.Upload, error)
}

// Options configure a Worker.
type Options struct {
	Bus      psrpc.MessageBus // livekit-server's Redis
	Recorder Recorder
	// Find says who publishes track in room, and what it is; its error
	// wraps recorder.ErrNoParticipant when nobody does (or the room is
	// gone).
	Find    func(ctx context.Context, room, track string) (Publisher, error)
	Uploads Uploads
	// Storage is the recorder's own S3 target (no credentials), for the
	// requests that name none or name it; nil: local storage.
	Storage *S3
	// NewStore makes the store of a request that names another S3 target,
	// with the request's credentials (s3.New).
	NewStore func(ctx context.Context, target *S3) (uploader.Storage, error)
	// Load is the tracks recorded now and the most this instance takes.
	Load func() (tracks, capacity int)
	// Dir keeps each running egress's record (so that the next process
	// reports one a crash cut short) and the manifests waiting for their
	// upload. It must outlive the process: a folder of LOCAL_DIRECTORY.
	Dir string
	// Shared, in a fleet, keeps each egress's record for the instance
	// that takes it over (fleetstore.Egresses); Sealer seals the
	// credentials in it. Instance is this instance's name there, and
	// Alive says whether an instance is in the fleet.
	Shared   Shared
	Sealer   *Sealer
	Instance string
	Alive    func(instance string) bool
	// Live serves the track egresses with a websocket_url (live.Hub);
	// without it they are not claimed.
	Live   Live
	Logger *slog.Logger
}

// Worker serves livekit-server's track egress requests with the recorder.
type Worker struct {
	o    Options
	log  *slog.Logger
	io   rpc.IOInfoClient
	srv  rpc.EgressInternalServer
	stop rpc.EgressHandlerServer

	mu     sync.Mutex
	active map[string]*job // by egress id
	closed bool
	wg     sync.WaitGroup
	// life ends at Close: a file not stored by then stays in the spool.
	life    context.Context
	endLife context.CancelFunc
}

// NewWorker starts serving on o.Bus.
func NewWorker(o Options) (*Worker, error) {
	if o.Bus == nil || o.Recorder == nil || o.Find == nil || o.Uploads == nil || o.Load == nil || o.Dir == "" || o.NewStore == nil {
		return nil, errors.New("egress: Bus, Recorder, Find, Uploads, NewStore, Load and Dir are required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("egress: manifest folder: %w", err)
	}
	w := &Worker{o: o, log: o.Logger.With("component", "egress"), active: map[string]*job{}}
	w.life, w.endLife = context.WithCancel(context.Background())
	var err error
	if w.io, err = rpc.NewIOInfoClient(o.Bus); err != nil {
		return nil, fmt.Errorf("egress: IOInfo client: %w", err)
	}
	if w.stop, err = rpc.NewEgressHandlerServer(stopper{w}, o.Bus); err != nil {
		return nil, fmt.Errorf("egress: handler server: %w", err)
	}
	if w.srv, err = rpc.NewEgressInternalServer(w, o.Bus); err != nil {
		w.stop.Kill()
		return nil, fmt.Errorf("egress: server: %w", err)
	}
	// livekit-server v1.13.5 has no egress cluster id: the topic is "".
	if err := w.srv.RegisterStartEgressTopic(""); err != nil {
		w.srv.Kill()
		w.stop.Kill()
		return nil, fmt.Errorf("egress: serve StartEgress: %w", err)
	}
	return w, nil
}

// Refuse stops taking requests: the instance is shutting down.
func (w *Worker) Refuse() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
}

// Close stops taking requests and waits for the egresses' reports under
// way (each ends with its recording: stop those first).
func (w *Worker) Close() {
	w.Refuse()
	w.srv.Shutdown()
	w.endLife()
	w.wg.Wait()
	w.stop.Shutdown()
}

// Claims. A request the worker serves is claimed lower the busier the
// instance is (0.99 when idle), so a fleet spreads them; one whose output
// it does not write is claimed at lowOutput only, so livekit/egress on the
// same Redis (which claims 0.5 and up) takes it when it is there.
const lowOutput = 0.05

// StartEgressAffinity is the worker's claim on req (rpc.EgressInternal).
func (w *Worker) StartEgressAffinity(ctx context.Context, req *rpc.StartEgressRequest) float32 {
	r, err := Parse(req)
	switch {
	case errors.Is(err, ErrOutput):
		return lowOutput
	case err != nil, r.WebsocketURL != "" && w.o.Live == nil:
		return -1
	}
	w.mu.Lock()
	_, retry := w.active[r.EgressID]
	closed := w.closed
	w.mu.Unlock()
	switch {
	case retry:
		return 1 // a retry of one it runs: idempotent here
	case closed:
		return -1
	}
	pub, err := w.o.Find(ctx, r.RoomName, r.TrackID)
	if err != nil || pub.Kind != "audio" || !opusTrack(pub.MimeType) {
		w.log.Debug("egress not claimed", "egress", r.EgressID, "room", r.RoomName, "track", r.TrackID, "kind", pub.Kind, "mime", pub.MimeType, "err", err)
		return -1
	}
	tracks, capacity := w.o.Load()
	if capacity <= 0 || tracks >= capacity {
		w.log.Info("egress not claimed: the recorder is full", "egress", r.EgressID, "room", r.RoomName, "track", r.TrackID, "tracks", tracks, "capacity", capacity)
		return -1
	}
	return 0.99 * float32(capacity-tracks) / float32(capacity)
}

// opusTrack says whether a track of mime reaches a subscriber as Opus:
// Opus itself, or RED (redundant Opus), which the SFU sends as Opus to
// subscribers that do not ask for RED.
func opusTrack(mime string) bool {
	return strings.EqualFold(mime, "audio/opus") || strings.EqualFold(mime, "audio/red")
}

// StartEgress starts req's egress (rpc.EgressInternal). livekit-server is
// told of it (CreateEgress) before this returns.
func (w *Worker) StartEgress(ctx context.Context, req *rpc.StartEgressRequest) (*livekit.EgressInfo, error) {
	r, err := Parse(req)
	if err != nil {
		return nil, psrpc.NewError(psrpc.InvalidArgument, err)
	}
	w.mu.Lock()
	if j := w.active[r.EgressID]; j != nil {
		w.mu.Unlock()
		return j.info.Snapshot(), nil // a retry
	}
	if w.closed {
		w.mu.Unlock()
		return nil, psrpc.NewErrorf(psrpc.Unavailable, "egress: the recorder is shutting down")
	}
	j := &job{w: w, req: r, info: NewInfo(r, time.Now()), log: w.log.With("egress", r.EgressID, "room", r.RoomName, "track", r.TrackID)}
	w.active[r.EgressID] = j
	w.mu.Unlock()
	pub, err := w.o.Find(ctx, r.RoomName, r.TrackID)
	if err == nil && pub.Kind != "audio" {
		err = fmt.Errorf("track %s is %s, not audio", r.TrackID, pub.Kind)
	}
	if err != nil {
		w.forget(j)
		return nil, psrpc.NewError(psrpc.NotFound, fmt.Errorf("egress: %w", err))
	}
	j.pub = pub
	if r.WebsocketURL != "" {
		if w.o.Live == nil {
			w.forget(j)
			return nil, psrpc.NewErrorf(psrpc.Unimplemented, "egress: this recorder serves no WebSocket outputs")
		}
		// Dialled before anything starts, as livekit/egress does: a URL
		// that does not answer fails the request.
		conn, err := dialWebsocket(ctx, r.WebsocketURL)
		if err != nil {
			w.forget(j)
			return nil, psrpc.NewError(psrpc.InvalidArgument, fmt.Errorf("egress: %w", err))
		}
		j.ws = &wsStream{j: j, url: r.WebsocketURL, conn: conn, done: make(chan struct{}),
			info: &livekit.StreamInfo{Url: redactURL(r.WebsocketURL), StartedAt: time.Now().UnixNano(), Status: livekit.StreamInfo_ACTIVE}}
		j.info.Stream(j.ws.result())
		defer func() {
			j.mu.Lock()
			running := j.wsRunning
			j.mu.Unlock()
			if !running {
				_ = conn.Close()
			}
		}()
	}
	if r.S3 != nil && !w.ownStorage(r.S3) {
		// The request's own bucket, with its credentials (kept in memory
		// only, for this egress); never with the recorder's own.
		if r.S3.AccessKey == "" || r.S3.Secret == "" {
			w.forget(j)
			return nil, psrpc.NewError(psrpc.InvalidArgument, fmt.Errorf("%w: S3 output %s names no credentials", ErrInvalid, r.S3))
		}
		if j.store, err = w.o.NewStore(ctx, r.S3); err != nil {
			w.forget(j)
			return nil, psrpc.NewError(psrpc.InvalidArgument, fmt.Errorf("egress: S3 output %s: %w", r.S3, err))
		}
	}
	if err := j.save(); err != nil {
		w.forget(j)
		return nil, psrpc.NewError(psrpc.Internal, fmt.Errorf("egress: keep its record: %w", err))
	}
	if err := w.stop.RegisterStopEgressTopic(r.EgressID); err != nil {
		w.forget(j)
		j.drop()
		return nil, psrpc.NewError(psrpc.Internal, fmt.Errorf("egress: serve StopEgress: %w", err))
	}
	if _, err := w.io.CreateEgress(ctx, j.info.Snapshot()); err != nil {
		w.stop.DeregisterStopEgressTopic(r.EgressID)
		w.forget(j)
		j.drop()
		return nil, psrpc.NewError(psrpc.Unavailable, fmt.Errorf("egress: report to livekit-server: %w", err))
	}
	if err := j.share(ctx); err != nil {
		j.log.Warn("egress not recorded fleet-wide: no other instance can take it over", "err", err)
	} else if err := j.save(); err != nil {
		j.log.Warn("egress record not updated", "err", err)
	}
	// The join outlives this request (livekit-server gives it about 10 s).
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
	defer cancel()
	var created bool
	_, created, err = w.o.Recorder.Start(sctx, r.RoomName, pub.Identity,
		recorder.Track(r.TrackID), recorder.Resume(r.EgressID), recorder.InFormat(muxer.FormatOgg), recorder.WithOutput(j))
	if err == nil && !created {
		// Another egress of this track runs here; its recording is not
		// this one's.
		err = fmt.Errorf("track %s is recorded by another egress", r.TrackID)
	}
	if err != nil {
		j.log.Warn("egress failed to start", "err", err)
		j.report(j.info.Failed(err, nil))
		w.end(j)
		j.drop()
		return j.info.Snapshot(), nil
	}
	j.log.Info("track egress started", "participant", pub.Identity)
	if j.ws != nil {
		// Before inPlace: a StopEgress that came meanwhile ends the
		// recording, and the end waits for the stream.
		ctx, cancel := context.WithCancel(w.life)
		j.mu.Lock()
		j.wsRunning, j.ws.cancel = true, cancel
		j.mu.Unlock()
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			defer cancel()
			defer close(j.ws.done)
			j.ws.run(ctx)
		}()
	}
	j.inPlace()
	return j.info.Snapshot(), nil
}

// ListActiveEgress lists the egresses running here (rpc.EgressInternal).
func (w *Worker) ListActiveEgress(context.Context, *rpc.ListActiveEgressRequest) (*rpc.ListActiveEgressResponse, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := &rpc.ListActiveEgressResponse{}
	for id := range w.active {
		out.EgressIds = append(out.EgressIds, id)
	}
	return out, nil
}

// ownStorage says whether s is the recorder's own bucket.
func (w *Worker) ownStorage(s *S3) bool {
	own := w.o.Storage
	return own != nil && own.Bucket == s.Bucket && strings.TrimRight(own.Endpoint, "/") == strings.TrimRight(s.Endpoint, "/")
}

func (w *Worker) forget(j *job) {
	w.mu.Lock()
	if w.active[j.req.EgressID] == j {
		delete(w.active, j.req.EgressID)
	}
	w.mu.Unlock()
}

// end retires j: its stop topic goes, and a retry of its id starts anew.
func (w *Worker) end(j *job) {
	w.stop.DeregisterStopEgressTopic(j.req.EgressID)
	w.forget(j)
}

// stopper serves StopEgress (rpc.EgressHandler) on each egress's topic.
type stopper struct{ w *Worker }

func (s stopper) StopEgress(ctx context.Context, req *livekit.StopEgressRequest) (*livekit.EgressInfo, error) {
	s.w.mu.Lock()
	j := s.w.active[req.GetEgressId()]
	s.w.mu.Unlock()
	if j == nil {
		return nil, psrpc.NewErrorf(psrpc.NotFound, "egress %s is not running here", req.GetEgressId())
	}
	info, _ := j.info.Ending("Stopped by request")
	j.report(info, true)
	j.mu.Lock()
	j.stopAsked = true
	started := j.started
	j.mu.Unlock()
	if started {
		j.stopRecording()
	} // else StartEgress stops it once its recording is in place
	return info, nil
}

// inPlace says j's recording runs: a StopEgress that came while it started
// stops it now.
func (j *job) inPlace() {
	j.mu.Lock()
	j.started = true
	stop := j.stopAsked
	j.mu.Unlock()
	if stop {
		j.stopRecording()
	}
}

// stopRecording ends j's recording in the background: its files close and
// are stored after StopEgress answered (ENDING now, COMPLETE once stored).
func (j *job) stopRecording() {
	key := recorder.Key{Room: j.req.RoomName, Participant: j.pub.Identity, Track: j.req.TrackID}
	j.w.wg.Add(1)
	go func() {
		defer j.w.wg.Done()
		if _, err := j.w.o.Recorder.StopKey(context.Background(), key, "stopped by StopEgress"); err != nil && !errors.Is(err, recorder.ErrNotFound) {
			j.log.Warn("egress stop", "err", err)
		}
	}()
}

func (stopper) UpdateEgress(context.Context, *livekit.UpdateEgressRequest) (*livekit.EgressInfo, error) {
	return nil, psrpc.NewErrorf(psrpc.Unimplemented, "egress: a track egress has no outputs to update")
}

func (stopper) UpdateStream(context.Context, *livekit.UpdateStreamRequest) (*livekit.EgressInfo, error) {
	return nil, psrpc.NewErrorf(psrpc.Unimplemented, "egress: a track egress has no streams")
}

// job is one egress: the recording's Output, reporting each step.
type job struct {
	w     *Worker
	req   Request
	pub   Publisher
	info  *Info
	log   *slog.Logger
	store uploader.Storage // nil: the recorder's own
	// recoveredKey and sealedBefore are what the record of a job reloaded
	// after a crash says of its file.
	recoveredKey    string
	sealedBefore    *spool.Manifest
	recoveredShared bool

	mu        sync.Mutex
	file      *livekit.FileInfo
	sealed    *spool.Sealed
	err       error
	started   bool          // its recording is in place
	stopAsked bool          // a StopEgress came
	shared    bool          // the fleet has its record (shared.go)
	handing   chan struct{} // a handover under way: closed once it resolved
	// follower: another instance reports the egress (it was handed over,
	// or this is a restart's recovered part of it); this one only stores
	// its files.
	follower  bool
	manUpload *uploader.Upload
	opened    sync.WaitGroup // Opened's report under way
	// done are the files sealed, in order (a resubscription mid-egress
	// makes another), and waits the uploads they need before COMPLETE.
	done  []*spool.Sealed
	waits []*uploader.Upload
	// ws is the egress's WebSocket output, if it has one.
	ws        *wsStream
	wsRunning bool
}

var _ recorder.Output = (*job)(nil)

func (j *job) Key(t spool.Track, start time.Time) (string, error) {
	key, err := ObjectKey(j.req.Filepath, Fields{
		RoomName: j.req.RoomName, RoomID: j.req.RoomID, Identity: t.Participant, TrackID: t.TrackSID,
		TrackType: "audio", TrackSource: strings.ToLower(t.Source), Start: start,
	})
	if err != nil {
		return "", err
	}
	return j.unique(key), nil
}

// unique keeps a file from taking the key of another file of the egress
// (a filepath without {time}, or two files in one second: after a
// resubscription, or on another instance), which it would overwrite:
// "_2", "_3"... go before the extension.
func (j *job) unique(key string) string {
	taken := map[string]bool{}
	j.mu.Lock()
	for _, s := range j.done {
		taken[s.Manifest.File.Key] = true
	}
	if j.file != nil {
		taken[j.file.Filename] = true
	}
	j.mu.Unlock()
	if j.w.o.Shared != nil {
		ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
		all, err := j.w.o.Shared.Get(ctx, j.req.EgressID)
		cancel()
		if err == nil {
			for field := range all {
				if k, ok := strings.CutPrefix(field, filePrefix); ok {
					taken[k] = true
				}
			}
		}
	}
	if !taken[key] {
		return key
	}
	ext := path.Ext(key)
	base := strings.TrimSuffix(key, ext)
	for n := 2; ; n++ {
		if k := fmt.Sprintf("%s_%d%s", base, n, ext); !taken[k] {
			j.log.Warn("egress file key taken by an earlier file of the egress; this one is named apart", "key", k)
			return k
		}
	}
}

func (j *job) Storage() uploader.Storage { return j.store }

func (j *job) Opened(t spool.Track, key string, start time.Time) {
	f := &livekit.FileInfo{Filename: key, StartedAt: start.UnixNano(), Location: Location(j.target(), key)}
	j.mu.Lock()
	j.file = f
	j.mu.Unlock()
	// Off the media path; finish waits for it, so ACTIVE comes first.
	j.opened.Add(1)
	go func() {
		defer j.opened.Done()
		if err := j.save(); err != nil {
			j.log.Warn("egress record not updated; a crash now leaves it unreported", "err", err)
		}
		j.shareFile(sharedFile{Key: key, StartedAt: f.StartedAt})
		j.mu.Lock()
		follower := j.follower
		j.mu.Unlock()
		if follower {
			return // its successor reports the egress
		}
		info, changed := j.info.Active(f)
		j.report(info, changed)
		if changed {
			if err := j.share(context.Background()); err != nil {
				j.log.Warn("fleet's egress record not updated", "err", err)
			}
		}
	}()
}

func (j *job) Closed(t spool.Sealed, err error) {
	j.mu.Lock()
	j.sealed, j.err = &t, err
	ok := err == nil && t.Manifest.File.SHA256 != ""
	if ok {
		j.done = append(j.done, &t)
		j.waits = append(j.waits, t.Uploads...)
	}
	done := append([]*spool.Sealed(nil), j.done...)
	prev, follower := j.manUpload, j.follower
	key := ""
	if j.file != nil {
		key = j.file.Filename
	}
	j.mu.Unlock()
	if !ok {
		j.shareFile(sharedFile{Key: key, Gone: true})
		return
	}
	j.shareFile(j.sharedResult(&t, false))
	if follower {
		// The instance that goes on writes the EG manifest, listing
		// this file too.
		if err := j.save(); err != nil {
			j.log.Warn("egress record not updated", "err", err)
		}
		return
	}
	// The EG manifest, listing every file so far, is queued now, after the
	// file (or the manifest before it): a drain that follows stores what
	// was queued.
	after := prev
	if after == nil && len(t.Uploads) > 0 {
		after = t.Uploads[0]
	}
	if !j.req.DisableManifest {
		u, err := j.manifest(done, after)
		if err != nil {
			j.log.Warn("EG manifest not queued", "err", err)
		}
		j.mu.Lock()
		if u != nil {
			j.manUpload = u
			j.waits = append(j.waits, u)
		}
		j.mu.Unlock()
	}
	if err := j.save(); err != nil {
		j.log.Warn("egress record not updated", "err", err)
	}
	j.markStored(&t)
}

// markStored tells the fleet's record once t is stored, so that whoever
// ends the egress (another instance, after a crash here) lists it.
func (j *job) markStored(t *spool.Sealed) {
	if j.w.o.Shared == nil {
		return
	}
	j.w.wg.Add(1)
	go func() {
		defer j.w.wg.Done()
		for _, u := range t.Uploads {
			if u == nil {
				continue
			}
			select {
			case <-u.Done():
			case <-j.w.life.Done():
				return
			}
			if u.Info().State != uploader.StateUploaded {
				return
			}
		}
		j.shareFile(j.sharedResult(t, true))
	}()
}

// result is the file result of a sealed file, as livekit/egress fills it.
func (j *job) result(t *spool.Sealed) *livekit.FileInfo {
	m := t.Manifest
	dur := time.Duration(m.Timeline.DurationMS) * time.Millisecond
	return &livekit.FileInfo{
		Filename:  m.File.Key,
		StartedAt: m.Timeline.Start.UnixNano(),
		EndedAt:   m.Timeline.Start.Add(dur).UnixNano(),
		Duration:  dur.Nanoseconds(),
		Size:      m.File.Size,
		Location:  Location(j.target(), m.File.Key),
	}
}

// Stopped ends the egress once its file is stored: COMPLETE, or FAILED
// with the reason.
func (j *job) Stopped(rec recorder.RecordingInfo) {
	j.w.wg.Add(1)
	go func() {
		defer j.w.wg.Done()
		defer j.w.end(j)
		j.finish(rec)
	}()
}

// finish reports j's end and, once livekit-server has it, drops its
// record; an end that could not be reported stays in the record, and the
// next process sends it.
func (j *job) finish(rec recorder.RecordingInfo) {
	j.opened.Wait()
	j.awaitHandover()
	j.mu.Lock()
	wsRunning := j.ws != nil && j.wsRunning
	j.mu.Unlock()
	if wsRunning {
		// The stream sends what the track wrote to its end first.
		select {
		case <-j.ws.done:
		case <-time.After(30 * time.Second):
			j.log.Warn("egress websocket still sending at the end: stopped")
			j.ws.cancel()
			<-j.ws.done
		case <-j.w.life.Done():
		}
		j.info.Stream(j.ws.result())
	}
	j.mu.Lock()
	done, serr, waits := append([]*spool.Sealed(nil), j.done...), j.err, append([]*uploader.Upload(nil), j.waits...)
	follower := j.follower
	j.mu.Unlock()
	if follower || rec.StopReason == recorder.StopClaimLost || j.elsewhere() {
		j.settle() // another instance goes on with the egress
		return
	}
	reason := endReason(rec.StopReason)
	var final *livekit.EgressInfo
	switch {
	case rec.State == recorder.StateFailed:
		final, _ = j.info.Failed(errors.New(rec.StopReason), nil)
	case len(done) == 0 && !j.hasPrior() && serr != nil:
		final, _ = j.info.Failed(fmt.Errorf("file not sealed: %w", serr), nil)
	case len(done) == 0 && !j.hasPrior():
		final, _ = j.info.Failed(fmt.Errorf("no audio was received from track %s (%s)", j.req.TrackID, rec.StopReason), nil)
	default:
		final = j.stored(done, waits, reason)
	}
	if final == nil || !ended(final.Status) {
		return // the worker closed first; the record stays for the next start
	}
	if j.reportEnd(final) {
		j.drop()
		j.unshare()
	} else if err := j.save(); err != nil {
		j.log.Error("egress end neither reported nor kept", "err", err)
	}
}

// stored waits until the file (and its EG manifest) are stored and returns
// the complete info; nil if the worker closed first.
func (j *job) stored(done []*spool.Sealed, waits []*uploader.Upload, reason string) *livekit.EgressInfo {
	j.report(j.info.Ending(reason))
	for _, u := range waits {
		if u == nil {
			continue
		}
		if err := j.await(u); err != nil {
			final, _ := j.info.Failed(err, nil)
			return final
		}
		if j.w.life.Err() != nil {
			return nil
		}
	}
	// The EG manifest's local copy is not needed once stored (with S3 the
	// queue removed it already).
	if err := os.Remove(filepath.Join(j.w.o.Dir, j.req.EgressID+".json")); err != nil && !errors.Is(err, os.ErrNotExist) {
		j.log.Warn("EG manifest's local copy not removed", "err", err)
	}
	// Files of the instances before this one (a handover, a takeover)
	// come first, once they stored them.
	results, missing := j.prior(true)
	if j.w.life.Err() != nil {
		return nil
	}
	for _, s := range done {
		results = append(results, j.result(s))
	}
	if len(results) == 0 {
		final, _ := j.info.Failed(fmt.Errorf("no file of this egress was stored (%s)", note(missing)), nil)
		return final
	}
	if len(missing) > 0 {
		j.log.Warn("egress ends without files other instances have not stored", "missing", missing)
	}
	final, _ := j.info.Complete(results, reason+note(missing))
	last := results[len(results)-1]
	j.log.Info("track egress complete", "files", len(results), "key", last.Filename, "bytes", last.Size, "duration", time.Duration(last.Duration))
	return final
}

// refusals is how many failed attempts of the request's own S3 target
// fail the egress: its credentials or bucket are wrong, and livekit-server
// should not show it ending for as long as the queue retries.
const refusals = 4

// await waits until u is stored (the recorder's own store is retried for
// as long as it takes), or the worker closes (nil: the caller looks), or
// the request's own target refused it refusals times.
func (j *job) await(u *uploader.Upload) error {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-u.Done():
			return nil
		case <-j.w.life.Done():
			return nil
		case <-tick.C:
		}
		if info := u.Info(); j.store != nil && info.State == uploader.StateFailed && info.Attempts >= refusals {
			why := info.Error
			for _, secret := range []string{j.req.S3.AccessKey, j.req.S3.Secret, j.req.S3.SessionToken} {
				if secret != "" {
					why = strings.ReplaceAll(why, secret, redacted)
				}
			}
			return fmt.Errorf("the request's S3 target %s refused the upload %d times (%s); the file stays in the recorder's spool, still retried", j.req.S3, info.Attempts, why)
		}
	}
}

// target is where the egress's files are stored.
func (j *job) target() *S3 {
	if j.store != nil {
		return j.req.S3
	}
	return j.w.o.Storage
}

// manifest queues EG_<id>.json, listing done, beside the first file,
// after the upload after.
func (j *job) manifest(done []*spool.Sealed, after *uploader.Upload) (*uploader.Upload, error) {
	files, _ := j.prior(false)
	for _, s := range done {
		files = append(files, j.result(s))
	}
	first, last := files[0], files[len(files)-1]
	own, err := json.Marshal(done[len(done)-1].Manifest)
	if err != nil {
		return nil, err
	}
	m := Manifest{
		EgressID: j.req.EgressID, RoomID: j.req.RoomID, RoomName: j.req.RoomName,
		StartedAt: first.StartedAt, EndedAt: last.EndedAt,
		PublisherIdentity: j.pub.Identity, TrackID: j.req.TrackID, TrackKind: "audio", TrackSource: j.pub.Source,
		Trackrec: own,
	}
	for _, r := range files {
		m.Files = append(m.Files, ManifestFile{Filename: r.Filename, Location: r.Location})
	}
	file := first
	doc, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(j.w.o.Dir, j.req.EgressID+".json")
	if err := os.WriteFile(path, doc, 0o644); err != nil {
		return nil, err
	}
	return j.w.o.Uploads.Submit(uploader.Item{Key: ManifestKey(file.Filename, j.req.EgressID), Path: path,
		ContentType: "application/json", After: after, Store: j.store})
}

// report sends info to livekit-server when it changed.
func (j *job) report(info *livekit.EgressInfo, changed bool) {
	if !changed {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := j.w.io.UpdateEgress(ctx, info); err != nil {
		j.log.Warn("egress update not delivered to livekit-server", "status", info.Status.String(), "err", err)
	}
}

// reportEnd sends a final info, trying for about a minute (Redis or
// livekit-server away); it reports whether livekit-server has it.
func (j *job) reportEnd(info *livekit.EgressInfo) bool {
	wait := time.Second
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := j.w.io.UpdateEgress(ctx, info)
		cancel()
		if err == nil {
			return true
		}
		if attempt == 5 {
			j.log.Error("egress end not delivered to livekit-server; the next start sends it", "status", info.Status.String(), "err", err)
			return false
		}
		j.log.Warn("egress end not delivered; trying again", "status", info.Status.String(), "in", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-j.w.life.Done():
			t.Stop()
			return false
		}
		wait *= 2
	}
}

// endReason is livekit's wording of why a recording ended.
func endReason(stop string) string {
	switch stop {
	case "stopped by StopEgress", "stopped by request":
		return "Stopped by request"
	case "track ended", "participant left", "room finished":
		return livekit.EndReasonSrcClosed
	}
	return stop
}
