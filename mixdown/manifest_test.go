package mixdown

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestManifest(t *testing.T) {
	start := time.Date(2026, 11, 21, 11, 0, 0, 0, time.FixedZone("CET", 3600)) // 10:00 UTC
	res := Result{
		Path: "/spool/mix.mp3", Format: FormatMP3, Start: start, Duration: 9500*time.Millisecond + 400*time.Microsecond, Channels: 1,
		Inputs: []Input{
			{Key: "livekit/standup/alice-2026-11-21T100000-TR_AAA.ogg", Identity: "alice", TrackSID: "TR_AAA"},
			{Key: "livekit/standup/bob-2026-11-21T100002-TR_BBB.ogg", Identity: "bob", TrackSID: "TR_BBB", Offset: 2 * time.Second},
		},
	}
	tests := []struct {
		name    string
		res     Result
		room    string
		wantErr string
	}{
		{"two inputs", res, "standup", ""},
		{"no room", res, "", "no room"},
		{"no inputs", Result{Format: FormatOpus, Start: start}, "standup", "no inputs"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Manifest(tc.res, tc.room)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s", b)
			var raw map[string]any
			if err := json.Unmarshal(b, &raw); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"version", "kind", "room", "key", "format", "content_type", "sample_rate", "channels", "start", "duration_ms", "inputs"} {
				if _, ok := raw[k]; !ok {
					t.Errorf("manifest lacks %q", k)
				}
			}
			var m ManifestDoc
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			want := ManifestDoc{
				Version: 1, Kind: "mixdown", Room: "standup", Key: "", Format: FormatMP3, ContentType: "audio/mpeg",
				SampleRate: 48000, Channels: 1, Start: t0, DurationMS: 9500,
				Inputs: []ManifestInput{
					{Key: res.Inputs[0].Key, Identity: "alice", TrackSID: "TR_AAA", Start: t0, OffsetMS: 0},
					{Key: res.Inputs[1].Key, Identity: "bob", TrackSID: "TR_BBB", Start: t0.Add(2 * time.Second), OffsetMS: 2000},
				},
			}
			if !manifestEqual(m, want) {
				t.Errorf("manifest\n%+v\nwant\n%+v", m, want)
			}
			if !strings.Contains(string(b), `"start": "2026-11-21T10:00:00Z"`) {
				t.Errorf("start not in UTC: %s", b)
			}
			// The recorder fills the key and re-encodes.
			m.Key = "mixdown/standup/standup-2026-11-21T100000.mp3"
			if b2, err := json.Marshal(m); err != nil || !strings.Contains(string(b2), m.Key) {
				t.Errorf("re-encode: %v %s", err, b2)
			}
		})
	}
}

func manifestEqual(a, b ManifestDoc) bool {
	if !a.Start.Equal(b.Start) || len(a.Inputs) != len(b.Inputs) {
		return false
	}
	for i := range a.Inputs {
		x, y := a.Inputs[i], b.Inputs[i]
		if !x.Start.Equal(y.Start) {
			return false
		}
		x.Start, y.Start = time.Time{}, time.Time{}
		if x != y {
			return false
		}
	}
	a.Start, b.Start, a.Inputs, b.Inputs = time.Time{}, time.Time{}, nil, nil
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}
