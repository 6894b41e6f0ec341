package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/livekit/psrpc"
	"github.com/livekit/psrpc/pkg/client"
	"github.com/livekit/psrpc/pkg/info"
	"github.com/livekit/psrpc/pkg/rand"
	"github.com/livekit/psrpc/pkg/server"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trackrec/trackrec/recorder"
)

// Local is this instance's recorder as the fleet drives it. Recordings are
// passed on as the JSON the Local made; errors should wrap this package's
// sentinels (ErrNotFound, ErrFull, ...) so that they keep their meaning on
// the calling instance.
type Local interface {
	// Start starts (or finds) the recording of participant in room and
	// reports whether it created it.
	Start(ctx context.Context, room, participant string, wait bool) (json.RawMessage, bool, error)
	// Stop stops key's recording and returns it once its files are closed.
	Stop(ctx context.Context, key recorder.Key) (json.RawMessage, error)
	List() []json.RawMessage
	// HasRoom reports that a bot of this instance is in room.
	HasRoom(room string) bool
	// Load is the number of tracks recorded now and the most this instance
	// takes (MAX_TRACKS).
	Load() (tracks, capacity int)
	// Owns reports that this instance records key.
	Owns(key recorder.Key) bool
	// HandOver starts, on this instance, key's recording that the
	// instance holding it as owner hands over while it drains, under the
	// same id; it returns the recording and the instant its files take
	// over (recorder.HandOverFrom). from is the draining instance.
	HandOver(ctx context.Context, key recorder.Key, id, owner, from string, wait bool) (json.RawMessage, time.Time, error)
	// Draining reports that this instance is handing its recordings over:
	// a successor's claim on them wins over its own.
	Draining() bool
	// TakesTracks reports that this instance goes on with track egresses
	// (its egress worker serves).
	TakesTracks() bool
}

// Options configure a Fleet.
type Options struct {
	Instance string           // this instance's name, unique in the fleet
	Bus      psrpc.MessageBus // shared by the fleet: psrpc.NewRedisMessageBus
	Local    Local
	Logger   *slog.Logger  // nil: slog.Default()
	Timeout  time.Duration // bound on each call between instances; 0: 20 s
	// URL is where this instance's API is reached by the others (live
	// streams are forwarded to the instance that records); "": nowhere.
	URL string
}

// Entry is one recording of a fleet-wide list and the instance holding it.
type Entry struct {
	Instance  string          `json:"instance"`
	Recording json.RawMessage `json:"recording"`
}

const (
	service = "TrackrecFleet"

	mStart   = "Start"
	mStop    = "Stop"
	mOwner   = "Owner"
	mList    = "List"
	mMembers = "Members"
	mHand    = "HandOver"

	defaultTimeout = 20 * time.Second
	selectTimeout  = time.Second            // how long claims are awaited
	shortCircuit   = 200 * time.Millisecond // after the first claim below 1
	heartbeat      = 5 * time.Second
	forgetAfter    = 3 * heartbeat
	probeEvery     = 100 * time.Millisecond
)

