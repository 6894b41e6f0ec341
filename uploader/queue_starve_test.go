package uploader_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/trackrec/trackrec/uploader"
	"github.com/trackrec/trackrec/uploader/local"
)

// Files that cannot be stored, and manifests waiting for them, never hold
// the workers: other files go through at once, however long the bad ones
// keep failing.
func TestQueueFailingFileDoesNotStarveOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		store, err := local.New(filepath.Join(dir, "store"))
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		q := uploader.NewQueue(store, uploader.QueueOptions{Workers: 2, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		// As many failing files as workers, each with a manifest.
		var bad, man []*uploader.Upload
		for _, name := range []string{"a", "b"} {
			b, err := q.Submit(uploader.Item{Key: "r/" + name + ".ogg", Path: filepath.Join(dir, "gone-"+name+".ogg")})
			if err != nil {
				t.Fatal(err)
			}
			m, err := q.Submit(uploader.Item{Key: "r/" + name + ".json", Path: filepath.Join(dir, "gone-"+name+".json"), After: b})
			if err != nil {
				t.Fatal(err)
			}
			bad, man = append(bad, b), append(man, m)
		}
		good := func(name string) {
			t.Helper()
			path := filepath.Join(dir, name)
			if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			u, err := q.Submit(uploader.Item{Key: "r/" + name, Path: path})
			if err != nil {
				t.Fatal(err)
			}
			began := time.Now()
			select {
			case <-u.Done():
				if waited := time.Since(began); waited != 0 {
					t.Errorf("%s waited %v behind the failing files", name, waited)
				}
			case <-time.After(time.Minute):
				t.Errorf("%s starved behind the failing files: %+v", name, u.Info())
			}
		}
		good("c.ogg")
		// Well into the failing files' retries.
		time.Sleep(3 * time.Minute)
		good("d.ogg")
		for i := range bad {
			if info := bad[i].Info(); info.State != uploader.StateFailed || info.Attempts < 5 {
				t.Errorf("failing file: %+v", info)
			}
			if info := man[i].Info(); info.State != uploader.StatePending || info.Attempts != 0 {
				t.Errorf("its manifest: %+v, want pending and never tried", info)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := q.Drain(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("drain with failing files outstanding: %v", err)
		}
		// Their pending retries (at most 45 s away) find the queue closed and
		// settle them, so Drain's waiter ends with the bubble.
		time.Sleep(time.Minute)
	})
}
