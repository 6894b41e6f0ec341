package testbed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// InstallCommand is what installs every tool tests and the demo use. Lookups
// that fail name it.
const InstallCommand = "make tools (or: go run ./cmd/testbed install)"

// ErrNotInstalled is wrapped by the lookups (CheckTools, LiveKitServerBin,
// VersityBin) when a tool is missing: tests never install anything.
var ErrNotInstalled = errors.New("not installed")

// LiveKitServerVersion is the pinned livekit-server release. Newer ones need
// replace directives and protocol pseudo-versions the module proxy lacks.
const LiveKitServerVersion = "v1.13.5"

// A Component is one part Install can install.
type Component string

const (
	// DebianTools are the Debian packages whose tools tests use to judge
	// recordings (ffmpeg, opus-tools, oggz-tools, mkvtoolnix), to run a
	// fleet (redis-server, haproxy), and libopus-dev, which building the
	// recorder needs (live PCM streams decode with libopus through cgo).
	DebianTools Component = "debian"
	// LiveKitServer is the pinned livekit-server, built into the cache.
	LiveKitServer Component = "livekit-server"
	// Versity is the pinned Versity S3 Gateway, built into the cache.
	Versity Component = "versitygw"
	// GStreamer is Debian's GStreamer with the elements of livekit/egress's
	// audio chain, for `make bench-load` only (not part of the default set).
	GStreamer Component = "gstreamer"
)

// Components lists what Install installs when asked for nothing, in order.
func Components() []Component { return []Component{DebianTools, LiveKitServer, Versity} }

// known is every Component Install takes.
func known() []Component { return append(Components(), GStreamer) }

