package uploader_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/trackrec/trackrec/uploader"
	"github.com/trackrec/trackrec/uploader/local"
)

// One file that cannot be stored, plus its manifest, take both workers for
// good: nothing else is ever uploaded.
func TestQueueFailingFileDoesNotStarveOthers(t *testing.T) {
	dir := t.TempDir()
	store, _ := local.New(filepath.Join(dir, "store"))
	q := uploader.NewQueue(store, uploader.QueueOptions{MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	bad, _ := q.Submit(uploader.Item{Key: "r/a.ogg", Path: filepath.Join(dir, "gone.ogg")})
	q.Submit(uploader.Item{Key: "r/a.json", Path: filepath.Join(dir, "gone.json"), After: bad})
	good := filepath.Join(dir, "b.ogg")
	os.WriteFile(good, []byte("x"), 0o644)
	u, _ := q.Submit(uploader.Item{Key: "r/b.ogg", Path: good})
	select {
	case <-u.Done():
	case <-time.After(2 * time.Second):
		t.Errorf("healthy upload starved: %+v", u.Info())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	q.Drain(ctx)
}
