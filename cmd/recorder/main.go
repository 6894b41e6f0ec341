// Command recorder is the recording service: it reads its configuration,
// serves the HTTP API, and on SIGINT/SIGTERM stops every recording cleanly
// before it exits.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/livekit/protocol/auth"
	lksdk "github.com/livekit/server-sdk-go/v2"

	"github.com/trackrec/trackrec/api"
	"github.com/trackrec/trackrec/autorecord"
	"github.com/trackrec/trackrec/bot"
	"github.com/trackrec/trackrec/completion"
	"github.com/trackrec/trackrec/configs"
	"github.com/trackrec/trackrec/mixdown"
	"github.com/trackrec/trackrec/ownership"
	"github.com/trackrec/trackrec/probe"
	"github.com/trackrec/trackrec/recorder"
	"github.com/trackrec/trackrec/spool"
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
	instance := instanceID()
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.Log.Level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	store, err := openStorage(ctx, cfg)
	if err != nil {
		return err
	}
	// With S3 the spool is emptied as files are confirmed; the local store
	// is the spool itself.
	metrics := api.NewMetrics()
	queue := uploader.NewQueue(store, uploader.QueueOptions{DeleteAfter: cfg.S3.Enabled(), Logger: log, Observe: metrics.ObserveUpload})
	// Nothing is written to LOCAL_DIRECTORY, nor logged, before its lock is
	// held: a second process on it stops here with one line, leaving the
	// first one's files alone.
	sp, err := openSpool(cfg, instance, queue, log)
	if err != nil {
		return err
	}
	defer sp.Close()
	slog.SetDefault(log)
	bot.UseSDKLogger(log)
	ln, err := net.Listen("tcp", cfg.ListenAddr())
	if err != nil {
		return fmt.Errorf("APP_PORT: %w", err)
	}
	rooms := completion.New(completion.Options{
		Pipeline:    roomPipeline(cfg, store, queue, log),
		Settle:      cfg.Mixdown.Settle,
		Concurrency: cfg.Mixdown.Concurrency,
		Markers:     sp,
		Logger:      log,
	})
	// Files an earlier process left behind go first: repaired, described,
	// queued; the rooms it did not complete complete in this one.
	recovery, err := sp.Recover(ctx)
	if err != nil {
		return fmt.Errorf("LOCAL_DIRECTORY: recover spool: %w", err)
	}
	if len(recovery.Files) > 0 {
		log.Info("spool recovered", "files", len(recovery.Files), "rooms", len(recovery.Rooms))
	}
	rooms.Restore(recovery.Rooms)

	rs := lksdk.NewRoomServiceClient(cfg.LiveKit.HTTPURL(), cfg.LiveKit.APIKey, cfg.LiveKit.APISecret)
	// The lookup is bounded by JOIN_TIMEOUT like the join it comes before.
	lookup, err := probe.NewLookup(rs, cfg.Limits.JoinTimeout)
	if err != nil {
		return err
	}
	ready, err := probe.NewReadiness(rs, sp.Writable, 2*time.Second)
	if err != nil {
		return err
	}
	sup, err := recorder.New(recorder.Options{
		Spool:            sp,
		Rooms:            rooms,
		Owners:           ownership.NewMemory(),
		Format:           cfg.Storage.FileFormat,
		JitterWindow:     jitterWindow(cfg.Storage.JitterWindow),
		RejoinTimeout:    cfg.Limits.RejoinTimeout,
		ReconnectTimeout: cfg.Limits.ReconnectTimeout,
		ArmTimeout:       cfg.Limits.ArmTimeout,
		MaxRecordings:    cfg.Limits.MaxRecordings,
		Logger:           log,
		Lookup:           lookup,
		Instance:         instance,
		Join:             joiner(cfg, instance, log),
	})
	if err != nil {
		return err
	}
	policy := autorecord.New(sup, autorecord.Options{
		Enabled:          cfg.AutoRecord.Enabled,
		Rooms:            cfg.AutoRecord.Rooms,
		IgnoreIdentities: cfg.AutoRecord.IgnoreIdentities,
		Logger:           log,
	})

	keys := auth.NewSimpleKeyProvider(cfg.LiveKit.APIKey, cfg.LiveKit.APISecret)
	apiOpts := api.Options{Webhooks: api.Webhooks{Keys: keys, Events: policy}, Ready: ready.Check, Metrics: metrics}
	if cfg.HTTP.Auth {
		apiOpts.Auth = keys
	} else {
		log.Warn("API_AUTH=off: anyone who reaches the port can start and stop recordings; for local development only")
	}
	srv := &http.Server{
		Handler:           api.New(service{sup, rooms, recovery.Files}, log, apiOpts),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("recorder listening", "addr", ln.Addr().String(), "livekit", cfg.LiveKit.URL, "dir", sp.Dir(), "store", store.String(), "instance", instance)

	select {
	case err := <-served:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	stop() // a second signal kills the process the default way
	log.Info("shutting down: stopping recordings")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Limits.ShutdownTimeout)
	defer cancel()
	// Refuse new work first, then close every file, then finish requests,
	// then give uploads their drain time: what is left stays in the spool,
	// and rooms not yet complete complete in the next process.
	errs := []error{sup.Shutdown(sctx)}
	rooms.Stop()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		errs = append(errs, err)
	}
	policy.Close()
	dctx, dcancel := context.WithTimeout(context.Background(), cfg.Storage.DrainTimeout)
	defer dcancel()
	if err := queue.Drain(dctx); err != nil {
		log.Warn("uploads unfinished; they stay in the spool for the next start", "err", err)
	}
	rooms.Close()
	sup.Close()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	log.Info("shut down cleanly")
	return nil
}

