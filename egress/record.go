package egress

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/livekit/protocol/livekit"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/trackrec/trackrec/recorder"
	"github.com/trackrec/trackrec/spool"
)

// record is what Dir keeps of a running egress, so that a process that
// starts after a crash reports it (its file recovered from the spool and
// stored, or its failure) rather than leave livekit-server showing it
// active. It holds no credentials: the info is redacted.
type record struct {
	Info     json.RawMessage `json:"info"` // EgressInfo, protojson
	Identity string          `json:"identity"`
	Source   string          `json:"source"`
	Key      string          `json:"key,omitempty"` // the file's, once it opened
	// Sealed is the file's manifest once it was sealed: a file the spool
	// no longer holds was stored (the spool lets go only then).
	Sealed *spool.Manifest `json:"sealed,omitempty"`
	// Filepath and DisableManifest are the request's.
	Filepath        string `json:"filepath"`
	DisableManifest bool   `json:"disable_manifest,omitempty"`
	// Shared: the fleet has the egress's record. Unless the egress was
	// ending here (its stop came, and this instance reports it), whichever
	// instance takes it over reports it; a restart only stores its file.
	Shared bool `json:"shared,omitempty"`
	// Follower: another instance reports the egress (it was handed over).
	Follower bool `json:"follower,omitempty"`
}

func (j *job) recordPath() string { return filepath.Join(j.w.o.Dir, j.req.EgressID+".egress") }

// save writes j's record, replacing the last one in one rename.
func (j *job) save() error {
	info, err := protojson.Marshal(j.info.Snapshot())
	if err != nil {
		return err
	}
	j.mu.Lock()
	rec := record{Info: info, Identity: j.pub.Identity, Source: j.pub.Source, Filepath: j.req.Filepath, DisableManifest: j.req.DisableManifest,
		Shared: j.shared || j.recoveredShared, Follower: j.follower}
	if j.file != nil {
		rec.Key = j.file.Filename
	}
	if j.sealed != nil && j.err == nil {
		m := j.sealed.Manifest
		rec.Sealed = &m
	}
	j.mu.Unlock()
	doc, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	tmp := j.recordPath() + ".tmp"
	if err := os.WriteFile(tmp, doc, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, j.recordPath())
}

// drop removes j's record: livekit-server knows its end.
func (j *job) drop() {
	if err := os.Remove(j.recordPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		j.log.Warn("egress record not removed", "err", err)
	}
}

// Recover reports the egresses an earlier process left running: one whose
// file the spool recovered (files) is complete once that file is stored
// (in the recorder's own storage: a request's credentials are never kept),
// one without a file failed. It returns how many it found; their reports
// go on in the background.
func (w *Worker) Recover(files []spool.RecoveredFile) (int, error) {
	paths, err := filepath.Glob(filepath.Join(w.o.Dir, "EG_*.egress"))
	if err != nil {
		return 0, err
	}
	byKey := map[string]spool.Sealed{}
	for i := range files {
		if s := files[i].Sealed(); s.Manifest.File.Key != "" {
			byKey[s.Manifest.File.Key] = s
		}
	}
	for _, path := range paths {
		j, err := w.reload(path)
		if err != nil {
			w.log.Error("egress record unreadable; left in place", "path", path, "err", err)
			continue
		}
		sealed, found := byKey[j.recoveredKey]
		if !found && j.sealedBefore != nil && j.sealedBefore.File.SHA256 != "" {
			// Sealed, and no longer in the spool: stored.
			sealed, found = spool.Sealed{Manifest: *j.sealedBefore}, true
		}
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			j.recovered(sealed, found)
		}()
	}
	return len(paths), nil
}

// reload rebuilds the job of a record.
func (w *Worker) reload(path string) (*job, error) {
	doc, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rec record
	if err := json.Unmarshal(doc, &rec); err != nil {
		return nil, err
	}
	info := &livekit.EgressInfo{}
	if err := protojson.Unmarshal(rec.Info, info); err != nil {
		return nil, fmt.Errorf("egress info: %w", err)
	}
	id := strings.TrimSuffix(filepath.Base(path), ".egress")
	if info.EgressId != id {
		return nil, fmt.Errorf("record of %s names egress %q", id, info.EgressId)
	}
	r := Request{EgressID: id, RoomID: info.RoomId, RoomName: info.RoomName, TrackID: info.GetTrack().GetTrackId(),
		Filepath: rec.Filepath, DisableManifest: rec.DisableManifest}
	return &job{
		w: w, req: r, info: &Info{e: info}, recoveredKey: rec.Key, sealedBefore: rec.Sealed, recoveredShared: rec.Shared && w.o.Shared != nil,
		follower: rec.Follower,
		pub:      Publisher{Identity: rec.Identity, Kind: "audio", Source: rec.Source},
		log:      w.log.With("egress", id, "room", r.RoomName, "track", r.TrackID),
	}, nil
}

// recovered reports a reloaded egress: complete once its recovered file is
// stored, else failed.
func (j *job) recovered(sealed spool.Sealed, found bool) {
	const why = "recovered after the recorder restarted"
	ending := j.info.Status() == livekit.EgressStatus_EGRESS_ENDING && !j.follower
	if j.recoveredShared && !ended(j.info.Status()) && !ending {
		// The fleet goes on with the egress (this instance's takeover,
		// or another's) and reports it: this part only stores its file.
		// One that was ending here is this instance's to report still:
		// its stop ended what the fleet wanted of it.
		j.mu.Lock()
		j.follower = true
		j.mu.Unlock()
		// The egress is not taken over here until this part is stored.
		j.w.mu.Lock()
		if j.w.active[j.req.EgressID] == nil {
			j.w.active[j.req.EgressID] = j
		}
		j.w.mu.Unlock()
		if !found || sealed.Manifest.File.SHA256 == "" {
			j.shareFile(sharedFile{Key: j.recoveredKey, Gone: true})
			j.drop()
			j.w.forget(j)
			return
		}
		j.mu.Lock()
		j.file = &livekit.FileInfo{Filename: sealed.Manifest.File.Key, StartedAt: sealed.Manifest.Timeline.Start.UnixNano()}
		j.mu.Unlock()
		j.Closed(sealed, nil)
		j.settle()
		return
	}
	if ended(j.info.Status()) {
		// Its end was known but not delivered: send it now.
		if j.reportEnd(j.info.Snapshot()) {
			j.drop()
		}
		return
	}
	if !found || sealed.Manifest.File.SHA256 == "" {
		if final, _ := j.info.Failed(errors.New("the recorder stopped before any audio of this egress was written"), nil); j.reportEnd(final) {
			j.drop()
		}
		return
	}
	j.mu.Lock()
	j.file = &livekit.FileInfo{Filename: sealed.Manifest.File.Key, StartedAt: sealed.Manifest.Timeline.Start.UnixNano()}
	j.mu.Unlock()
	j.Closed(sealed, nil) // its EG manifest, after the file
	j.finish(recorder.RecordingInfo{State: recorder.StateStopped, StopReason: why})
}
