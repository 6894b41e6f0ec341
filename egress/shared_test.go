package egress

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/livekit/psrpc"

	"github.com/trackrec/trackrec/spool"
	"github.com/trackrec/trackrec/uploader"
)

// memShared is the fleet's egress records in memory.
type memShared struct {
	mu sync.Mutex
	m  map[string]map[string][]byte
}

func (s *memShared) Put(_ context.Context, id, field string, doc []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]map[string][]byte{}
	}
	if s.m[id] == nil {
		s.m[id] = map[string][]byte{}
	}
	s.m[id][field] = append([]byte(nil), doc...)
	return nil
}

func (s *memShared) Get(_ context.Context, id string) (map[string][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]byte{}
	for f, v := range s.m[id] {
		out[f] = v
	}
	return out, nil
}

func (s *memShared) Once(_ context.Context, id, field, value string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, set := s.m[id][field]; set {
		return false, nil
	}
	if s.m == nil {
		s.m = map[string]map[string][]byte{}
	}
	if s.m[id] == nil {
		s.m[id] = map[string][]byte{}
	}
	s.m[id][field] = []byte(value)
	return true, nil
}

func (s *memShared) Delete(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
	return nil
}

func TestSealer(t *testing.T) {
	k, err := NewSealer("the api secret")
	if err != nil {
		t.Fatal(err)
	}
	in := &S3{AccessKey: "AKIA-visible?", Secret: "s3cr3t", SessionToken: "tok"}
	blob, err := k.seal("EG_a", in)
	if err != nil {
		t.Fatal(err)
	}
	for _, plain := range []string{in.AccessKey, in.Secret, in.SessionToken} {
		if strings.Contains(string(blob), plain) {
			t.Fatalf("sealed blob shows %q", plain)
		}
	}
	var out S3
	if err := k.open("EG_a", blob, &out); err != nil || out.AccessKey != in.AccessKey || out.Secret != in.Secret || out.SessionToken != in.SessionToken {
		t.Fatalf("opened %+v, %v", out, err)
	}
	other, _ := NewSealer("another secret")
	for name, open := range map[string]func() error{
		"another egress": func() error { return k.open("EG_b", blob, &out) },
		"another secret": func() error { return other.open("EG_a", blob, &out) },
		"cut short":      func() error { return k.open("EG_a", blob[:5], &out) },
	} {
		if open() == nil {
			t.Errorf("%s opened the credentials", name)
		}
	}
	if _, err := NewSealer(""); err == nil {
		t.Error("an empty secret made a sealer")
	}
}

// An egress's end lists the files of the instances before this one from
// the fleet's record, in order: those stored, and (waiting) not those still
// being stored by a live instance until they are; a dead instance's are
// named as missing.
func TestPriorFiles(t *testing.T) {
	shared := &memShared{}
	alive := map[string]bool{"b": true}
	var mu sync.Mutex
	w, err := NewWorker(Options{
		Bus: psrpc.NewLocalMessageBus(), Recorder: noRecorder{}, Uploads: noUploads{}, Dir: t.TempDir(),
		Find:     func(context.Context, string, string) (Publisher, error) { return Publisher{}, nil },
		NewStore: func(context.Context, *S3) (uploader.Storage, error) { return nil, nil },
		Load:     func() (int, int) { return 0, 4 },
		Shared:   shared, Instance: "c",
		Alive: func(i string) bool {
			mu.Lock()
			defer mu.Unlock()
			return alive[i]
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	j := &job{w: w, req: Request{EgressID: "EG_p", TrackID: "TR_1"}, log: w.log}
	j.info = &Info{e: &livekit.EgressInfo{EgressId: "EG_p"}}
	put := func(inst string, f sharedFile) {
		f.Instance = inst
		b, _ := json.Marshal(f)
		_ = shared.Put(context.Background(), "EG_p", filePrefix+f.Key, b)
	}
	result := func(key string, start int64) json.RawMessage {
		b, _ := json.Marshal(map[string]any{"filename": key, "startedAt": start})
		return b
	}
	put("a", sharedFile{Key: "two.ogg", StartedAt: 2, Result: result("two.ogg", 2), Stored: true})
	put("a", sharedFile{Key: "one.ogg", StartedAt: 1, Result: result("one.ogg", 1), Stored: true})
	put("dead", sharedFile{Key: "lost.ogg", StartedAt: 3})
	put("a", sharedFile{Key: "empty.ogg", Gone: true})
	put("b", sharedFile{Key: "late.ogg", StartedAt: 4, Result: result("late.ogg", 4)})
	// This instance's own file is its own, not a prior one.
	j.done = []*spool.Sealed{{Manifest: spool.Manifest{File: spool.ManifestFile{Key: "mine.ogg"}}}}
	put("c", sharedFile{Key: "mine.ogg", StartedAt: 5, Result: result("mine.ogg", 5)})

	files, missing := j.prior(false)
	if names(files) != "one.ogg two.ogg late.ogg" || strings.Join(missing, " ") != "lost.ogg" {
		t.Fatalf("without waiting: %s, missing %v", names(files), missing)
	}
	// b stores late.ogg a moment later; the end waits for it.
	go func() {
		time.Sleep(1500 * time.Millisecond)
		put("b", sharedFile{Key: "late.ogg", StartedAt: 4, Result: result("late.ogg", 4), Stored: true})
	}()
	files, missing = j.prior(true)
	if names(files) != "one.ogg two.ogg late.ogg" || strings.Join(missing, " ") != "lost.ogg" {
		t.Fatalf("waiting: %s, missing %v", names(files), missing)
	}
}

func names(fs []*livekit.FileInfo) string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Filename)
	}
	return strings.Join(out, " ")
}

// A file key another file of the egress has (this instance's or another's)
// is made apart before the extension, so no file overwrites another.
func TestUniqueKey(t *testing.T) {
	shared := &memShared{}
	w, err := NewWorker(Options{
		Bus: psrpc.NewLocalMessageBus(), Recorder: noRecorder{}, Uploads: noUploads{}, Dir: t.TempDir(),
		Find:     func(context.Context, string, string) (Publisher, error) { return Publisher{}, nil },
		NewStore: func(context.Context, *S3) (uploader.Storage, error) { return nil, nil },
		Load:     func() (int, int) { return 0, 4 },
		Shared:   shared, Instance: "b",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	j := &job{w: w, req: Request{EgressID: "EG_u"}, log: w.log}
	_ = shared.Put(context.Background(), "EG_u", filePrefix+"rec/TR_1.ogg", []byte(`{"instance":"a"}`))
	j.done = []*spool.Sealed{{Manifest: spool.Manifest{File: spool.ManifestFile{Key: "rec/TR_1_2.ogg"}}}}
	for key, want := range map[string]string{
		"rec/other.ogg": "rec/other.ogg",
		"rec/TR_1.ogg":  "rec/TR_1_3.ogg",
	} {
		if got := j.unique(key); got != want {
			t.Errorf("unique(%q) = %q, want %q", key, got, want)
		}
	}
}