// service is what the HTTP API shows: the supervisor's recordings, the
// rooms' pipeline runs and the files recovered at start-up.
type service struct {
	*recorder.Supervisor
	rooms     *completion.Rooms
	recovered []spool.RecoveredFile
}

func (s service) Completions() []completion.Run { return s.rooms.Runs() }

func (s service) Recovered() []spool.RecoveredFile {
	out := append([]spool.RecoveredFile(nil), s.recovered...)
	for i := range out {
		out[i].Refresh()
	}
	return out
}

// openSpool locks and opens LOCAL_DIRECTORY. With local storage the mixes
// live in it too, so a room may not take their folder's name.
func openSpool(cfg configs.Config, instance string, queue *uploader.Queue, log *slog.Logger) (*spool.Spool, error) {
	o := spool.Options{
		Dir:          cfg.Storage.LocalDirectory,
		Instance:     instance,
		Uploads:      queue,
		Logger:       log,
		SpoolIsStore: !cfg.S3.Enabled(),
		Markers:      cfg.Mixdown.Mode == "builtin" || cfg.Pipeline.WebhookURL != "",
	}
	if cfg.S3.Enabled() {
		o.KeyPrefix = cfg.S3.Directory
	} else {
		o.Reserved = []string{strings.SplitN(strings.Trim(cfg.Mixdown.Directory, "/"), "/", 2)[0]}
	}
	sp, err := spool.Open(o)
	if err != nil {
		return nil, err
	}
	return sp, nil
}

// roomPipeline is what runs once a room is complete: the built-in mixdown
// and the signed pipeline webhook, or nothing (nil) when both are off.
func roomPipeline(cfg configs.Config, store uploader.Storage, queue *uploader.Queue, log *slog.Logger) completion.Pipeline {
	format, _ := mixdown.ParseFormat(cfg.Mixdown.Format) // validated with the config
	p := &mixdown.Pipeline{
		Store:   store,
		Uploads: queue,
		Mix:     cfg.Mixdown.Mode == "builtin",
		Format:  format,
		Prefix:  cfg.Mixdown.Directory,
		Logger:  log,
	}
	if cfg.Pipeline.WebhookURL != "" {
		key, secret, shared := cfg.SigningKeys()
		if shared {
			log.Warn("PIPELINE_WEBHOOK_KEY and PIPELINE_WEBHOOK_SECRET are unset: the pipeline webhook is signed with the LiveKit API pair, so its receivers hold the LiveKit secret")
		}
		p.Notifier = &mixdown.Notifier{URL: cfg.Pipeline.WebhookURL, APIKey: key, APISecret: secret, Logger: log}
	}
	if !p.Mix && p.Notifier == nil {
		return nil
	}
	return p.Complete
}

// joiner joins a bot to a room, bounded by JOIN_TIMEOUT.
func joiner(cfg configs.Config, instance string, log *slog.Logger) recorder.JoinFunc {
	return func(ctx context.Context, room string, h bot.Handler) (recorder.Bot, error) {
		ctx, cancel := context.WithTimeout(ctx, cfg.Limits.JoinTimeout)
		defer cancel()
		return bot.Join(ctx, bot.Config{
			URL:       cfg.LiveKit.URL,
			APIKey:    cfg.LiveKit.APIKey,
			APISecret: cfg.LiveKit.APISecret,
			// One identity per bot: LiveKit drops the older of two equal
			// identities, and a bot still leaving may share a room with
			// its successor.
			Identity: recorder.BotIdentityPrefix + instance + "-" + randomHex(3),
			Logger:   log,
		}, room, h)
	}
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
// directory.
func openStorage(ctx context.Context, cfg configs.Config) (uploader.Storage, error) {
	if cfg.S3.Enabled() {
		c, err := s3.New(ctx, s3.Config{
			Bucket:         cfg.S3.Bucket,
			Region:         cfg.S3.Region,
			Endpoint:       cfg.S3.Endpoint,
			ForcePathStyle: cfg.S3.ForcePathStyle,
			// Few attempts per request: the upload queue retries for as
			// long as it takes, and reports each failure in between.
			MaxAttempts: 3,
		})
		if err != nil {
			return nil, fmt.Errorf("S3_BUCKET: %w", err)
		}
		return c, nil
	}
	d, err := local.New(cfg.Storage.LocalDirectory)
	if err != nil {
		return nil, fmt.Errorf("LOCAL_DIRECTORY: %w", err)
	}
	return d, nil
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
