// Command recorder is the recording service: it reads its configuration,
// serves the HTTP API, and on SIGINT/SIGTERM stops every recording cleanly
// before it exits.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/trackrec/trackrec/api"
	"github.com/trackrec/trackrec/bot"
	"github.com/trackrec/trackrec/configs"
	"github.com/trackrec/trackrec/recorder"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "recorder:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg, err := configs.Load(os.Getenv)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	bot.UseSDKLogger(log)
	if err := os.MkdirAll(cfg.LocalDirectory, 0o755); err != nil {
		return fmt.Errorf("LOCAL_DIRECTORY: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.ListenAddr())
	if err != nil {
		return fmt.Errorf("APP_PORT: %w", err)
	}

	instance := instanceID()
	sup := recorder.New(recorder.Options{
		Dir:           cfg.LocalDirectory,
		Format:        cfg.FileFormat,
		JitterWindow:  jitterWindow(cfg.JitterWindow),
		Instance:      instance,
		RejoinTimeout: cfg.RejoinTimeout,
		Logger:        log,
		Join: func(ctx context.Context, room string, h bot.Handler) (recorder.Bot, error) {
			ctx, cancel := context.WithTimeout(ctx, cfg.JoinTimeout)
			defer cancel()
			return bot.Join(ctx, bot.Config{
				URL:       cfg.LiveKitURL,
				APIKey:    cfg.APIKey,
				APISecret: cfg.APISecret,
				// One identity per bot: LiveKit drops the older of two equal
				// identities, and a bot still leaving may share a room with
				// its successor.
				Identity: "recorder-" + instance + "-" + randomHex(3),
				Logger:   log,
			}, room, h)
		},
	})
	srv := &http.Server{Handler: api.New(sup, log), ReadHeaderTimeout: 10 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("recorder listening", "addr", ln.Addr().String(), "livekit", cfg.LiveKitURL, "dir", cfg.LocalDirectory, "instance", instance)

	select {
	case err := <-served:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	stop() // a second signal kills the process the default way
	log.Info("shutting down: stopping recordings")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	// Refuse new work first, then close every file, then finish requests.
	errs := []error{sup.Shutdown(sctx)}
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	log.Info("shut down cleanly")
	return nil
}

// instanceID names this process among the instances sharing LiveKit rooms.
func instanceID() string {
	host, _ := os.Hostname()
	if host == "" {
		host = "host"
	}
	return host + "-" + randomHex(4)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// jitterWindow maps the setting to the muxer's convention, where zero means
// its default and a negative window none.
func jitterWindow(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
