package uploader

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// consumerKey is the rule the downstream pipeline parses keys with.
var consumerKey = regexp.MustCompile(`^livekit/(?P<room_name>[^/]+)/(?P<identity>.+?)-(?P<timestamp>\d{4}-\d{2}-\d{2}T\d{6})-(?P<track_id>TR_\w+)\.(?P<ext>\w+)$`)

func TestTrackKeyParsesWithConsumerRule(t *testing.T) {
	start := time.Date(2026, 11, 21, 19, 57, 58, 730e6, time.FixedZone("CET", 3600))
	cases := []struct{ room, identity, wantRoom, wantIdentity string }{
		{"standup", "alice", "standup", "alice"},
		{"team/weekly", "bob-2026-01-01T000000-TR_x", "team%2Fweekly", "bob-2026-01-01T000000-TR_x"},
		{"..", "../../etc/passwd", "%2E.", "%2E.%2F..%2Fetc%2Fpasswd"},
		{"réunion", "José Ñ", "réunion", "José%20Ñ"},
		{"a\x00b", "c\nd\x7f", "a%00b", "c%0Ad%7F"},
		{"r", "Дмитрий 🎧", "r", "Дмитрий%20%F0%9F%8E%A7"},
	}
	for _, tc := range cases {
		key := "livekit/" + TrackKey(tc.room, tc.identity, "TR_AMkzQ8pZ7", start, "ogg")
		m := consumerKey.FindStringSubmatch(key)
		if m == nil {
			t.Errorf("%q does not parse", key)
			continue
		}
		if m[1] != tc.wantRoom || m[2] != tc.wantIdentity {
			t.Errorf("%q: room %q identity %q, want %q %q", key, m[1], m[2], tc.wantRoom, tc.wantIdentity)
		}
		if m[3] != "2026-11-21T185758" {
			t.Errorf("timestamp %q should be the UTC second", m[3])
		}
		if m[4] != "TR_AMkzQ8pZ7" || m[5] != "ogg" {
			t.Errorf("track/ext %q %q", m[4], m[5])
		}
	}
}

func TestSegmentNeverEscapes(t *testing.T) {
	hostile := []string{"", ".", "..", "/", "../x", "a/../../b", "\x00", "\r\n", ".hidden", "%2F", strings.Repeat("é/", 300), strings.Repeat("x", 300), strings.Repeat("🎧", 300), "\xff\xfe", "C:\\x"}
	root := "/spool"
	seen := map[string]string{}
	for _, name := range hostile {
		s := Segment(name)
		if s == "" || s == "." || s == ".." || strings.ContainsAny(s, "/\\\x00\n\r") || strings.HasPrefix(s, ".") {
			t.Errorf("Segment(%q) = %q is unsafe", name, s)
		}
		if len(s) > maxSegment {
			t.Errorf("Segment(%q) is %d bytes", name, len(s))
		}
		if p := filepath.Join(root, s); filepath.Dir(p) != root {
			t.Errorf("Segment(%q) = %q leaves the directory", name, s)
		}
		if prev, dup := seen[s]; dup {
			t.Errorf("%q and %q both escape to %q", prev, name, s)
		}
		seen[s] = name
	}
}

func FuzzSegment(f *testing.F) {
	for _, s := range []string{"alice", "../x", "\x00", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		s := Segment(name)
		if s == "" || s == "." || s == ".." || strings.ContainsAny(s, "/\\\x00") || len(s) > maxSegment {
			t.Fatalf("Segment(%q) = %q", name, s)
		}
	})
}
