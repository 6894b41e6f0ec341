// Package testbed runs the real components that trackrec's tests and demo
// depend on: a loopback livekit-server, a scripted Opus publisher and the
// Debian tools used to inspect recordings.
package testbed

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// LiveKitServerVersion is the pinned livekit-server release. Newer ones need
// replace directives and protocol pseudo-versions the module proxy lacks.
const LiveKitServerVersion = "v1.13.5"

// CacheDir returns $TRACKREC_CACHE, else $XDG_CACHE_HOME/trackrec, else
// ~/.cache/trackrec. It does not create the directory.
func CacheDir() (string, error) {
	if d := os.Getenv("TRACKREC_CACHE"); d != "" {
		return d, nil
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "trackrec"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("cache dir: %w", err)
	}
	return filepath.Join(home, ".cache", "trackrec"), nil
}

// EnsureLiveKitServer returns the path of the pinned livekit-server binary,
// building it with `go install` (about 90 s) if it is not in the cache yet.
// Concurrent callers, in this or other processes, serialise on a file lock and
// the binary appears only complete (built in a temporary directory, renamed).
func EnsureLiveKitServer(ctx context.Context) (string, error) {
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "livekit-server-"+LiveKitServerVersion)
	bin := filepath.Join(dir, "server")
	if isExecutable(bin) {
		return bin, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", fmt.Errorf("create cache dir: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(cache, "livekit-server-"+LiveKitServerVersion+".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	// Another process may have finished the install while we waited.
	if isExecutable(bin) {
		return bin, nil
	}

	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("install livekit-server: go toolchain not found: %w", err)
	}
	tmp, err := os.MkdirTemp(cache, ".livekit-server-build-")
	if err != nil {
		return "", fmt.Errorf("install livekit-server: %w", err)
	}
	defer os.RemoveAll(tmp)

	pkg := "github.com/livekit/livekit-server/cmd/server@" + LiveKitServerVersion
	slog.InfoContext(ctx, "installing livekit-server (takes about 90 s)", "pkg", pkg, "dir", dir)
	cmd := exec.CommandContext(ctx, goBin, "install", pkg)
	// Run outside any module and without the caller's GOFLAGS (-mod=mod is
	// rejected by `go install pkg@version`).
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOFLAGS=", "GOWORK=off")
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go install %s: %w: %s", pkg, err, tail(out.String(), 2000))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("install livekit-server: %w", err)
	}
	if err := os.Rename(filepath.Join(tmp, "server"), bin); err != nil {
		return "", fmt.Errorf("install livekit-server: %w", err)
	}
	return bin, nil
}

// debianPackage names the Debian package that ships a tool tests use.
func debianPackage(bin string) (string, bool) {
	switch bin {
	case "ffmpeg", "ffprobe":
		return "ffmpeg", true
	case "opusinfo", "opusdec", "opusenc":
		return "opus-tools", true
	case "oggz-validate", "oggz-dump", "oggz-info":
		return "oggz-tools", true
	case "mkvinfo", "mkvmerge", "mkvextract":
		return "mkvtoolnix", true
	case "sox":
		return "sox", true
	}
	return "", false
}

// EnsureTools makes sure the named binaries are on PATH. Missing ones are
// installed with apt-get when running as root; otherwise the error names them.
// Callers are serialised with a file lock because apt holds its own lock and
// fails rather than waits.
func EnsureTools(ctx context.Context, bins ...string) error {
	if len(missingTools(bins)) == 0 {
		return nil
	}
	cache, err := CacheDir()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return fmt.Errorf("create cache dir: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(cache, "apt.lock"))
	if err != nil {
		return err
	}
	defer unlock()

	missing := missingTools(bins)
	if len(missing) == 0 {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("missing tools %s (not root, so not installing them)", strings.Join(missing, ", "))
	}
	var pkgs []string
	seen := map[string]bool{}
	for _, b := range missing {
		p, ok := debianPackage(b)
		if !ok {
			return fmt.Errorf("missing tool %s: no known Debian package", b)
		}
		if !seen[p] {
			seen[p] = true
			pkgs = append(pkgs, p)
		}
	}
	slog.InfoContext(ctx, "installing Debian packages", "tools", missing, "packages", pkgs)
	if err := runApt(ctx, "update"); err != nil {
		return err
	}
	if err := runApt(ctx, append([]string{"install", "-y", "--no-install-recommends"}, pkgs...)...); err != nil {
		return err
	}
	if still := missingTools(bins); len(still) > 0 {
		return fmt.Errorf("tools still missing after apt-get install %s: %s",
			strings.Join(pkgs, " "), strings.Join(still, ", "))
	}
	return nil
}

func runApt(ctx context.Context, args ...string) error {
	// Wait for dpkg's lock rather than fail when another apt is running.
	args = append([]string{"-o", "DPkg::Lock::Timeout=300"}, args...)
	cmd := exec.CommandContext(ctx, "apt-get", args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("apt-get %s: %w: %s", strings.Join(args, " "), err, tail(string(out), 2000))
	}
	return nil
}

func missingTools(bins []string) []string {
	var missing []string
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			missing = append(missing, b)
		}
	}
	return missing
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
}

// lockFile takes an exclusive flock on path, giving up when ctx ends. The
// returned func releases it. The lock dies with the process, so a killed
// installer never leaves a stale lock behind.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	done := make(chan error, 1)
	go func() { done <- syscall.Flock(int(f.Fd()), syscall.LOCK_EX) }()
	select {
	case err := <-done:
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		return func() { f.Close() }, nil
	case <-ctx.Done():
		// Closing the file does not interrupt a blocked flock; release
		// whatever the goroutine eventually gets.
		go func() {
			<-done
			f.Close()
		}()
		return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
	}
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
