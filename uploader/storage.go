package uploader

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Storage is where finished files go. Keys are full object keys
// ("livekit/room/alice-...-TR_x.ogg"), '/'-separated, and must pass CheckKey.
type Storage interface {
	// Put stores the local file at path under key and returns once the
	// store has confirmed it, integrity checked: sha256 is the file's
	// SHA-256 (computed by the caller), sent to the store and verified by
	// it. On error nothing is known to be stored: keep the local file.
	Put(ctx context.Context, key, path, contentType string, sha256 []byte) error
	// Get writes the object to w. On error w may hold part of it.
	Get(ctx context.Context, key string, w io.Writer) error
	// List returns the keys under prefix, sorted.
	List(ctx context.Context, prefix string) ([]string, error)
	// String names the backend for logs ("s3://bucket", "file:///dir").
	String() string
}

// ErrNotFound is returned by Get for a missing key (backends wrap it).
var ErrNotFound = errors.New("object not found")

// MaxKeyLen is S3's limit on the UTF-8 length of an object key.
const MaxKeyLen = 1024

// CheckKey refuses keys that are empty, absolute, contain "..", "." or empty
// segments, backslashes, NUL or control characters, invalid UTF-8, or more
// than MaxKeyLen bytes. Such keys either mean different things on different
// backends (S3 keeps "a//b" and "../x" literally, a file system resolves
// them) or could climb out of a prefix or a directory.
func CheckKey(key string) error {
	switch {
	case key == "":
		return errors.New("invalid key: empty")
	case len(key) > MaxKeyLen:
		return fmt.Errorf("invalid key %.40q...: longer than %d bytes", key, MaxKeyLen)
	case !utf8.ValidString(key):
		return fmt.Errorf("invalid key %q: not UTF-8", key)
	case strings.HasPrefix(key, "/"):
		return fmt.Errorf("invalid key %q: absolute", key)
	case strings.ContainsRune(key, '\\'):
		return fmt.Errorf("invalid key %q: contains a backslash", key)
	case strings.ContainsFunc(key, unicode.IsControl):
		// unicode.IsControl covers NUL, C0, DEL and C1.
		return fmt.Errorf("invalid key %q: contains a control character", key)
	}
	for seg := range strings.SplitSeq(key, "/") {
		switch seg {
		case "":
			return fmt.Errorf("invalid key %q: empty segment", key)
		case ".", "..":
			return fmt.Errorf("invalid key %q: %q segment", key, seg)
		}
	}
	return nil
}
