package egress

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/livekit/protocol/livekit"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/trackrec/trackrec/muxer"
	"github.com/trackrec/trackrec/recorder"
	"github.com/trackrec/trackrec/spool"
	"github.com/trackrec/trackrec/uploader"
)

// Shared is the fleet's record of each running egress (fleetstore.Egresses):
// what an instance needs to go on with an egress another one started (a
// handover while that one drains, a takeover after it died) and to report
// every file of it at the end.
type Shared interface {
	Put(ctx context.Context, id, field string, doc []byte) error
	Get(ctx context.Context, id string) (map[string][]byte, error)
	Delete(ctx context.Context, id string) error
	// Once sets field unless it is set, and reports whether it did.
	Once(ctx context.Context, id, field, value string) (bool, error)
}

// The record's fields: "job" is written by the egress's owner only (the
// instance that reports it), "file:<key>" by the instance writing that
// file, so no write races another.
const (
	jobField   = "job"
	filePrefix = "file:"
	// concludeField names the one instance that ends an egress nobody
	// records any more.
	concludeField = "concluding"
)

// sharedJob is the egress as its owner keeps it for the fleet. It holds no
// credentials in the clear: the info is redacted, the target's are sealed.
type sharedJob struct {
	Owner           string          `json:"owner"`
	Info            json.RawMessage `json:"info"` // EgressInfo, protojson
	Identity        string          `json:"identity"`
	Source          string          `json:"source"`
	Filepath        string          `json:"filepath"`
	DisableManifest bool            `json:"disable_manifest,omitempty"`
	Target          *sharedTarget   `json:"target,omitempty"` // the request's own S3 target
}

type sharedTarget struct {
	Region         string `json:"region,omitempty"`
	Endpoint       string `json:"endpoint,omitempty"`
	Bucket         string `json:"bucket"`
	ForcePathStyle bool   `json:"force_path_style,omitempty"`
	Credentials    []byte `json:"credentials"` // Sealer
}

// sharedFile is one file of the egress, by the instance writing it.
type sharedFile struct {
	Instance  string          `json:"instance"`
	Key       string          `json:"key"`
	StartedAt int64           `json:"started_at"`
	Result    json.RawMessage `json:"result,omitempty"` // FileInfo, protojson, once sealed
	Stored    bool            `json:"stored,omitempty"`
	Gone      bool            `json:"gone,omitempty"` // closed without a file
}

// sharedTimeout bounds each write of the record: it is made beside the
// media path (a file opening or closing).
const sharedTimeout = 3 * time.Second

// share writes j's job field: this instance owns the egress now.
func (j *job) share(ctx context.Context) error {
	s := j.w.o.Shared
	if s == nil {
		return nil
	}
	info, err := protojson.Marshal(j.info.Snapshot())
	if err != nil {
		return err
	}
	doc := sharedJob{Owner: j.w.o.Instance, Info: info, Identity: j.pub.Identity, Source: j.pub.Source,
		Filepath: j.req.Filepath, DisableManifest: j.req.DisableManifest}
	if j.store != nil {
		if j.w.o.Sealer == nil {
			return errors.New("no Sealer: the request's credentials cannot be kept for the fleet")
		}
		blob, err := j.w.o.Sealer.seal(j.req.EgressID, j.req.S3)
		if err != nil {
			return err
		}
		t := j.req.S3
		doc.Target = &sharedTarget{Region: t.Region, Endpoint: t.Endpoint, Bucket: t.Bucket, ForcePathStyle: t.ForcePathStyle, Credentials: blob}
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sharedTimeout)
	defer cancel()
	if err := s.Put(ctx, j.req.EgressID, jobField, b); err != nil {
		return err
	}
	j.mu.Lock()
	j.shared = true
	j.mu.Unlock()
	return nil
}

// shareFile writes one of j's file fields.
func (j *job) shareFile(f sharedFile) {
	s := j.w.o.Shared
	if s == nil || f.Key == "" {
		return
	}
	f.Instance = j.w.o.Instance
	b, err := json.Marshal(f)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
		err = s.Put(ctx, j.req.EgressID, filePrefix+f.Key, b)
		cancel()
	}
	if err != nil {
		j.log.Warn("egress file not told to the fleet; an instance that takes the egress over may not list it", "key", f.Key, "err", err)
	}
}

// sharedResult is a sealed file's entry.
func (j *job) sharedResult(s *spool.Sealed, stored bool) sharedFile {
	r := j.result(s)
	b, _ := protojson.Marshal(r)
	return sharedFile{Key: r.Filename, StartedAt: r.StartedAt, Result: b, Stored: stored}
}

