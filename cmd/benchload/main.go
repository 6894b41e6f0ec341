// Command benchload is `make bench-load`: the recorder under load through a
// real livekit-server, side by side with a bare SDK subscriber and
// livekit/egress's audio chain (package loadbench says how).
//
//	benchload [-tracks 100] [-per-room 5] [-warmup 10s] [-window 30s]
//
// Its child modes, run in processes of their own: "crowd" (the publishers)
// and "subscribe" (the bare subscriber).
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	protologger "github.com/livekit/protocol/logger"
	lksdk "github.com/livekit/server-sdk-go/v2"

	"github.com/trackrec/trackrec/loadbench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if len(os.Args) > 1 && (os.Args[1] == "crowd" || os.Args[1] == "subscribe") {
		err = child(ctx, os.Args[1], os.Args[2:])
	} else {
		err = bench(ctx, os.Args[1:])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchload:", err)
		os.Exit(1)
	}
}

func bench(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("benchload", flag.ContinueOnError)
	o := loadbench.Options{}
	fs.IntVar(&o.Tracks, "tracks", 100, "publishers, one audio track each")
	fs.IntVar(&o.PerRoom, "per-room", 5, "publishers per room")
	fs.DurationVar(&o.Warmup, "warmup", 10*time.Second, "wait after every track flows, before measuring")
	fs.DurationVar(&o.Window, "window", 30*time.Second, "the steady window measured")
	fs.StringVar(&o.Recorder, "recorder", "bin/recorder", "the recorder binary")
	fs.StringVar(&o.Tone, "tone", "testdata/tone.ogg", "the Ogg Opus file the publishers send, looped")
	keep := fs.Bool("keep", false, "keep the work folder (logs, profile, files)")
	fs.BoolVar(&o.NoSubscriber, "no-subscriber", false, "leave the bare subscriber out (a saturation run)")
	fs.Func("recorder-env", "KEY=value added to the recorder's environment (repeatable)", func(v string) error {
		if !strings.Contains(v, "=") {
			return fmt.Errorf("%q is not KEY=value", v)
		}
		o.RecorderEnv = append(o.RecorderEnv, v)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	o.Child = func(mode string, args ...string) *exec.Cmd {
		return exec.Command(self, append([]string{mode}, args...)...)
	}
	if o.Dir, err = os.MkdirTemp("", "bench-load-"); err != nil {
		return err
	}
	if *keep {
		fmt.Fprintln(os.Stderr, "bench-load: work folder", o.Dir)
	} else {
		defer os.RemoveAll(o.Dir)
	}
	rep, err := loadbench.Run(ctx, o)
	if err != nil {
		return fmt.Errorf("%w (work folder %s)", err, o.Dir)
	}
	rep.Print(os.Stdout)
	return nil
}

// child runs a crowd or the bare subscriber until stdin closes.
func child(ctx context.Context, mode string, args []string) error {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	lksdk.SetLogger(protologger.LogRLogger(logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	srv := loadbench.Server{URL: os.Getenv("LIVEKIT_URL"), APIKey: os.Getenv("LIVEKIT_API_KEY"), APISecret: os.Getenv("LIVEKIT_API_SECRET")}
	fs := flag.NewFlagSet(mode, flag.ContinueOnError)
	n := fs.Int("n", 100, "publishers")
	perRoom := fs.Int("per-room", 5, "publishers per room")
	tone := fs.String("tone", "testdata/tone.ogg", "file to publish")
	tracks := fs.Int("tracks", 0, "tracks to wait for")
	rooms := fs.String("rooms", "", "comma-separated rooms to subscribe in")
	cpuProfile := fs.String("cpuprofile", "", "subscribe: write a CPU profile, from every track delivering to the end, here")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// stdin: "go" starts the subscriber; its end stops either mode.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	in := bufio.NewScanner(os.Stdin)
	started := make(chan struct{})
	var once sync.Once
	go func() {
		defer cancel()
		for in.Scan() {
			if in.Text() == "go" {
				once.Do(func() { close(started) })
			}
		}
	}()
	switch mode {
	case "crowd":
		return loadbench.Crowd(ctx, srv, *n, *perRoom, *tone, os.Stdout)
	default:
		fmt.Println("started")
		select {
		case <-started:
		case <-ctx.Done():
			return nil
		}
		return loadbench.Subscribe(ctx, srv, strings.Split(*rooms, ","), *tracks, *cpuProfile, os.Stdout)
	}
}
