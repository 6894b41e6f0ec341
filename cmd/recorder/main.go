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
	"github.com/livekit/psrpc"
	"github.com/trackrec/trackrec/fleet"
	"github.com/trackrec/trackrec/fleetcompletion"
	"github.com/trackrec/trackrec/fleetstore"
	"github.com/trackrec/trackrec/live"
	"github.com/trackrec/trackrec/takeover"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/livekit/protocol/auth"
	lksdk "github.com/livekit/server-sdk-go/v2"

	"github.com/trackrec/trackrec/api"
	"github.com/trackrec/trackrec/autorecord"
	"github.com/trackrec/trackrec/bot"
	"github.com/trackrec/trackrec/capacity"
	"github.com/trackrec/trackrec/completion"
	"github.com/trackrec/trackrec/configs"
	"github.com/trackrec/trackrec/egress"
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
	// The scheduler's monitor kept awake needs a GODEBUG setting, read
	// only as the process starts: the process starts again with it, once,
	// under the same pid, before anything (a CONFIG_FILE too) is read.
	// ADAPTIVE_PROCS=off in the environment leaves it out.
	if capacity.AdaptiveFromEnv(os.Getenv("ADAPTIVE_PROCS")) {
		if env, again := capacity.SysmonEnv(os.Environ()); again {
			// The running binary itself, even if its file was replaced.
			err := syscall.Exec("/proc/self/exe", os.Args, env) // returns only if it failed
			if self, xerr := os.Executable(); err != nil && xerr == nil {
				err = syscall.Exec(self, os.Args, env)
			}
			// Only the saving is lost: go on without it.
			fmt.Fprintln(os.Stderr, "recorder: ADAPTIVE_PROCS: could not start again with GODEBUG=schedtrace; the scheduler's monitor sleeps:", err)
		}
	}
	cfg, err := configs.Load(os.Getenv)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := start(ctx, cfg)
	if err != nil {
		return err
	}
	defer a.spool.Close()
	select {
	case err := <-a.served:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	stop() // a second signal kills the process the default way
	return a.shutdown()
}

// app is the running service, as start assembled it.
type app struct {
	guard     *capacity.Guard
	cores     int // what the guard sizes the instance by
	stopGuard context.CancelFunc
	debug     *http.Server // DEBUG_ADDRESS; nil otherwise
	cfg       configs.Config
	log       *slog.Logger
	queue     *uploader.Queue
	spool     *spool.Spool
	rooms     *completion.Rooms
	sup       *recorder.Supervisor
	policy    *autorecord.Policy
	srv       *http.Server
	served    chan error
	shared    shared
	// stopTakeover ends resuming other instances' recordings.
	stopTakeover func()
	fleet        *fleet.Fleet // nil alone
	joined       atomic.Pointer[fleet.Fleet]
	// files tells the fleet of this instance's files; nil alone or
	// without a room pipeline.
	files *fleetcompletion.Files
	// successor takes this instance's recordings over when it drains;
	// nil alone.
	successor recorder.Successor
	live      *live.Hub
	egress    *egress.Worker                // EGRESS_WORKER; nil otherwise
	worker    atomic.Pointer[egress.Worker] // egress, once it serves
}

// shared is the state an instance shares with the fleet: in Redis when
// REDIS_ADDRESS (or Sentinels, or cluster nodes) is set, else in memory.
type shared struct {
	owners recorder.Owners
	dedup  api.Dedup // nil: the API's in-memory one
	close  func() error
	// Fleet only: the wanted recordings and who holds them, for takeover,
	// and the bus the instances call each other on.
	leases  *fleetstore.Leases
	intents *fleetstore.Intents
	bus     psrpc.MessageBus
	rooms   *fleetstore.RoomTracks
	egress  *fleetstore.Egresses
}

// redisPrefix starts every key the fleet keeps in Redis, apart from
// livekit-server's own.
const redisPrefix = "trackrec"

