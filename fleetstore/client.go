package fleetstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Config is how to reach Redis. It mirrors the recorder's Redis settings;
// exactly one of Address, SentinelAddresses or ClusterAddresses is set.
type Config struct {
	Address  string // host:port of a single server
	Username string
	Password string
	DB       int
	UseTLS   bool
	// SentinelMasterName and SentinelAddresses select a failover client
	// that asks the sentinels where the master is. The sentinels themselves
	// are reached without credentials.
	SentinelMasterName string
	SentinelAddresses  []string
	// ClusterAddresses are seed nodes of a Redis Cluster (DB must be 0).
	ClusterAddresses []string
}

// NewClient returns a single, sentinel (failover) or cluster client for c,
// after one PING bounded by ctx. Its errors never contain c.Password.
func NewClient(ctx context.Context, c Config) (redis.UniversalClient, error) {
	rc, where, err := newClient(c)
	if err != nil {
		return nil, redact(fmt.Errorf("fleetstore: redis config: %w", err), c.Password)
	}
	if err := rc.Ping(ctx).Err(); err != nil {
		_ = rc.Close()
		return nil, redact(fmt.Errorf("fleetstore: ping redis %s: %w", where, err), c.Password)
	}
	return rc, nil
}

// newClient validates c and builds its client; where names it for errors.
func newClient(c Config) (rc redis.UniversalClient, where string, err error) {
	single := c.Address != ""
	sentinel := c.SentinelMasterName != "" || len(c.SentinelAddresses) > 0
	cluster := len(c.ClusterAddresses) > 0
	switch n := btoi(single) + btoi(sentinel) + btoi(cluster); {
	case n == 0:
		return nil, "", errors.New("no address: set the address, sentinel addresses or cluster addresses")
	case n > 1:
		return nil, "", errors.New("set only one of the address, sentinel addresses and cluster addresses")
	}
	if c.DB < 0 {
		return nil, "", fmt.Errorf("db %d is negative", c.DB)
	}
	var tlsConf *tls.Config
	if c.UseTLS {
		// ServerName stays empty: the dialer takes each node's host.
		tlsConf = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	switch {
	case single:
		if err := checkAddrs("address", []string{c.Address}); err != nil {
			return nil, "", err
		}
		return redis.NewClient(&redis.Options{
			Addr: c.Address, Username: c.Username, Password: c.Password, DB: c.DB, TLSConfig: tlsConf,
		}), c.Address, nil
	case sentinel:
		if c.SentinelMasterName == "" || len(c.SentinelAddresses) == 0 {
			return nil, "", errors.New("sentinel needs both a master name and sentinel addresses")
		}
		if err := checkAddrs("sentinel address", c.SentinelAddresses); err != nil {
			return nil, "", err
		}
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: c.SentinelMasterName, SentinelAddrs: c.SentinelAddresses,
			Username: c.Username, Password: c.Password, DB: c.DB, TLSConfig: tlsConf,
		}), fmt.Sprintf("master %q via sentinels %s", c.SentinelMasterName, strings.Join(c.SentinelAddresses, ",")), nil
	default:
		if c.DB != 0 {
			return nil, "", fmt.Errorf("db %d: a cluster has only db 0", c.DB)
		}
		if err := checkAddrs("cluster address", c.ClusterAddresses); err != nil {
			return nil, "", err
		}
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: c.ClusterAddresses, Username: c.Username, Password: c.Password, TLSConfig: tlsConf,
		}), "cluster " + strings.Join(c.ClusterAddresses, ","), nil
	}
}

// checkAddrs wants host:port. A bad one is not echoed: it may be a URL
// carrying credentials.
func checkAddrs(what string, addrs []string) error {
	for i, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil || host == "" || port == "" {
			return fmt.Errorf("%s %d is not host:port", what, i+1)
		}
	}
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// redact replaces password in err's message. An error that had to be
// rewritten does not unwrap, so the original text cannot be reached.
func redact(err error, password string) error {
	if password == "" || !strings.Contains(err.Error(), password) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), password, "[redacted]"))
}