// Fleet serves this instance's Local to the fleet and calls the fleet.
type Fleet struct {
	instance string
	id       string // this process: tells apart two processes given the same name
	local    Local
	log      *slog.Logger
	timeout  time.Duration

	srv *server.RPCServer
	cli *client.RPCClient
	sub psrpc.Subscription[*wrapperspb.BytesValue]

	mu      sync.Mutex
	seen    map[string]time.Time // the other instances, when last heard from
	urls    map[string]string    // the other instances' API, as announced
	url     string               // this one's
	closing bool                 // Close began: serve nothing more
	served  sync.WaitGroup       // calls into Local on behalf of the fleet

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// define is the service both ends agree on, in place of generated code.
func define(id string) *info.ServiceDefinition {
	sd := &info.ServiceDefinition{Name: service, ID: id}
	// name, affinity enabled, multi, require claim, queue
	sd.RegisterMethod(mStart, true, false, true, false)
	sd.RegisterMethod(mHand, true, false, true, false)
	sd.RegisterMethod(mStop, false, false, true, false)
	sd.RegisterMethod(mOwner, false, false, true, false)
	sd.RegisterMethod(mList, false, true, false, false)
	sd.RegisterMethod(mMembers, false, true, false, false)
	return sd
}

func (o *Options) validate() error {
	var errs []error
	switch {
	case o.Instance == "":
		errs = append(errs, errors.New("Instance is required"))
	case !utf8.ValidString(o.Instance) || containsControl(o.Instance):
		errs = append(errs, fmt.Errorf("Instance %q must be UTF-8 without control characters", o.Instance))
	}
	if o.Bus == nil {
		errs = append(errs, errors.New("Bus is required"))
	}
	if o.Local == nil {
		errs = append(errs, errors.New("Local is required"))
	}
	if o.Timeout != 0 && o.Timeout <= selectTimeout {
		errs = append(errs, fmt.Errorf("Timeout %s must exceed the %s in which instances claim a call", o.Timeout, selectTimeout))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	return nil
}

func containsControl(s string) bool {
	for _, r := range s {
		if unicode.IsControl(r) {
			return true
		}
	}
	return false
}

// New joins the fleet on o.Bus: it serves o.Local to the other instances and
// returns once its own probe came back over the bus (doc.go).
func New(o Options) (*Fleet, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	f := &Fleet{
		instance: o.Instance,
		id:       rand.NewClientID(),
		local:    o.Local,
		log:      o.Logger,
		timeout:  o.Timeout,
		seen:     map[string]time.Time{},
		urls:     map[string]string{},
		url:      o.URL,
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if f.log == nil {
		f.log = slog.Default()
	}
	f.log = f.log.With("instance", f.instance)
	if f.timeout == 0 {
		f.timeout = defaultTimeout
	}

	f.srv = server.NewRPCServer(define(f.instance), o.Bus, psrpc.WithServerID(f.instance))
	if err := f.register(); err != nil {
		f.srv.Close(true)
		return nil, fmt.Errorf("fleet: serve: %w", err)
	}
	cli, err := client.NewRPCClient(define(f.id), o.Bus,
		psrpc.WithClientTimeout(f.timeout), psrpc.WithClientSelectTimeout(selectTimeout))
	if err != nil {
		f.srv.Close(true)
		return nil, fmt.Errorf("fleet: client: %w", err)
	}
	f.cli = cli
	// Subscribed after the handlers: on Redis, subscriptions are made in
	// order, so once the members channel carries our probe back, the
	// request channels are live too.
	f.sub, err = client.Join[*wrapperspb.BytesValue](context.Background(), cli, mMembers, nil)
	if err != nil {
		f.srv.Close(true)
		cli.Close()
		return nil, fmt.Errorf("fleet: members: %w", err)
	}

	joined := make(chan struct{})
	go f.run(joined)
	if err := f.probe(joined); err != nil {
		close(f.stop)
		<-f.done
		f.srv.Close(true)
		_ = f.sub.Close()
		cli.Close()
		return nil, err
	}
	return f, nil
}

func (f *Fleet) register() error {
	regs := []func() error{
		func() error {
			return server.RegisterHandler(f.srv, mStart, nil, serve(f, mStart, f.serveStart), affinity(f, mStart, f.startAffinity))
		},
		func() error {
			return server.RegisterHandler(f.srv, mHand, nil, serve(f, mHand, f.serveHandOver), affinity(f, mHand, f.handOverAffinity))
		},
		func() error {
			return server.RegisterHandler(f.srv, mStop, nil, serve(f, mStop, f.serveStop), affinity(f, mStop, f.ownerAffinity))
		},
		func() error {
			return server.RegisterHandler(f.srv, mOwner, nil, serve(f, mOwner, f.serveOwner), affinity(f, mOwner, f.ownerAffinity))
		},
		func() error {
			return server.RegisterHandler(f.srv, mList, nil, serve(f, mList, f.serveList), nil)
		},
	}
	for _, reg := range regs {
		if err := reg(); err != nil {
			return err
		}
	}
	return nil
}

// Close leaves the fleet: it stops announcing itself, tells the others it
// left, stops serving and waits for the calls into Local in progress; Local
// is not called after it. Calls to Start, Stop, Owner and List fail after
// it.
func (f *Fleet) Close() {
	f.closeOnce.Do(func() {
		close(f.stop)
		<-f.done
		f.announce(kindLeave)
		f.mu.Lock()
		f.closing = true
		f.mu.Unlock()
		// Forced: psrpc's graceful close waits for every request still in
		// its claim phase, those another instance won included, until
		// they expire, and spins on the closed request channel meanwhile.
		// f.served is the wait that matters.
		f.srv.Close(true)
		f.served.Wait()
		_ = f.sub.Close()
		f.cli.Close()
	})
}

// enter admits one call into Local, unless Close began; leave with
// f.served.Done.
func (f *Fleet) enter() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closing {
		return false
	}
	f.served.Add(1)
	return true
}

// Wire messages: JSON in a wrapperspb.BytesValue.
type (
	startReq struct {
		Room        string `json:"room"`
		Participant string `json:"participant"`
		Wait        bool   `json:"wait,omitempty"`
	}
	startRes struct {
		Instance  string          `json:"instance"`
		Recording json.RawMessage `json:"recording"`
		Created   bool            `json:"created"`
		// CutIn (a handover) is how long after the answer its cut comes:
		// relative, so the two instances' clocks need not agree.
		CutIn time.Duration `json:"cut_in_ns,omitempty"`
	}
	handReq struct {
		Room        string `json:"room"`
		Participant string `json:"participant"`
		Track       string `json:"track,omitempty"` // a track egress's recording
		ID          string `json:"id"`
		Owner       string `json:"owner"` // the claim's holder, handing it over
		From        string `json:"from"`  // its instance
		Wait        bool   `json:"wait,omitempty"`
	}
	keyReq struct {
		Room        string `json:"room"`
		Participant string `json:"participant"`
		Track       string `json:"track,omitempty"`
	}
	stopRes struct {
		Instance  string          `json:"instance"`
		Recording json.RawMessage `json:"recording"`
	}
	ownerRes struct {
		Instance string `json:"instance"`
	}
	listReq struct{}
	listRes struct {
		Instance   string            `json:"instance"`
		Recordings []json.RawMessage `json:"recordings"`
	}
)

func encode(v any) (*wrapperspb.BytesValue, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return wrapperspb.Bytes(b), nil
}

// serve adapts a typed handler to psrpc's: JSON in and out, and the Local's
// errors carried as wire codes.
func serve[Req, Res any](f *Fleet, op string, fn func(context.Context, Req) (Res, error)) func(context.Context, *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) {
	return func(ctx context.Context, m *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) {
		var req Req
		if err := json.Unmarshal(m.GetValue(), &req); err != nil {
			return nil, psrpc.NewError(psrpc.MalformedRequest, fmt.Errorf("fleet: %s request: %w", op, err))
		}
		if !f.enter() {
			return nil, toWire(fmt.Errorf("fleet: %s: %w", op, ErrShuttingDown), f.instance)
		}
		res, err := fn(ctx, req)
		f.served.Done()
		if err != nil {
			return nil, toWire(err, f.instance)
		}
		out, err := encode(res)
		if err != nil {
			return nil, psrpc.NewError(psrpc.MalformedResponse, fmt.Errorf("fleet: %s answer: %w", op, err))
		}
		return out, nil
	}
}

func (f *Fleet) serveStart(ctx context.Context, r startReq) (startRes, error) {
	rec, created, err := f.local.Start(ctx, r.Room, r.Participant, r.Wait)
	if err != nil {
		return startRes{}, err
	}
	f.log.Debug("fleet: start served", "room", r.Room, "participant", r.Participant, "created", created)
	return startRes{Instance: f.instance, Recording: rec, Created: created}, nil
}

func (f *Fleet) serveHandOver(ctx context.Context, r handReq) (startRes, error) {
	rec, cut, err := f.local.HandOver(ctx, recorder.Key{Room: r.Room, Participant: r.Participant, Track: r.Track}, r.ID, r.Owner, r.From, r.Wait)
	if err != nil {
		return startRes{}, err
	}
	f.log.Info("fleet: recording taken over", "room", r.Room, "participant", r.Participant, "track", r.Track, "recording", r.ID)
	return startRes{Instance: f.instance, Recording: rec, Created: true, CutIn: time.Until(cut)}, nil
}

func (f *Fleet) serveStop(ctx context.Context, r keyReq) (stopRes, error) {
	rec, err := f.local.Stop(ctx, r.key())
	if err != nil {
		return stopRes{}, err
	}
	f.log.Debug("fleet: stop served", "room", r.Room, "participant", r.Participant)
	return stopRes{Instance: f.instance, Recording: rec}, nil
}

func (r keyReq) key() recorder.Key {
	return recorder.Key{Room: r.Room, Participant: r.Participant, Track: r.Track}
}

func (f *Fleet) serveOwner(_ context.Context, _ keyReq) (ownerRes, error) {
	return ownerRes{Instance: f.instance}, nil
}

func (f *Fleet) serveList(context.Context, listReq) (listRes, error) {
	return listRes{Instance: f.instance, Recordings: f.local.List()}, nil
}

// roomAffinity is the claim of an instance whose bot is in the room.
const roomAffinity = 0.995

// placement is an instance's claim on a start (doc.go): 1 wins at once, a
// negative claim is no claim.
func placement(owns, hasRoom bool, tracks, capacity int) float32 {
	switch {
	case owns:
		return 1
	case capacity <= 0 || tracks >= capacity:
		return -1
	case hasRoom:
		// Above any load-based claim, below the owner's: two instances may
		// both have a bot in the room, and the owner must win.
		return roomAffinity
	}
	return 0.99 * float32(capacity-max(tracks, 0)) / float32(capacity)
}

// affinity adapts a typed claim to psrpc's: the request decoded, and no
// claim once Close began.
func affinity[Req any](f *Fleet, op string, fn func(Req) float32) func(context.Context, *wrapperspb.BytesValue) float32 {
	return func(_ context.Context, m *wrapperspb.BytesValue) float32 {
		var r Req
		if err := json.Unmarshal(m.GetValue(), &r); err != nil {
			f.log.Warn("fleet: unreadable request", "op", op, "err", err)
			return -1
		}
		if !f.enter() {
			return -1
		}
		defer f.served.Done()
		return fn(r)
	}
}

func (f *Fleet) startAffinity(r startReq) float32 {
	owns := f.local.Owns(recorder.Key{Room: r.Room, Participant: r.Participant})
	if owns && f.local.Draining() {
		return drainingOwner // its successor, if any, answers
	}
	tracks, capacity := f.local.Load()
	return placement(owns, f.local.HasRoom(r.Room), tracks, capacity)
}

// handOverAffinity places a handover as a new start: the instance handing
// it over owns it, but drains, so it is full and does not claim.
func (f *Fleet) handOverAffinity(r handReq) float32 {
	if r.Track != "" && !f.local.TakesTracks() {
		return -1 // a track egress needs an egress worker to go on
	}
	tracks, capacity := f.local.Load()
	return placement(false, f.local.HasRoom(r.Room), tracks, capacity)
}

// drainingOwner is the claim of an owner handing its recordings over: while
// a handover is under way its successor holds the recording too, and a stop
// must reach the successor, which goes on with it.
const drainingOwner = 0.5

func (f *Fleet) ownerAffinity(r keyReq) float32 {
	switch {
	case !f.local.Owns(r.key()):
		return -1
	case f.local.Draining():
		return drainingOwner
	}
	return 1
}

// call sends one request to the instance that claims it. nobody is the
// error when none does.
func call[Res any](ctx context.Context, f *Fleet, op string, req any, nobody error, opts ...psrpc.RequestOption) (Res, string, error) {
	var res Res
	m, err := encode(req)
	if err != nil {
		return res, "", fmt.Errorf("fleet: %s request: %w", op, err)
	}
	out, err := client.RequestSingle[*wrapperspb.BytesValue](ctx, f.cli, op, nil, m, opts...)
	if err != nil {
		inst, err := callError(ctx, op, err, f.timeout, nobody)
		return res, inst, err
	}
	if err := json.Unmarshal(out.GetValue(), &res); err != nil {
		return res, "", fmt.Errorf("fleet: %s answer: %w", op, err)
	}
	return res, "", nil
}

// Start places the start of participant's recording in room (doc.go) and
// returns the recording, whether it was created, and the instance holding
// it. When every instance is full the error is ErrFull. A Local's error
// comes back as it was, with the instance that returned it.
func (f *Fleet) Start(ctx context.Context, room, participant string, wait bool) (json.RawMessage, bool, string, error) {
	res, inst, err := call[startRes](ctx, f, mStart, startReq{Room: room, Participant: participant, Wait: wait}, ErrFull,
		psrpc.WithSelectionOpts(psrpc.SelectionOpts{
			MaximumAffinity:     1,
			AffinityTimeout:     selectTimeout,
			ShortCircuitTimeout: shortCircuit,
		}))
	if err != nil {
		return nil, false, inst, err
	}
	return res.Recording, res.Created, res.Instance, nil
}

// HandOver places participant's recording in room, which this instance
// holds as owner and hands over while it drains, on another instance (as a
// start is placed), and returns it as that instance started it, that
// instance, and how long after the answer its cut comes. ErrFull: no
// instance has room.
func (f *Fleet) HandOver(ctx context.Context, key recorder.Key, id, owner string, wait bool) (json.RawMessage, string, time.Duration, error) {
	res, inst, err := call[startRes](ctx, f, mHand, handReq{Room: key.Room, Participant: key.Participant, Track: key.Track, ID: id, Owner: owner, From: f.instance, Wait: wait}, ErrFull,
		psrpc.WithSelectionOpts(psrpc.SelectionOpts{
			MaximumAffinity:     1,
			AffinityTimeout:     selectTimeout,
			ShortCircuitTimeout: shortCircuit,
		}))
	if err != nil {
		return nil, inst, 0, err
	}
	return res.Recording, res.Instance, res.CutIn, nil
}

// Stop stops participant's recording in room on the instance that owns it
// and returns the final recording and that instance. ErrNotFound: no
// instance records them.
func (f *Fleet) Stop(ctx context.Context, key recorder.Key) (json.RawMessage, string, error) {
	res, inst, err := call[stopRes](ctx, f, mStop, keyReq{Room: key.Room, Participant: key.Participant, Track: key.Track}, ErrNotFound,
		psrpc.WithSelectionOpts(psrpc.SelectionOpts{
			MaximumAffinity:     1,
			AffinityTimeout:     selectTimeout,
			ShortCircuitTimeout: shortCircuit,
		}))
	if err != nil {
		return nil, inst, err
	}
	return res.Recording, res.Instance, nil
}

// Owner is the instance that records participant in room; ErrNotFound:
// none does.
func (f *Fleet) Owner(ctx context.Context, room, participant string) (string, error) {
	res, _, err := call[ownerRes](ctx, f, mOwner, keyReq{Room: room, Participant: participant}, ErrNotFound)
	if err != nil {
		return "", err
	}
	return res.Instance, nil
}
