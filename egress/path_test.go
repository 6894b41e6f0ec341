package egress

import (
	"testing"
	"time"
)

func TestObjectKey(t *testing.T) {
	start := time.Date(2026, 11, 21, 10, 0, 5, 0, time.UTC)
	f := Fields{RoomName: "standup", RoomID: "RM_1", Identity: "alice", TrackID: "TR_A", TrackType: "audio", TrackSource: "microphone", Start: start}
	for _, tc := range []struct {
		name, path, want string
	}{
		{"the consumer's layout, as the server sends it", "livekit/{room_name}/{publisher_identity}-{time}-{track_id}", "livekit/standup/alice-2026-11-21T100005-TR_A.ogg"},
		{"every placeholder", "{room_id}/{track_type}/{track_source}/{utc}", "RM_1/audio/microphone/20261121100005000.ogg"},
		{"empty", "", "TR_A-2026-11-21T100005.ogg"},
		{"a folder", "rec/{room_name}/", "rec/standup/TR_A-2026-11-21T100005.ogg"},
		{"the right extension kept", "x/{track_id}.ogg", "x/TR_A.ogg"},
		{"a known extension replaced", "x/{track_id}.mp4", "x/TR_A.ogg"},
		{"an unknown one kept before .ogg", "x/{track_id}.v1", "x/TR_A.v1.ogg"},
		{"no climbing out", "../../{room_name}/a", "standup/a.ogg"},
		{"no absolute path", "/{room_name}/a", "standup/a.ogg"},
		{"doubled slashes cleaned", "a//b/{track_id}", "a/b/TR_A.ogg"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ObjectKey(tc.path, f)
			if err != nil || got != tc.want {
				t.Errorf("ObjectKey(%q) = %q, %v; want %q", tc.path, got, err, tc.want)
			}
		})
	}
}

// Names from outside never add a path level or climb out.
func TestObjectKeyEscapesNames(t *testing.T) {
	f := Fields{RoomName: "../etc", Identity: "a/b", TrackID: "TR_A", Start: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	got, err := ObjectKey("livekit/{room_name}/{publisher_identity}-{time}-{track_id}", f)
	if err != nil || got != "livekit/%2E.%2Fetc/a%2Fb-2026-01-02T030405-TR_A.ogg" {
		t.Errorf("got %q, %v", got, err)
	}
	if got, err := ObjectKey("{track_id}/../victim/alice-2026-01-02T030405-TR_V", f); err == nil {
		t.Errorf("a path climbing inside gave %q", got)
	}
	if _, err := ObjectKey("x", Fields{TrackID: "TR_A", Start: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)}); err == nil {
		t.Error("a start inside a second was accepted")
	}
}
