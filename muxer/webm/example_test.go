package webm_test

import (
	"fmt"
	"io"
	"log"
	"os"
	"time"

	"github.com/at-wat/ebml-go"
	ebmlwebm "github.com/at-wat/ebml-go/webm"

	"github.com/trackrec/trackrec/muxer/opus"
	"github.com/trackrec/trackrec/muxer/webm"
)

// Packets go on the raw timeline, pre-skip included (CodecDelay): 80 ms of
// leading silence, then three 20 ms packets. A file that seeks gets Duration
// and Cues at Close.
func ExampleWriter() {
	f, err := os.CreateTemp("", "example-*.webm")
	if err != nil {
		log.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	w, err := webm.NewWriter(f, webm.Header{Channels: 1, PreSkip: 3840}, webm.Options{})
	if err != nil {
		log.Fatal(err)
	}
	pkts := append(opus.Silence(3840, false), []byte{0xF8, 0xFF, 0xFE}, []byte{0xF8, 0xFF, 0xFE}, []byte{0xF8, 0xFF, 0xFE})
	var start int64
	for _, p := range pkts {
		n, err := opus.PacketSamples(p)
		if err != nil {
			log.Fatal(err)
		}
		if err := w.WritePacket(p, start, n); err != nil {
			log.Fatal(err)
		}
		start += int64(n)
	}
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}

	if _, err := f.Seek(0, io.SeekStart); err != nil {
		log.Fatal(err)
	}
	var file struct {
		Header  ebmlwebm.EBMLHeader `ebml:"EBML"`
		Segment ebmlwebm.Segment    `ebml:"Segment"`
	}
	if err := ebml.Unmarshal(f, &file); err != nil {
		log.Fatal(err)
	}
	track := file.Segment.Tracks.TrackEntry[0]
	end := time.Duration(file.Segment.Info.Duration) * time.Millisecond // TimecodeScale is 1 ms
	fmt.Println(len(file.Segment.Cluster[0].SimpleBlock), "blocks,", len(file.Segment.Cues.CuePoint), "cue point")
	fmt.Println("codec:", track.CodecID, "delay:", time.Duration(track.CodecDelay))
	fmt.Println("duration:", end, "raw,", end-time.Duration(track.CodecDelay), "to play")
	// Output:
	// 4 blocks, 1 cue point
	// codec: A_OPUS delay: 80ms
	// duration: 140ms raw, 60ms to play
}
