package mixdown

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/trackrec/trackrec/uploader"
	"github.com/trackrec/trackrec/uploader/local"
)

// countingQueue counts what the pipeline stores.
type countingQueue struct {
	q  *uploader.Queue
	mu sync.Mutex
	n  int
}

func (c *countingQueue) Submit(it uploader.Item) (*uploader.Upload, error) {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return c.q.Submit(it)
}

func (c *countingQueue) count() int { c.mu.Lock(); defer c.mu.Unlock(); return c.n }

// A rerun of a room already mixed from the same tracks (a retried webhook,
// a restart) reuses the stored mix; other tracks make a new one.
func TestPipelineReusesAStoredMix(t *testing.T) {
	ctx := context.Background()
	store, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	q := uploader.NewQueue(store, uploader.QueueOptions{})
	defer q.Drain(ctx)
	up := &countingQueue{q: q}
	src := t.TempDir()
	var tracks []RoomTrack
	for _, tn := range []tone{{freq: 440, at: 0, dur: 2 * time.Second}, {freq: 880, at: time.Second, dur: 2 * time.Second}} {
		tr := makeTone(t, src, tn)
		sum, err := uploader.FileSHA256(tr.Path)
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Put(ctx, tr.Key, tr.Path, "audio/ogg", sum); err != nil {
			t.Fatal(err)
		}
		tracks = append(tracks, RoomTrack{Key: tr.Key, Start: tr.Start, Identity: tr.Identity, TrackSID: tr.TrackSID})
	}
	p := &Pipeline{Store: store, Uploads: up, Mix: true, Format: FormatMP3, Prefix: "mixdown"}

	first, err := p.Run(ctx, "room", "RM_1", tracks)
	if err != nil || len(first) != 2 || up.count() != 2 {
		t.Fatalf("first run: %v %v, %d stored", first, err, up.count())
	}
	again, err := p.Run(ctx, "room", "RM_1", tracks)
	if err != nil || len(again) != 2 || again[0] != first[0] || again[1] != first[1] {
		t.Fatalf("rerun: %v %v, want %v", again, err, first)
	}
	if up.count() != 2 {
		t.Errorf("rerun stored %d more objects, want none", up.count()-2)
	}

	// One track fewer: a different mix, stored again under the same key.
	fewer, err := p.Run(ctx, "room", "RM_1", tracks[:1])
	if err != nil || up.count() != 4 {
		t.Fatalf("run with other tracks: %v %v, %d stored", fewer, err, up.count())
	}
	var got bytesWriter
	if err := store.Get(ctx, fewer[1], &got); err != nil {
		t.Fatal(err)
	}
	var doc ManifestDoc
	if err := json.Unmarshal(got, &doc); err != nil || len(doc.Inputs) != 1 {
		t.Errorf("stored manifest after the new mix: %s (%v)", got, err)
	}
}

type bytesWriter []byte

func (b *bytesWriter) Write(p []byte) (int, error) { *b = append(*b, p...); return len(p), nil }
