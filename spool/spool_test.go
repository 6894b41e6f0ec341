package spool

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trackrec/trackrec/uploader"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// open opens a spool over o, in a new temporary directory when o.Dir is
// empty, closed when the test ends.
func open(t *testing.T, o Options) *Spool {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	if o.Logger == nil {
		o.Logger = discard()
	}
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// snapshot is every file under dir with its content, and every folder.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if d.IsDir() {
			out[rel+"/"] = ""
			return nil
		}
		data, err := os.ReadFile(path)
		out[rel] = string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestOpenValidates(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		ok   bool
	}{
		{"no dir", Options{}, false},
		{"plain", Options{Dir: "D"}, true},
		{"prefix", Options{Dir: "D", KeyPrefix: "livekit/rec"}, true},
		{"prefix with slashes", Options{Dir: "D", KeyPrefix: "/livekit/"}, true},
		{"prefix climbing", Options{Dir: "D", KeyPrefix: "a/../b"}, false},
		{"prefix with an empty segment", Options{Dir: "D", KeyPrefix: "a//b"}, false},
		{"prefix with a control character", Options{Dir: "D", KeyPrefix: "a\nb"}, false},
		{"prefix with a backslash", Options{Dir: "D", KeyPrefix: `a\b`}, false},
		{"reserved", Options{Dir: "D", Reserved: []string{"mixdown"}}, true},
		{"reserved empty", Options{Dir: "D", Reserved: []string{""}}, false},
		{"reserved path", Options{Dir: "D", Reserved: []string{"a/b"}}, false},
		{"reserved dot", Options{Dir: "D", Reserved: []string{".pending-rooms"}}, false},
		{"reserved escape", Options{Dir: "D", Reserved: []string{"%6Dix"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.o.Dir != "" {
				tc.o.Dir = filepath.Join(t.TempDir(), tc.o.Dir)
			}
			s, err := Open(tc.o)
			if tc.ok != (err == nil) {
				t.Fatalf("Open: %v, want ok %v", err, tc.ok)
			}
			if err == nil {
				if fi, err := os.Stat(tc.o.Dir); err != nil || !fi.IsDir() {
					t.Errorf("Dir not created: %v", err)
				}
				s.Close()
			} else if tc.o.Dir != "" {
				if _, err := os.Stat(tc.o.Dir); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("a refused Open created the directory: %v", err)
				}
			}
		})
	}
}

func TestObjectKeys(t *testing.T) {
	start := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct{ prefix, want string }{
		{"", "r/alice-2026-03-01T100000-TR_a.ogg"},
		{"livekit", "livekit/r/alice-2026-03-01T100000-TR_a.ogg"},
		{"/livekit/rec/", "livekit/rec/r/alice-2026-03-01T100000-TR_a.ogg"},
	} {
		s := open(t, Options{KeyPrefix: tc.prefix})
		f, err := s.Create(Track{Room: "r", Participant: "alice", TrackSID: "TR_a"}, start, "ogg")
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		if f.Key() != tc.want || f.Name() != "r/alice-2026-03-01T100000-TR_a.ogg" {
			t.Errorf("prefix %q: key %q name %q, want key %q", tc.prefix, f.Key(), f.Name(), tc.want)
		}
		if want := filepath.Join(s.Dir(), "r", "alice-2026-03-01T100000-TR_a.ogg"); f.Path() != want {
			t.Errorf("path %q, want %q", f.Path(), want)
		}
	}
}

// A second Open of a directory in use fails, names the directory and the
// holder, and changes nothing in it; once the first closes, it succeeds.
func TestLock(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "rec")
	first := open(t, Options{Dir: dir})
	f, err := first.Create(Track{Room: "r", Participant: "alice", TrackSID: "TR_a"}, time.Unix(1767225600, 0), "ogg")
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("OggS"))
	f.Close()
	before := snapshot(t, dir)

	for _, d := range []string{dir, dir + "/", filepath.Join(dir, "r", "..")} {
		s, err := Open(Options{Dir: d, Logger: discard()})
		if err == nil {
			s.Close()
			t.Fatalf("second Open of %s succeeded", d)
		}
		want := fmt.Sprintf("LOCAL_DIRECTORY %s is in use by another recorder (pid %d)", dir, os.Getpid())
		if !errors.Is(err, ErrLocked) || err.Error() != want {
			t.Errorf("second Open of %s: %q, want %q wrapping ErrLocked", d, err, want)
		}
	}
	if after := snapshot(t, dir); !maps.Equal(before, after) {
		t.Errorf("a refused Open changed the directory:\nbefore %q\nafter  %q", before, after)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := first.Create(Track{Room: "r", Participant: "bob", TrackSID: "TR_b"}, time.Unix(1767225600, 0), "ogg"); err == nil {
		t.Error("Create on a closed spool succeeded")
	}
	open(t, Options{Dir: dir})
}

