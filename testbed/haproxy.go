package testbed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// HAProxy is an haproxy in HTTP mode on a loopback port, balancing round
// robin over loopback backends and checking each with GET /healthz. A
// backend that fails one check (or refuses a connection) is skipped: the
// request goes to another one. Timeouts are short, to suit tests.
type HAProxy struct {
	bin  string
	dir  string
	addr string

	mu   sync.Mutex
	proc *childProc // nil once closed
}

// Health checks and retries: a backend is marked down after one failed
// check and up after one good one; a refused connection, or a kept-alive
// one that a stopped backend closed, is retried at once on another backend.
const haproxyConfig = `global
	maxconn 256
	nbthread 1

defaults
	mode http
	timeout connect 1s
	timeout client 10s
	timeout server 10s
	timeout check 500ms
	retries 2
	option redispatch 1
	retry-on conn-failure empty-response junk-response

frontend fleet
	bind %s
	default_backend fleet

backend fleet
	balance roundrobin
	option httpchk
	http-check send meth GET uri /healthz
	http-check expect status 200
	default-server check inter 200ms fastinter 100ms downinter 200ms rise 1 fall 1
%s`

// StartHAProxy starts the installed haproxy (Debian package haproxy) on a
// free loopback port in front of backends (host:port, loopback IPs only)
// and returns once it accepts connections.
func StartHAProxy(ctx context.Context, backends []string) (*HAProxy, error) {
	bin, err := lookupDebianTool("haproxy")
	if err != nil {
		return nil, err
	}
	servers, err := haproxyServers(backends)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "trackrec-haproxy-")
	if err != nil {
		return nil, fmt.Errorf("start haproxy: %w", err)
	}
	h := &HAProxy{bin: bin, dir: dir}
	for attempt := 0; ; attempt++ {
		port, err := FreeLoopbackPort()
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		h.addr = "127.0.0.1:" + strconv.Itoa(port)
		h.mu.Lock()
		err = h.spawn(ctx, servers)
		h.mu.Unlock()
		if err == nil {
			return h, nil
		}
		if attempt == 2 || ctx.Err() != nil || !errors.Is(err, errStartupExit) {
			os.RemoveAll(dir)
			return nil, err
		}
	}
}

// URL is the proxy's base URL, http://127.0.0.1:PORT.
func (h *HAProxy) URL() string { return "http://" + h.addr }

// SetBackends restarts the proxy, on the same port, in front of backends.
// Requests in flight are cut.
func (h *HAProxy) SetBackends(ctx context.Context, backends []string) error {
	servers, err := haproxyServers(backends)
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.proc == nil {
		return errors.New("haproxy is closed")
	}
	err = h.proc.kill()
	h.proc = nil
	if err != nil {
		return err
	}
	return h.spawn(ctx, servers)
}

// Close stops the proxy and removes its folder.
func (h *HAProxy) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var err error
	if h.proc != nil {
		err = h.proc.kill()
		h.proc = nil
	}
	if rmErr := os.RemoveAll(h.dir); rmErr != nil && err == nil {
		err = fmt.Errorf("remove haproxy dir: %w", rmErr)
	}
	return err
}

// spawn writes the config and starts haproxy with it. h.mu is held.
func (h *HAProxy) spawn(ctx context.Context, servers string) error {
	conf := filepath.Join(h.dir, "haproxy.cfg")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(haproxyConfig, h.addr, servers)), 0o600); err != nil {
		return fmt.Errorf("start haproxy: %w", err)
	}
	cmd := exec.Command(h.bin, "-db", "-f", conf)
	cmd.Dir = h.dir
	p, err := startChildProc(cmd)
	if err != nil {
		return fmt.Errorf("start haproxy: %w", err)
	}
	if err := waitListening(ctx, h.addr, p, "haproxy"); err != nil {
		_ = p.kill()
		return err
	}
	h.proc = p
	return nil
}

// haproxyServers renders backends as server lines, refusing anything but a
// loopback IP and a port so that no traffic leaves the machine and nothing
// else reaches the config file.
func haproxyServers(backends []string) (string, error) {
	var b strings.Builder
	for i, be := range backends {
		host, port, err := net.SplitHostPort(be)
		if err != nil {
			return "", fmt.Errorf("haproxy backend %q: %w", be, err)
		}
		ip := net.ParseIP(host)
		if ip == nil || !ip.IsLoopback() {
			return "", fmt.Errorf("haproxy backend %q: host must be a loopback IP", be)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("haproxy backend %q: bad port", be)
		}
		fmt.Fprintf(&b, "\tserver b%d %s\n", i, net.JoinHostPort(ip.String(), port))
	}
	return b.String(), nil
}

// waitListening waits until addr accepts a TCP connection, failing early if
// the process exits.
func waitListening(ctx context.Context, addr string, p *childProc, name string) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var d net.Dialer
	for {
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s on %s: %w (%v): %s", name, addr, errStartupExit, p.waitErr, p.out.String())
		case <-ctx.Done():
			return fmt.Errorf("%s on %s not listening: %w (last error: %v): %s", name, addr, ctx.Err(), err, p.out.String())
		case <-tick.C:
		}
	}
}