// unshare drops the record: the egress's end is reported.
func (j *job) unshare() {
	if j.w.o.Shared == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
	defer cancel()
	if err := j.w.o.Shared.Delete(ctx, j.req.EgressID); err != nil {
		j.log.Warn("fleet's egress record not dropped; it expires", "err", err)
	}
}

// elsewhere says whether another instance reports j now: the record names
// another owner, or is gone (the egress ended there).
func (j *job) elsewhere() bool {
	j.mu.Lock()
	shared := j.shared
	j.mu.Unlock()
	if !shared || j.w.o.Shared == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
	defer cancel()
	all, err := j.w.o.Shared.Get(ctx, j.req.EgressID)
	if err != nil {
		return false // unknown: this instance reports what it holds
	}
	var sj sharedJob
	if json.Unmarshal(all[jobField], &sj) != nil {
		return true
	}
	return sj.Owner != j.w.o.Instance
}

// priorWait bounds how long an egress's end waits for files another
// instance still stores (one handing over stores them while it drains).
const priorWait = 10 * time.Minute

// prior is what the fleet's record says of the egress's files written
// before this instance's (by an instance it took over from, or by this
// one before a restart): the sealed ones, and the keys of those not
// stored. With wait it waits, up to priorWait, for files still being
// stored by live instances.
func (j *job) prior(wait bool) (sealed []*livekit.FileInfo, missing []string) {
	if j.w.o.Shared == nil {
		return nil, nil
	}
	j.mu.Lock()
	own := map[string]bool{}
	for _, s := range j.done {
		own[s.Manifest.File.Key] = true
	}
	j.mu.Unlock()
	deadline := time.Now().Add(priorWait)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
		all, err := j.w.o.Shared.Get(ctx, j.req.EgressID)
		cancel()
		pending := false
		sealed, missing = nil, nil
		for field, doc := range all {
			var f sharedFile
			if !strings.HasPrefix(field, filePrefix) || json.Unmarshal(doc, &f) != nil || own[f.Key] || f.Gone {
				continue
			}
			var r livekit.FileInfo
			ok := len(f.Result) > 0 && protojson.Unmarshal(f.Result, &r) == nil
			switch {
			case ok && (f.Stored || !wait):
				sealed = append(sealed, &r)
			case wait && j.alive(f.Instance):
				pending = true
				fallthrough
			default:
				missing = append(missing, f.Key)
			}
		}
		if err == nil && !pending || !wait || time.Now().After(deadline) {
			if err != nil {
				j.log.Warn("fleet's egress record unreadable; files of other instances not listed", "err", err)
			}
			slices.SortFunc(sealed, func(a, b *livekit.FileInfo) int { return int(a.StartedAt - b.StartedAt) })
			return sealed, missing
		}
		t := time.NewTimer(time.Second)
		select {
		case <-t.C:
		case <-j.w.life.Done():
			t.Stop()
			return nil, nil
		}
	}
}

// hasPrior says whether instances before this one wrote files of the
// egress.
func (j *job) hasPrior() bool {
	files, missing := j.prior(false)
	return len(files)+len(missing) > 0
}

func (j *job) alive(instance string) bool {
	return j.w.o.Alive != nil && j.w.o.Alive(instance)
}

// errGone: the fleet has no record of the egress (it ended, or it was
// never shared).
var errGone = errors.New("egress: the fleet has no record of this egress")

// load rebuilds, from the fleet's record, the job of egress id that
// another instance (or this one before a restart) ran.
func (w *Worker) load(ctx context.Context, id string) (*job, error) {
	if w.o.Shared == nil {
		return nil, errGone
	}
	ctx, cancel := context.WithTimeout(ctx, sharedTimeout)
	defer cancel()
	all, err := w.o.Shared.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	doc, ok := all[jobField]
	if !ok {
		return nil, errGone
	}
	var sj sharedJob
	if err := json.Unmarshal(doc, &sj); err != nil {
		return nil, fmt.Errorf("egress %s: fleet's record: %w", id, err)
	}
	info := &livekit.EgressInfo{}
	if err := protojson.Unmarshal(sj.Info, info); err != nil {
		return nil, fmt.Errorf("egress %s: fleet's record: %w", id, err)
	}
	if info.EgressId != id {
		return nil, fmt.Errorf("egress %s: fleet's record names %q", id, info.EgressId)
	}
	r := Request{EgressID: id, RoomID: info.RoomId, RoomName: info.RoomName, TrackID: info.GetTrack().GetTrackId(),
		Filepath: sj.Filepath, DisableManifest: sj.DisableManifest}
	j := &job{w: w, req: r, info: &Info{e: info}, shared: true,
		pub: Publisher{Identity: sj.Identity, Kind: "audio", Source: sj.Source},
		log: w.log.With("egress", id, "room", r.RoomName, "track", r.TrackID)}
	if t := sj.Target; t != nil {
		r.S3 = &S3{Region: t.Region, Endpoint: t.Endpoint, Bucket: t.Bucket, ForcePathStyle: t.ForcePathStyle}
		if w.o.Sealer == nil {
			return nil, fmt.Errorf("egress %s: its S3 target's credentials are sealed and this instance has no Sealer", id)
		}
		if err := w.o.Sealer.open(id, t.Credentials, r.S3); err != nil {
			return nil, err
		}
		j.req.S3 = r.S3
		if j.store, err = w.o.NewStore(ctx, r.S3); err != nil {
			return nil, fmt.Errorf("egress %s: S3 output %s: %w", id, r.S3, err)
		}
	}
	return j, nil
}

