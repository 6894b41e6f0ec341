package testbed

import (
	"context"
	"debug/buildinfo"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// fakeBins makes an empty folder holding executables named bins and makes it
// the whole PATH.
func fakeBins(t *testing.T, bins ...string) {
	t.Helper()
	dir := t.TempDir()
	for _, b := range bins {
		if err := os.WriteFile(filepath.Join(dir, b), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir)
}

func TestCheckTools(t *testing.T) {
	for name, tc := range map[string]struct {
		onPath, check []string
		want          []string // in the error; none: no error
		notWant       []string
	}{
		"all there":       {onPath: []string{"ffmpeg", "ffprobe"}, check: []string{"ffmpeg", "ffprobe"}},
		"nothing checked": {},
		"one missing": {onPath: []string{"ffmpeg"}, check: []string{"ffmpeg", "ffprobe"},
			want:    []string{"missing tools ffprobe (Debian package ffmpeg):", "make tools", "go run ./cmd/testbed install"},
			notWant: []string{"ffmpeg ("}},
		"unknown tool": {check: []string{"no-such-tool-trackrec", "mkvinfo"},
			want: []string{"no-such-tool-trackrec", "mkvinfo (Debian package mkvtoolnix)"}},
	} {
		t.Run(name, func(t *testing.T) {
			fakeBins(t, tc.onPath...)
			err := CheckTools(tc.check...)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrNotInstalled) {
				t.Fatalf("CheckTools(%v) = %v, want ErrNotInstalled", tc.check, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(err.Error(), w) {
					t.Errorf("error %q has %q, which is there", err, w)
				}
			}
		})
	}
}

func TestInstallPackages(t *testing.T) {
	allBins := func() []string {
		var out []string
		for _, p := range debianPackages() {
			out = append(out, p.bins...)
		}
		return out
	}
	without := func(drop ...string) []string {
		return slices.DeleteFunc(allBins(), func(b string) bool { return slices.Contains(drop, b) })
	}
	for name, tc := range map[string]struct {
		have      []string
		installs  bool     // apt-get install makes its packages' tools appear
		failApt   string   // apt-get subcommand that fails
		wantCalls []string // apt-get invocations, in order
		wantErr   string
	}{
		"everything there": {have: allBins(), installs: true},
		"two packages missing": {have: without("opusinfo", "mkvinfo", "mkvmerge"), installs: true,
			wantCalls: []string{"update", "install -y --no-install-recommends opus-tools mkvtoolnix"}},
		"nothing there": {installs: true,
			wantCalls: []string{"update", "install -y --no-install-recommends ffmpeg opus-tools oggz-tools mkvtoolnix redis-server haproxy libopus-dev"}},
		"update fails": {have: without("ffprobe"), installs: true, failApt: "update",
			wantCalls: []string{"update"}, wantErr: "no network"},
		"tools still missing": {have: without("oggz-validate"),
			wantCalls: []string{"update", "install -y --no-install-recommends oggz-tools"}, wantErr: "oggz-tools still lack"},
	} {
		t.Run(name, func(t *testing.T) {
			have := map[string]bool{}
			for _, b := range tc.have {
				have[b] = true
			}
			var calls []string
			apt := func(_ context.Context, args ...string) error {
				calls = append(calls, strings.Join(args, " "))
				if args[0] == tc.failApt {
					return errors.New("no network")
				}
				if args[0] == "install" && tc.installs {
					for _, p := range debianPackages() {
						if slices.Contains(args, p.name) {
							for _, b := range p.bins {
								have[b] = true
							}
						}
					}
				}
				return nil
			}
			err := installPackages(context.Background(), func(b string) bool { return have[b] }, apt)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
			if !slices.Equal(calls, tc.wantCalls) {
				t.Errorf("apt-get calls %q, want %q", calls, tc.wantCalls)
			}
		})
	}
}

// A fake `go` stands in for the toolchain: it logs how it was called and
// writes a server binary into $GOBIN, or fails when FAKE_GO_FAIL is set.
const fakeGo = `#!/bin/sh
echo "$* GOFLAGS=$GOFLAGS GOWORK=$GOWORK" >> "$FAKE_GO_LOG"
if [ -n "$FAKE_GO_FAIL" ]; then echo "no module" >&2; exit 1; fi
printf '#!/bin/sh\n' > "$GOBIN/server"
chmod 755 "$GOBIN/server"
`

func TestInstallLiveKitServerIntoCache(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("TRACKREC_CACHE", cache)
	bins := t.TempDir()
	if err := os.WriteFile(filepath.Join(bins, "go"), []byte(fakeGo), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bins+string(os.PathListSeparator)+os.Getenv("PATH"))
	log := filepath.Join(t.TempDir(), "go.log")
	t.Setenv("FAKE_GO_LOG", log)
	t.Setenv("GOFLAGS", "-mod=mod")
	ctx := context.Background()

	if _, err := LiveKitServerBin(); !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "make tools") {
		t.Fatalf("lookup before install: %v, want ErrNotInstalled naming make tools", err)
	}
	t.Setenv("FAKE_GO_FAIL", "1")
	if _, err := InstallLiveKitServer(ctx); err == nil || !strings.Contains(err.Error(), "no module") {
		t.Fatalf("failed build: %v, want go's output", err)
	}
	if _, err := LiveKitServerBin(); !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("lookup after a failed build: %v", err)
	}
	t.Setenv("FAKE_GO_FAIL", "")
	bin, err := InstallLiveKitServer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(cache, "livekit-server-"+LiveKitServerVersion, "server"); bin != want {
		t.Errorf("installed at %s, want %s", bin, want)
	}
	if again, err := InstallLiveKitServer(ctx); err != nil || again != bin {
		t.Errorf("second install = %s, %v", again, err)
	}
	if found, err := LiveKitServerBin(); err != nil || found != bin {
		t.Errorf("lookup = %s, %v; want %s", found, err, bin)
	}
	calls, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	want := "install github.com/livekit/livekit-server/cmd/server@" + LiveKitServerVersion + " GOFLAGS= GOWORK=off"
	if got := strings.Split(strings.TrimSpace(string(calls)), "\n"); len(got) != 2 || got[1] != want {
		t.Errorf("go was run as %q; want a failed run, then %q, and nothing for the second install", got, want)
	}
	// Build folders never stay behind, failed or not.
	entries, _ := os.ReadDir(cache)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("left in the cache: %s", e.Name())
		}
	}
}