func openShared(ctx context.Context, cfg configs.Config) (shared, error) {
	if !cfg.Redis.Enabled() {
		return shared{owners: ownership.NewMemory(), close: func() error { return nil }}, nil
	}
	r := cfg.Redis
	rc, err := fleetstore.NewClient(ctx, fleetstore.Config{
		Address: r.Address, Username: r.Username, Password: r.Password, DB: r.DB, UseTLS: r.UseTLS,
		SentinelMasterName: r.SentinelMasterName, SentinelAddresses: r.SentinelAddresses, ClusterAddresses: r.ClusterAddresses,
	})
	if err != nil {
		return shared{}, fmt.Errorf("REDIS_ADDRESS: %w", err)
	}
	ttl := cfg.Fleet.LeaseTTL
	leases := fleetstore.NewLeases(rc, redisPrefix, ttl)
	return shared{
		owners:  ownership.NewShared(leases, ttl),
		leases:  leases,
		intents: fleetstore.NewIntents(rc, redisPrefix),
		bus:     psrpc.NewRedisMessageBus(rc),
		rooms:   fleetstore.NewRoomTracks(rc, redisPrefix),
		egress:  fleetstore.NewEgresses(rc, redisPrefix),
		// LiveKit retries a webhook for minutes; an hour covers it.
		dedup: fleetstore.NewDedup(rc, redisPrefix, time.Hour),
		close: rc.Close,
	}, nil
}

