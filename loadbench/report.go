package loadbench

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"time"
)

// Print writes the report as the README quotes it.
func (r Report) Print(w io.Writer) {
	kib := func(b int64) string { return fmt.Sprintf("%d", b/1024) }
	fmt.Fprintf(w, "bench-load: %d tracks in %d rooms through livekit-server, %v window after warm-up, %d cores\n\n",
		r.Tracks, r.Rooms, r.Window, runtime.NumCPU())
	fmt.Fprintf(w, "%-32s %16s %16s %22s\n", "", "CPU ms/track-s", "RSS KiB/track", "lost packets/track")
	fmt.Fprintf(w, "%-32s %16.2f %16s %15.2f (max %d)\n", "recorder (trackrec)", r.Recorder.CPU, kib(r.Recorder.RSSPerTrack), r.Recorder.Lost, r.Recorder.MaxLost)
	if r.Subscriber.CPU > 0 {
		fmt.Fprintf(w, "%-32s %16.2f %16s %15.2f (max %d)\n", "bare server-sdk-go subscriber", r.Subscriber.CPU, kib(r.Subscriber.RSSPerTrack), r.Subscriber.Lost, r.Subscriber.MaxLost)
	} else {
		fmt.Fprintf(w, "%-32s %16s\n", "bare server-sdk-go subscriber", "(not run)")
	}
	fmt.Fprintf(w, "%-32s %16.2f\n", "livekit/egress audio re-encode", r.Chain)
	if r.Subscriber.CPU > 0 {
		fmt.Fprintf(w, "%-32s %16.2f   (bare subscriber + re-encode)\n", "livekit/egress audio, estimated", r.Subscriber.CPU+r.Chain)
	}
	fmt.Fprintln(w)
	if r.Subscriber.CPU > 0 {
		fmt.Fprintf(w, "recorder / bare subscriber: %.2f;  livekit/egress (estimated) / recorder: %.1f\n", r.Recorder.CPU/r.Subscriber.CPU, (r.Subscriber.CPU+r.Chain)/r.Recorder.CPU)
	}
	if r.Packets > 0 {
		per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 / float64(r.Packets) }
		var parts []string
		for _, s := range r.Shares {
			parts = append(parts, fmt.Sprintf("%s %.1f", s.Name, per(s.CPU)))
		}
		fmt.Fprintf(w, "recorder per packet (CPU profile, %d packets): %.1f µs = %s\n", r.Packets, per(r.ProfileCPU), strings.Join(parts, ", "))
	}
	if len(r.SubscriberShares) > 0 {
		var total time.Duration
		for _, s := range r.SubscriberShares {
			total += s.CPU
		}
		var parts []string
		for _, s := range r.SubscriberShares {
			parts = append(parts, fmt.Sprintf("%s %.0f%%", s.Name, 100*s.CPU.Seconds()/total.Seconds()))
		}
		fmt.Fprintf(w, "bare subscriber's CPU (profile): %s\n", strings.Join(parts, ", "))
	}
	if len(r.Memory) > 0 {
		fmt.Fprintf(w, "recorder memory per track (Go runtime): heap in use %s KiB, stacks %s KiB, heap held from the OS %s KiB, all %s KiB\n",
			kib(r.Memory["HeapInuse"]), kib(r.Memory["StackInuse"]), kib(r.Memory["HeapSys"]-r.Memory["HeapReleased"]), kib(r.Memory["Sys"]-r.Memory["HeapReleased"]))
	}
	fmt.Fprintf(w, "files: %d of %d tracks, one each; %d decode (ffmpeg); %d publisher packets in order, %d lost, %d repeated; %d inserted (leading silence, concealment); the recorder counted %d late, %d concealed\n",
		r.Files, r.Tracks, r.Decoded, r.Publisher, r.FileLost, r.Repeated, r.Inserted, r.Late, r.Concealed)
	fmt.Fprintf(w, "cores used in the window: recorder %.2f, bare subscriber %.2f, livekit-server %.2f, publishers %.2f (of %d)\n",
		r.RecorderCores, r.SubscriberCores, r.LiveKit, r.Crowd, runtime.NumCPU())
}
