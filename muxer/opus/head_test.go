package opus_test

import (
	"bytes"
	"testing"

	"github.com/trackrec/trackrec/muxer/opus"
)

func TestHead(t *testing.T) {
	tests := []struct {
		name string
		h    opus.Head
		want []byte // spelled out from RFC 7845 section 5.1
	}{
		{"mono", opus.Head{Channels: 1, PreSkip: 3840, InputSampleRate: 48000},
			[]byte{'O', 'p', 'u', 's', 'H', 'e', 'a', 'd', 1, 1, 0x00, 0x0F, 0x80, 0xBB, 0, 0, 0, 0, 0}},
		{"stereo with gain", opus.Head{Channels: 2, PreSkip: 312, InputSampleRate: 44100, OutputGain: -256},
			[]byte{'O', 'p', 'u', 's', 'H', 'e', 'a', 'd', 1, 2, 0x38, 0x01, 0x44, 0xAC, 0, 0, 0x00, 0xFF, 0}},
		{"unspecified rate", opus.Head{Channels: 1},
			[]byte{'O', 'p', 'u', 's', 'H', 'e', 'a', 'd', 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.h.Append([]byte{0xAA})
			if !bytes.Equal(got[1:], tt.want) || got[0] != 0xAA || len(got)-1 != opus.HeadSize {
				t.Fatalf("Append: % x\nwant       % x", got[1:], tt.want)
			}
			back, err := opus.ParseHead(append(got[1:], 9, 9)) // trailing bytes are ignored
			if err != nil || back != tt.h {
				t.Fatalf("ParseHead: %+v, %v; want %+v", back, err, tt.h)
			}
		})
	}
}

func TestParseHeadRejects(t *testing.T) {
	good := opus.Head{Channels: 2, PreSkip: 3840}.Append(nil)
	with := func(i int, v byte) []byte {
		b := bytes.Clone(good)
		b[i] = v
		return b
	}
	for _, tt := range []struct {
		name string
		b    []byte
	}{
		{"short", good[:18]},
		{"signature", with(0, 'o')},
		{"version 16", with(8, 16)},
		{"no channels", with(9, 0)},
		{"3 channels", with(9, 3)},
		{"mapping family 1", with(18, 1)},
	} {
		if h, err := opus.ParseHead(tt.b); err == nil {
			t.Errorf("%s: accepted as %+v", tt.name, h)
		}
	}
	if _, err := opus.ParseHead(with(8, 15)); err != nil {
		t.Errorf("version 15: %v, want it read as compatible", err)
	}
}

func TestHeadValidate(t *testing.T) {
	for ch, ok := range map[uint8]bool{0: false, 1: true, 2: true, 3: false, 255: false} {
		if err := (opus.Head{Channels: ch}).Validate(); (err == nil) != ok {
			t.Errorf("%d channels: %v", ch, err)
		}
	}
}
