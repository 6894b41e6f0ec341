package local

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/trackrec/trackrec/uploader"
)

func newDir(t *testing.T) *Dir {
	t.Helper()
	d, err := New(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// writeFile writes content to a new file outside the store.
func writeFile(t *testing.T, content string) (string, []byte) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "src")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(content))
	return p, sum[:]
}

func get(t *testing.T, d *Dir, key string) string {
	t.Helper()
	var b bytes.Buffer
	if err := d.Get(context.Background(), key, &b); err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	return b.String()
}

// files lists every name under dir, temporary ones included.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	err := filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			names = append(names, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func TestLocalRoundTrip(t *testing.T) {
	d := newDir(t)
	ctx := context.Background()
	keys := []string{
		"livekit/room/alice-2026-11-22T010203-TR_a.ogg",
		"livekit/room/alice-2026-11-22T010203-TR_a.json",
		"livekit/room/with space-TR_b.ogg",
		"livekit/room/Андрей 🎙-TR_c.ogg",
		"livekit/room-2/x.ogg",
		"mixdown/room.mp3",
	}
	for _, k := range keys {
		p, sum := writeFile(t, "content of "+k)
		if err := d.Put(ctx, k, p, "audio/ogg", sum); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
		if got := get(t, d, k); got != "content of "+k {
			t.Fatalf("get %s = %q", k, got)
		}
		// The source stays: deleting it is the caller's decision.
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("source after put: %v", err)
		}
	}
	// Overwriting replaces the whole file.
	p, sum := writeFile(t, "v2")
	if err := d.Put(ctx, keys[0], p, "", sum); err != nil {
		t.Fatal(err)
	}
	if got := get(t, d, keys[0]); got != "v2" {
		t.Fatalf("after overwrite: %q", got)
	}
	// A leftover temporary file (a crash mid-Put) is not listed.
	tmp := filepath.Join(d.path, "livekit", "room", TempPrefix+"x.ogg-123")
	if err := os.WriteFile(tmp, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		prefix string
		n      int
	}{
		{"", len(keys)},
		{"livekit/", 5},
		{"livekit/room/", 4},
		{"livekit/room", 5},
		{"livekit/room/alice-", 2},
		{"livekit/room/Андрей", 1},
		{"mixdown/", 1},
		{"nothing/", 0},
		{"livekit/nothing/deeper/", 0},
	} {
		var want []string
		for _, k := range keys {
			if strings.HasPrefix(k, tc.prefix) {
				want = append(want, k)
			}
		}
		slices.Sort(want)
		got, err := d.List(ctx, tc.prefix)
		if err != nil {
			t.Fatalf("list %q: %v", tc.prefix, err)
		}
		if len(got) != tc.n || !slices.Equal(got, want) {
			t.Errorf("list %q:\n got %q\nwant %q", tc.prefix, got, want)
		}
	}

	if err := d.Get(ctx, "livekit/room/missing.ogg", io.Discard); !errors.Is(err, uploader.ErrNotFound) {
		t.Errorf("get missing: %v, want ErrNotFound", err)
	}
	if err := d.Get(ctx, "livekit/room", io.Discard); err == nil {
		t.Error("get of a directory succeeded")
	}
	if want := "file://" + filepath.ToSlash(d.path); d.String() != want {
		t.Errorf("String() = %q, want %q", d.String(), want)
	}
	if got, err := d.Path(keys[0]); err != nil || got != filepath.Join(d.path, "livekit", "room", "alice-2026-11-22T010203-TR_a.ogg") {
		t.Errorf("Path = %q, %v", got, err)
	}
}

// A file that does not match its SHA-256 never reaches the key: an
// existing file there stays as it was, and no temporary file is left.
func TestLocalPutChecksumMismatch(t *testing.T) {
	d := newDir(t)
	ctx := context.Background()
	key := "livekit/room/a.ogg"
	p, sum := writeFile(t, "original")
	if err := d.Put(ctx, key, p, "", sum); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		sum  func(good []byte) []byte
	}{
		{"one bit off", func(good []byte) []byte { b := slices.Clone(good); b[31] ^= 1; return b }},
		{"zeros", func([]byte) []byte { return make([]byte, 32) }},
		{"short", func(good []byte) []byte { return good[:16] }},
		{"nil", func([]byte) []byte { return nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, good := writeFile(t, "replacement")
			if err := d.Put(ctx, key, p, "", tc.sum(good)); err == nil {
				t.Fatal("put succeeded")
			}
			if got := get(t, d, key); got != "original" {
				t.Fatalf("destination now %q", got)
			}
			if f := files(t, d.path); !slices.Equal(f, []string{key}) {
				t.Fatalf("files in store: %q", f)
			}
		})
	}
	// The same for a new key: nothing appears.
	p2, good := writeFile(t, "new")
	good[0] ^= 1
	if err := d.Put(ctx, "livekit/room/b.ogg", p2, "", good); err == nil {
		t.Fatal("put succeeded")
	}
	if err := d.Get(ctx, "livekit/room/b.ogg", io.Discard); !errors.Is(err, uploader.ErrNotFound) {
		t.Fatalf("get after failed put: %v", err)
	}
}

