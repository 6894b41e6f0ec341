// Package local stores files in a local directory: the embedded default
// when no bucket is configured.
package local

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/trackrec/trackrec/uploader"
)

// TempPrefix starts the names of files being written. List hides them, Put
// refuses keys whose last segment starts with it, and a scan of the directory
// should skip them: one left behind is an interrupted Put, never a whole file.
const TempPrefix = ".trackrec-tmp-"

// Dir is a uploader.Storage over a directory. Keys map to files under the
// root, and every access goes through an os.Root, so neither ".." nor a
// symbolic link can reach outside it.
type Dir struct {
	path string // absolute
	root *os.Root
}

var _ uploader.Storage = (*Dir)(nil)

// New opens (creating if needed) the directory root.
func New(root string) (*Dir, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("local storage %s: %w", root, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("local storage: %w", err)
	}
	r, err := os.OpenRoot(abs)
	if err != nil {
		return nil, fmt.Errorf("local storage: %w", err)
	}
	return &Dir{path: abs, root: r}, nil
}

// Close releases the directory handle.
func (d *Dir) Close() error { return d.root.Close() }

// String returns the directory as a file URL.
func (d *Dir) String() string { return "file://" + filepath.ToSlash(d.path) }

// Path returns the file a key maps to, for logs and for callers that spool
// into the same directory.
func (d *Dir) Path(key string) (string, error) {
	if err := checkKey(key); err != nil {
		return "", err
	}
	return filepath.Join(d.path, filepath.FromSlash(key)), nil
}

func checkKey(key string) error {
	if err := uploader.CheckKey(key); err != nil {
		return err
	}
	if strings.HasPrefix(path.Base(key), TempPrefix) {
		return fmt.Errorf("invalid key %q: %q names are reserved for temporary files", key, TempPrefix)
	}
	return nil
}

// Put copies the file at src to key: into a temporary file beside the
// destination, hashing what it writes, then fsync, rename and fsync of the
// directory, so the key holds either the old file or the whole new one, even
// after a crash. A SHA-256 mismatch leaves the destination untouched. When src
// already is the destination (the spool is the store), Put only verifies and
// syncs it.
func (d *Dir) Put(ctx context.Context, key, src, contentType string, sum []byte) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if len(sum) != sha256.Size {
		return fmt.Errorf("put %s: sha256 has %d bytes, want %d", key, len(sum), sha256.Size)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	name := filepath.FromSlash(key)
	dir := filepath.Dir(name)

	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	defer in.Close()
	inInfo, err := in.Stat()
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	// An error here (missing, or a link escaping the root) just means the
	// destination is not src; the rename below replaces it.
	if dstInfo, err := d.root.Stat(name); err == nil && os.SameFile(inInfo, dstInfo) {
		return d.verifyInPlace(ctx, key, in, dir, sum)
	}

	if err := d.root.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	tmp := filepath.Join(dir, TempPrefix+filepath.Base(name)+"-"+randomSuffix())
	out, err := d.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	committed := false
	defer func() {
		if !committed {
			out.Close()
			_ = d.root.Remove(tmp)
		}
	}()

	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(out, h), ctxReader{ctx, in}); err != nil {
		return fmt.Errorf("put %s: copy %s: %w", key, src, err)
	}
	if got := h.Sum(nil); !bytes.Equal(got, sum) {
		return fmt.Errorf("put %s: %s has SHA-256 %x, want %x", key, src, got, sum)
	}
	if err := out.Sync(); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if err := d.root.Rename(tmp, name); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	committed = true
	if err := d.syncDir(dir); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

// verifyInPlace checks that f, which already is the file at key, has the
// given SHA-256, and makes it and its directory entry durable.
func (d *Dir) verifyInPlace(ctx context.Context, key string, f *os.File, dir string, sum []byte) error {
	h := sha256.New()
	if _, err := io.Copy(h, ctxReader{ctx, f}); err != nil {
		return fmt.Errorf("put %s: verify in place: %w", key, err)
	}
	if got := h.Sum(nil); !bytes.Equal(got, sum) {
		return fmt.Errorf("put %s: file in place has SHA-256 %x, want %x", key, got, sum)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if err := d.syncDir(dir); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

// syncDir makes a rename or create in dir durable. Windows cannot fsync a
// directory (and does not need to).
func (d *Dir) syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	f, err := d.root.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// Get writes the file at key to w.
func (d *Dir) Get(ctx context.Context, key string, w io.Writer) error {
	if err := checkKey(key); err != nil {
		return err
	}
	f, err := d.root.Open(filepath.FromSlash(key))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("get %s: %w", key, uploader.ErrNotFound)
	} else if err != nil {
		return fmt.Errorf("get %s: %w", key, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		return fmt.Errorf("get %s: %w", key, err)
	} else if !st.Mode().IsRegular() {
		return fmt.Errorf("get %s: not a regular file: %w", key, uploader.ErrNotFound)
	}
	if _, err := io.Copy(w, ctxReader{ctx, f}); err != nil {
		return fmt.Errorf("get %s: %w", key, err)
	}
	return nil
}

// List returns the keys of the regular files under prefix, sorted. Symbolic
// links, directories and temporary files are not listed.
func (d *Dir) List(ctx context.Context, prefix string) ([]string, error) {
	// Walk only the deepest directory the prefix names in full.
	start := "."
	if i := strings.LastIndex(prefix, "/"); i > 0 {
		start = prefix[:i]
		if err := uploader.CheckKey(start); err != nil {
			return nil, fmt.Errorf("list %q: %w", prefix, err)
		}
	}
	var keys []string
	err := fs.WalkDir(d.root.FS(), start, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if p == start && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if e.Type().IsRegular() && strings.HasPrefix(p, prefix) && !strings.HasPrefix(e.Name(), TempPrefix) {
			keys = append(keys, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %q in %s: %w", prefix, d, err)
	}
	slices.Sort(keys)
	return keys, nil
}

// ctxReader stops a copy when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

func randomSuffix() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	return hex.EncodeToString(b)
}
