package loadbench

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"

	"github.com/trackrec/trackrec/testbed"
)

// fileCheck is what a track file holds against the tone it was sent.
type fileCheck struct {
	Publisher int // the tone's packets, in order
	Inserted  int // packets not the tone's: the recorder's silence or concealment, the SFU's blank frames
	Lost      int // tone packets skipped between two written ones
	Repeated  int // a tone packet written twice in a row
}

// checkTone reads the Ogg Opus file at path and matches its packets with
// tone, sent looped: each publisher packet should be the one after the
// last; a jump is loss, a step back is a repeat.
func checkTone(path string, tone [][]byte) (fileCheck, error) {
	f, err := testbed.ReadOpusFile(path)
	if err != nil {
		return fileCheck{}, err
	}
	at := map[string][]int{}
	for i, p := range tone {
		at[string(p)] = append(at[string(p)], i)
	}
	var c fileCheck
	n, next := len(tone), -1
	for _, p := range f.Packets {
		idx, ok := at[string(p)]
		if !ok {
			c.Inserted++
			continue
		}
		c.Publisher++
		if next < 0 {
			next = (idx[0] + 1) % n
			continue
		}
		if bytes.Equal(tone[next], p) {
			next = (next + 1) % n
			continue
		}
		// The nearest occurrence ahead; one just behind is a repeat.
		best := n
		for _, j := range idx {
			d := (j - next + n) % n
			if d == n-1 {
				c.Repeated++
				best = -1
				break
			}
			best = min(best, d)
		}
		if best < 0 {
			continue
		}
		c.Lost += best
		next = (next + best + 1) % n
	}
	if c.Publisher == 0 {
		return c, fmt.Errorf("%s: none of the tone's packets", path)
	}
	return c, nil
}

// decodes says whether ffmpeg decodes the file without an error.
func decodes(ctx context.Context, path string) error {
	out, err := exec.CommandContext(ctx, "ffmpeg", "-v", "error", "-nostdin", "-i", path, "-f", "null", "-").CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		return fmt.Errorf("ffmpeg decode of %s: %v: %s", path, err, out)
	}
	return nil
}
