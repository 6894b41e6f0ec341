package egress

import (
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/livekit/protocol/livekit"
	"google.golang.org/protobuf/proto"
)

// Info is one egress's EgressInfo as livekit-server is told of it: every
// change returns the whole of it (livekit-server overwrites what it
// stored), times in Unix nanoseconds, credentials redacted. Safe for
// concurrent use.
type Info struct {
	mu sync.Mutex
	e  *livekit.EgressInfo
}

// NewInfo is r's EgressInfo as it starts (EGRESS_STARTING).
func NewInfo(r Request, now time.Time) *Info {
	ns := now.UnixNano()
	return &Info{e: &livekit.EgressInfo{
		EgressId:   r.EgressID,
		RoomId:     r.RoomID,
		RoomName:   r.RoomName,
		SourceType: livekit.EgressSourceType_EGRESS_SOURCE_TYPE_SDK,
		Status:     livekit.EgressStatus_EGRESS_STARTING,
		StartedAt:  ns,
		UpdatedAt:  ns,
		Request:    &livekit.EgressInfo_Track{Track: Redacted(r.Raw)},
	}}
}

// Snapshot is a copy of the info now.
func (i *Info) Snapshot() *livekit.EgressInfo {
	i.mu.Lock()
	defer i.mu.Unlock()
	return proto.Clone(i.e).(*livekit.EgressInfo)
}

// Status is the egress's status now.
func (i *Info) Status() livekit.EgressStatus {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.e.Status
}

// change applies fn unless the egress ended, and returns the result and
// whether fn changed it.
func (i *Info) change(fn func(e *livekit.EgressInfo) bool) (*livekit.EgressInfo, bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	changed := !ended(i.e.Status) && fn(i.e)
	return proto.Clone(i.e).(*livekit.EgressInfo), changed
}

// ended says whether status is final.
func ended(s livekit.EgressStatus) bool {
	switch s {
	case livekit.EgressStatus_EGRESS_COMPLETE, livekit.EgressStatus_EGRESS_FAILED,
		livekit.EgressStatus_EGRESS_ABORTED, livekit.EgressStatus_EGRESS_LIMIT_REACHED:
		return true
	}
	return false
}

// Active marks the egress active (its first packet is written), with the
// file it writes; false if it was active with that file or ended already.
func (i *Info) Active(file *livekit.FileInfo) (*livekit.EgressInfo, bool) {
	return i.change(func(e *livekit.EgressInfo) bool {
		switch {
		case e.Status == livekit.EgressStatus_EGRESS_STARTING:
			e.UpdateStatus(livekit.EgressStatus_EGRESS_ACTIVE)
		case e.Status != livekit.EgressStatus_EGRESS_ACTIVE || file == nil || file.Filename == e.GetFile().GetFilename():
			return false
		default:
			// Another file (a resubscription, or another instance going
			// on with it): livekit-server shows the one written now.
			e.UpdatedAt = time.Now().UnixNano()
		}
		setFile(e, file)
		return true
	})
}

// Stream sets the egress's stream result (a WebSocket output).
func (i *Info) Stream(s *livekit.StreamInfo) (*livekit.EgressInfo, bool) {
	return i.change(func(e *livekit.EgressInfo) bool {
		e.StreamResults = []*livekit.StreamInfo{s}
		return true
	})
}

// Ending marks the egress ending (its file is closing, then stored).
func (i *Info) Ending(reason string) (*livekit.EgressInfo, bool) {
	return i.change(func(e *livekit.EgressInfo) bool {
		if e.Status == livekit.EgressStatus_EGRESS_ENDING {
			return false
		}
		e.UpdateStatus(livekit.EgressStatus_EGRESS_ENDING)
		e.SetEndReason(reason)
		return true
	})
}

// Complete marks the egress complete with its stored files (one, unless
// its track was subscribed again mid-egress).
func (i *Info) Complete(files []*livekit.FileInfo, reason string) (*livekit.EgressInfo, bool) {
	return i.change(func(e *livekit.EgressInfo) bool {
		if e.Details == "" {
			e.SetEndReason(reason)
		}
		if len(files) > 0 {
			e.FileResults = files
			e.Result = &livekit.EgressInfo_File{File: files[len(files)-1]}
		}
		e.SetComplete()
		return true
	})
}

// Failed marks the egress failed with err; file, if not nil, is what was
// written.
func (i *Info) Failed(err error, file *livekit.FileInfo) (*livekit.EgressInfo, bool) {
	return i.change(func(e *livekit.EgressInfo) bool {
		if file != nil {
			setFile(e, file)
		}
		e.SetFailed(err)
		return true
	})
}

// setFile makes file the egress's one file result (and the deprecated
// result field, pointing at the same entry).
func setFile(e *livekit.EgressInfo, file *livekit.FileInfo) {
	if file == nil {
		return
	}
	e.FileResults = []*livekit.FileInfo{file}
	e.Result = &livekit.EgressInfo_File{File: file}
}

// Location is where an object is, as livekit/egress reports it: the S3 URL
// (path style: endpoint/bucket/key; else https://bucket.host/key, the
// host AWS's by default).
func Location(s *S3, key string) string {
	if s == nil {
		return key
	}
	esc := (&url.URL{Path: key}).EscapedPath()
	if s.Endpoint == "" {
		return "https://" + s.Bucket + ".s3.amazonaws.com/" + esc
	}
	ep := strings.TrimRight(s.Endpoint, "/")
	if s.ForcePathStyle {
		return ep + "/" + s.Bucket + "/" + esc
	}
	if u, err := url.Parse(ep); err == nil && u.Host != "" {
		return u.Scheme + "://" + s.Bucket + "." + u.Host + "/" + esc
	}
	return "https://" + s.Bucket + "." + ep + "/" + esc
}

// ManifestKey is the key of an egress's manifest: EG_<id>.json beside its
// file, as livekit/egress names it.
func ManifestKey(fileKey, egressID string) string {
	dir := ""
	if i := strings.LastIndex(fileKey, "/"); i >= 0 {
		dir = fileKey[:i+1]
	}
	return dir + egressID + ".json"
}