func TestLockFileExcludes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	ctx := context.Background()
	unlock, err := lockFile(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	// flock locks belong to an open file, so a second open in this
	// process waits like another process would.
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := lockFile(short, path); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock while held: %v, want it to wait until its context ends", err)
	}
	unlock()
	unlock2, err := lockFile(ctx, path)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	unlock2()
}

func TestInstallRefusesUnknownComponents(t *testing.T) {
	t.Setenv("TRACKREC_CACHE", t.TempDir())
	fakeBins(t) // a build or apt-get would fail: nothing may run
	if err := Install(context.Background(), LiveKitServer, "docker"); err == nil || !strings.Contains(err.Error(), `"docker"`) {
		t.Fatalf("Install(docker) = %v", err)
	}
}

// The binaries `make tools` installed are the pinned releases.
func TestInstalledBinariesArePinned(t *testing.T) {
	for _, tc := range []struct {
		lookup       func() (string, error)
		module, file string
		version      string
	}{
		{LiveKitServerBin, "github.com/livekit/livekit-server", "server", LiveKitServerVersion},
		{VersityBin, versityModule, "versitygw", VersityVersion},
	} {
		bin, err := tc.lookup()
		if err != nil {
			t.Fatal(err)
		}
		info, err := buildinfo.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		if info.Main.Path != tc.module || info.Main.Version != tc.version || filepath.Base(bin) != tc.file {
			t.Errorf("%s is %s@%s, want %s@%s", bin, info.Main.Path, info.Main.Version, tc.module, tc.version)
		}
	}
}
