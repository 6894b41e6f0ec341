package egress

import "testing"

// The resume position counts only frames the peer acknowledged whole.
func TestSamplesAt(t *testing.T) {
	s := &wsSink{}
	for range 5 {
		s.wire += frameSize(1920)
		s.samples += 960
		s.frames = append(s.frames, wsFrame{s.wire, s.samples})
	}
	per := frameSize(1920)
	for _, tc := range []struct {
		got  int64
		want int64
	}{
		{s.wire, 4800},
		{s.wire - 1, 3840}, // the last frame cut short
		{2 * per, 1920},
		{2*per + per/2, 1920},
		{0, 0},
	} {
		if got := s.samplesAt(tc.got); got != tc.want {
			t.Errorf("samplesAt(%d) = %d, want %d", tc.got, got, tc.want)
		}
	}
	if frameSize(100) != 106 || frameSize(1920) != 1928 || frameSize(70000) != 70014 {
		t.Error("client frame sizes")
	}
}
