// Package loadbench measures what recording costs, side by side with what
// it would cost without the recorder and with livekit/egress's audio chain
// (`make bench-load`).
//
// One run, on this machine, through a real livekit-server:
//
//   - a crowd of publishers (a child process) sends the test tone, paced in
//     real time, in rooms of PerRoom;
//   - the recorder (bin/recorder, its own process) records every one of
//     them through its API; after a warm-up its process CPU time and RSS
//     are read from /proc over a steady window, and its CPU profile
//     (DEBUG_ADDRESS) is summed by component and divided by the packets it
//     wrote: the per-packet cost;
//   - its files are checked as a consumer would: one per track, each
//     decodes (ffmpeg), and its publisher packets are the tone's, in
//     order; what is missing among them is lost;
//   - in the same window a bare server-sdk-go subscriber (a child process,
//     default SDK settings) receives the same tracks and discards them,
//     measured the same way, so both meet the same machine;
//   - and the GStreamer chain livekit/egress adds for audio (decode and
//     re-encode at 128 kbit/s) runs on recorded files, measured by the CPU
//     time it takes per second of audio.
//
// Costs are CPU milliseconds per track-second (process CPU time over the
// window, divided by tracks and window), and RSS above the idle process,
// per track. Publishers and livekit-server run outside every measured
// process; their load is printed too, so a saturated machine shows.
package loadbench
