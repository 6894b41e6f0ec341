package loadbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/trackrec/trackrec/testbed"
)

// Server is the livekit-server under load.
type Server struct{ URL, APIKey, APISecret string }

// room and identity name the crowd's participants: rooms of perRoom.
func room(i, perRoom int) string { return fmt.Sprintf("load-%03d", i/perRoom) }
func identity(i int) string      { return fmt.Sprintf("p%03d", i) }

// Crowd publishes tone, looped and paced in real time, as n participants
// in rooms of perRoom, until ctx ends (the crowd's own process). It writes
// "ready" to out once every track is published.
func Crowd(ctx context.Context, lk Server, n, perRoom int, tone string, out io.Writer) error {
	pubs := make([]*testbed.Publisher, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	joins := make(chan struct{}, 8) // at once: livekit-server takes them in turn anyway
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			joins <- struct{}{}
			defer func() { <-joins }()
			jctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			pubs[i], errs[i] = testbed.Publish(jctx, testbed.PublisherOptions{URL: lk.URL, APIKey: lk.APIKey, APISecret: lk.APISecret,
				Room: room(i, perRoom), Identity: identity(i), File: tone, Loop: true, Unlogged: true})
			if errs[i] != nil {
				errs[i] = fmt.Errorf("publisher %d: %w", i, errs[i])
			}
		}()
	}
	wg.Wait()
	err := errors.Join(errs...)
	if err == nil {
		fmt.Fprintln(out, "ready")
		<-ctx.Done()
	}
	for _, p := range pubs {
		if p != nil {
			_ = p.Leave()
		}
	}
	return err
}
