package muxer_test

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"time"

	"github.com/pion/rtp"

	"github.com/trackrec/trackrec/muxer"
	"github.com/trackrec/trackrec/muxer/opus"
)

// memFile is an in-memory output.
type memFile struct{ bytes.Buffer }

func (*memFile) Close() error { return nil }

// Two seconds of 20 ms packets, one of them lost, arriving a quarter of a
// second past a whole second: the file starts on that second with 250 ms of
// silence, and the lost packet is concealed.
func ExampleTrack() {
	var file memFile
	tr, err := muxer.NewTrack(muxer.Options{
		Format: muxer.FormatOgg,
		Open: func(start time.Time, channels int) (io.WriteCloser, error) {
			fmt.Println("open:", start.Format(time.RFC3339), channels, "channel")
			return &file, nil
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	payload := []byte{0xF8, 0xFF, 0xFE} // 20 ms of CELT silence, standing in for speech
	arrival := time.Date(2026, 3, 1, 12, 0, 0, 250_000_000, time.UTC)
	for i := range 100 {
		if i == 50 {
			continue // lost
		}
		p := &rtp.Packet{
			Header:  rtp.Header{Version: 2, PayloadType: 111, SSRC: 1, SequenceNumber: uint16(4000 + i), Timestamp: uint32(90000 + 960*i)},
			Payload: payload,
		}
		if err := tr.WriteRTP(p, arrival.Add(time.Duration(i)*20*time.Millisecond)); err != nil {
			log.Fatal(err)
		}
	}
	if err := tr.Close(); err != nil {
		log.Fatal(err)
	}
	st := tr.Stats()
	fmt.Println("first sample plays at:", st.Anchor.Sub(st.Start))
	fmt.Println("packets:", st.Packets, "concealed:", st.ConcealmentSamples, "samples")
	fmt.Println("duration:", opus.Duration(st.Samples))
	fmt.Println("file bytes:", st.Bytes == int64(file.Len()))
	// Output:
	// open: 2026-03-01T12:00:00Z 1 channel
	// first sample plays at: 250ms
	// packets: 99 concealed: 960 samples
	// duration: 2.25s
	// file bytes: true
}