// TakeOver goes on here with egress id, which another instance ran (key
// is its recording): the recording starts with opts (recorder.HandOverFrom
// for a handover), this instance then reports the egress, and lists every
// file of it at the end.
func (w *Worker) TakeOver(ctx context.Context, key recorder.Key, id string, opts ...recorder.StartOption) (recorder.RecordingInfo, error) {
	j, err := w.load(ctx, id)
	if err != nil {
		return recorder.RecordingInfo{}, err
	}
	if j.req.RoomName != key.Room || j.req.TrackID != key.Track || j.pub.Identity != key.Participant {
		return recorder.RecordingInfo{}, fmt.Errorf("egress %s records %s/%s/%s, not %s", id, j.req.RoomName, j.pub.Identity, j.req.TrackID, key)
	}
	w.mu.Lock()
	switch {
	case w.closed:
		w.mu.Unlock()
		return recorder.RecordingInfo{}, recorder.ErrShuttingDown
	case w.active[id] != nil:
		w.mu.Unlock()
		return recorder.RecordingInfo{}, fmt.Errorf("%w: egress %s runs here already", recorder.ErrOwned, id)
	}
	w.active[id] = j
	w.mu.Unlock()
	if err := j.save(); err != nil {
		w.forget(j)
		return recorder.RecordingInfo{}, fmt.Errorf("egress: keep its record: %w", err)
	}
	if err := w.stop.RegisterStopEgressTopic(id); err != nil {
		w.forget(j)
		j.drop()
		return recorder.RecordingInfo{}, fmt.Errorf("egress: serve StopEgress: %w", err)
	}
	opts = append([]recorder.StartOption{recorder.Track(key.Track), recorder.Resume(id), recorder.InFormat(muxer.FormatOgg), recorder.WithOutput(j)}, opts...)
	rec, created, err := w.o.Recorder.Start(ctx, key.Room, key.Participant, opts...)
	if err == nil && !created {
		err = fmt.Errorf("%w: track %s is recorded here by another egress", recorder.ErrOwned, key.Track)
	}
	if err != nil {
		w.end(j)
		j.drop()
		return rec, err
	}
	if err := j.share(ctx); err != nil {
		j.log.Warn("egress taken over, but the fleet's record still names its former instance", "err", err)
	}
	j.log.Info("track egress taken over", "participant", key.Participant)
	j.inPlace()
	return rec, nil
}

// Resume takes over egress id, whose instance died, once the fleet's claim
// on its recording is free (takeover.Tracks). When its track is gone the
// egress ends instead, with the files its instances stored, and Resume
// returns recorder.ErrNoParticipant: nothing is left to resume.
func (w *Worker) Resume(ctx context.Context, key recorder.Key, id string, opts ...recorder.StartOption) (bool, error) {
	if tracks, capacity := w.o.Load(); tracks >= capacity {
		return false, fmt.Errorf("%w: %d of %d tracks", recorder.ErrFull, tracks, capacity)
	}
	pub, err := w.o.Find(ctx, key.Room, key.Track)
	switch {
	case errors.Is(err, recorder.ErrNoRoom) || errors.Is(err, recorder.ErrNoParticipant):
		j, lerr := w.load(ctx, id)
		if errors.Is(lerr, errGone) {
			return false, fmt.Errorf("%w: egress %s ended", recorder.ErrNoParticipant, id)
		}
		if lerr != nil {
			return false, lerr
		}
		w.conclude(j, err)
		return false, fmt.Errorf("%w: %w", recorder.ErrNoParticipant, err)
	case err != nil:
		return false, err
	case pub.Identity != key.Participant:
		return false, fmt.Errorf("%w: track %s is %s's now", recorder.ErrNoParticipant, key.Track, pub.Identity)
	}
	if _, err := w.TakeOver(ctx, key, id, opts...); err != nil {
		switch {
		case errors.Is(err, errGone):
			return false, fmt.Errorf("%w: egress %s ended", recorder.ErrNoParticipant, id)
		case errors.Is(err, recorder.ErrNoRoom) || errors.Is(err, recorder.ErrNoParticipant):
			// Gone between the look and the start: the egress ends.
			if j, lerr := w.load(ctx, id); lerr == nil {
				w.conclude(j, err)
			}
		}
		return false, err
	}
	return true, nil
}

