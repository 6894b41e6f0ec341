package resample

import (
	"math"
	"testing"
)

func tone(n int, freq float64, amp float64) []int16 {
	out := make([]int16, n)
	for i := range out {
		out[i] = int16(amp * math.Sin(2*math.Pi*freq*float64(i)/InRate))
	}
	return out
}

// A tone in the passband comes out at its amplitude, on the input's
// positions (no delay); one above the output's Nyquist is gone.
func TestPassAndStop(t *testing.T) {
	for _, rate := range []int{24000, 16000, 12000, 8000} {
		m := InRate / rate
		for _, tc := range []struct {
			freq    float64
			minGain float64
			maxGain float64
		}{
			{float64(rate) * 0.2, 0.99, 1.01}, // passband
			{float64(rate) * 0.55, 0, 0.001},  // above Nyquist: -60 dB at least
		} {
			in := tone(InRate, tc.freq, 10000)
			d, err := New(rate, 1, 0)
			if err != nil {
				t.Fatal(err)
			}
			var out []int16
			for i := 0; i < len(in); i += 960 { // 20 ms packets
				out = d.Write(in[i:i+960], out)
			}
			out = d.Flush(int64(len(in)), out)
			if len(out) != len(in)/m {
				t.Fatalf("%d Hz: %d outputs of %d inputs", rate, len(out), len(in))
			}
			var power, errMax float64
			n := 0
			for k := rate / 10; k < len(out)-rate/10; k++ {
				power += float64(out[k]) * float64(out[k])
				n++
				want := 10000 * math.Sin(2*math.Pi*tc.freq*float64(k*m)/InRate)
				errMax = max(errMax, math.Abs(float64(out[k])-want))
			}
			gain := math.Sqrt(power/float64(n)) / (10000 / math.Sqrt2)
			if gain < tc.minGain || gain > tc.maxGain {
				t.Errorf("%d Hz output, %.0f Hz tone: gain %.4f, want %.3f-%.3f", rate, tc.freq, gain, tc.minGain, tc.maxGain)
			}
			if tc.minGain > 0 && errMax > 150 {
				t.Errorf("%d Hz output, %.0f Hz tone: off the input's positions by up to %.0f", rate, tc.freq, errMax)
			}
		}
	}
}

// Resampling is the same however the input is split, and a decimator
// started mid-stream gives the same samples once its filter has input on
// both sides.
func TestDeterministicAcrossSplits(t *testing.T) {
	in := tone(24000, 440, 8000)
	d1, _ := New(16000, 1, 0)
	whole := d1.Flush(int64(len(in)), d1.Write(in, nil))
	d2, _ := New(16000, 1, 0)
	var parts []int16
	for i := 0; i < len(in); i += 123 {
		parts = d2.Write(in[i:min(i+123, len(in))], parts)
	}
	parts = d2.Flush(int64(len(in)), parts)
	if len(whole) != len(parts) {
		t.Fatalf("%d vs %d samples", len(whole), len(parts))
	}
	for i := range whole {
		if whole[i] != parts[i] {
			t.Fatalf("sample %d: %d vs %d", i, whole[i], parts[i])
		}
	}
	start := int64(9000)
	d3, _ := New(16000, 1, start)
	late := d3.Flush(int64(len(in)), d3.Write(in[start:], nil))
	if d3.Next() != int64(len(whole)) {
		t.Fatalf("next %d", d3.Next())
	}
	first := (start + 2) / 3
	for k := 100; k < len(late); k++ {
		if late[k] != whole[int(first)+k] {
			t.Fatalf("late start: sample %d differs", k)
		}
	}
}

func TestStereo(t *testing.T) {
	l, r := tone(4800, 300, 5000), tone(4800, 600, 5000)
	in := make([]int16, 0, 9600)
	for i := range l {
		in = append(in, l[i], r[i])
	}
	d, _ := New(24000, 2, 0)
	out := d.Flush(4800, d.Write(in, nil))
	dl, _ := New(24000, 1, 0)
	ol := dl.Flush(4800, dl.Write(l, nil))
	if len(out) != 2*len(ol) {
		t.Fatalf("%d stereo samples, %d mono", len(out), len(ol))
	}
	for i := range ol {
		if out[2*i] != ol[i] {
			t.Fatalf("left channel differs at %d", i)
		}
	}
}

func TestBadRates(t *testing.T) {
	for _, r := range []int{48000, 44100, 0, 7000, 6000} {
		if _, err := New(r, 1, 0); err == nil {
			t.Errorf("rate %d accepted", r)
		}
	}
}
