// Command recorder is the recording service: it reads its configuration,
// serves the HTTP API, and on SIGINT/SIGTERM stops every recording cleanly
// before it exits.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/livekit/protocol/auth"
	lksdk "github.com/livekit/server-sdk-go/v2"

	"github.com/trackrec/trackrec/api"
	"github.com/trackrec/trackrec/bot"
	"github.com/trackrec/trackrec/configs"
	"github.com/trackrec/trackrec/mixdown"
	"github.com/trackrec/trackrec/probe"
	"github.com/trackrec/trackrec/recorder"
	"github.com/trackrec/trackrec/uploader"
	"github.com/trackrec/trackrec/uploader/local"
	"github.com/trackrec/trackrec/uploader/s3"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "token" {
		if err := printToken(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "recorder token:", err)
			os.Exit(2)
		}
		return
	}
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
	slog.SetDefault(log)
	bot.UseSDKLogger(log)
	if err := os.MkdirAll(cfg.LocalDirectory, 0o755); err != nil {
		return fmt.Errorf("LOCAL_DIRECTORY: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.ListenAddr())
	if err != nil {
		return fmt.Errorf("APP_PORT: %w", err)
	}

	instance := instanceID()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	store, keyPrefix, err := openStorage(ctx, cfg)
	if err != nil {
		return err
	}
	// With S3 the spool is emptied as files are confirmed; the local store
	// is the spool itself.
	metrics := api.NewMetrics()
	queue := uploader.NewQueue(store, uploader.QueueOptions{DeleteAfter: cfg.S3Enabled(), Logger: log, Observe: metrics.ObserveUpload})
	format, _ := mixdown.ParseFormat(cfg.MixdownFormat) // validated with the config
	pipeline := &mixdown.Pipeline{
		Store:   store,
		Uploads: queue,
		Mix:     cfg.Mixdown == "builtin",
		Format:  format,
		Prefix:  cfg.MixdownDirectory,
		Logger:  log,
	}
	if cfg.PipelineWebhookURL != "" {
		pipeline.Notifier = &mixdown.Notifier{URL: cfg.PipelineWebhookURL, APIKey: cfg.APIKey, APISecret: cfg.APISecret, Logger: log}
	}
	var onComplete recorder.RoomComplete
	if pipeline.Mix || pipeline.Notifier != nil {
		onComplete = func(ctx context.Context, room string, tracks []recorder.CompletedTrack) ([]string, error) {
			outs, err := pipeline.Run(ctx, room, roomSID(tracks), roomTracks(tracks))
			if errors.Is(err, mixdown.ErrUndelivered) {
				// The receiver stayed down: run again later, and after a
				// restart, rather than lose the event.
				err = fmt.Errorf("%w: %w", recorder.ErrRetryLater, err)
			}
			return outs, err
		}
	}

	rooms := lksdk.NewRoomServiceClient(cfg.LiveKitHTTPURL, cfg.APIKey, cfg.APISecret)
	// The lookup is bounded by JOIN_TIMEOUT like the join it comes before.
	lookup, err := probe.NewLookup(rooms, cfg.JoinTimeout)
	if err != nil {
		return err
	}
	ready, err := probe.NewReadiness(rooms, probe.DirWritable(cfg.LocalDirectory), 2*time.Second)
	if err != nil {
		return err
	}

	sup := recorder.New(recorder.Options{
		Dir:              cfg.LocalDirectory,
		Format:           cfg.FileFormat,
		JitterWindow:     jitterWindow(cfg.JitterWindow),
		RejoinTimeout:    cfg.RejoinTimeout,
		ReconnectTimeout: cfg.ReconnectTimeout,
		Logger:           log,
		Uploads:          queue,
		KeyPrefix:        keyPrefix,
		SpoolIsStore:     !cfg.S3Enabled(),
		OnRoomComplete:   onComplete,
		SettleDelay:      cfg.MixdownSettle,
		Auto: recorder.AutoRecord{
			Enabled:          cfg.AutoRecord,
			Rooms:            cfg.AutoRecordRooms,
			IgnoreIdentities: cfg.AutoRecordIgnore,
		},
		Lookup:   lookup,
		Instance: instance,
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
				Identity: recorder.BotIdentityPrefix + instance + "-" + randomHex(3),
				Logger:   log,
			}, room, h)
		},
	})
	// Files an earlier process left behind go first: repaired, described,
	// queued.
	recovered, err := sup.Recover(ctx)
	if err != nil {
		return fmt.Errorf("LOCAL_DIRECTORY: recover spool: %w", err)
	}
	if len(recovered) > 0 {
		log.Info("spool recovered", "files", len(recovered))
	}

	keys := auth.NewSimpleKeyProvider(cfg.APIKey, cfg.APISecret)
	apiOpts := api.Options{Webhooks: api.Webhooks{Keys: keys, Events: sup}, Ready: ready.Check, Metrics: metrics}
	if cfg.APIAuth {
		apiOpts.Auth = keys
	} else {
		log.Warn("API_AUTH=off: anyone who reaches the port can start and stop recordings; for local development only")
	}
	srv := &http.Server{
		Handler:           api.New(sup, log, apiOpts),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("recorder listening", "addr", ln.Addr().String(), "livekit", cfg.LiveKitURL, "dir", cfg.LocalDirectory, "store", store.String(), "instance", instance)

	select {
	case err := <-served:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	stop() // a second signal kills the process the default way
	log.Info("shutting down: stopping recordings")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	// Refuse new work first, then close every file, then finish requests,
	// then give uploads their drain time: what is left stays in the spool.
	errs := []error{sup.Shutdown(sctx)}
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		errs = append(errs, err)
	}
	dctx, dcancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
	defer dcancel()
	if err := queue.Drain(dctx); err != nil {
		log.Warn("uploads unfinished; they stay in the spool for the next start", "err", err)
	}
	sup.Close()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	log.Info("shut down cleanly")
	return nil
}

