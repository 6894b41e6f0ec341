package testbed

import (
	"context"
	"errors"
	"fmt"
	"github.com/redis/go-redis/v9"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// RedisOptions configures StartRedis.
type RedisOptions struct {
	// Password, when set, is required of clients (requirepass).
	Password string
}

// Redis is a redis-server on loopback with no persistence and its own
// temporary folder. Stop and Start simulate an outage: Stop kills it (every
// key is lost, as in a crash of a Redis without persistence), Start brings up
// an empty one on the same port.
type Redis struct {
	bin      string
	addr     string
	dir      string
	password string

	mu   sync.Mutex
	proc *childProc // nil while stopped
}

// StartRedis starts the installed redis-server (Debian package redis-server)
// on a free loopback port and returns once it answers PING.
func StartRedis(ctx context.Context, o RedisOptions) (*Redis, error) {
	bin, err := lookupDebianTool("redis-server")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "trackrec-redis-")
	if err != nil {
		return nil, fmt.Errorf("start redis: %w", err)
	}
	r := &Redis{bin: bin, dir: dir, password: o.Password}
	// The free port is found by binding and closing it, so another process
	// can take it before redis-server binds: retry with a new one.
	for attempt := 0; ; attempt++ {
		port, err := FreeLoopbackPort()
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		r.addr = "127.0.0.1:" + strconv.Itoa(port)
		err = r.Start(ctx)
		if err == nil {
			return r, nil
		}
		if attempt == 2 || ctx.Err() != nil || !errors.Is(err, errStartupExit) {
			os.RemoveAll(dir)
			return nil, err
		}
	}
}

// Addr is the server's host:port (127.0.0.1:PORT).
func (r *Redis) Addr() string { return r.addr }

// Start starts the server again, empty, on the same port, and returns once
// it answers PING.
func (r *Redis) Start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc != nil {
		return fmt.Errorf("redis-server on %s is already running", r.addr)
	}
	_, port, _ := net.SplitHostPort(r.addr)
	args := []string{
		"--bind", "127.0.0.1", "--port", port,
		"--save", "", "--appendonly", "no",
		"--dir", r.dir, "--daemonize", "no", "--logfile", "",
		"--loglevel", "warning",
	}
	if r.password != "" {
		args = append(args, "--requirepass", r.password)
	}
	cmd := exec.Command(r.bin, args...)
	cmd.Dir = r.dir
	p, err := startChildProc(cmd)
	if err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	if err := r.waitReady(ctx, p); err != nil {
		_ = p.kill()
		return err
	}
	r.proc = p
	return nil
}

func (r *Redis) waitReady(ctx context.Context, p *childProc) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := redisPing(ctx, r.addr, r.password)
		if err == nil {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("redis-server on %s: %w (%v): %s", r.addr, errStartupExit, p.waitErr, p.out.String())
		case <-ctx.Done():
			return fmt.Errorf("redis-server on %s not ready: %w (last error: %v): %s",
				r.addr, ctx.Err(), err, p.out.String())
		case <-tick.C:
		}
	}
}

// Stop kills the server (SIGKILL, no shutdown), keeping its port for Start.
// It is a no-op when already stopped.
func (r *Redis) Stop() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc == nil {
		return nil
	}
	err := r.proc.kill()
	r.proc = nil
	return err
}

// Close stops the server and removes its folder.
func (r *Redis) Close() error {
	err := r.Stop()
	if rmErr := os.RemoveAll(r.dir); rmErr != nil && err == nil {
		err = fmt.Errorf("remove redis dir: %w", rmErr)
	}
	return err
}

// redisPing asks the server for PING (after AUTH when password is set), once.
func redisPing(ctx context.Context, addr, password string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	rc := redis.NewClient(&redis.Options{Addr: addr, Password: password, MaxRetries: -1})
	defer rc.Close()
	return rc.Ping(ctx).Err()
}

// errStartupExit says a server exited while starting, most often because
// another process took its port first.
var errStartupExit = errors.New("exited during startup")

// kill sends SIGKILL and waits for the exit. An exit before it is reported
// with the process's output.
func (p *childProc) kill() error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s had exited on its own: %v: %s", p.cmd.Path, p.waitErr, p.out.String())
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
	return nil
}

// FreeLoopbackPort asks the kernel for an unused TCP port on 127.0.0.1.
func FreeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// lookupDebianTool returns the path of bin, or an error wrapping
// ErrNotInstalled that names its package and InstallCommand. Daemons such as
// haproxy live in /usr/sbin, which a user's PATH may lack.
func lookupDebianTool(bin string) (string, error) { return lookupToolIn(bin, "/usr/sbin") }

// lookupToolIn is lookupDebianTool with the fallback folder replaceable.
func lookupToolIn(bin, fallback string) (string, error) {
	if path, ok := lookupTool(bin, fallback); ok {
		return path, nil
	}
	return "", notInstalled([]string{bin})
}

// lookupTool finds bin on PATH or in fallback: Debian puts some servers
// (haproxy) in /usr/sbin, which a user's PATH may lack. Installing, checking
// and starting all look the same way.
func lookupTool(bin, fallback string) (string, bool) {
	if path, err := exec.LookPath(bin); err == nil {
		return path, true
	}
	if path := filepath.Join(fallback, bin); isExecutable(path) {
		return path, true
	}
	return "", false
}