// conclude reports the end of an egress nobody records any more (its
// instance died and its track is gone): complete with the files the fleet
// stored, or failed without any.
func (w *Worker) conclude(j *job, why error) {
	w.mu.Lock()
	if w.active[j.req.EgressID] != nil || w.closed {
		w.mu.Unlock()
		return
	}
	w.active[j.req.EgressID] = j
	w.mu.Unlock()
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer w.forget(j)
		// Every instance may find the track gone at once: one ends it.
		ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
		first, err := w.o.Shared.Once(ctx, j.req.EgressID, concludeField, w.o.Instance)
		cancel()
		if err != nil || !first {
			if err != nil {
				j.log.Warn("egress of a stopped instance not ended here: the fleet's record is unreadable; another instance, or the next look, ends it", "err", err)
			}
			return
		}
		files, missing := j.prior(true)
		if w.life.Err() != nil {
			return
		}
		var final *livekit.EgressInfo
		if len(files) == 0 {
			final, _ = j.info.Failed(fmt.Errorf("the recorder instance of this egress stopped and its track is gone (%v); no file of it was stored", why), nil)
		} else {
			final, _ = j.info.Complete(files, livekit.EndReasonSrcClosed+note(missing))
		}
		j.log.Info("egress of a stopped instance ended", "files", len(files), "missing", len(missing))
		if j.reportEnd(final) {
			j.unshare()
		}
	}()
}

// note names files an egress's end could not list.
func note(missing []string) string {
	if len(missing) == 0 {
		return ""
	}
	return fmt.Sprintf("; %d file(s) not stored when it ended, left to their instance: %s", len(missing), strings.Join(missing, ", "))
}

// HandingOver tells j that its recording is being handed over: its end
// waits to learn whether another instance goes on with it.
func (j *job) HandingOver() {
	j.mu.Lock()
	if j.handing == nil {
		j.handing = make(chan struct{})
	}
	j.mu.Unlock()
}

// HandedOver tells j that its recording goes on at instance (recorder's
// handover), or, with "", that the handover failed. Handed over, another
// instance reports the egress from now on, so this one stops answering
// its StopEgress and only stores its own files.
func (j *job) HandedOver(instance string) {
	j.mu.Lock()
	h := j.handing
	j.handing = nil
	if instance != "" {
		j.follower = true
	}
	j.mu.Unlock()
	if instance != "" {
		j.w.stop.DeregisterStopEgressTopic(j.req.EgressID)
		j.log.Info("track egress handed over", "to", instance)
		if err := j.save(); err != nil {
			j.log.Warn("egress record not updated", "err", err)
		}
	}
	if h != nil {
		close(h)
	}
}

// handoverWait bounds how long an egress's end waits for a handover under
// way to resolve (the successor's join and cut).
const handoverWait = 30 * time.Second

// awaitHandover waits until a handover under way resolved.
func (j *job) awaitHandover() {
	j.mu.Lock()
	h := j.handing
	j.mu.Unlock()
	if h == nil {
		return
	}
	t := time.NewTimer(handoverWait)
	defer t.Stop()
	select {
	case <-h:
	case <-t.C:
	case <-j.w.life.Done():
	}
}

// settle ends the part of an egress another instance reports: its files
// are stored and told to the fleet's record, which that instance lists.
func (j *job) settle() {
	j.mu.Lock()
	done, waits := append([]*spool.Sealed(nil), j.done...), append([]*uploader.Upload(nil), j.waits...)
	j.mu.Unlock()
	for _, u := range waits {
		if u == nil {
			continue
		}
		if err := j.await(u); err != nil || j.w.life.Err() != nil {
			j.log.Warn("egress file not stored before the recorder stopped; it stays in the spool", "err", err)
			return // the record stays for the next start
		}
	}
	for _, s := range done {
		j.shareFile(j.sharedResult(s, true))
	}
	j.drop()
	j.w.forget(j) // a recovered part: the egress may be taken over here now
	j.log.Info("egress files stored; the egress goes on at another instance", "files", len(done))
}