// start builds the service and serves its API. Nothing is written to
// LOCAL_DIRECTORY, nor logged, before its lock is held: a second process on
// it stops with one line, leaving the first one's files alone.
func start(ctx context.Context, cfg configs.Config) (*app, error) {
	a := &app{cfg: cfg, log: slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.Log.Level})), served: make(chan error, 1)}
	instance := instanceID()
	store, err := openStorage(ctx, cfg)
	if err != nil {
		return nil, err
	}
	// With S3 the spool is emptied as files are confirmed; the local store
	// is the spool itself.
	metrics := api.NewMetrics()
	capacity.TuneGC()
	// What this instance takes on: MAX_TRACKS, the CPU guard, and the
	// scheduler's processors sized to the load (an operator's GOMAXPROCS
	// wins).
	// The cores are Go's default GOMAXPROCS, read before the guard sizes
	// it: the machine's, or the container's CPU limit.
	a.cores = runtime.GOMAXPROCS(0)
	a.guard = capacity.New(capacity.Options{
		MaxTracks: cfg.Fleet.Tracks(a.cores), CPUGuard: cfg.Limits.CPUGuard, Cores: a.cores,
		AdaptProcs: cfg.Limits.AdaptiveProcs && os.Getenv("GOMAXPROCS") == "", Logger: a.log,
	})
	gctx, stopGuard := context.WithCancel(context.Background())
	a.stopGuard = stopGuard
	go a.guard.Run(gctx)
	metrics.Add(a.guard)
	a.queue = uploader.NewQueue(store, uploader.QueueOptions{DeleteAfter: cfg.S3.Enabled(), Logger: a.log, Observe: metrics.ObserveUpload})
	// A fleet's files are told to Redis once it is open (below), before
	// any file is created.
	claimed := func(room, key string) bool { return a.files != nil && a.files.Claimed(room, key) }
	if a.spool, err = openSpool(cfg, instance, a.queue, claimed, a.log); err != nil {
		return nil, err
	}
	fail := func(err error) (*app, error) {
		_ = a.spool.Close()
		return nil, err
	}
	slog.SetDefault(a.log)
	bot.UseSDKLogger(a.log)
	ln, err := net.Listen("tcp", cfg.ListenAddr())
	if err != nil {
		return fail(fmt.Errorf("APP_PORT: %w", err))
	}
	shared, err := openShared(ctx, cfg)
	if err != nil {
		return fail(err)
	}
	a.shared = shared
	var pipeline completion.Pipeline
	mix := roomPipeline(cfg, store, a.queue, a.log)
	if shared.rooms != nil {
		// The fleet knows each instance's files: a room's completion waits
		// for them, and no two instances store one under the same key.
		a.files = fleetcompletion.NewFiles(shared.rooms, instance, mix != nil, a.log)
	}
	if mix != nil {
		pipeline = mix.Complete
		if shared.rooms != nil {
			// In a fleet a room completes once, with every instance's
			// tracks.
			pipeline = fleetcompletion.Wrap(mix, fleetcompletion.Options{
				Store: shared.rooms, Instance: instance, Logger: a.log,
				Busy:  fleetcompletion.RoomBusy(shared.intents, shared.leases),
				Alive: a.member, Wait: cfg.Fleet.CompletionWait,
			})
		}
	}
	a.rooms = completion.New(completion.Options{
		Pipeline:    pipeline,
		Settle:      cfg.Mixdown.Settle,
		Concurrency: cfg.Mixdown.Concurrency,
		Markers:     a.spool,
		Logger:      a.log,
	})
	// Files an earlier process left behind go first: repaired, described,
	// queued; the rooms it did not complete complete in this one.
	recovery, err := a.spool.Recover(ctx)
	if err != nil {
		return fail(fmt.Errorf("LOCAL_DIRECTORY: recover spool: %w", err))
	}
	if len(recovery.Files) > 0 {
		a.log.Info("spool recovered", "files", len(recovery.Files), "rooms", len(recovery.Rooms))
	}
	a.rooms.Restore(recovery.Rooms)

	rs := lksdk.NewRoomServiceClient(cfg.LiveKit.HTTPURL(), cfg.LiveKit.APIKey, cfg.LiveKit.APISecret)
	ready, err := probe.NewReadiness(rs, a.spool.Writable, 2*time.Second)
	if err != nil {
		return fail(err)
	}
	var rooms recorder.Rooms = a.rooms
	var opened func(spool.Track, string, time.Time)
	if a.files != nil {
		rooms, opened = fleetRooms{a.rooms, a.files}, a.files.Opened
	}
	// Live streams of every track this instance records.
	a.live = live.NewHub(live.Options{MaxLag: cfg.Limits.LiveMaxLag})
	metrics.Add(live.Collector(a.live))
	if a.sup, err = newSupervisor(cfg, a.spool, rooms, opened, rs, shared, instance, a.guard, a.live, a.log); err != nil {
		return fail(err)
	}
	// Alone, the API and the webhook policy drive this supervisor; in a
	// fleet, the fleet, which places starts and finds every recording's
	// instance.
	local := service{a.sup, a.rooms, recovery.Files}
	var front autorecord.Recorder = a.sup
	var answer api.Recorder = local
	if shared.bus != nil {
		fr, err := a.joinFleet(cfg, instance)
		if err != nil {
			return fail(err)
		}
		front, answer = fr, fleetService{fr, local}
		a.successor = fr
	}
	var later func(context.Context, string, string) error
	if wanted := shared.intents; wanted != nil {
		later = func(ctx context.Context, room, identity string) error {
			return takeover.Later(ctx, wanted, room, identity)
		}
	}
	a.policy = autorecord.New(front, autorecord.Options{
		Enabled:          cfg.AutoRecord.Enabled,
		Rooms:            cfg.AutoRecord.Rooms,
		IgnoreIdentities: cfg.AutoRecord.IgnoreIdentities,
		Later:            later,
		Logger:           a.log,
	})
	keys := auth.NewSimpleKeyProvider(cfg.LiveKit.APIKey, cfg.LiveKit.APISecret)
	apiOpts := api.Options{Webhooks: api.Webhooks{Keys: keys, Events: a.policy, Dedup: shared.dedup}, Ready: ready.Check, Metrics: metrics,
		Local: local, Live: a.live}
	if a.fleet != nil {
		f := a.fleet
		apiOpts.LiveOwner = func(ctx context.Context, room, participant string) (string, error) {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			owner, err := f.Owner(ctx, room, participant)
			if err != nil || owner == instance {
				return "", err
			}
			return f.URL(owner), nil
		}
	}
	if cfg.HTTP.Auth {
		apiOpts.Auth = keys
	} else {
		a.log.Warn("API_AUTH=off: anyone who reaches the port can start and stop recordings; for local development only")
	}
	a.srv = &http.Server{
		Handler:           api.New(answer, a.log, apiOpts),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	if shared.intents != nil {
		a.startTakeover(cfg)
	}
	if cfg.Egress.Worker {
		if a.egress, err = startEgress(cfg, a, rs, instance, recovery.Files); err != nil {
			return fail(err)
		}
		a.worker.Store(a.egress)
	}
	if cfg.HTTP.DebugAddress != "" {
		if a.debug, err = serveProfiles(cfg.HTTP.DebugAddress, a.log); err != nil {
			return fail(fmt.Errorf("DEBUG_ADDRESS: %w", err))
		}
	}
	go func() { a.served <- a.srv.Serve(ln) }()
	a.log.Info("recorder listening", "addr", ln.Addr().String(), "livekit", cfg.LiveKit.URL, "dir", a.spool.Dir(), "store", store.String(), "instance", instance)
	return a, nil
}

