package muxer

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// A closed track keeps its counts and nothing else: its buffers, queues and
// container go, since a closed recording stays in the history with it.
func TestCloseReleasesBuffers(t *testing.T) {
	out := nopCloser{&bytes.Buffer{}}
	tr, err := NewTrack(Options{Format: FormatOgg, Open: func(time.Time, int) (io.WriteCloser, error) { return out, nil }})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1000, 0)
	for i := range 80 {
		p := &rtp.Packet{Header: rtp.Header{SequenceNumber: uint16(i), Timestamp: uint32(i * 960)}, Payload: []byte{0xF8, 0xFF, 0xFE}}
		if err := tr.WriteRTP(p, at.Add(time.Duration(i)*20*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	st := tr.Stats()
	if st.Packets != 80 || st.Bytes == 0 {
		t.Fatalf("stats after close %+v", st)
	}
	tl := &tr.tl
	if tl.free != nil || tl.pending != nil || tl.jb != nil || tl.hold != nil || tl.scratch != nil || tl.c != nil {
		t.Errorf("closed track still holds buffers: free %d, pending %d, jitter %d, hold %d, container %v", len(tl.free), len(tl.pending), len(tl.jb), len(tl.hold), tl.c != nil)
	}
	if err := tr.WriteRTP(&rtp.Packet{Payload: []byte{0xF8}}, at); err != ErrClosed {
		t.Errorf("write after close: %v, want ErrClosed", err)
	}
}