// Install installs the given components (all of them when none is given)
// where they are missing; what is there already costs a lookup only.
func Install(ctx context.Context, parts ...Component) error {
	if len(parts) == 0 {
		parts = Components()
	}
	for _, p := range parts {
		if !slices.Contains(known(), p) {
			return fmt.Errorf("unknown component %q (known: %v)", p, known())
		}
	}
	for _, p := range known() {
		if !slices.Contains(parts, p) {
			continue
		}
		var err error
		switch p {
		case DebianTools:
			err = InstallDebianTools(ctx)
		case LiveKitServer:
			_, err = InstallLiveKitServer(ctx)
		case Versity:
			_, err = InstallVersity(ctx)
		case GStreamer:
			err = InstallGStreamer(ctx)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

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

// debianPackage is one Debian package tests need and the binaries of it
// they run.
type debianPackage struct {
	name string
	bins []string
}

func debianPackages() []debianPackage {
	return []debianPackage{
		{"ffmpeg", []string{"ffmpeg", "ffprobe"}},
		{"opus-tools", []string{"opusinfo", "opusdec", "opusenc"}},
		{"oggz-tools", []string{"oggz-validate", "oggz-dump", "oggz-info"}},
		{"mkvtoolnix", []string{"mkvinfo", "mkvmerge", "mkvextract"}},
		{"redis-server", []string{"redis-server"}},
		{"haproxy", []string{"haproxy"}},
		// libopus for the recorder's live PCM streams (cgo): a header, not
		// a binary, says it is there.
		{"libopus-dev", []string{OpusHeader}},
	}
}

// packageOf names the Debian package that ships bin.
func packageOf(bin string) (string, bool) {
	for _, p := range debianPackages() {
		if slices.Contains(p.bins, bin) {
			return p.name, true
		}
	}
	return "", false
}

// CheckTools reports, wrapping ErrNotInstalled, every binary in bins that is
// not on PATH (or in /usr/sbin), with the package that ships it and the
// command that installs it. It only looks.
func CheckTools(bins ...string) error {
	var missing []string
	for _, b := range bins {
		if _, ok := lookupTool(b, "/usr/sbin"); !ok {
			missing = append(missing, b)
		}
	}
	return notInstalled(missing)
}

// notInstalled is the error naming the missing bins; nil for none.
func notInstalled(bins []string) error {
	if len(bins) == 0 {
		return nil
	}
	named := make([]string, 0, len(bins))
	for _, b := range bins {
		if p, ok := packageOf(b); ok {
			named = append(named, b+" (Debian package "+p+")")
		} else {
			named = append(named, b)
		}
	}
	return fmt.Errorf("missing tools %s: %w; install them with %s",
		strings.Join(named, ", "), ErrNotInstalled, InstallCommand)
}

// InstallDebianTools apt-gets the Debian packages of DebianTools that are
// missing. When none is, it runs nothing; otherwise `apt-get update` once,
// then one `apt-get install` of exactly the missing packages. It needs root.
// Concurrent callers serialise on a file lock because apt holds its own lock
// and fails rather than waits.
func InstallDebianTools(ctx context.Context) error {
	if len(missingPackages(onPath)) == 0 {
		return nil
	}
	unlock, err := aptLock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	return installPackages(ctx, onPath, runApt)
}

// aptLock serialises this process's apt-get runs with other processes'
// (apt fails rather than waits on its own lock).
func aptLock(ctx context.Context) (func(), error) {
	cache, err := CacheDir()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, fmt.Errorf("create cache dir: %w", err)
	}
	return lockFile(ctx, filepath.Join(cache, "apt.lock"))
}

// installPackages is InstallDebianTools with its lookups and apt-get
// replaceable.
func installPackages(ctx context.Context, have func(bin string) bool, apt func(ctx context.Context, args ...string) error) error {
	missing := missingPackages(have)
	if len(missing) == 0 {
		return nil
	}
	slog.InfoContext(ctx, "installing Debian packages", "packages", missing)
	if err := apt(ctx, "update"); err != nil {
		return err
	}
	if err := apt(ctx, append([]string{"install", "-y", "--no-install-recommends"}, missing...)...); err != nil {
		return err
	}
	if still := missingPackages(have); len(still) > 0 {
		return fmt.Errorf("packages %s still lack their tools after apt-get install", strings.Join(still, ", "))
	}
	return nil
}

// missingPackages names the packages with a binary have does not find.
func missingPackages(have func(bin string) bool) []string {
	var out []string
	for _, p := range debianPackages() {
		if !slices.ContainsFunc(p.bins, func(b string) bool { return !have(b) }) {
			continue
		}
		out = append(out, p.name)
	}
	return out
}

// OpusHeader is the file of libopus-dev the recorder's build needs.
const OpusHeader = "/usr/include/opus/opus.h"

// onPath finds a binary on PATH, or a file by its absolute path.
func onPath(bin string) bool {
	if filepath.IsAbs(bin) {
		_, err := os.Stat(bin)
		return err == nil
	}
	_, ok := lookupTool(bin, "/usr/sbin")
	return ok
}

func runApt(ctx context.Context, args ...string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("apt-get %s needs root: run it as root, or run %s as root", strings.Join(args, " "), InstallCommand)
	}
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

// cachedBinary is a pinned binary that lives in the cache folder as
// CACHE/name-version/file.
type cachedBinary struct {
	name, version, file string
}

func (c cachedBinary) path() (string, error) {
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(cache, c.name+"-"+c.version, c.file), nil
}

// lookup returns the binary's path, or an error wrapping ErrNotInstalled
// that names InstallCommand.
func (c cachedBinary) lookup() (string, error) {
	bin, err := c.path()
	if err != nil {
		return "", err
	}
	if !isExecutable(bin) {
		return "", fmt.Errorf("%s %s: %w at %s; install it with %s", c.name, c.version, ErrNotInstalled, bin, InstallCommand)
	}
	return bin, nil
}

// install returns the binary's path, running build if it is not in the cache
// yet. build leaves the binary as file in the empty folder it is given.
// Concurrent callers, in this or other processes, serialise on a file lock,
// and the binary appears only complete (built aside, then renamed).
func (c cachedBinary) install(ctx context.Context, build func(ctx context.Context, dir string) error) (string, error) {
	bin, err := c.path()
	if err != nil {
		return "", err
	}
	if isExecutable(bin) {
		return bin, nil
	}
	cache := filepath.Dir(filepath.Dir(bin))
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", fmt.Errorf("create cache dir: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(cache, c.name+"-"+c.version+".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	// Another process may have finished the install while we waited.
	if isExecutable(bin) {
		return bin, nil
	}
	tmp, err := os.MkdirTemp(cache, "."+c.name+"-build-")
	if err != nil {
		return "", fmt.Errorf("install %s: %w", c.name, err)
	}
	defer os.RemoveAll(tmp)
	if err := build(ctx, tmp); err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", fmt.Errorf("install %s: %w", c.name, err)
	}
	if err := os.Rename(filepath.Join(tmp, c.file), bin); err != nil {
		return "", fmt.Errorf("install %s: %w", c.name, err)
	}
	return bin, nil
}

// goInstall runs `go install pkg` with its binaries going to gobin.
func goInstall(ctx context.Context, pkg, gobin string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("go install %s: go toolchain not found: %w", pkg, err)
	}
	cmd := exec.CommandContext(ctx, goBin, "install", pkg)
	// Run outside any module and without the caller's GOFLAGS (-mod=mod is
	// rejected by `go install pkg@version`).
	cmd.Dir = gobin
	cmd.Env = append(os.Environ(), "GOBIN="+gobin, "GOFLAGS=", "GOWORK=off")
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go install %s: %w: %s", pkg, err, tail(out.String(), 2000))
	}
	return nil
}