// joinBound is how long a start may take that joins a room: JOIN_TIMEOUT
// and the presence grace.
func joinBound(cfg configs.Config) time.Duration { return cfg.Limits.JoinTimeout + 5*time.Second }

// joinFleet makes this instance a member of the fleet on Redis and returns
// what answers for the whole fleet.
func (a *app) joinFleet(cfg configs.Config, instance string) (fleet.Recorder, error) {
	local := fleet.Supervisor{Sup: a.sup, MaxTracks: cfg.Fleet.Tracks(a.cores), Capacity: a.guard.Capacity,
		Homes: a.shared.rooms, Instance: instance, HomeTTL: joinBound(cfg)}
	if cfg.Egress.Worker {
		local.Tracks = egressTracks{a}
	}
	f, err := fleet.New(fleet.Options{
		Instance: instance, Bus: a.shared.bus, Logger: a.log, Timeout: joinBound(cfg), Local: local,
		URL: cfg.AdvertisedURL(),
	})
	if err != nil {
		return fleet.Recorder{}, fmt.Errorf("REDIS_ADDRESS: join the fleet: %w", err)
	}
	a.fleet = f
	a.joined.Store(f)
	intents := a.shared.intents
	return fleet.Recorder{Fleet: f, Local: a.sup, Log: a.log, Forget: func(ctx context.Context, room, participant string) (bool, error) {
		return takeover.Forget(ctx, intents, room, participant)
	}}, nil
}

// member says whether instance is alive in the fleet; before this instance
// joined it cannot tell, and says so.
func (a *app) member(instance string) bool {
	f := a.joined.Load()
	return f == nil || f.Member(instance)
}

// startEgress serves livekit-server's track egress requests on its Redis.
func startEgress(cfg configs.Config, a *app, rs *lksdk.RoomServiceClient, instance string, recovered []spool.RecoveredFile) (*egress.Worker, error) {
	var storage *egress.S3
	if cfg.S3.Enabled() {
		storage = &egress.S3{Bucket: cfg.S3.Bucket, Region: cfg.S3.Region, Endpoint: cfg.S3.Endpoint, ForcePathStyle: cfg.S3.ForcePathStyle}
	}
	// Beside the spool, under its lock: records of running egresses.
	dir := filepath.Join(a.spool.Dir(), egressFolder)
	// The fleet's egress records hold a request's credentials sealed
	// under the API secret, which every instance has and Redis does not.
	sealer, err := egress.NewSealer(cfg.LiveKit.APISecret)
	if err != nil {
		return nil, fmt.Errorf("LIVEKIT_API_SECRET: %w", err)
	}
	w, err := egress.NewWorker(egress.Options{
		Bus:      a.shared.bus,
		Recorder: a.sup,
		Find: func(ctx context.Context, room, track string) (egress.Publisher, error) {
			ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			p, err := probe.FindTrack(ctx, rs, room, track)
			if errors.Is(err, probe.ErrNoTrack) {
				err = fmt.Errorf("%w: %w", recorder.ErrNoParticipant, err)
			}
			return egress.Publisher(p), err
		},
		Uploads: a.queue,
		Storage: storage,
		NewStore: func(ctx context.Context, t *egress.S3) (uploader.Storage, error) {
			return s3.New(ctx, s3.Config{Bucket: t.Bucket, Region: t.Region, Endpoint: t.Endpoint, ForcePathStyle: t.ForcePathStyle,
				AccessKey: t.AccessKey, SecretKey: t.Secret, SessionToken: t.SessionToken, MaxAttempts: 3})
		},
		Load: func() (int, int) {
			tracks := a.sup.Load()
			return tracks, a.guard.Capacity(tracks)
		},
		Dir:      dir,
		Shared:   a.shared.egress,
		Sealer:   sealer,
		Instance: instance,
		Alive:    a.member,
		Live:     a.live,
		Logger:   a.log,
	})
	if err != nil {
		return nil, fmt.Errorf("EGRESS_WORKER: %w", err)
	}
	n, err := w.Recover(recovered)
	if err != nil {
		a.log.Error("egress records of an earlier process unreadable", "err", err)
	} else if n > 0 {
		a.log.Info("egresses an earlier process left running are being reported", "egresses", n)
	}
	a.log.Info("egress worker serving livekit-server's track egress requests", "instance", instance)
	return w, nil
}

