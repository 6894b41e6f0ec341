package mixdown

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/trackrec/trackrec/uploader"
)

// RoomTrack is one stored track file of a complete room.
type RoomTrack struct {
	Key      string    // object key of the track file
	Start    time.Time // the whole second the file starts on
	Identity string
	TrackSID string
	// Manifest is the track's manifest as stored beside it.
	Manifest json.RawMessage
}

// Getter reads stored objects (uploader.Storage).
type Getter interface {
	Get(ctx context.Context, key string, w io.Writer) error
}

// Submitter stores files with retries (uploader.Queue).
type Submitter interface {
	Submit(uploader.Item) (*uploader.Upload, error)
}

// Pipeline is what runs when a room's recordings are complete: the built-in
// mixdown (download the tracks, mix, store the mix and its manifest), then
// the pipeline webhook with the room's track list.
type Pipeline struct {
	Store   Getter
	Uploads Submitter
	// Mix turns the built-in mixdown on; Format and Prefix (the key prefix
	// of mixes, apart from the tracks') go with it.
	Mix    bool
	Format Format
	Prefix string
	// Notifier, if set, receives the room event.
	Notifier *Notifier
	Logger   *slog.Logger
}

// Run mixes and notifies for one complete room and returns the keys it
// stored.
func (p *Pipeline) Run(ctx context.Context, room, roomSID string, tracks []RoomTrack) ([]string, error) {
	return p.run(ctx, room, roomSID, tracks, nil)
}

func (p *Pipeline) run(ctx context.Context, room, roomSID string, tracks []RoomTrack, missing []json.RawMessage) ([]string, error) {
	if len(tracks) == 0 {
		return nil, ErrNoTracks
	}
	log := p.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("room", room)
	var outs []string
	var mixManifest json.RawMessage
	var mixErr error
	if p.Mix {
		keys, doc, err := p.mix(ctx, room, tracks)
		if err != nil {
			// The receiver still gets the track list, without a mixdown.
			mixErr = fmt.Errorf("mixdown of room %q: %w", room, err)
			log.Error("mixdown failed", "err", err)
		} else {
			outs, mixManifest = keys, doc
			log.Info("mixdown stored", "key", keys[0])
		}
	}
	if mixErr != nil && (ctx.Err() != nil || errors.Is(mixErr, uploader.ErrQueueClosed)) {
		// Shutdown cut the mix short: the next process reruns the room and
		// sends the webhook once, with the mix (receivers drop repeated ids).
		return outs, mixErr
	}
	if p.Notifier != nil {
		keys := make([]string, 0, len(tracks))
		ev := RoomEvent{Event: EventRecordingsComplete, Room: room, RoomSID: roomSID, CreatedAt: time.Now().Unix(), Mixdown: mixManifest, Missing: missing}
		for _, t := range tracks {
			keys = append(keys, t.Key)
			ev.Tracks = append(ev.Tracks, t.Manifest)
		}
		ev.ID = EventID(room, roomSID, keys)
		if err := p.Notifier.NotifyEvent(ctx, ev); err != nil {
			return outs, errors.Join(mixErr, fmt.Errorf("pipeline webhook for room %q: %w", room, err))
		}
		log.Info("pipeline webhook delivered", "event", ev.ID)
	}
	return outs, mixErr
}

// Update sends the recordings_updated event for tracks, files of a room
// that completed without them, with the files still missing. The room's
// mixdown is not made again.
func (p *Pipeline) Update(ctx context.Context, room, roomSID string, tracks []RoomTrack, missing []json.RawMessage) error {
	if len(tracks) == 0 {
		return ErrNoTracks
	}
	if p.Notifier == nil {
		return nil
	}
	ev := RoomEvent{Event: EventRecordingsUpdated, Room: room, RoomSID: roomSID, CreatedAt: time.Now().Unix(), Missing: missing}
	keys := make([]string, 0, len(tracks))
	for _, t := range tracks {
		keys = append(keys, t.Key)
		ev.Tracks = append(ev.Tracks, t.Manifest)
	}
	ev.ID = eventID(EventRecordingsUpdated, room, roomSID, keys)
	if err := p.Notifier.NotifyEvent(ctx, ev); err != nil {
		return fmt.Errorf("pipeline webhook (update) for room %q: %w", room, err)
	}
	if p.Logger != nil {
		p.Logger.Info("pipeline webhook delivered", "room", room, "event", ev.ID, "updated", len(tracks))
	}
	return nil
}

