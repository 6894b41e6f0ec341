// Package resample turns 48 kHz PCM into the lower rates live streams
// offer: 24, 16, 12 and 8 kHz, whole fractions of 48 kHz, so resampling is
// a lowpass filter and keeping every M-th sample.
//
// The filter is a linear-phase FIR (a windowed sinc, Kaiser window with
// beta 8: about 80 dB of stopband) of 48×M+1 taps, passing up to 90% of
// the output's Nyquist frequency (7.2 kHz at 16 kHz). It is centred on
// each output sample: output k is input position k×M exactly, with no
// delay and no fractional offset, at the cost of 24 input samples
// (0.5 ms) of look-ahead. Input before the first sample written counts as
// silence. The arithmetic is float64 with explicit rounding, so the same
// input gives the same output on every run: a test can resample a
// reference decode the same way and compare sample for sample.
package resample

import (
	"fmt"
	"math"
)

// InRate is the only input rate: Opus's.
const InRate = 48000

// Decimator resamples one interleaved stream. It is not safe for
// concurrent use.
type Decimator struct {
	m, ch int
	half  int       // taps each side of the centre
	taps  []float64 // 2×half+1
	// buf holds input frames from position bufAt on, interleaved.
	buf   []float64
	bufAt int64
	next  int64 // the next output index
}

// New returns a Decimator from 48 kHz to rate (24000, 16000, 12000 or
// 8000) for channels interleaved channels, whose first input sample is
// at position start (48 kHz samples); its first output is the first index
// k with k×M >= start.
func New(rate, channels int, start int64) (*Decimator, error) {
	if rate <= 0 || rate >= InRate || InRate%rate != 0 || InRate/rate > 6 {
		return nil, fmt.Errorf("resample: rate %d is not 24000, 16000, 12000 or 8000", rate)
	}
	if channels < 1 || channels > 2 {
		return nil, fmt.Errorf("resample: %d channels", channels)
	}
	m := InRate / rate
	half := 24 * m
	d := &Decimator{m: m, ch: channels, half: half, taps: kaiserSinc(half, 0.9/(2*float64(m)), 8)}
	d.next = (start + int64(m) - 1) / int64(m)
	if start < 0 {
		d.next = start / int64(m)
	}
	// Silence before the start, as far back as the first output reaches.
	d.bufAt = d.next*int64(m) - int64(half)
	d.buf = make([]float64, int(start-d.bufAt)*channels, (int(start-d.bufAt)+4096)*channels)
	return d, nil
}

// Next is the index of the next output sample.
func (d *Decimator) Next() int64 { return d.next }

// Write takes interleaved input frames that follow the previous ones and
// appends to out every output sample they complete.
func (d *Decimator) Write(in []int16, out []int16) []int16 {
	for _, v := range in {
		d.buf = append(d.buf, float64(v))
	}
	return d.drain(out)
}

// Flush completes the outputs before position end (48 kHz) with silence
// after the input, and appends them to out.
func (d *Decimator) Flush(end int64, out []int16) []int16 {
	for d.next*int64(d.m) < end {
		have := d.bufAt + int64(len(d.buf)/d.ch)
		need := d.next*int64(d.m) + int64(d.half) + 1
		for ; have < need; have++ {
			for range d.ch {
				d.buf = append(d.buf, 0)
			}
		}
		out = d.drain(out)
	}
	return out
}

func (d *Decimator) drain(out []int16) []int16 {
	frames := int64(len(d.buf) / d.ch)
	for {
		centre := d.next * int64(d.m)
		if centre+int64(d.half) >= d.bufAt+frames {
			break
		}
		lo := int(centre-int64(d.half)-d.bufAt) * d.ch
		for c := range d.ch {
			var acc float64
			for j, h := range d.taps {
				acc = float64(acc + float64(h*d.buf[lo+j*d.ch+c]))
			}
			out = append(out, clip(acc))
		}
		d.next++
	}
	// Drop what no output needs any more.
	keep := d.next*int64(d.m) - int64(d.half)
	if drop := int(keep-d.bufAt) * d.ch; drop > 0 && drop <= len(d.buf) {
		n := copy(d.buf, d.buf[drop:])
		d.buf = d.buf[:n]
		d.bufAt = keep
	}
	return out
}

func clip(v float64) int16 {
	v = math.Round(v)
	switch {
	case v > math.MaxInt16:
		return math.MaxInt16
	case v < math.MinInt16:
		return math.MinInt16
	}
	return int16(v)
}

// kaiserSinc is a lowpass of 2×half+1 taps with cutoff fc (a fraction of
// the input rate), Kaiser window beta, unity gain at DC.
func kaiserSinc(half int, fc, beta float64) []float64 {
	n := 2*half + 1
	h := make([]float64, n)
	var sum float64
	for i := range n {
		x := float64(i - half)
		s := 2 * fc
		if x != 0 {
			s = math.Sin(2*math.Pi*fc*x) / (math.Pi * x)
		}
		r := x / float64(half)
		w := bessel0(beta*math.Sqrt(max(0, 1-r*r))) / bessel0(beta)
		h[i] = s * w
		sum += h[i]
	}
	for i := range h {
		h[i] /= sum
	}
	return h
}

// bessel0 is the modified Bessel function of the first kind, order 0.
func bessel0(x float64) float64 {
	sum, term := 1.0, 1.0
	for k := 1; k < 50; k++ {
		term *= (x / (2 * float64(k))) * (x / (2 * float64(k)))
		sum += term
		if term < 1e-12*sum {
			break
		}
	}
	return sum
}
