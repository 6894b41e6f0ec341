package muxer

import (
	"io"
	"time"
)

// Tap sees a Track's output as it is written, for live streams: the
// container's bytes (Ogg: one whole page per call, headers first) and each
// packet the container took, holes' fillers included, on the raw timeline.
// Calls come from the goroutine writing the track, under the Track's lock,
// in the order the file gets them: a Tap must not block, and must copy what
// it keeps.
type Tap interface {
	// Begin says the container started, its header bytes passed to Wrote
	// already: the file's start (a UTC second), the channel count and the
	// pre-skip (raw position of the file's start).
	Begin(start time.Time, channels, preSkip int)
	// Wrote passes bytes the container wrote to the file.
	Wrote(b []byte)
	// Packet passes a packet the container took: it starts at start on the
	// raw timeline and lasts samples (48 kHz).
	Packet(payload []byte, start int64, samples int)
}

// teeWriter copies what reaches the file to the tap.
type teeWriter struct {
	w   io.Writer
	tap Tap
}

func (t teeWriter) Write(p []byte) (int, error) {
	n, err := t.w.Write(p)
	if n > 0 {
		t.tap.Wrote(p[:n])
	}
	return n, err
}

// tapped passes each packet the container took to the tap.
type tapped struct {
	Container
	tap Tap
}

func (t tapped) WritePacket(payload []byte, start int64, samples int) error {
	if err := t.Container.WritePacket(payload, start, samples); err != nil {
		return err
	}
	t.tap.Packet(payload, start, samples)
	return nil
}
