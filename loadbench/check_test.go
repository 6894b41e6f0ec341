package loadbench

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/trackrec/trackrec/muxer/ogg"
	"github.com/trackrec/trackrec/testbed"
)

// A file of the tone's packets from the middle of a loop, with one lost,
// one repeated and a silence packet inserted, is read as such.
func TestCheckTone(t *testing.T) {
	tone, err := testbed.ReadOpusFile("../testdata/tone.ogg")
	if err != nil {
		t.Fatal(err)
	}
	n := len(tone.Packets)
	silence := []byte{0xF8, 0xFF, 0xFE}
	var pkts [][]byte
	for i := n - 5; i < n+5; i++ { // across the loop's end
		switch i {
		case n + 1: // lost
			continue
		case n + 3:
			pkts = append(pkts, silence)
		}
		pkts = append(pkts, tone.Packets[i%n])
		if i == n-2 {
			pkts = append(pkts, tone.Packets[i%n]) // repeated
		}
	}
	path := filepath.Join(t.TempDir(), "t.ogg")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := ogg.NewWriter(f, ogg.Header{Channels: 1, PreSkip: 312}, ogg.Options{Serial: 1})
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range pkts {
		if err := w.WritePacket(p, int64(i)*960, 960); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	c, err := checkTone(path, tone.Packets)
	if err != nil {
		t.Fatal(err)
	}
	if want := (fileCheck{Publisher: 10, Inserted: 1, Lost: 1, Repeated: 1}); c != want {
		t.Errorf("check %+v, want %+v", c, want)
	}
}