// printToken prints an access token for the HTTP API: signed with
// LIVEKIT_API_KEY/LIVEKIT_API_SECRET, holding the roomRecord grant.
func printToken(args []string) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	valid := fs.Duration("valid", 24*time.Hour, "how long the token is valid")
	identity := fs.String("identity", "trackrec-api", "identity in the token")
	if err := fs.Parse(args); err != nil {
		return err
	}
	key, secret := os.Getenv("LIVEKIT_API_KEY"), os.Getenv("LIVEKIT_API_SECRET")
	if key == "" || secret == "" {
		return errors.New("LIVEKIT_API_KEY and LIVEKIT_API_SECRET are required")
	}
	tok, err := auth.NewAccessToken(key, secret).
		SetIdentity(*identity).
		SetValidFor(*valid).
		SetVideoGrant(&auth.VideoGrant{RoomRecord: true}).
		ToJWT()
	if err != nil {
		return err
	}
	fmt.Println(tok)
	return nil
}

// openStorage picks S3 when a bucket and region are set, else the local
// directory. It returns the key prefix of track files.
func openStorage(ctx context.Context, cfg configs.Config) (uploader.Storage, string, error) {
	if cfg.S3Enabled() {
		c, err := s3.New(ctx, s3.Config{
			Bucket:         cfg.S3Bucket,
			Region:         cfg.S3Region,
			Endpoint:       cfg.S3Endpoint,
			ForcePathStyle: cfg.S3ForcePathStyle,
			// Few attempts per request: the upload queue retries for as
			// long as it takes, and reports each failure in between.
			MaxAttempts: 3,
		})
		if err != nil {
			return nil, "", fmt.Errorf("S3_BUCKET: %w", err)
		}
		return c, cfg.S3Directory, nil
	}
	d, err := local.New(cfg.LocalDirectory)
	if err != nil {
		return nil, "", fmt.Errorf("LOCAL_DIRECTORY: %w", err)
	}
	return d, "", nil
}

// roomTracks hands a complete room's files to the mixdown pipeline.
func roomTracks(tracks []recorder.CompletedTrack) []mixdown.RoomTrack {
	out := make([]mixdown.RoomTrack, 0, len(tracks))
	for _, t := range tracks {
		doc, _ := json.Marshal(t.Manifest)
		out = append(out, mixdown.RoomTrack{
			Key:      t.Manifest.File.Key,
			Start:    t.Manifest.Timeline.Start,
			Identity: t.Manifest.Participant.Identity,
			TrackSID: t.Manifest.Track.SID,
			Manifest: doc,
		})
	}
	return out
}

func roomSID(tracks []recorder.CompletedTrack) string {
	for _, t := range tracks {
		if t.Manifest.RoomSID != "" {
			return t.Manifest.RoomSID
		}
	}
	return ""
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
