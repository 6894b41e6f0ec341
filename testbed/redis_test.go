package testbed

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestRedisStopStartSamePort(t *testing.T) {
	ctx := context.Background()
	r, err := StartRedis(ctx, RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if !strings.HasPrefix(r.Addr(), "127.0.0.1:") {
		t.Fatalf("Addr %q is not on loopback", r.Addr())
	}
	rc := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1, DialTimeout: time.Second})
	defer rc.Close()
	if err := rc.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}

	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := r.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if err := rc.Ping(ctx).Err(); err == nil {
		t.Fatal("PING answered while stopped")
	}

	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx); err == nil {
		t.Fatal("Start of a running server did not fail")
	}
	if got, err := rc.Ping(ctx).Result(); err != nil || got != "PONG" {
		t.Fatalf("PING after Start = %q, %v", got, err)
	}
	// No persistence: the restarted server is empty.
	if err := rc.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET k after restart: %v, want redis.Nil", err)
	}
	dir := r.dir
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("folder %s left after Close: %v", dir, err)
	}
	if err := rc.Ping(ctx).Err(); err == nil {
		t.Fatal("PING answered after Close")
	}
}

func TestRedisPassword(t *testing.T) {
	ctx := context.Background()
	r, err := StartRedis(ctx, RedisOptions{Password: "s3cret pass"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, tc := range []struct {
		password string
		ok       bool
	}{{"", false}, {"wrong", false}, {"s3cret pass", true}} {
		rc := redis.NewClient(&redis.Options{Addr: r.Addr(), Password: tc.password, MaxRetries: -1})
		err := rc.Ping(ctx).Err()
		rc.Close()
		if (err == nil) != tc.ok {
			t.Errorf("PING with password %q: %v, want ok=%v", tc.password, err, tc.ok)
		}
	}
}

func TestMissingRedisNamesInstall(t *testing.T) {
	fakeBins(t)
	_, err := StartRedis(context.Background(), RedisOptions{})
	if !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "redis-server") || !strings.Contains(err.Error(), "make tools") {
		t.Fatalf("StartRedis without redis-server: %v", err)
	}
}
