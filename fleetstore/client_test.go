package fleetstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/trackrec/trackrec/testbed"
)

func TestNewClientRefusesBadConfig(t *testing.T) {
	const secret = "hunter2-very-secret"
	for name, tc := range map[string]struct {
		c    Config
		want string
	}{
		"nothing":                  {Config{Password: secret}, "no address"},
		"address and cluster":      {Config{Address: "127.0.0.1:6379", ClusterAddresses: []string{"127.0.0.1:7000"}}, "only one"},
		"sentinel and single":      {Config{Address: "127.0.0.1:6379", SentinelMasterName: "m", SentinelAddresses: []string{"127.0.0.1:26379"}}, "only one"},
		"sentinel without master":  {Config{SentinelAddresses: []string{"127.0.0.1:26379"}}, "master name"},
		"master without sentinels": {Config{SentinelMasterName: "m"}, "sentinel addresses"},
		"cluster db":               {Config{ClusterAddresses: []string{"127.0.0.1:7000"}, DB: 2}, "only db 0"},
		"negative db":              {Config{Address: "127.0.0.1:6379", DB: -1}, "negative"},
		"url with credentials":     {Config{Address: "redis://user:" + secret + "@10.0.0.1:6379", Password: secret}, "not host:port"},
		"url without password set": {Config{Address: "redis://:" + secret + "@10.0.0.1:6379"}, "not host:port"},
		"bad sentinel address":     {Config{SentinelMasterName: "m", SentinelAddresses: []string{"127.0.0.1:26379", secret}}, "sentinel address 2"},
		"bad cluster address":      {Config{ClusterAddresses: []string{":7000"}}, "cluster address 1"},
	} {
		t.Run(name, func(t *testing.T) {
			rc, err := NewClient(context.Background(), tc.c)
			if err == nil {
				rc.Close()
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q lacks %q", err, tc.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
}

func TestNewClientPingsWithoutShowingThePassword(t *testing.T) {
	const secret = "s3cret-pass"
	ctx := testContext(t)
	srv, err := testbed.StartRedis(ctx, testbed.RedisOptions{Password: secret})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	for name, c := range map[string]Config{
		"no password":         {Address: srv.Addr()},
		"wrong password":      {Address: srv.Addr(), Password: "wrong-" + secret},
		"nobody there":        {Address: deadAddr(t), Password: secret},
		"cluster to a single": {ClusterAddresses: []string{srv.Addr()}, Password: secret},
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			rc, err := NewClient(ctx, c)
			if err == nil {
				rc.Close()
				t.Fatal("connected")
			}
			if !strings.HasPrefix(err.Error(), "fleetstore: ping redis") {
				t.Errorf("error %q does not say it was the ping", err)
			}
			if c.Password != "" && strings.Contains(err.Error(), c.Password) {
				t.Errorf("error %q shows the password", err)
			}
		})
	}

	rc, err := NewClient(ctx, Config{Address: srv.Addr(), Password: secret, DB: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if err := rc.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// DB 3 was selected: DB 0 does not have the key.
	rc0, err := NewClient(ctx, Config{Address: srv.Addr(), Password: secret})
	if err != nil {
		t.Fatal(err)
	}
	defer rc0.Close()
	if n, err := rc0.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("key in db 0: %d %v", n, err)
	}
}

// A failed dial names the address; were the password in it, it is blanked,
// and the original text cannot be reached by unwrapping.
func TestRedact(t *testing.T) {
	inner := errors.New("dial tcp: lookup pw-123.example: no such host")
	for _, tc := range []struct {
		password string
		want     string
		unwraps  bool
	}{
		{"", inner.Error(), true},
		{"other", inner.Error(), true},
		{"pw-123", "dial tcp: lookup [redacted].example: no such host", false},
	} {
		err := redact(fmt.Errorf("wrapped: %w", inner), tc.password)
		if got := strings.TrimPrefix(err.Error(), "wrapped: "); got != tc.want {
			t.Errorf("redact(%q) = %q, want %q", tc.password, got, tc.want)
		}
		if errors.Is(err, inner) != tc.unwraps {
			t.Errorf("redact(%q) unwraps: %v, want %v", tc.password, errors.Is(err, inner), tc.unwraps)
		}
	}
}
