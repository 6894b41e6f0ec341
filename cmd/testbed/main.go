// Command testbed installs what trackrec's tests and demo need:
//
//	testbed install [component...]
//
// installs the named components (debian, livekit-server, versitygw; all when
// none is named) where they are missing. `make tools` runs it; the logic is
// testbed.Install.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/trackrec/trackrec/testbed"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] != "install" {
		fmt.Fprintf(os.Stderr, "usage: testbed install [component...]\ncomponents: %v (default: all)\n", testbed.Components())
		os.Exit(2)
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, nil)))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var parts []testbed.Component
	for _, a := range os.Args[2:] {
		parts = append(parts, testbed.Component(a))
	}
	began := time.Now()
	if err := testbed.Install(ctx, parts...); err != nil {
		fmt.Fprintln(os.Stderr, "testbed install:", err)
		os.Exit(1)
	}
	slog.Info("testbed tools ready", "took", time.Since(began).Round(time.Millisecond))
}