// egressTracks is the egress worker as the fleet asks it to go on with a
// track egress another instance ran; it is started after the fleet's
// parts, so it is looked up at each call.
type egressTracks struct{ a *app }

func (t egressTracks) worker() (*egress.Worker, error) {
	w := t.a.worker.Load()
	if w == nil {
		return nil, fmt.Errorf("%w: the egress worker is not serving yet", recorder.ErrUnavailable)
	}
	return w, nil
}

func (t egressTracks) TakeOver(ctx context.Context, key recorder.Key, id string, opts ...recorder.StartOption) (recorder.RecordingInfo, error) {
	w, err := t.worker()
	if err != nil {
		return recorder.RecordingInfo{}, err
	}
	return w.TakeOver(ctx, key, id, opts...)
}

func (t egressTracks) Resume(ctx context.Context, key recorder.Key, id string, opts ...recorder.StartOption) (bool, error) {
	w, err := t.worker()
	if err != nil {
		return false, err
	}
	return w.Resume(ctx, key, id, opts...)
}

// egressFolder, in LOCAL_DIRECTORY, keeps the egress worker's records; no
// room's folder takes its name.
const egressFolder = "_egress"

// startTakeover resumes here the recordings whose instance died or shut
// down, when this instance wins their claim; stopTakeover ends it.
func (a *app) startTakeover(cfg configs.Config) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The supervisor's Admission bounds takeovers as it bounds every start.
		o := takeover.Options{Wanted: a.shared.intents, Holders: a.shared.leases, Starter: a.sup, Logger: a.log,
			Grace: cfg.Fleet.LeaseTTL / 2}
		if cfg.Egress.Worker {
			o.Tracks = egressTracks{a}
		}
		takeover.Run(ctx, o)
	}()
	a.stopTakeover = func() { cancel(); <-done }
}

// newSupervisor makes the supervisor of this instance's recordings.
func newSupervisor(cfg configs.Config, sp *spool.Spool, rooms recorder.Rooms, opened func(spool.Track, string, time.Time), rs probe.RoomService, sh shared, instance string, admission recorder.Admission, hub *live.Hub, log *slog.Logger) (*recorder.Supervisor, error) {
	// The lookup is bounded by JOIN_TIMEOUT like the join it comes before.
	lookup, err := probe.NewLookup(rs, cfg.Limits.JoinTimeout)
	if err != nil {
		return nil, err
	}
	var intents recorder.Intents
	if sh.intents != nil {
		intents = takeover.Intents{Wanted: sh.intents}
	}
	return recorder.New(recorder.Options{
		Intents:          intents,
		Opened:           opened,
		Spool:            sp,
		Rooms:            rooms,
		Owners:           sh.owners,
		Format:           cfg.Storage.FileFormat,
		JitterWindow:     jitterWindow(cfg.Storage.JitterWindow),
		RejoinTimeout:    cfg.Limits.RejoinTimeout,
		ReconnectTimeout: cfg.Limits.ReconnectTimeout,
		ArmTimeout:       cfg.Limits.ArmTimeout,
		MaxRecordings:    cfg.Limits.MaxRecordings,
		Admission:        admission,
		Logger:           log,
		Lookup:           lookup,
		Instance:         instance,
		Join:             joiner(cfg, instance, log),
		Live:             hub,
	})
}

