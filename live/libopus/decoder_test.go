package libopus

import (
	"testing"

	"github.com/trackrec/trackrec/muxer/opus"
)

func TestDecodeSilenceAndConcealment(t *testing.T) {
	for _, tc := range []struct {
		rate, channels, want int
	}{
		{48000, 1, 960},
		{16000, 1, 320},
		{24000, 2, 480},
		{8000, 1, 160},
	} {
		d, err := NewDecoder(tc.rate, tc.channels)
		if err != nil {
			t.Fatal(err)
		}
		pcm := make([]int16, tc.rate*tc.channels*MaxFrameMs/1000)
		silence, _ := opus.AppendSilence(nil, 960, false)
		n, err := d.Decode(silence, pcm)
		if err != nil || n != tc.want {
			t.Fatalf("%d Hz: silence decoded to %d samples, %v; want %d", tc.rate, n, err, tc.want)
		}
		for i, v := range pcm[:n*tc.channels] {
			if v != 0 {
				t.Fatalf("%d Hz: sample %d of digital silence is %d", tc.rate, i, v)
			}
		}
		// A code-0 packet with an empty frame asks for concealment of one
		// frame of the TOC's length.
		plc, _ := opus.AppendPLC(nil, silence[0], 1)
		if n, err := d.Decode(plc, pcm); err != nil || n != tc.want {
			t.Fatalf("%d Hz: concealment gave %d samples, %v; want %d", tc.rate, n, err, tc.want)
		}
		d.Close()
		if _, err := d.Decode(silence, pcm); err != ErrClosed {
			t.Fatalf("decode after close: %v", err)
		}
	}
}

func TestBadArguments(t *testing.T) {
	for _, tc := range []struct{ rate, channels int }{{44100, 1}, {16000, 3}, {0, 1}} {
		if d, err := NewDecoder(tc.rate, tc.channels); err == nil {
			d.Close()
			t.Errorf("NewDecoder(%d, %d) accepted", tc.rate, tc.channels)
		}
	}
	d, err := NewDecoder(16000, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.Decode([]byte{0xff, 0xff, 0xff, 0xff, 0xff}, make([]int16, 1920)); err == nil {
		t.Error("a corrupt packet decoded without error")
	}
}
