package testbed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"gopkg.in/yaml.v3"
)

const (
	devAPIKey    = "devkey"
	devAPISecret = "secret"

	// How long StartLiveKit and StartS3 wait for the server to answer.
	startTimeout = 30 * time.Second
	// Close signals twice (graceful, then forced stop) before killing.
	forceAfter = 500 * time.Millisecond
	stopGrace  = 3 * time.Second
)

// LiveKitOptions configures StartLiveKit.
type LiveKitOptions struct {
	// WebhookURLs receive the server's webhooks, signed with the dev key.
	WebhookURLs []string
	// LogWriter receives the server's output; nil discards it.
	LogWriter io.Writer
	// LogLevel is the server's log level; empty means "info" (dev mode
	// would otherwise log at debug, which is very chatty).
	LogLevel string
	// RedisAddress (host:port), if set, is the server's Redis: its psrpc
	// bus, which egress workers share.
	RedisAddress string
}

// LiveKit is a running livekit-server in dev mode on loopback.
type LiveKit struct {
	URL       string // ws://127.0.0.1:PORT, for clients
	HTTPURL   string // http://127.0.0.1:PORT, for the server API
	APIKey    string
	APISecret string

	SignalPort int
	RTCTCPPort int
	RTCUDPPort int

	bin, conf string
	logw      io.Writer
	cmd       *exec.Cmd
	exited    chan struct{} // closed once the process has been waited for
	waitErr   error         // valid after exited is closed
	out       *tailBuffer
	closeOnce sync.Once
	closeErr  error
}

// StartLiveKit starts the installed livekit-server (see LiveKitServerBin) in
// dev mode on loopback, on free ports, returning once it answers API calls.
func StartLiveKit(ctx context.Context, o LiveKitOptions) (*LiveKit, error) {
	bin, err := LiveKitServerBin()
	if err != nil {
		return nil, err
	}
	// Free ports are found by binding and closing, so another process can
	// take one before the server binds it: retry with new ports.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		lk, err := startLiveKit(ctx, bin, o)
		if err == nil {
			return lk, nil
		}
		lastErr = err
		if ctx.Err() != nil || !errors.Is(err, errExitedEarly) {
			break
		}
	}
	return nil, lastErr
}

var errExitedEarly = errors.New("livekit-server exited during startup")

func startLiveKit(ctx context.Context, bin string, o LiveKitOptions) (*LiveKit, error) {
	ports, err := freePorts()
	if err != nil {
		return nil, err
	}
	lk := &LiveKit{
		URL:        "ws://127.0.0.1:" + strconv.Itoa(ports.signal),
		HTTPURL:    "http://127.0.0.1:" + strconv.Itoa(ports.signal),
		APIKey:     devAPIKey,
		APISecret:  devAPISecret,
		SignalPort: ports.signal,
		RTCTCPPort: ports.tcp,
		RTCUDPPort: ports.udp,
		out:        &tailBuffer{max: 8 << 10},
	}
	conf, err := lk.configYAML(o)
	if err != nil {
		return nil, err
	}

	lk.bin, lk.conf, lk.logw = bin, conf, o.LogWriter
	if err := lk.spawn(); err != nil {
		return nil, err
	}
	if err := lk.waitReady(ctx); err != nil {
		_ = lk.Close()
		return nil, err
	}
	return lk, nil
}

// spawn starts the server process with lk's binary and configuration.
func (lk *LiveKit) spawn() error {
	// Not CommandContext: ctx bounds startup only, the server lives until Close.
	cmd := exec.Command(lk.bin, "--dev", "--bind", "127.0.0.1", "--node-ip", "127.0.0.1", "--config-body", lk.conf)
	var w io.Writer = lk.out
	if lk.logw != nil {
		w = io.MultiWriter(lk.logw, lk.out)
	}
	cmd.Stdout = w
	cmd.Stderr = w
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start livekit-server: %w", err)
	}
	exited := make(chan struct{})
	lk.cmd, lk.exited = cmd, exited
	go func() {
		lk.waitErr = cmd.Wait()
		close(exited)
	}()
	return nil
}

