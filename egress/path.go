package egress

import (
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/trackrec/trackrec/uploader"
)

// Fields are what a track egress's file path names.
type Fields struct {
	RoomName, RoomID  string
	Identity, TrackID string
	TrackType         string // "audio"
	TrackSource       string // lower case: "microphone", "screen_share_audio"
	// Start is the UTC second the file starts on: {time} and {utc}.
	Start time.Time
}

// ext is the extension of every file this worker writes: Ogg Opus.
const ext = ".ogg"

// knownExts are the extensions livekit/egress replaces with the right one.
var knownExts = map[string]bool{
	".raw": true, ".ogg": true, ".mp3": true, ".ivf": true, ".mp4": true,
	".ts": true, ".webm": true, ".m3u8": true, ".jpeg": true,
}

// ObjectKey expands a track egress's file.filepath into the object key of
// its file, by livekit/egress's rules: the path is cleaned (no leading
// "../"), the placeholders are replaced, an empty path or one ending in "/"
// gets "{track_id}-{time}.ogg", and a path without ".ogg" gets it (a known
// extension in its place is replaced). livekit-server has already appended
// "-{track_id}" where the path had neither it nor a trailing "/".
//
// Unlike livekit/egress, {time} and {utc} name the second the file starts
// on (its audio is aligned to it), not the moment the request came, and the
// values from outside are escaped as key segments (uploader.Segment), so a
// room or identity cannot add a path level or climb out with "..".
func ObjectKey(filepath string, f Fields) (string, error) {
	// A ".." past livekit/egress's leading ones would let the template
	// name any key of the bucket (another's file): refused.
	for _, seg := range strings.Split(strings.TrimLeft(strings.TrimLeft(filepath, "/"), "./"), "/") {
		if seg == ".." {
			return "", fmt.Errorf("egress: file path %q climbs with \"..\" inside it", filepath)
		}
	}
	p := clean(filepath)
	start := f.Start.UTC()
	if !start.Equal(start.Truncate(time.Second)) {
		return "", fmt.Errorf("egress: file start %s is not a whole second", start.Format(time.RFC3339Nano))
	}
	stamp := start.Format(uploader.TimeLayout)
	r := strings.NewReplacer(
		"{room_name}", uploader.Segment(f.RoomName),
		"{room_id}", uploader.Segment(f.RoomID),
		"{publisher_identity}", uploader.Segment(f.Identity),
		"{track_id}", uploader.Segment(f.TrackID),
		"{track_type}", uploader.Segment(f.TrackType),
		"{track_source}", uploader.Segment(f.TrackSource),
		"{time}", stamp,
		"{utc}", start.Format("20060102150405")+"000",
	)
	p = r.Replace(p)
	switch {
	case p == "" || strings.HasSuffix(p, "/"):
		p += uploader.Segment(f.TrackID) + "-" + stamp + ext
	case !strings.HasSuffix(p, ext):
		if i := strings.LastIndex(p, "."); i >= 0 && knownExts[p[i:]] {
			p = p[:i]
		}
		p += ext
	}
	// The template itself may hold odd segments; none may leave the
	// bucket's namespace or be empty.
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", fmt.Errorf("egress: file path %q gives the key %q, which has an empty or dot segment", filepath, p)
		}
	}
	return p, nil
}

// clean is livekit/egress's: path.Clean, without leading "../", keeping a
// trailing "/"; nothing left is "".
func clean(p string) string {
	slash := strings.HasSuffix(p, "/")
	p = path.Clean(p)
	for strings.HasPrefix(p, "../") {
		p = p[3:]
	}
	p = strings.TrimPrefix(p, "/")
	if p == "" || p == "." || p == ".." {
		return ""
	}
	if slash {
		return p + "/"
	}
	return p
}