// shutdown refuses new work first, then closes every file, then finishes
// requests, then gives uploads their drain time: what is left stays in the
// spool, and rooms not yet complete complete in the next process.
func (a *app) shutdown() error {
	a.log.Info("shutting down: handing over or stopping recordings")
	if a.stopTakeover != nil {
		a.stopTakeover()
	}
	if a.egress != nil {
		// No new egress is claimed; the running ones end with their
		// recordings below, and are reported complete once stored.
		a.egress.Refuse()
	}
	sctx, cancel := context.WithTimeout(context.Background(), a.cfg.Limits.ShutdownTimeout)
	defer cancel()
	// In a fleet each recording goes on on another instance, cut where
	// that one's files take over; alone, or when nobody can, it stops.
	errs := []error{a.sup.Drain(sctx, a.successor)}
	a.rooms.Stop()
	if a.debug != nil {
		_ = a.debug.Close()
	}
	if err := a.srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		errs = append(errs, err)
	}
	a.policy.Close()
	dctx, dcancel := context.WithTimeout(context.Background(), a.cfg.Storage.DrainTimeout)
	defer dcancel()
	if err := a.queue.Drain(dctx); err != nil {
		a.log.Warn("uploads unfinished; they stay in the spool for the next start", "err", err)
	}
	if a.files != nil {
		// The files stored while draining are published for the fleet's
		// completion of their rooms.
		fctx, fcancel := context.WithTimeout(context.Background(), 5*time.Second)
		a.files.Close(fctx)
		fcancel()
	}
	if a.egress != nil {
		// Egresses whose file is stored are complete by now; the others
		// are reported failed, their files kept for the next start.
		a.egress.Close()
	}
	// Left only now: the others count this instance's files as being
	// stored, not as a dead instance's, while its uploads drain.
	if a.fleet != nil {
		a.fleet.Close()
	}
	a.rooms.Close()
	a.sup.Close()
	a.stopGuard()
	if err := a.shared.close(); err != nil {
		a.log.Warn("close redis", "err", err)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	a.log.Info("shut down cleanly")
	return nil
}

// fleetRooms tells both this instance's room completion and the fleet of
// each sealed track.
type fleetRooms struct {
	*completion.Rooms
	files *fleetcompletion.Files
}

func (r fleetRooms) TrackClosed(room string, t spool.Sealed) {
	r.Rooms.TrackClosed(room, t)
	r.files.Stored(room, t)
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

// fleetService is what the HTTP API shows in a fleet: every instance's
// recordings, and this instance's pipeline runs and recovered files.
type fleetService struct {
	fleet.Recorder
	local service
}

func (s fleetService) List() []recorder.RecordingInfo {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, _ := s.ListFleet(ctx)
	return list
}

func (s fleetService) Completions() []completion.Run    { return s.local.Completions() }
func (s fleetService) Recovered() []spool.RecoveredFile { return s.local.Recovered() }

// openSpool locks and opens LOCAL_DIRECTORY. With local storage the mixes
// live in it too, so a room may not take their folder's name.
func openSpool(cfg configs.Config, instance string, queue *uploader.Queue, claimed func(room, key string) bool, log *slog.Logger) (*spool.Spool, error) {
	o := spool.Options{
		Claimed:      claimed,
		Dir:          cfg.Storage.LocalDirectory,
		Instance:     instance,
		Uploads:      queue,
		Logger:       log,
		SpoolIsStore: !cfg.S3.Enabled(),
		Markers:      cfg.Mixdown.Mode == "builtin" || cfg.Pipeline.WebhookURL != "",
	}
	o.Reserved = []string{egressFolder}
	if cfg.S3.Enabled() {
		o.KeyPrefix = cfg.S3.Directory
	} else {
		o.Reserved = append(o.Reserved, strings.SplitN(strings.Trim(cfg.Mixdown.Directory, "/"), "/", 2)[0])
	}
	sp, err := spool.Open(o)
	if err != nil {
		return nil, err
	}
	return sp, nil
}

// roomPipeline is what runs once a room is complete: the built-in mixdown
// and the signed pipeline webhook, or nothing (nil) when both are off.
func roomPipeline(cfg configs.Config, store uploader.Storage, queue *uploader.Queue, log *slog.Logger) *mixdown.Pipeline {
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
	return p
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

// serveProfiles serves the runtime profiles (net/http/pprof) on addr, on a
// listener of their own: nothing of the API is reachable there.
func serveProfiles(addr string, log *slog.Logger) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Info("runtime profiles served", "addr", ln.Addr().String())
	return srv, nil
}
