// Package uploader stores finished track files: the key layout shared by every
// backend, the local directory, and (later) object storage.
package uploader

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// TimeLayout is the timestamp in track names: UTC, one-second resolution, the
// same shape LiveKit Auto Track Egress uses ({time} = 2006-01-02T150405).
const TimeLayout = "2006-01-02T150405"

// maxSegment bounds an escaped name so that a file name stays well under the
// 255-byte limit of common file systems once timestamp and track id are added.
const maxSegment = 120

// TrackKey is the relative path (and object key, after a prefix) of a track
// file: {room}/{identity}-{YYYY-MM-DDTHHMMSS}-{track}.{ext}. Room, identity
// and track id come from outside and are escaped with Segment, so none of them
// can add a path level, climb out with "..", or carry control characters.
func TrackKey(room, identity, trackSID string, start time.Time, ext string) string {
	return Segment(room) + "/" + Segment(identity) + "-" + start.UTC().Format(TimeLayout) + "-" + Segment(trackSID) + "." + ext
}

// Segment makes one outside name safe as a single path segment and key part.
// Letters, digits and -_.~@+=, are kept (any script, so names stay readable);
// every other byte, and a leading dot, becomes %XX. Escaping is injective, so
// two different names never share a file. A name whose escaped form is too
// long keeps a readable prefix and ends with ~ and a hash of the whole name.
func Segment(name string) string {
	var b strings.Builder
	for i, r := range name {
		size := utf8.RuneLen(r)
		switch {
		case r == utf8.RuneError && !validAt(name, i):
			size = 1
			escape(&b, name[i:i+1])
		case r == '.' && i == 0:
			escape(&b, ".")
		case keep(r):
			b.WriteRune(r)
		default:
			escape(&b, name[i:i+size])
		}
	}
	if b.Len() == 0 {
		// No escaped name is a lone "%", so the empty name cannot collide.
		return "%"
	}
	s := b.String()
	if len(s) <= maxSegment {
		return s
	}
	sum := sha256.Sum256([]byte(name))
	cut := maxSegment - 17
	for cut > 0 && (s[cut-1] == '%' || (cut > 1 && s[cut-2] == '%') || !utf8.RuneStart(s[cut])) {
		cut--
	}
	return s[:cut] + "~" + hex.EncodeToString(sum[:8])
}

func validAt(s string, i int) bool {
	r, n := utf8.DecodeRuneInString(s[i:])
	return r != utf8.RuneError || n > 1
}

func keep(r rune) bool {
	switch r {
	case '-', '_', '.', '~', '@', '+', '=', ',':
		return true
	}
	return unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r)
}

func escape(b *strings.Builder, s string) {
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(b, "%%%02X", s[i])
	}
}
