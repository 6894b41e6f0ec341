package fleetstore_test

import (
	"context"
	"log/slog"
	"time"

	"github.com/trackrec/trackrec/fleetstore"
)

// A recorder instance claims a participant, renews at a third of the ttl,
// and stops writing as soon as the lease is lost or its deadline passes.
func ExampleLeases() {
	ctx := context.Background()
	rc, err := fleetstore.NewClient(ctx, fleetstore.Config{Address: "127.0.0.1:6379"})
	if err != nil {
		slog.Error("redis", "err", err)
		return
	}
	defer rc.Close()
	const ttl = 15 * time.Second
	leases := fleetstore.NewLeases(rc, "trackrec", ttl)
	key := fleetstore.Key{Room: "standup", Participant: "alice"}

	lease, ok, err := leases.Claim(ctx, key, "recorder-1")
	if err != nil || !ok {
		slog.Info("not recording", "room", key.Room, "participant", key.Participant, "holder", lease.Owner, "err", err)
		return
	}
	tick := time.NewTicker(ttl / 3)
	defer tick.Stop()
	for range tick.C {
		renewed, ok, err := leases.Renew(ctx, lease)
		switch {
		case ok:
			lease = renewed
		case err == nil || time.Now().After(lease.Expires):
			// Lost, or Redis unreachable past the deadline: stop writing.
			return
		}
	}
}