// lockChild is the environment variable that makes TestLockHelperProcess
// hold a spool: its value is the directory.
const lockChild = "SPOOL_TEST_LOCK_DIR"

// TestLockHelperProcess is the child of TestLockAcrossProcesses: it opens
// the spool, says so, and holds it until its stdin closes.
func TestLockHelperProcess(t *testing.T) {
	dir := os.Getenv(lockChild)
	if dir == "" {
		t.Skip("only run as the child of TestLockAcrossProcesses")
	}
	s, err := Open(Options{Dir: dir, Logger: discard()})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("locked")
	_, _ = io.Copy(io.Discard, os.Stdin)
	s.Close()
	os.Exit(0)
}

func TestLockAcrossProcesses(t *testing.T) {
	if os.Getenv(lockChild) != "" {
		t.Skip("child")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHelperProcess$")
	cmd.Env = append(os.Environ(), lockChild+"="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if line != "locked\n" {
		t.Fatalf("child: %q %v", line, err)
	}

	_, err = Open(Options{Dir: dir, Logger: discard()})
	want := "LOCAL_DIRECTORY " + dir + " is in use by another recorder (pid " + strconv.Itoa(cmd.Process.Pid) + ")"
	if !errors.Is(err, ErrLocked) || err.Error() != want {
		t.Errorf("Open while the child holds it: %v, want %q", err, want)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	s := open(t, Options{Dir: dir})
	if pid, _ := os.ReadFile(filepath.Join(dir, lockName)); string(pid) != strconv.Itoa(os.Getpid())+"\n" {
		t.Errorf("lock file holds %q, want this process's pid", pid)
	}
	s.Close()
}

// A child process killed while holding the lock leaves it free.
func TestLockFreedByAKilledHolder(t *testing.T) {
	if os.Getenv(lockChild) != "" {
		t.Skip("child")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHelperProcess$")
	cmd.Env = append(os.Environ(), lockChild+"="+dir)
	stdin, _ := cmd.StdinPipe()
	defer stdin.Close()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if line, _ := bufio.NewReader(stdout).ReadString('\n'); line != "locked\n" {
		t.Fatalf("child: %q", line)
	}
	cmd.Process.Kill()
	cmd.Wait()
	open(t, Options{Dir: dir})
}

func TestWritable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "rec")
	s := open(t, Options{Dir: dir})
	if err := s.Writable(); err != nil {
		t.Fatal(err)
	}
	if left := snapshot(t, dir); len(left) != 2 { // the folder and .lock
		t.Errorf("Writable left %v", left)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := s.Writable(); err == nil {
		t.Error("Writable on a removed directory succeeded")
	}
}

// fakeUploads records what is submitted; fail makes Submit refuse.
type fakeUploads struct {
	mu    sync.Mutex
	items []uploader.Item
	ups   []*uploader.Upload
	fail  error
}

func (q *fakeUploads) Submit(it uploader.Item) (*uploader.Upload, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.fail != nil {
		return nil, q.fail
	}
	u := &uploader.Upload{Item: it}
	q.items = append(q.items, it)
	q.ups = append(q.ups, u)
	return u, nil
}

func (q *fakeUploads) keys() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []string
	for _, it := range q.items {
		out = append(out, it.Key)
	}
	return out
}

// logs captures records at Warn and above.
type logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logs) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func (l *logs) lines(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for line := range strings.SplitSeq(l.buf.String(), "\n") {
		if strings.Contains(line, substr) {
			n++
		}
	}
	return n
}