func liveKitServerBinary() cachedBinary {
	return cachedBinary{name: "livekit-server", version: LiveKitServerVersion, file: "server"}
}

// LiveKitServerBin returns the path of the installed pinned livekit-server.
// It never installs: a missing one is an error wrapping ErrNotInstalled.
func LiveKitServerBin() (string, error) { return liveKitServerBinary().lookup() }

// InstallLiveKitServer returns the path of the pinned livekit-server binary,
// building it with `go install` (about 90 s) if it is not in the cache yet.
func InstallLiveKitServer(ctx context.Context) (string, error) {
	return liveKitServerBinary().install(ctx, func(ctx context.Context, dir string) error {
		pkg := "github.com/livekit/livekit-server/cmd/server@" + LiveKitServerVersion
		slog.InfoContext(ctx, "installing livekit-server (takes about 90 s)", "pkg", pkg)
		return goInstall(ctx, pkg, dir)
	})
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

// gstElements are the elements of livekit/egress's audio chain that
// loadbench runs, and the Debian packages that ship them.
var gstElements = []string{"oggdemux", "opusparse", "opusdec", "audioconvert", "audioresample", "opusenc", "oggmux", "filesrc", "fakesink"}

var gstPackages = []string{"gstreamer1.0-tools", "gstreamer1.0-plugins-base", "gstreamer1.0-plugins-bad"}

// CheckGStreamer reports, wrapping ErrNotInstalled, a gst-launch-1.0 or an
// element of the chain that is missing.
func CheckGStreamer(ctx context.Context) error {
	if !onPath("gst-launch-1.0") || !onPath("gst-inspect-1.0") {
		return fmt.Errorf("gst-launch-1.0 (Debian packages %s): %w; install it with go run ./cmd/testbed install gstreamer", strings.Join(gstPackages, ", "), ErrNotInstalled)
	}
	for _, e := range gstElements {
		if err := exec.CommandContext(ctx, "gst-inspect-1.0", "--exists", e).Run(); err != nil {
			return fmt.Errorf("GStreamer element %s (Debian packages %s): %w; install it with go run ./cmd/testbed install gstreamer", e, strings.Join(gstPackages, ", "), ErrNotInstalled)
		}
	}
	return nil
}

// InstallGStreamer apt-gets GStreamer and the plugins of the chain unless
// CheckGStreamer finds them.
func InstallGStreamer(ctx context.Context) error {
	if CheckGStreamer(ctx) == nil {
		return nil
	}
	unlock, err := aptLock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	slog.InfoContext(ctx, "installing Debian packages", "packages", gstPackages)
	if err := runApt(ctx, "update"); err != nil {
		return err
	}
	if err := runApt(ctx, append([]string{"install", "-y", "--no-install-recommends"}, gstPackages...)...); err != nil {
		return err
	}
	return CheckGStreamer(ctx)
}
