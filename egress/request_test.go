package egress

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/livekit/protocol/rpc"
	"google.golang.org/protobuf/encoding/protojson"
)

func trackRequest(file *livekit.DirectFileOutput) *rpc.StartEgressRequest {
	return &rpc.StartEgressRequest{EgressId: "EG_1", RoomId: "RM_1", Request: &rpc.StartEgressRequest_Track{
		Track: &livekit.TrackEgressRequest{RoomName: "standup", TrackId: "TR_A", Output: &livekit.TrackEgressRequest_File{File: file}},
	}}
}

func TestParse(t *testing.T) {
	s3 := &livekit.S3Upload{AccessKey: "AK", Secret: "SK", Region: "us-east-1", Endpoint: "http://127.0.0.1:9000", Bucket: "b", ForcePathStyle: true}
	for _, tc := range []struct {
		name string
		req  *rpc.StartEgressRequest
		err  error
		s3   bool
	}{
		{"track to the recorder's storage", trackRequest(&livekit.DirectFileOutput{Filepath: "x/{track_id}"}), nil, false},
		{"track to S3", trackRequest(&livekit.DirectFileOutput{Filepath: "x", Output: &livekit.DirectFileOutput_S3{S3: s3}}), nil, true},
		{"track to GCP", trackRequest(&livekit.DirectFileOutput{Output: &livekit.DirectFileOutput_Gcp{Gcp: &livekit.GCPUpload{Bucket: "b"}}}), ErrOutput, false},
		{"track to Azure", trackRequest(&livekit.DirectFileOutput{Output: &livekit.DirectFileOutput_Azure{Azure: &livekit.AzureBlobUpload{ContainerName: "c"}}}), ErrOutput, false},
		{"S3 without a bucket", trackRequest(&livekit.DirectFileOutput{Output: &livekit.DirectFileOutput_S3{S3: &livekit.S3Upload{}}}), ErrInvalid, false},
		{"track to a WebSocket", wsRequest("ws://127.0.0.1:9/pcm?token=SK"), nil, false},
		{"track to an http URL", wsRequest("http://127.0.0.1:9/pcm"), ErrInvalid, false},
		{"track to a WebSocket without a host", wsRequest("ws:///pcm"), ErrInvalid, false},
		{"track without an output", &rpc.StartEgressRequest{EgressId: "EG_1", Request: &rpc.StartEgressRequest_Track{
			Track: &livekit.TrackEgressRequest{RoomName: "standup", TrackId: "TR_A"}}}, ErrNotOurs, false},
		{"room composite", &rpc.StartEgressRequest{EgressId: "EG_1", Request: &rpc.StartEgressRequest_RoomComposite{RoomComposite: &livekit.RoomCompositeEgressRequest{RoomName: "r"}}}, ErrNotOurs, false},
		{"participant", &rpc.StartEgressRequest{EgressId: "EG_1", Request: &rpc.StartEgressRequest_Participant{Participant: &livekit.ParticipantEgressRequest{RoomName: "r"}}}, ErrNotOurs, false},
		{"no egress id", &rpc.StartEgressRequest{Request: trackRequest(&livekit.DirectFileOutput{}).Request}, ErrInvalid, false},
		{"an egress id that names a path", &rpc.StartEgressRequest{EgressId: "EG_../../x", Request: trackRequest(&livekit.DirectFileOutput{}).Request}, ErrInvalid, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Parse(tc.req)
			if !errors.Is(err, tc.err) {
				t.Fatalf("Parse: %v, want %v", err, tc.err)
			}
			if err == nil && ((r.S3 != nil) != tc.s3 || r.RoomName != "standup" || r.TrackID != "TR_A" || r.EgressID != "EG_1") {
				t.Errorf("Parse: %+v", r)
			}
			if err != nil && strings.Contains(err.Error(), "SK") {
				t.Errorf("error shows the secret: %v", err)
			}
		})
	}
}

func wsRequest(u string) *rpc.StartEgressRequest {
	return &rpc.StartEgressRequest{EgressId: "EG_1", Request: &rpc.StartEgressRequest_Track{
		Track: &livekit.TrackEgressRequest{RoomName: "standup", TrackId: "TR_A", Output: &livekit.TrackEgressRequest_WebsocketUrl{WebsocketUrl: u}}}}
}

