package live

import (
	"testing"

	"github.com/trackrec/trackrec/live/libopus"
	"github.com/trackrec/trackrec/live/resample"
	"github.com/trackrec/trackrec/testbed"
)

// The tap's cost per packet on the recording's path: nobody listening
// (one atomic load) and one listener (a copy into the ring).
func BenchmarkTapPacket(b *testing.B) {
	tone, err := testbed.ReadOpusFile("../testdata/tone.ogg")
	if err != nil {
		b.Fatal(err)
	}
	for _, listened := range []bool{false, true} {
		name := "nobody"
		if listened {
			name = "one listener"
		}
		b.Run(name, func(b *testing.B) {
			h := NewHub(Options{})
			s := h.NewStream(TrackInfo{Room: "r", Participant: "p", Format: "ogg"})
			if listened {
				c := s.attach()
				defer s.detach(c)
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				s.Packet(tone.Packets[i%len(tone.Packets)], int64(i)*960, 960)
			}
		})
	}
}

// A PCM consumer's own work per second of audio: libopus at 48 kHz and
// the resampler to 16 kHz mono.
func BenchmarkPCMSecond(b *testing.B) {
	tone, err := testbed.ReadOpusFile("../testdata/tone.ogg")
	if err != nil {
		b.Fatal(err)
	}
	d, err := libopus.NewDecoder(48000, 1)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	rs, err := resample.New(16000, 1, 0)
	if err != nil {
		b.Fatal(err)
	}
	pcm := make([]int16, 5760)
	var out []int16
	b.ReportAllocs()
	for b.Loop() {
		for i := range 50 { // one second of 20 ms packets
			n, err := d.Decode(tone.Packets[i%len(tone.Packets)], pcm)
			if err != nil {
				b.Fatal(err)
			}
			out = rs.Write(pcm[:n], out[:0])
		}
	}
}
