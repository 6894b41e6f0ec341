// Command publisher joins a LiveKit room and publishes an Ogg Opus file as a
// live audio track, paced in real time, scripted by commands on stdin:
//
//	mute | unmute | unpublish | republish | leave
//
// It exits on "leave", when the file ends (unless --loop), or on SIGINT or
// SIGTERM. End of stdin only stops reading commands. Each time a track is
// published it prints "track <SID>" on stdout, for scripts.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/livekit/protocol/livekit"
	protologger "github.com/livekit/protocol/logger"
	lksdk "github.com/livekit/server-sdk-go/v2"

	"github.com/trackrec/trackrec/testbed"
)

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		slog.Error("publisher failed", "err", err)
		os.Exit(1)
	}
}

func run(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("publisher", flag.ContinueOnError)
	url := fs.String("url", envOr("LIVEKIT_URL", "ws://127.0.0.1:7880"), "LiveKit server URL (env LIVEKIT_URL)")
	key := fs.String("api-key", envOr("LIVEKIT_API_KEY", "devkey"), "API key (env LIVEKIT_API_KEY)")
	secret := fs.String("api-secret", envOr("LIVEKIT_API_SECRET", "secret"), "API secret (env LIVEKIT_API_SECRET)")
	room := fs.String("room", "", "room to join (required)")
	identity := fs.String("identity", "publisher", "participant identity")
	file := fs.String("file", "testdata/tone.ogg", "Ogg Opus file to publish (20 ms frames)")
	loop := fs.Bool("loop", false, "restart the file when it ends")
	source := fs.String("source", "microphone", "track source: microphone or screen_share_audio")
	verbose := fs.Bool("v", false, "debug logging, including the LiveKit SDK's")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *room == "" {
		return errors.New("--room is required")
	}
	src, ok := livekit.TrackSource_value[strings.ToUpper(*source)]
	if !ok {
		return fmt.Errorf("unknown --source %q", *source)
	}

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	handler := slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})
	slog.SetDefault(slog.New(handler))
	// The SDK logs every signalling step at info: only let its warnings
	// through unless -v.
	sdkLevel := slog.LevelWarn
	if *verbose {
		sdkLevel = slog.LevelDebug
	}
	lksdk.SetLogger(protologger.LogRLogger(logr.FromSlogHandler(
		slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: sdkLevel}))))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	setupCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	p, err := testbed.Publish(setupCtx, testbed.PublisherOptions{
		URL: *url, APIKey: *key, APISecret: *secret,
		Room: *room, Identity: *identity,
		File: *file, Loop: *loop,
		Source: livekit.TrackSource(src),
	})
	cancel()
	if err != nil {
		return err
	}
	defer func() {
		_ = p.Leave()
		slog.Info("left", "room", *room, "packets", len(p.Sent()))
	}()
	slog.Info("publishing", "room", *room, "identity", *identity, "track", p.TrackSID(), "file", *file, "loop", *loop)
	fmt.Fprintf(stdout, "track %s\n", p.TrackSID())

	cmds := make(chan string)
	go func() {
		defer close(cmds)
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			select {
			case cmds <- strings.TrimSpace(sc.Text()):
			case <-ctx.Done():
				return
			}
		}
	}()

	for {
		select {
		case <-ctx.Done():
			slog.Info("signal received")
			return nil
		case <-p.Done():
			slog.Info("file ended")
			return nil
		case cmd, ok := <-cmds:
			if !ok {
				cmds = nil // stdin closed: keep publishing, stop reading
				continue
			}
			if cmd == "" {
				continue
			}
			if cmd == "leave" {
				return nil
			}
			if err := apply(p, cmd); err != nil {
				slog.Error("command failed", "cmd", cmd, "err", err)
				continue
			}
			slog.Info("command done", "cmd", cmd, "track", p.TrackSID())
			if cmd == "republish" {
				fmt.Fprintf(stdout, "track %s\n", p.TrackSID())
			}
		}
	}
}

func apply(p *testbed.Publisher, cmd string) error {
	switch cmd {
	case "mute":
		return p.Mute()
	case "unmute":
		return p.Unmute()
	case "unpublish":
		return p.Unpublish()
	case "republish":
		return p.Republish()
	default:
		return fmt.Errorf("unknown command %q (want mute, unmute, unpublish, republish or leave)", cmd)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