// When the spool is the store, the file to put already is the destination:
// Put only verifies it, and a mismatch must not touch it.
func TestLocalPutSameFile(t *testing.T) {
	d := newDir(t)
	ctx := context.Background()
	key := "livekit/room/spooled.ogg"
	dst, err := d.Path(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, []byte("recorded"), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("recorded"))
	bad := slices.Clone(sum[:])
	bad[0] ^= 1

	// Also through another name for the same file.
	link := filepath.Join(t.TempDir(), "hardlink")
	if err := os.Link(dst, link); err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{dst, link} {
		if err := d.Put(ctx, key, src, "", bad); err == nil {
			t.Fatalf("put of %s with a wrong SHA-256 succeeded", src)
		}
		if err := d.Put(ctx, key, src, "", sum[:]); err != nil {
			t.Fatalf("put of %s in place: %v", src, err)
		}
		if got := get(t, d, key); got != "recorded" {
			t.Fatalf("after put of %s: %q", src, got)
		}
	}
	if f := files(t, d.path); !slices.Equal(f, []string{key}) {
		t.Fatalf("files in store: %q", f)
	}
}

// TestLocalBadKeys checks CheckKey's table and that every operation refuses
// those keys before touching the file system.
func TestLocalBadKeys(t *testing.T) {
	d := newDir(t)
	ctx := context.Background()
	p, sum := writeFile(t, "x")
	for _, tc := range []struct {
		key string
		ok  bool
	}{
		{"livekit/room/a.ogg", true},
		{"a", true},
		{"livekit/room/..a.ogg", true}, // ".." inside a name is harmless
		{"livekit/room/.hidden", true},
		{"livekit/Андрей/🎙 a.ogg", true},
		{"", false},
		{"../x", false},
		{"livekit/../../etc/passwd", false},
		{"livekit/..", false},
		{"..", false},
		{"./x", false},
		{"livekit/./x", false},
		{"/etc/passwd", false},
		{"livekit//x", false},
		{"livekit/x/", false},
		{`livekit\..\x`, false},
		{`C:\x`, false},
		{"livekit/a\x00b", false},
		{"livekit/a\nb", false},
		{"livekit/a\x7fb", false},
		{"livekit/a\u0085b", false}, // C1 control
		{"livekit/\xff", false},     // not UTF-8
		{strings.Repeat("a", 1025), false},
		{"livekit/" + TempPrefix + "x", false}, // reserved by this backend only
	} {
		err := uploader.CheckKey(tc.key)
		if strings.Contains(tc.key, TempPrefix) {
			err = checkKey(tc.key)
		}
		if (err == nil) != tc.ok {
			t.Errorf("CheckKey(%q) = %v, want ok=%v", tc.key, err, tc.ok)
		}
		if tc.ok {
			continue
		}
		if err := d.Put(ctx, tc.key, p, "", sum); err == nil {
			t.Errorf("Put(%q) succeeded", tc.key)
		}
		if err := d.Get(ctx, tc.key, io.Discard); err == nil || errors.Is(err, uploader.ErrNotFound) {
			t.Errorf("Get(%q) = %v, want a key error", tc.key, err)
		}
		if _, err := d.Path(tc.key); err == nil {
			t.Errorf("Path(%q) succeeded", tc.key)
		}
	}
	if f := files(t, d.path); len(f) != 0 {
		t.Fatalf("files in store: %q", f)
	}
	if _, err := d.List(ctx, "livekit/../"); err == nil {
		t.Error("List with a .. prefix succeeded")
	}
}

// TestLocalSymlinkEscape plants links that point out of the store: no Put, Get or
// List goes through them.
func TestLocalSymlinkEscape(t *testing.T) {
	d := newDir(t)
	ctx := context.Background()
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A directory link and a file link, both leading outside.
	if err := os.Symlink(outside, filepath.Join(d.path, "evil")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(d.path, "room"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(d.path, "room", "link.ogg")); err != nil {
		t.Fatal(err)
	}
	p, sum := writeFile(t, "payload")

	if err := d.Put(ctx, "evil/x.ogg", p, "", sum); err == nil {
		t.Error("put through a directory link succeeded")
	}
	if err := d.Put(ctx, "evil/sub/x.ogg", p, "", sum); err == nil {
		t.Error("put below a directory link succeeded")
	}
	if err := d.Get(ctx, "evil/secret", io.Discard); err == nil {
		t.Error("get through a directory link succeeded")
	}
	if err := d.Get(ctx, "room/link.ogg", io.Discard); err == nil {
		t.Error("get through a file link succeeded")
	}
	if keys, err := d.List(ctx, ""); err != nil || len(keys) != 0 {
		t.Errorf("list = %q, %v; want nothing", keys, err)
	}
	if _, err := d.List(ctx, "evil/"); err == nil {
		t.Error("list through a directory link succeeded")
	}
	// Putting to the file link replaces the link, not its target.
	if err := d.Put(ctx, "room/link.ogg", p, "", sum); err != nil {
		t.Fatalf("put over a file link: %v", err)
	}
	if got := get(t, d, "room/link.ogg"); got != "payload" {
		t.Errorf("room/link.ogg = %q", got)
	}
	if st, err := os.Lstat(filepath.Join(d.path, "room", "link.ogg")); err != nil || !st.Mode().IsRegular() {
		t.Errorf("room/link.ogg is not a regular file now: %v", err)
	}

	if f := files(t, outside); !slices.Equal(f, []string{"secret"}) {
		t.Errorf("files outside: %q", f)
	}
	if b, _ := os.ReadFile(secret); string(b) != "secret" {
		t.Errorf("secret now %q", b)
	}
}

func TestLocalPutCanceled(t *testing.T) {
	d := newDir(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p, sum := writeFile(t, "x")
	if err := d.Put(ctx, "livekit/room/a.ogg", p, "", sum); !errors.Is(err, context.Canceled) {
		t.Fatalf("put: %v, want context.Canceled", err)
	}
	if f := files(t, d.path); len(f) != 0 {
		t.Fatalf("files in store: %q", f)
	}
}
