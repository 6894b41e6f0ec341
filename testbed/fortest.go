package testbed

import (
	"context"
	"testing"
	"time"
)

// RedisForTest starts a redis-server of the test's own (StartRedis) and
// stops it when the test ends; a failure to start fails the test.
func RedisForTest(t testing.TB) *Redis {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rd, err := StartRedis(ctx, RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rd.Close() })
	return rd
}
