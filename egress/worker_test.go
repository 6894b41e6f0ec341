package egress

import (
	"context"
	"errors"
	"testing"

	"github.com/livekit/protocol/livekit"
	"github.com/livekit/protocol/rpc"
	"github.com/livekit/psrpc"

	"github.com/trackrec/trackrec/recorder"
	"github.com/trackrec/trackrec/uploader"
)

type noRecorder struct{}

func (noRecorder) Start(context.Context, string, string, ...recorder.StartOption) (recorder.RecordingInfo, bool, error) {
	return recorder.RecordingInfo{}, false, errors.New("not in this test")
}
func (noRecorder) StopKey(context.Context, recorder.Key, string) (recorder.RecordingInfo, error) {
	return recorder.RecordingInfo{}, recorder.ErrNotFound
}

type noUploads struct{}

func (noUploads) Submit(uploader.Item) (*uploader.Upload, error) {
	return nil, errors.New("not in this test")
}

// The worker claims the track egresses it serves, lower the busier it is,
// and no others: video, other codecs, composites, a full instance. An
// output it does not write is claimed only as a last resort.
func TestClaims(t *testing.T) {
	tracks := map[string]Publisher{
		"TR_mic": {Identity: "ann", Kind: "audio", MimeType: "audio/opus"},
		"TR_red": {Identity: "ann", Kind: "audio", MimeType: "audio/red"},
		"TR_cam": {Identity: "ann", Kind: "video", MimeType: "video/vp8"},
		"TR_pcm": {Identity: "ann", Kind: "audio", MimeType: "audio/pcmu"},
	}
	load := 0
	w, err := NewWorker(Options{
		Bus: psrpc.NewLocalMessageBus(), Recorder: noRecorder{}, Uploads: noUploads{}, Dir: t.TempDir(),
		Find: func(_ context.Context, _, track string) (Publisher, error) {
			if p, ok := tracks[track]; ok {
				return p, nil
			}
			return Publisher{}, errors.New("no such track")
		},
		NewStore: func(context.Context, *S3) (uploader.Storage, error) { return nil, errors.New("not in this test") },
		Load:     func() (int, int) { return load, 4 },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	track := func(sid string, file *livekit.DirectFileOutput) *rpc.StartEgressRequest {
		return &rpc.StartEgressRequest{EgressId: "EG_1", Request: &rpc.StartEgressRequest_Track{
			Track: &livekit.TrackEgressRequest{RoomName: "r", TrackId: sid, Output: &livekit.TrackEgressRequest_File{File: file}}}}
	}
	for _, tc := range []struct {
		name string
		req  *rpc.StartEgressRequest
		load int
		want float32
	}{
		{"opus, idle", track("TR_mic", &livekit.DirectFileOutput{}), 0, 0.99},
		{"opus, half full", track("TR_mic", &livekit.DirectFileOutput{}), 2, 0.495},
		{"red is opus to a subscriber", track("TR_red", &livekit.DirectFileOutput{}), 0, 0.99},
		{"opus, full", track("TR_mic", &livekit.DirectFileOutput{}), 4, -1},
		{"video", track("TR_cam", &livekit.DirectFileOutput{}), 0, -1},
		{"another audio codec", track("TR_pcm", &livekit.DirectFileOutput{}), 0, -1},
		{"a track LiveKit does not list", track("TR_gone", &livekit.DirectFileOutput{}), 0, -1},
		{"to GCP", track("TR_mic", &livekit.DirectFileOutput{Output: &livekit.DirectFileOutput_Gcp{Gcp: &livekit.GCPUpload{}}}), 0, lowOutput},
		{"a room composite", &rpc.StartEgressRequest{EgressId: "EG_1", Request: &rpc.StartEgressRequest_RoomComposite{RoomComposite: &livekit.RoomCompositeEgressRequest{RoomName: "r"}}}, 0, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			load = tc.load
			if got := w.StartEgressAffinity(context.Background(), tc.req); got != tc.want {
				t.Errorf("claim %v, want %v", got, tc.want)
			}
		})
	}
}
