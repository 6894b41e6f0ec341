package opus_test

import (
	"fmt"
	"time"

	"github.com/trackrec/trackrec/muxer/opus"
)

func ExamplePacketSamples() {
	n, err := opus.PacketSamples([]byte{0xF8, 0xFF, 0xFE}) // CELT fullband 20 ms, one frame
	fmt.Println(n, opus.Duration(int64(n)), err)
	// Output: 960 20ms <nil>
}

// A 92.5 ms hole filled with silence: one 80 ms packet, then 10 and 2.5 ms.
func ExampleSilence() {
	for _, p := range opus.Silence(int(opus.Samples(92500*time.Microsecond)), false) {
		n, _ := opus.PacketSamples(p)
		fmt.Printf("% x: %v\n", p, opus.Duration(int64(n)))
	}
	// Output:
	// fb 04 ff fe ff fe ff fe ff fe: 80ms
	// f0 ff fe: 10ms
	// e0 ff fe: 2.5ms
}

// Three lost 20 ms SILK frames: one code 3 packet of three empty frames.
func ExamplePLC() {
	for _, p := range opus.PLC(0x78, 3) {
		n, _ := opus.PacketSamples(p)
		fmt.Printf("% x: %v\n", p, opus.Duration(int64(n)))
	}
	// Output: 7b 03: 60ms
}
