package muxer

import (
	"io"
	"time"

	"github.com/trackrec/trackrec/muxer/webm"
)

// newWebM starts a WebM container: CodecPrivate is the OpusHead and
// CodecDelay the pre-skip; block timestamps are the raw positions (1 ms
// grid). If w is also an io.WriteSeeker, Close writes Duration and Cues.
func newWebM(w io.Writer, channels int, preSkip int) (Container, error) {
	return webm.NewWriter(w, webm.Header{Channels: uint8(channels), PreSkip: uint16(preSkip)},
		webm.Options{ClusterDuration: time.Duration(flushSamples) * time.Second / clockRate})
}