// Restart kills the server, as a crash or a lost node would (every room and
// connection is gone), waits down, and starts it again on the same ports
// with the same configuration, returning once it answers.
func (lk *LiveKit) Restart(ctx context.Context, down time.Duration) error {
	_ = lk.cmd.Process.Kill()
	<-lk.exited
	select {
	case <-time.After(down):
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := lk.spawn(); err != nil {
		return err
	}
	return lk.waitReady(ctx)
}

func (lk *LiveKit) configYAML(o LiveKitOptions) (string, error) {
	level := o.LogLevel
	if level == "" {
		level = "info"
	}
	type rtc struct {
		TCPPort int `yaml:"tcp_port"`
		UDPPort int `yaml:"udp_port"`
		// Without STUN servers of its own the server hands its clients
		// public ones (Google's, Twilio's), and every bot and publisher
		// would send STUN requests off the machine. A loopback address
		// with no STUN server behind it keeps all traffic local; the
		// clients connect over their host candidates.
		STUNServers []string `yaml:"stun_servers"`
	}
	type webhook struct {
		APIKey string   `yaml:"api_key"`
		URLs   []string `yaml:"urls"`
	}
	conf := struct {
		Port    int               `yaml:"port"`
		RTC     rtc               `yaml:"rtc"`
		Keys    map[string]string `yaml:"keys"`
		Logging map[string]string `yaml:"logging"`
		Webhook *webhook          `yaml:"webhook,omitempty"`
		Redis   map[string]string `yaml:"redis,omitempty"`
	}{
		Port:    lk.SignalPort,
		RTC:     rtc{TCPPort: lk.RTCTCPPort, UDPPort: lk.RTCUDPPort, STUNServers: []string{"127.0.0.1:" + strconv.Itoa(lk.SignalPort)}},
		Keys:    map[string]string{lk.APIKey: lk.APISecret},
		Logging: map[string]string{"level": level},
	}
	if len(o.WebhookURLs) > 0 {
		// The server refuses to start unless api_key is one of its keys.
		conf.Webhook = &webhook{APIKey: lk.APIKey, URLs: o.WebhookURLs}
	}
	if o.RedisAddress != "" {
		conf.Redis = map[string]string{"address": o.RedisAddress}
	}
	b, err := yaml.Marshal(conf)
	if err != nil {
		return "", fmt.Errorf("livekit config: %w", err)
	}
	return string(b), nil
}

func (lk *LiveKit) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	rooms := lksdk.NewRoomServiceClient(lk.HTTPURL, lk.APIKey, lk.APISecret)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		reqCtx, reqCancel := context.WithTimeout(ctx, time.Second)
		_, err := rooms.ListRooms(reqCtx, &livekit.ListRoomsRequest{})
		reqCancel()
		if err == nil {
			return nil
		}
		select {
		case <-lk.exited:
			return fmt.Errorf("%w (%v): %s", errExitedEarly, lk.waitErr, lk.out.String())
		case <-ctx.Done():
			return fmt.Errorf("livekit-server on %s not ready: %w (last error: %v): %s",
				lk.HTTPURL, ctx.Err(), err, lk.out.String())
		case <-tick.C:
		}
	}
}

// Close stops the server (SIGTERM, a second SIGTERM to force it, then
// SIGKILL) and waits for it to exit. It is safe to call more than once.
func (lk *LiveKit) Close() error {
	lk.closeOnce.Do(func() {
		select {
		case <-lk.exited:
			lk.closeErr = fmt.Errorf("livekit-server had exited on its own: %v: %s", lk.waitErr, lk.out.String())
			return
		default:
		}
		// A first signal makes livekit-server wait, in 5 s steps, until no
		// participant is left; a second one forces the stop.
		_ = lk.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-lk.exited:
			return
		case <-time.After(forceAfter):
		}
		_ = lk.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-lk.exited:
		case <-time.After(stopGrace):
			_ = lk.cmd.Process.Kill()
			<-lk.exited
		}
	})
	return lk.closeErr
}

// Token returns a token for a normal participant of room: join, publish,
// subscribe and publish data.
func (lk *LiveKit) Token(room, identity string) (string, error) {
	t := true
	at := auth.NewAccessToken(lk.APIKey, lk.APISecret).
		SetVideoGrant(&auth.VideoGrant{
			RoomJoin:       true,
			Room:           room,
			CanPublish:     &t,
			CanSubscribe:   &t,
			CanPublishData: &t,
		}).
		SetIdentity(identity).
		SetValidFor(24 * time.Hour)
	jwt, err := at.ToJWT()
	if err != nil {
		return "", fmt.Errorf("token for %s in %s: %w", identity, room, err)
	}
	return jwt, nil
}

type serverPorts struct{ signal, tcp, udp int }

// freePorts asks the kernel for unused ports. All three sockets are held
// open together so they are distinct, then released for the server. They
// bind all interfaces because the server's RTC listeners do.
func freePorts() (serverPorts, error) {
	sig, err := net.Listen("tcp", ":0")
	if err != nil {
		return serverPorts{}, fmt.Errorf("find free port: %w", err)
	}
	defer sig.Close()
	tcp, err := net.Listen("tcp", ":0")
	if err != nil {
		return serverPorts{}, fmt.Errorf("find free port: %w", err)
	}
	defer tcp.Close()
	udp, err := net.ListenPacket("udp", ":0")
	if err != nil {
		return serverPorts{}, fmt.Errorf("find free port: %w", err)
	}
	defer udp.Close()
	return serverPorts{
		signal: sig.Addr().(*net.TCPAddr).Port,
		tcp:    tcp.Addr().(*net.TCPAddr).Port,
		udp:    udp.LocalAddr().(*net.UDPAddr).Port,
	}, nil
}

// tailBuffer keeps the last max bytes written, for error messages.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// PID is the running server's process id (for load measurements).
func (lk *LiveKit) PID() int {
	if lk.cmd == nil || lk.cmd.Process == nil {
		return 0
	}
	return lk.cmd.Process.Pid
}
