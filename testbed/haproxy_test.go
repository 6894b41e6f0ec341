package testbed

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// nameServer answers GET / with its name and GET /healthz with 200.
func nameServer(t *testing.T, name string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			return
		}
		io.WriteString(w, name)
	}))
	t.Cleanup(s.Close)
	return s
}

func hostPort(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

// getNames makes n sequential GET / through the proxy and returns who
// answered each; a failed request fails the test.
func getNames(t *testing.T, url string, n int) []string {
	t.Helper()
	var out []string
	for range n {
		resp, err := http.Get(url + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET / = %s: %s", resp.Status, body)
		}
		out = append(out, string(body))
	}
	return out
}

func count(names []string) map[string]int {
	m := map[string]int{}
	for _, n := range names {
		m[n]++
	}
	return m
}

// deadAddr is a loopback host:port nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	port, err := FreeLoopbackPort()
	if err != nil {
		t.Fatal(err)
	}
	return "127.0.0.1:" + strconv.Itoa(port)
}

func TestHAProxyRoundRobinSkipsDownBackend(t *testing.T) {
	ctx := context.Background()
	a, b := nameServer(t, "a"), nameServer(t, "b")
	h, err := StartHAProxy(ctx, []string{hostPort(a), hostPort(b)})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()

	names := getNames(t, h.URL(), 8)
	for i := 1; i < len(names); i++ {
		if names[i] == names[i-1] {
			t.Fatalf("answers %v: not round robin", names)
		}
	}
	if c := count(names); c["a"] != 4 || c["b"] != 4 {
		t.Fatalf("answers %v, want 4 each of a and b", names)
	}

	// b goes down: every request still succeeds, all on a.
	b.Close()
	if c := count(getNames(t, h.URL(), 10)); c["a"] != 10 {
		t.Fatalf("with b down, answers %v, want a only", c)
	}
}

func TestHAProxyDownFromStartAndSetBackends(t *testing.T) {
	ctx := context.Background()
	a, c := nameServer(t, "a"), nameServer(t, "c")
	h, err := StartHAProxy(ctx, []string{deadAddr(t), hostPort(a)})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if got := count(getNames(t, h.URL(), 6)); got["a"] != 6 {
		t.Fatalf("with one backend never up, answers %v, want a only", got)
	}

	url := h.URL()
	if err := h.SetBackends(ctx, []string{hostPort(c)}); err != nil {
		t.Fatal(err)
	}
	if h.URL() != url {
		t.Fatalf("URL moved from %s to %s", url, h.URL())
	}
	if got := count(getNames(t, h.URL(), 4)); got["c"] != 4 {
		t.Fatalf("after SetBackends(c), answers %v, want c only", got)
	}

	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://")); err == nil {
		conn.Close()
		t.Fatal("proxy still listening after Close")
	}
}

func TestHAProxyRefusesNonLoopbackBackends(t *testing.T) {
	for _, be := range []string{"10.0.0.1:80", "example.com:80", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:80\n\tserver x 10.0.0.1:80", "[::1]:x"} {
		// The backend check itself, whether or not haproxy is installed.
		if _, err := haproxyServers([]string{be}); err == nil || !strings.Contains(err.Error(), "haproxy backend") {
			t.Errorf("haproxyServers(%q) = %v, want a backend error", be, err)
		}
	}
	h, err := StartHAProxy(context.Background(), []string{"10.0.0.1:80"})
	if err == nil {
		h.Close()
		t.Fatal("StartHAProxy started with a non-loopback backend")
	}
	if !strings.Contains(err.Error(), "haproxy backend") {
		t.Errorf("StartHAProxy refused for another reason: %v", err)
	}
}

func TestDaemonLookup(t *testing.T) {
	sbin := t.TempDir()
	fakeBins(t)
	if _, err := lookupToolIn("haproxy", sbin); !errors.Is(err, ErrNotInstalled) ||
		!strings.Contains(err.Error(), "haproxy (Debian package haproxy)") || !strings.Contains(err.Error(), "make tools") {
		t.Fatalf("lookup of a missing haproxy: %v", err)
	}
	if err := os.WriteFile(filepath.Join(sbin, "haproxy"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got, err := lookupToolIn("haproxy", sbin); err != nil || got != filepath.Join(sbin, "haproxy") {
		t.Fatalf("lookup with haproxy outside PATH = %q, %v", got, err)
	}
}
