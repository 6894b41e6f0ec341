package egress

import (
	"errors"
	"fmt"
	"strings"

	"github.com/livekit/protocol/livekit"
	"github.com/livekit/protocol/rpc"
	"google.golang.org/protobuf/proto"
)

// Errors of Parse.
var (
	// ErrNotOurs: a request this worker does not serve (not a track
	// egress, or not to a file): it does not claim it, so a livekit/egress
	// on the same Redis may.
	ErrNotOurs = errors.New("egress: not a track egress to a file")
	// ErrOutput: a track egress whose output this worker does not write
	// (GCP, Azure, AliOSS): claimed only when nobody else claims it, and
	// failed with this reason.
	ErrOutput = errors.New("egress: output not supported by trackrec")
	// ErrInvalid: a malformed request.
	ErrInvalid = errors.New("egress: invalid request")
)

// Request is a track egress this worker takes, checked.
type Request struct {
	EgressID string
	RoomID   string
	RoomName string
	TrackID  string
	// Filepath is file.filepath as livekit-server sent it (ObjectKey
	// expands it).
	Filepath        string
	DisableManifest bool
	// S3 is the request's own upload target; nil: the recorder's storage.
	S3 *S3
	// WebsocketURL, if set, is where the track's PCM goes as it is
	// recorded (websocket.go); the file is kept at the recorder's layout.
	WebsocketURL string
	// Raw is the request, for EgressInfo (Redacted).
	Raw *rpc.StartEgressRequest
}

// S3 is an upload target carried in a request. Its credentials are never
// logged, stored or sent back (Redacted).
type S3 struct {
	AccessKey, Secret, SessionToken string
	Region, Endpoint, Bucket        string
	ForcePathStyle                  bool
}

// String never shows the credentials.
func (s *S3) String() string {
	return fmt.Sprintf("s3://%s (region %q, endpoint %q)", s.Bucket, s.Region, s.Endpoint)
}

// Parse checks req: a track egress to a file (S3 or the recorder's own
// storage) is a Request; anything else is ErrNotOurs, ErrOutput or
// ErrInvalid, wrapped with the reason.
func Parse(req *rpc.StartEgressRequest) (Request, error) {
	tr := req.GetTrack()
	if tr == nil {
		return Request{}, fmt.Errorf("%w: %s", ErrNotOurs, requestKind(req))
	}
	file := tr.GetFile()
	ws := tr.GetWebsocketUrl()
	if file == nil && ws == "" {
		return Request{}, fmt.Errorf("%w: a track egress without an output", ErrNotOurs)
	}
	r := Request{
		EgressID: req.GetEgressId(), RoomID: req.GetRoomId(), RoomName: tr.GetRoomName(), TrackID: tr.GetTrackId(),
		Filepath: file.GetFilepath(), DisableManifest: file.GetDisableManifest(), Raw: req,
	}
	if ws != "" {
		if err := checkWebsocketURL(ws); err != nil {
			return Request{}, err
		}
		r.WebsocketURL, r.Filepath = ws, wsFilepath
	}
	if r.RoomName == "" {
		r.RoomName = req.GetRoomName()
	}
	switch {
	case !validID(r.EgressID):
		return Request{}, fmt.Errorf("%w: egress id %q", ErrInvalid, r.EgressID)
	case r.RoomName == "" || r.TrackID == "":
		return Request{}, fmt.Errorf("%w: a track egress needs a room name and a track id", ErrInvalid)
	}
	switch out := file.GetOutput().(type) {
	case nil:
	case *livekit.DirectFileOutput_S3:
		s := out.S3
		if s.GetAssumeRoleArn() != "" {
			return Request{}, fmt.Errorf("%w: S3 with an assumed role", ErrOutput)
		}
		if s.GetBucket() == "" {
			return Request{}, fmt.Errorf("%w: S3 output without a bucket", ErrInvalid)
		}
		r.S3 = &S3{AccessKey: s.GetAccessKey(), Secret: s.GetSecret(), SessionToken: s.GetSessionToken(),
			Region: s.GetRegion(), Endpoint: s.GetEndpoint(), Bucket: s.GetBucket(), ForcePathStyle: s.GetForcePathStyle()}
	case *livekit.DirectFileOutput_Gcp:
		return Request{}, fmt.Errorf("%w: GCP Cloud Storage", ErrOutput)
	case *livekit.DirectFileOutput_Azure:
		return Request{}, fmt.Errorf("%w: Azure Blob Storage", ErrOutput)
	default:
		return Request{}, fmt.Errorf("%w: %T", ErrOutput, out)
	}
	return r, nil
}

// validID is an egress id as livekit-server makes them: EG_ and letters
// or digits (it names files in the worker's folder).
func validID(id string) bool {
	if !strings.HasPrefix(id, "EG_") || len(id) < 4 || len(id) > 64 {
		return false
	}
	for _, r := range id[3:] {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func requestKind(req *rpc.StartEgressRequest) string {
	switch req.GetRequest().(type) {
	case *rpc.StartEgressRequest_RoomComposite:
		return "a room composite"
	case *rpc.StartEgressRequest_Web:
		return "a web egress"
	case *rpc.StartEgressRequest_Participant:
		return "a participant egress"
	case *rpc.StartEgressRequest_TrackComposite:
		return "a track composite"
	case nil:
		return "an empty request"
	}
	return fmt.Sprintf("%T", req.GetRequest())
}

// redacted replaces a credential, as livekit/egress does.
const redacted = "{redacted}"

// Redacted is req's track request with every credential replaced, for what
// is stored, logged or sent in webhooks.
func Redacted(req *rpc.StartEgressRequest) *livekit.TrackEgressRequest {
	tr, ok := proto.Clone(req.GetTrack()).(*livekit.TrackEgressRequest)
	if !ok || tr == nil {
		return nil
	}
	if o, ok := tr.Output.(*livekit.TrackEgressRequest_WebsocketUrl); ok {
		o.WebsocketUrl = redactURL(o.WebsocketUrl)
	}
	if s3 := tr.GetFile().GetS3(); s3 != nil {
		for _, f := range []*string{&s3.AccessKey, &s3.Secret, &s3.SessionToken, &s3.AssumeRoleExternalId} {
			if *f != "" {
				*f = redacted
			}
		}
		if s3.Proxy != nil && s3.Proxy.Password != "" {
			s3.Proxy.Password = redacted
		}
	}
	if g := tr.GetFile().GetGcp(); g != nil && g.Credentials != "" {
		g.Credentials = redacted
	}
	if a := tr.GetFile().GetAzure(); a != nil && a.AccountKey != "" {
		a.AccountKey = redacted
	}
	if o := tr.GetFile().GetAliOSS(); o != nil {
		if o.AccessKey != "" {
			o.AccessKey = redacted
		}
		if o.Secret != "" {
			o.Secret = redacted
		}
	}
	return tr
}