// mix downloads the tracks, mixes them and stores the mix and its manifest.
func (p *Pipeline) mix(ctx context.Context, room string, tracks []RoomTrack) ([]string, json.RawMessage, error) {
	earliest := tracks[0].Start
	for _, t := range tracks {
		if t.Start.Before(earliest) {
			earliest = t.Start
		}
	}
	// {prefix}/{room}/{room}-{YYYY-MM-DDTHHMMSS}-mix.{mp3|opus}: a separate
	// prefix and no track id, so it never parses as a participant track.
	name := uploader.Segment(room) + "-" + earliest.UTC().Format(uploader.TimeLayout) + "-mix"
	key := path.Join(p.Prefix, uploader.Segment(room), name+p.Format.Ext())
	manKey := path.Join(p.Prefix, uploader.Segment(room), name+".json")
	if data, ok := p.stored(ctx, key, manKey, tracks); ok {
		// A rerun (a retried webhook, a restart) of a room already mixed.
		return []string{key, manKey}, data, nil
	}

	dir, err := os.MkdirTemp("", "trackrec-mix-")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(dir)
	in := make([]Track, 0, len(tracks))
	for i, t := range tracks {
		local := filepath.Join(dir, fmt.Sprintf("in%d%s", i, path.Ext(t.Key)))
		if err := p.download(ctx, t.Key, local); err != nil {
			return nil, nil, err
		}
		in = append(in, Track{Key: t.Key, Path: local, Start: t.Start, Identity: t.Identity, TrackSID: t.TrackSID})
	}
	out := filepath.Join(dir, "mix"+p.Format.Ext())
	res, err := Mix(ctx, in, out, p.Format)
	if err != nil {
		return nil, nil, err
	}
	doc := NewManifest(res, room)
	doc.Key = key
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, nil, err
	}
	manPath := filepath.Join(dir, "mix.json")
	if err := os.WriteFile(manPath, data, 0o644); err != nil {
		return nil, nil, err
	}
	media, err := p.Uploads.Submit(uploader.Item{Key: key, Path: out, ContentType: p.Format.ContentType()})
	if err != nil {
		return nil, nil, err
	}
	man, err := p.Uploads.Submit(uploader.Item{Key: manKey, Path: manPath, ContentType: "application/json", After: media})
	if err != nil {
		return nil, nil, err
	}
	for _, u := range []*uploader.Upload{media, man} {
		select {
		case <-u.Done():
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("store mixdown: %w", ctx.Err())
		}
	}
	return []string{key, manKey}, data, nil
}

// stored returns the manifest of a mix already stored at key from exactly
// these tracks. The manifest is stored after the mix, so it vouches for it.
func (p *Pipeline) stored(ctx context.Context, key, manKey string, tracks []RoomTrack) (json.RawMessage, bool) {
	var buf bytes.Buffer
	if err := p.Store.Get(ctx, manKey, &buf); err != nil {
		return nil, false
	}
	var doc ManifestDoc
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil || doc.Key != key || doc.Format != p.Format || len(doc.Inputs) != len(tracks) {
		return nil, false
	}
	want := map[string]bool{}
	for _, t := range tracks {
		want[t.Key] = true
	}
	for _, in := range doc.Inputs {
		if !want[in.Key] {
			return nil, false
		}
		delete(want, in.Key)
	}
	return buf.Bytes(), len(want) == 0
}

func (p *Pipeline) download(ctx context.Context, key, local string) error {
	f, err := os.Create(local)
	if err != nil {
		return err
	}
	gerr := p.Store.Get(ctx, key, f)
	cerr := f.Close()
	if err := errors.Join(gerr, cerr); err != nil {
		return fmt.Errorf("download %s: %w", key, err)
	}
	return nil
}