// A WebSocket URL's query and user information (a token, often) are never
// shown; its host and path are.
func TestRedactedWebsocketURL(t *testing.T) {
	for _, u := range []string{"wss://user:SECRET@asr.example/v1/stream?key=SECRET", "ws://asr.example:9000/x?SECRET"} {
		tr := Redacted(wsRequest(u))
		got := tr.GetWebsocketUrl()
		if strings.Contains(got, "SECRET") || !strings.Contains(got, "asr.example") {
			t.Errorf("%s redacted to %s", u, got)
		}
		if !strings.Contains(wsRequest(u).GetTrack().GetWebsocketUrl(), "SECRET") {
			t.Error("Redacted changed the request itself")
		}
	}
}

// Credentials never leave: not in the redacted request, not in the info
// livekit-server stores and sends in webhooks, not in S3's String.
func TestRedacted(t *testing.T) {
	req := trackRequest(&livekit.DirectFileOutput{Filepath: "x", Output: &livekit.DirectFileOutput_S3{S3: &livekit.S3Upload{
		AccessKey: "AKIASECRET", Secret: "TOPSECRET", SessionToken: "TOKENSECRET", Bucket: "b",
		Proxy: &livekit.ProxyConfig{Url: "http://proxy", Password: "PROXYSECRET"}}}})
	r, err := Parse(req)
	if err != nil {
		t.Fatal(err)
	}
	info := NewInfo(r, time.Now())
	done, _ := info.Complete([]*livekit.FileInfo{{Filename: "x.ogg"}}, "Source closed")
	doc, _ := protojson.Marshal(done)
	for _, secret := range []string{"AKIASECRET", "TOPSECRET", "TOKENSECRET", "PROXYSECRET"} {
		if strings.Contains(string(doc), secret) || strings.Contains(r.S3.String(), secret) {
			t.Errorf("%s leaks: %s", secret, doc)
		}
	}
	if req.GetTrack().GetFile().GetS3().GetSecret() != "TOPSECRET" {
		t.Error("redaction changed the request itself")
	}
	if !strings.Contains(string(doc), `"bucket":"b"`) {
		t.Errorf("redaction lost the bucket: %s", doc)
	}
}

// An egress's status only moves forward, and ends once.
func TestInfoTransitions(t *testing.T) {
	r, _ := Parse(trackRequest(&livekit.DirectFileOutput{Filepath: "x"}))
	start := time.Now()
	info := NewInfo(r, start)
	if s := info.Snapshot(); s.Status != livekit.EgressStatus_EGRESS_STARTING || s.StartedAt != start.UnixNano() || s.SourceType != livekit.EgressSourceType_EGRESS_SOURCE_TYPE_SDK {
		t.Fatalf("new: %v", s)
	}
	file := &livekit.FileInfo{Filename: "x.ogg"}
	if e, ok := info.Active(file); !ok || e.Status != livekit.EgressStatus_EGRESS_ACTIVE || len(e.FileResults) != 1 || e.GetFile() == nil {
		t.Fatalf("active: %v %v", e, ok)
	}
	if e, _ := info.Ending("Stopped by request"); e.Status != livekit.EgressStatus_EGRESS_ENDING || e.Details != "End reason: Stopped by request" {
		t.Fatalf("ending: %v", e)
	}
	done, ok := info.Complete([]*livekit.FileInfo{{Filename: "x.ogg", Size: 10}}, "Source closed")
	if !ok || done.Status != livekit.EgressStatus_EGRESS_COMPLETE || done.EndedAt == 0 || done.FileResults[0].Size != 10 || done.Details != "End reason: Stopped by request" {
		t.Fatalf("complete: %v %v", done, ok)
	}
	if e, ok := info.Failed(errors.New("late"), nil); ok || e.Status != livekit.EgressStatus_EGRESS_COMPLETE {
		t.Errorf("a failure after the end changed it: %v %v", e, ok)
	}
}

func TestLocation(t *testing.T) {
	for _, tc := range []struct {
		s3   *S3
		want string
	}{
		{&S3{Bucket: "b", Endpoint: "http://127.0.0.1:9000", ForcePathStyle: true}, "http://127.0.0.1:9000/b/livekit/r/a%20b.ogg"},
		{&S3{Bucket: "b", Endpoint: "https://minio.example/"}, "https://b.minio.example/livekit/r/a%20b.ogg"},
		{&S3{Bucket: "b"}, "https://b.s3.amazonaws.com/livekit/r/a%20b.ogg"},
	} {
		if got := Location(tc.s3, "livekit/r/a b.ogg"); got != tc.want {
			t.Errorf("Location(%+v) = %q, want %q", tc.s3, got, tc.want)
		}
	}
	if got := ManifestKey("livekit/r/a.ogg", "EG_1"); got != "livekit/r/EG_1.json" {
		t.Errorf("ManifestKey: %q", got)
	}
}
