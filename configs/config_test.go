package configs

import (
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// base is the least the recorder needs: the LiveKit settings.
func base() map[string]string {
	return map[string]string{
		"LIVEKIT_URL":        "ws://127.0.0.1:7880",
		"LIVEKIT_API_KEY":    "devkey",
		"LIVEKIT_API_SECRET": "secret",
	}
}

// with returns base with set applied; an empty value unsets.
func with(set map[string]string) map[string]string {
	m := base()
	for k, v := range set {
		if v == "" {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	return m
}

// writeFile writes a YAML file and returns its path.
func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "recorder.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func devLiveKit() LiveKit {
	return LiveKit{URL: "ws://127.0.0.1:7880", APIKey: "devkey", APISecret: "secret"}
}

func TestDefault(t *testing.T) {
	want := Config{
		HTTP:       HTTP{Port: 8000, Auth: true},
		Log:        Log{Level: slog.LevelInfo},
		Storage:    Storage{LocalDirectory: "./recordings", FileFormat: "ogg", JitterWindow: 60 * time.Millisecond, DrainTimeout: 60 * time.Second},
		S3:         S3{Directory: "livekit"},
		Mixdown:    Mixdown{Mode: "builtin", Directory: "mixdown", Format: "mp3", Settle: 5 * time.Second, Concurrency: 2},
		AutoRecord: AutoRecord{Enabled: true},
		Limits: Limits{JoinTimeout: 15 * time.Second, RejoinTimeout: 10 * time.Second, ReconnectTimeout: 60 * time.Second,
			ShutdownTimeout: 30 * time.Second, ArmTimeout: time.Hour, MaxRecordings: 500, CPUGuard: 0.8, AdaptiveProcs: true, LiveMaxLag: 10 * time.Second},
		Fleet:  Fleet{LeaseTTL: 5 * time.Second, MaxTracks: 0, CompletionWait: 15 * time.Minute},
		Egress: Egress{TrackKinds: []string{"audio"}},
	}
	if got := Default(); !reflect.DeepEqual(got, want) {
		t.Errorf("Default() =\n%+v\nwant\n%+v", got, want)
	}
	c, err := Load(env(base()))
	if err != nil {
		t.Fatal(err)
	}
	want.LiveKit = devLiveKit()
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Load with only LiveKit set =\n%+v\nwant the defaults", c)
	}
}

// Every setting, set once from the environment and once from the file, lands
// in its own field.
func TestEverySettingFromEachSource(t *testing.T) {
	envs := map[string]string{
		"LIVEKIT_URL": "wss://lk.example", "LIVEKIT_API_KEY": "k", "LIVEKIT_API_SECRET": "s",
		"APP_HOST": "127.0.0.1", "APP_PORT": "9000", "API_AUTH": "off",
		"LOG_LEVEL":       "debug",
		"LOCAL_DIRECTORY": "/var/rec", "FILE_FORMAT": "webm", "JITTER_WINDOW": "0", "DRAIN_TIMEOUT": "2m",
		"S3_BUCKET": "b", "S3_REGION": "r", "S3_DIRECTORY": "tracks", "S3_ENDPOINT": "http://minio:9000", "S3_FORCE_PATH_STYLE": "true",
		"MIXDOWN": "none", "MIXDOWN_DIRECTORY": "mixes", "MIXDOWN_FORMAT": "opus", "MIXDOWN_SETTLE": "0s", "MIXDOWN_CONCURRENCY": "4",
		"PIPELINE_WEBHOOK_URL": "https://hooks.example/x", "PIPELINE_WEBHOOK_KEY": "pk", "PIPELINE_WEBHOOK_SECRET": "ps",
		"AUTO_RECORD": "false", "AUTO_RECORD_ROOMS": "team-*, standup", "AUTO_RECORD_IGNORE_IDENTITIES": "bot-?",
		"JOIN_TIMEOUT": "20s", "REJOIN_TIMEOUT": "0s", "RECONNECT_TIMEOUT": "2m", "SHUTDOWN_TIMEOUT": "45s", "ARM_TIMEOUT": "30m", "MAX_RECORDINGS": "50",
		"REDIS_ADDRESS": "redis.internal:6380", "REDIS_USERNAME": "rec", "REDIS_PASSWORD": "rpw", "REDIS_DB": "3", "REDIS_USE_TLS": "true",
		"LEASE_TTL": "10s", "MAX_TRACKS": "40", "COMPLETION_WAIT": "2m", "FLEET_ADVERTISE_URL": "http://rec-1.internal:8000", "EGRESS_WORKER": "true", "EGRESS_WORKER_TRACK_KINDS": "audio",
		"DEBUG_ADDRESS": "127.0.0.1:6060", "CPU_GUARD": "90%", "ADAPTIVE_PROCS": "off", "LIVE_MAX_LAG": "3s",
	}
	file := `
livekit: {url: "wss://lk.example", api_key: k, api_secret: s}
http: {host: 127.0.0.1, port: 9000, auth: off, debug_address: "127.0.0.1:6060"}
log: {level: debug}
storage: {local_directory: /var/rec, file_format: webm, jitter_window: 0, drain_timeout: 2m}
s3: {bucket: b, region: r, directory: tracks, endpoint: "http://minio:9000", force_path_style: true}
mixdown: {mode: none, directory: mixes, format: opus, settle: 0s, concurrency: 4}
pipeline: {webhook_url: "https://hooks.example/x", key: pk, secret: ps}
auto_record: {enabled: false, rooms: [team-*, standup], ignore_identities: ['bot-?']}
limits: {join_timeout: 20s, rejoin_timeout: 0s, reconnect_timeout: 2m, shutdown_timeout: 45s, arm_timeout: 30m, max_recordings: 50, cpu_guard: 0.9, adaptive_procs: off, live_max_lag: 3s}
redis: {address: "redis.internal:6380", username: rec, password: rpw, db: 3, use_tls: true}
fleet: {lease_ttl: 10s, max_tracks: 40, completion_wait: 2m, advertise_url: "http://rec-1.internal:8000"}
egress: {worker: true, track_kinds: [audio]}
`
	want := Config{
		LiveKit:    LiveKit{URL: "wss://lk.example", APIKey: "k", APISecret: "s"},
		HTTP:       HTTP{Host: "127.0.0.1", Port: 9000, Auth: false, DebugAddress: "127.0.0.1:6060"},
		Log:        Log{Level: slog.LevelDebug},
		Storage:    Storage{LocalDirectory: "/var/rec", FileFormat: "webm", JitterWindow: 0, DrainTimeout: 2 * time.Minute},
		S3:         S3{Bucket: "b", Region: "r", Directory: "tracks", Endpoint: "http://minio:9000", ForcePathStyle: true},
		Mixdown:    Mixdown{Mode: "none", Directory: "mixes", Format: "opus", Settle: 0, Concurrency: 4},
		Pipeline:   Pipeline{WebhookURL: "https://hooks.example/x", Key: "pk", Secret: "ps"},
		AutoRecord: AutoRecord{Enabled: false, Rooms: []string{"team-*", "standup"}, IgnoreIdentities: []string{"bot-?"}},
		Limits: Limits{JoinTimeout: 20 * time.Second, RejoinTimeout: 0, ReconnectTimeout: 2 * time.Minute,
			ShutdownTimeout: 45 * time.Second, ArmTimeout: 30 * time.Minute, MaxRecordings: 50, CPUGuard: 0.9, AdaptiveProcs: false, LiveMaxLag: 3 * time.Second},
		Redis:  Redis{Address: "redis.internal:6380", Username: "rec", Password: "rpw", DB: 3, UseTLS: true},
		Fleet:  Fleet{LeaseTTL: 10 * time.Second, MaxTracks: 40, CompletionWait: 2 * time.Minute, AdvertiseURL: "http://rec-1.internal:8000"},
		Egress: Egress{Worker: true, TrackKinds: []string{"audio"}},
	}
	for _, s := range table() {
		_, ok := envs[s.env]
		inMode := slices.ContainsFunc(redisModes, func(m redisMode) bool { _, ok := m.env[s.env]; return ok })
		if !ok && !inMode {
			t.Errorf("%s is not set by this test or TestRedisModesFromEachSource", s.env)
		}
	}
	sources := map[string]map[string]string{
		"environment": envs,
		"file":        {"CONFIG_FILE": writeFile(t, file)},
	}
	for name, m := range sources {
		t.Run(name, func(t *testing.T) {
			c, err := Load(env(m))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c, want) {
				t.Errorf("got\n%+v\nwant\n%+v", c, want)
			}
		})
	}
}

type redisMode struct {
	name string
	env  map[string]string // over base
	file string
	want Redis
}

// redisModes are the ways to reach Redis other than one address, which
// exclude it and each other, so TestEverySettingFromEachSource cannot set
// them.
var redisModes = []redisMode{
	{"sentinel",
		map[string]string{"REDIS_SENTINEL_MASTER_NAME": "mymaster", "REDIS_SENTINEL_ADDRESSES": "s1:26379, 10.0.0.2:26379,[fd00::3]:26379", "REDIS_PASSWORD": "pw"},
		`redis: {sentinel_master_name: mymaster, sentinel_addresses: ["s1:26379", "10.0.0.2:26379", "[fd00::3]:26379"], password: pw}`,
		Redis{SentinelMasterName: "mymaster", SentinelAddresses: []string{"s1:26379", "10.0.0.2:26379", "[fd00::3]:26379"}, Password: "pw"}},
	{"cluster",
		map[string]string{"REDIS_CLUSTER_ADDRESSES": "redis-1:6379,redis-2:6379", "REDIS_USE_TLS": "true"},
		`redis: {cluster_addresses: ["redis-1:6379", "redis-2:6379"], use_tls: true}`,
		Redis{ClusterAddresses: []string{"redis-1:6379", "redis-2:6379"}, UseTLS: true}},
}

func TestRedisModesFromEachSource(t *testing.T) {
	for _, m := range redisModes {
		sources := map[string]map[string]string{
			"environment": with(m.env),
			"file":        with(map[string]string{"CONFIG_FILE": writeFile(t, m.file)}),
		}
		for source, e := range sources {
			t.Run(m.name+"/"+source, func(t *testing.T) {
				c, err := Load(env(e))
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(c.Redis, m.want) {
					t.Errorf("got %+v\nwant %+v", c.Redis, m.want)
				}
				if !c.Redis.Enabled() {
					t.Error("Redis is not enabled")
				}
			})
		}
	}
}

// errorCases holds one case (at least) for every way a setting can be wrong.
// Each error must contain want and name the setting.
var errorCases = []struct {
	name string
	set  map[string]string // over base; "" unsets
	want string
}{
	{"url missing", map[string]string{"LIVEKIT_URL": ""}, "LIVEKIT_URL is required"},
	{"url without host", map[string]string{"LIVEKIT_URL": "localhost"}, `LIVEKIT_URL: "localhost" is not a URL like ws://host:7880`},
	{"url scheme", map[string]string{"LIVEKIT_URL": "ftp://x:1"}, `LIVEKIT_URL: scheme "ftp" is not ws, wss, http or https`},
	{"key missing", map[string]string{"LIVEKIT_API_KEY": ""}, "LIVEKIT_API_KEY is required"},
	{"secret missing", map[string]string{"LIVEKIT_API_SECRET": ""}, "LIVEKIT_API_SECRET is required"},
	{"port text", map[string]string{"APP_PORT": "eighty"}, `APP_PORT: "eighty" is not a whole number`},
	{"port zero", map[string]string{"APP_PORT": "0"}, "APP_PORT: 0 is not between 1 and 65535"},
	{"port high", map[string]string{"APP_PORT": "70000"}, "APP_PORT: 70000 is not between 1 and 65535"},
	{"auth", map[string]string{"API_AUTH": "maybe"}, `API_AUTH: "maybe" is not on or off`},
	{"log level", map[string]string{"LOG_LEVEL": "verbose"}, `LOG_LEVEL: "verbose" is not one of debug, info, warn, error`},
	{"log level offset", map[string]string{"LOG_LEVEL": "info+2"}, `LOG_LEVEL: "info+2" is not one of`},
	{"local directory blank", map[string]string{"LOCAL_DIRECTORY": "  "}, "LOCAL_DIRECTORY: must not be empty"},
	{"file format", map[string]string{"FILE_FORMAT": "mp3"}, `FILE_FORMAT: "mp3" is not ogg or webm`},
	{"jitter text", map[string]string{"JITTER_WINDOW": "soon"}, `JITTER_WINDOW: "soon" is not a duration (for example 10s)`},
	{"jitter high", map[string]string{"JITTER_WINDOW": "5s"}, "JITTER_WINDOW: 5s is not between 0s and 1s"},
	{"jitter negative", map[string]string{"JITTER_WINDOW": "-1ms"}, "JITTER_WINDOW: -1ms is not between 0s and 1s"},
	{"drain zero", map[string]string{"DRAIN_TIMEOUT": "0s"}, "DRAIN_TIMEOUT: 0s must be more than 0"},
	{"bucket without region", map[string]string{"S3_BUCKET": "b"}, "S3_BUCKET is set but S3_REGION is not: set both or neither"},
	{"region without bucket", map[string]string{"S3_REGION": "r"}, "S3_REGION is set but S3_BUCKET is not: set both or neither"},
	{"s3 prefix dots", map[string]string{"S3_DIRECTORY": "a/../b"}, `S3_DIRECTORY: "a/../b" is not a clean key prefix`},
	{"s3 prefix control", map[string]string{"S3_DIRECTORY": "a\x01b"}, `S3_DIRECTORY: "a\x01b" is not a clean key prefix`},
	{"s3 prefix backslash", map[string]string{"S3_DIRECTORY": `a\b`}, `S3_DIRECTORY: "a\\b" is not a clean key prefix`},
	{"s3 endpoint", map[string]string{"S3_ENDPOINT": "localhost:9000"}, `S3_ENDPOINT: "localhost:9000" is not an http(s) URL`},
	{"s3 path style", map[string]string{"S3_FORCE_PATH_STYLE": "maybe"}, `S3_FORCE_PATH_STYLE: "maybe" is not true or false`},
	{"mixdown mode", map[string]string{"MIXDOWN": "auto"}, `MIXDOWN: "auto" is not builtin or none`},
	{"mixdown prefix", map[string]string{"MIXDOWN_DIRECTORY": "../mix"}, `MIXDOWN_DIRECTORY: "../mix" is not a clean key prefix`},
	{"mixdown same prefix", map[string]string{"S3_BUCKET": "b", "S3_REGION": "r", "MIXDOWN_DIRECTORY": "livekit"}, "MIXDOWN_DIRECTORY must differ from S3_DIRECTORY"},
	{"mixdown inside tracks", map[string]string{"S3_BUCKET": "b", "S3_REGION": "r", "MIXDOWN_DIRECTORY": "livekit/mix"}, "MIXDOWN_DIRECTORY must differ from S3_DIRECTORY"},
	{"tracks inside mixdown", map[string]string{"S3_BUCKET": "b", "S3_REGION": "r", "S3_DIRECTORY": "mixdown/t"}, "MIXDOWN_DIRECTORY must differ from S3_DIRECTORY"},
	{"tracks at the root", map[string]string{"S3_BUCKET": "b", "S3_REGION": "r", "S3_DIRECTORY": "/"}, "MIXDOWN_DIRECTORY must differ from S3_DIRECTORY"},
	{"mixes at the root", map[string]string{"S3_BUCKET": "b", "S3_REGION": "r", "MIXDOWN_DIRECTORY": "/"}, "MIXDOWN_DIRECTORY must differ from S3_DIRECTORY"},
	{"mixdown format", map[string]string{"MIXDOWN_FORMAT": "wav"}, `MIXDOWN_FORMAT: "wav" is not mp3 or opus`},
	{"settle negative", map[string]string{"MIXDOWN_SETTLE": "-1s"}, "MIXDOWN_SETTLE: -1s must not be negative"},
	{"concurrency zero", map[string]string{"MIXDOWN_CONCURRENCY": "0"}, "MIXDOWN_CONCURRENCY: 0 must be at least 1"},
	{"concurrency text", map[string]string{"MIXDOWN_CONCURRENCY": "two"}, `MIXDOWN_CONCURRENCY: "two" is not a whole number`},
	{"webhook url", map[string]string{"PIPELINE_WEBHOOK_URL": "ftp://x"}, `PIPELINE_WEBHOOK_URL: "ftp://x" is not an http(s) URL`},
	{"webhook key alone", map[string]string{"PIPELINE_WEBHOOK_KEY": "pk"}, "PIPELINE_WEBHOOK_KEY is set but PIPELINE_WEBHOOK_SECRET is not: set both or neither"},
	{"webhook secret alone", map[string]string{"PIPELINE_WEBHOOK_SECRET": "ps"}, "PIPELINE_WEBHOOK_SECRET is set but PIPELINE_WEBHOOK_KEY is not: set both or neither"},
	{"auto record", map[string]string{"AUTO_RECORD": "sometimes"}, `AUTO_RECORD: "sometimes" is not true or false`},
	{"room glob", map[string]string{"AUTO_RECORD_ROOMS": "a,[b"}, `AUTO_RECORD_ROOMS: "[b" is not a glob pattern`},
	{"identity glob", map[string]string{"AUTO_RECORD_IGNORE_IDENTITIES": `x\`}, `AUTO_RECORD_IGNORE_IDENTITIES: "x\\" is not a glob pattern`},
	{"join text", map[string]string{"JOIN_TIMEOUT": "5"}, `JOIN_TIMEOUT: "5" is not a duration (for example 10s)`},
	{"join zero", map[string]string{"JOIN_TIMEOUT": "0s"}, "JOIN_TIMEOUT: 0s must be more than 0"},
	{"rejoin negative", map[string]string{"REJOIN_TIMEOUT": "-1s"}, "REJOIN_TIMEOUT: -1s must not be negative"},
	{"reconnect negative", map[string]string{"RECONNECT_TIMEOUT": "-1s"}, "RECONNECT_TIMEOUT: -1s must not be negative"},
	{"shutdown negative", map[string]string{"SHUTDOWN_TIMEOUT": "-1s"}, "SHUTDOWN_TIMEOUT: -1s must be more than 0"},
	{"arm zero", map[string]string{"ARM_TIMEOUT": "0s"}, "ARM_TIMEOUT: 0s must be more than 0"},
	{"max recordings zero", map[string]string{"MAX_RECORDINGS": "0"}, "MAX_RECORDINGS: 0 must be at least 1"},
	{"max recordings text", map[string]string{"MAX_RECORDINGS": "many"}, `MAX_RECORDINGS: "many" is not a whole number`},
	{"config file", map[string]string{"CONFIG_FILE": "/nonexistent/recorder.yaml"}, "CONFIG_FILE: open /nonexistent/recorder.yaml"},

	{"redis no port", map[string]string{"REDIS_ADDRESS": "redis"}, `REDIS_ADDRESS: "redis" is not host:port`},
	{"redis url", map[string]string{"REDIS_ADDRESS": "redis://h:6379"}, `REDIS_ADDRESS: "redis://h:6379" is not host:port`},
	{"redis no host", map[string]string{"REDIS_ADDRESS": ":6379"}, `REDIS_ADDRESS: ":6379" is not host:port`},
	{"redis host blank", map[string]string{"REDIS_ADDRESS": "a b:6379"}, `REDIS_ADDRESS: "a b:6379" is not host:port`},
	{"redis host path", map[string]string{"REDIS_ADDRESS": "h/x:6379"}, `REDIS_ADDRESS: "h/x:6379" is not host:port`},
	{"redis ipv6 bare", map[string]string{"REDIS_ADDRESS": "::1:6379"}, `REDIS_ADDRESS: "::1:6379" is not host:port`},
	{"redis port name", map[string]string{"REDIS_ADDRESS": "h:redis"}, `REDIS_ADDRESS: "h:redis": port "redis" is not a number from 1 to 65535`},
	{"redis port empty", map[string]string{"REDIS_ADDRESS": "h:"}, `REDIS_ADDRESS: "h:": port "" is not a number from 1 to 65535`},
	{"redis port zero", map[string]string{"REDIS_ADDRESS": "h:0"}, `REDIS_ADDRESS: "h:0": port "0" is not a number from 1 to 65535`},
	{"redis port high", map[string]string{"REDIS_ADDRESS": "h:65536"}, `REDIS_ADDRESS: "h:65536": port "65536" is not a number from 1 to 65535`},
	{"redis port sign", map[string]string{"REDIS_ADDRESS": "h:+6379"}, `REDIS_ADDRESS: "h:+6379": port "+6379" is not a number from 1 to 65535`},
	{"redis user info", map[string]string{"REDIS_ADDRESS": "u:pw@h:6379"}, "REDIS_ADDRESS: holds user info (user:password@): give host:port, and the credentials in REDIS_USERNAME and REDIS_PASSWORD"},
	{"sentinel address", map[string]string{"REDIS_SENTINEL_MASTER_NAME": "m", "REDIS_SENTINEL_ADDRESSES": "s1:26379,s2"}, `REDIS_SENTINEL_ADDRESSES: "s2" is not host:port`},
	{"sentinel port", map[string]string{"REDIS_SENTINEL_MASTER_NAME": "m", "REDIS_SENTINEL_ADDRESSES": "s1:99999"}, `REDIS_SENTINEL_ADDRESSES: "s1:99999": port "99999" is not a number from 1 to 65535`},
	{"sentinels without master", map[string]string{"REDIS_SENTINEL_ADDRESSES": "s1:26379"}, "REDIS_SENTINEL_ADDRESSES is set but REDIS_SENTINEL_MASTER_NAME is not: set both or neither"},
	{"master without sentinels", map[string]string{"REDIS_SENTINEL_MASTER_NAME": "m"}, "REDIS_SENTINEL_MASTER_NAME is set but REDIS_SENTINEL_ADDRESSES is not: set both or neither"},
	{"sentinels with address", map[string]string{"REDIS_ADDRESS": "h:6379", "REDIS_SENTINEL_MASTER_NAME": "m", "REDIS_SENTINEL_ADDRESSES": "s1:26379"}, "REDIS_SENTINEL_ADDRESSES cannot be combined with REDIS_ADDRESS: the Sentinels tell where the master is, so for Sentinel drop REDIS_ADDRESS"},
	{"cluster address", map[string]string{"REDIS_CLUSTER_ADDRESSES": "n1:6379,n2:port"}, `REDIS_CLUSTER_ADDRESSES: "n2:port": port "port" is not a number from 1 to 65535`},
	{"cluster user info", map[string]string{"REDIS_CLUSTER_ADDRESSES": "pw@n1:6379"}, "REDIS_CLUSTER_ADDRESSES: holds user info"},
	{"cluster with address", map[string]string{"REDIS_ADDRESS": "h:6379", "REDIS_CLUSTER_ADDRESSES": "n1:6379"}, "REDIS_CLUSTER_ADDRESSES cannot be combined with REDIS_ADDRESS: for a cluster, drop REDIS_ADDRESS"},
	{"cluster with sentinels", map[string]string{"REDIS_SENTINEL_MASTER_NAME": "m", "REDIS_SENTINEL_ADDRESSES": "s1:26379", "REDIS_CLUSTER_ADDRESSES": "n1:6379"}, "REDIS_CLUSTER_ADDRESSES cannot be combined with Sentinel: for a cluster, drop REDIS_SENTINEL_ADDRESSES and REDIS_SENTINEL_MASTER_NAME"},
	{"username without redis", map[string]string{"REDIS_USERNAME": "rec"}, "REDIS_USERNAME is set without REDIS_ADDRESS (or REDIS_SENTINEL_ADDRESSES, REDIS_CLUSTER_ADDRESSES): set one to run in a fleet, or unset REDIS_USERNAME"},
	{"password without redis", map[string]string{"REDIS_PASSWORD": "pw"}, "REDIS_PASSWORD is set without REDIS_ADDRESS"},
	{"db without redis", map[string]string{"REDIS_DB": "2"}, "REDIS_DB is set without REDIS_ADDRESS"},
	{"tls without redis", map[string]string{"REDIS_USE_TLS": "true"}, "REDIS_USE_TLS is set without REDIS_ADDRESS"},
	{"db negative", map[string]string{"REDIS_ADDRESS": "h:6379", "REDIS_DB": "-1"}, "REDIS_DB: -1 must be at least 0"},
	{"db text", map[string]string{"REDIS_ADDRESS": "h:6379", "REDIS_DB": "one"}, `REDIS_DB: "one" is not a whole number`},
	{"db of a cluster", map[string]string{"REDIS_CLUSTER_ADDRESSES": "n1:6379", "REDIS_DB": "1"}, "REDIS_DB: 1 is not 0, the only database of a Redis Cluster (REDIS_CLUSTER_ADDRESSES)"},
	{"tls text", map[string]string{"REDIS_ADDRESS": "h:6379", "REDIS_USE_TLS": "yes"}, `REDIS_USE_TLS: "yes" is not true or false`},
	{"lease short", map[string]string{"LEASE_TTL": "500ms"}, "LEASE_TTL: 500ms is not between 1s and 1m0s"},
	{"lease long", map[string]string{"LEASE_TTL": "2m"}, "LEASE_TTL: 2m0s is not between 1s and 1m0s"},
	{"lease text", map[string]string{"LEASE_TTL": "5"}, `LEASE_TTL: "5" is not a duration (for example 10s)`},
	{"completion wait long", map[string]string{"COMPLETION_WAIT": "25h"}, "COMPLETION_WAIT: 25h0m0s is not between 0s and 24h0m0s"},
	{"egress of video", map[string]string{"EGRESS_WORKER_TRACK_KINDS": "audio,video"}, `EGRESS_WORKER_TRACK_KINDS: "video": only audio track egress is served yet (video is left to livekit/egress)`},
	{"egress worker alone", map[string]string{"EGRESS_WORKER": "true"}, "EGRESS_WORKER needs livekit-server's Redis: set REDIS_ADDRESS (or Sentinels, or cluster nodes)"},
	{"max tracks negative", map[string]string{"MAX_TRACKS": "-1"}, "MAX_TRACKS: -1 must be at least 0"},
	{"cpu guard over", map[string]string{"CPU_GUARD": "120%"}, `CPU_GUARD: "120%" is not a share from 0 to 100% (for example 80% or 0.8)`},
	{"cpu guard text", map[string]string{"CPU_GUARD": "most"}, `CPU_GUARD: "most" is not a share`},
	{"live lag too short", map[string]string{"LIVE_MAX_LAG": "100ms"}, `LIVE_MAX_LAG`},
	{"advertise url", map[string]string{"FLEET_ADVERTISE_URL": "rec-1:8000"}, `FLEET_ADVERTISE_URL`},
	{"adaptive procs text", map[string]string{"ADAPTIVE_PROCS": "auto"}, `ADAPTIVE_PROCS: "auto" is not on or off`},
	{"debug address without port", map[string]string{"DEBUG_ADDRESS": "localhost"}, "DEBUG_ADDRESS:"},
	{"max tracks text", map[string]string{"MAX_TRACKS": "lots"}, `MAX_TRACKS: "lots" is not a whole number`},
}

func TestLoadErrors(t *testing.T) {
	for _, tc := range errorCases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(env(with(tc.set)))
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q\nwant it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q is more than one line", err)
			}
		})
	}
}

// Each setting that can be wrong has a case above, so a new setting comes
// with its error cases.
func TestErrorCasesCoverEverySetting(t *testing.T) {
	cannotFail := map[string]bool{"APP_HOST": true}
	for _, s := range table() {
		named := slices.ContainsFunc(errorCases, func(tc struct {
			name string
			set  map[string]string
			want string
		}) bool {
			return regexp.MustCompile(`(^|\s)` + s.env + `\b`).MatchString(tc.want)
		})
		if !named && !cannotFail[s.env] {
			t.Errorf("no error case names %s", s.env)
		}
	}
}

// When several settings are wrong, the first in table order is reported,
// whether it failed to parse or to validate, and from whichever source.
func TestFirstErrorInTableOrder(t *testing.T) {
	cases := []struct {
		name string
		set  map[string]string
		file string
		want string
	}{
		{"required before range", map[string]string{"LIVEKIT_URL": "", "APP_PORT": "70000"}, "", "LIVEKIT_URL is required"},
		{"validation before a later parse", map[string]string{"FILE_FORMAT": "mp3", "MAX_RECORDINGS": "many"}, "", "FILE_FORMAT:"},
		{"parse before a later validation", map[string]string{"APP_PORT": "x", "MIXDOWN": "auto"}, "", "APP_PORT:"},
		{"env before a later file value", map[string]string{"LOG_LEVEL": "loud"}, "limits: {join_timeout: soon}", "LOG_LEVEL:"},
		{"file before a later env value", map[string]string{"JOIN_TIMEOUT": "soon"}, "log: {level: loud}", "LOG_LEVEL (log.level,"},
		{"many", map[string]string{
			"MAX_RECORDINGS": "0", "ARM_TIMEOUT": "0s", "AUTO_RECORD_ROOMS": "[", "PIPELINE_WEBHOOK_KEY": "k", "MIXDOWN": "x",
			"S3_ENDPOINT": "x", "JITTER_WINDOW": "9s", "FILE_FORMAT": "x", "API_AUTH": "x", "APP_PORT": "0",
		}, "", "APP_PORT:"},
		{"redis before fleet", map[string]string{"REDIS_ADDRESS": "x", "LEASE_TTL": "0s"}, "", "REDIS_ADDRESS:"},
		{"every way to redis", map[string]string{"REDIS_ADDRESS": "h:1", "REDIS_SENTINEL_MASTER_NAME": "m", "REDIS_SENTINEL_ADDRESSES": "s:2", "REDIS_CLUSTER_ADDRESSES": "n:3"}, "", "REDIS_SENTINEL_ADDRESSES cannot be combined with REDIS_ADDRESS"},
		{"bad address before the missing redis", map[string]string{"REDIS_SENTINEL_ADDRESSES": "s", "REDIS_PASSWORD": "pw"}, "", "REDIS_SENTINEL_ADDRESSES:"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := with(tc.set)
			if tc.file != "" {
				m["CONFIG_FILE"] = writeFile(t, tc.file)
			}
			var first string
			for range 20 {
				_, err := Load(env(m))
				if err == nil {
					t.Fatal("no error")
				}
				if first == "" {
					first = err.Error()
				} else if err.Error() != first {
					t.Fatalf("error changed between runs: %q then %q", first, err)
				}
			}
			if !strings.HasPrefix(first, tc.want) {
				t.Errorf("error %q, want the one starting %q", first, tc.want)
			}
		})
	}
}

func TestEnvironmentAndFilePrecedence(t *testing.T) {
	cases := []struct {
		name string
		set  map[string]string
		file string // "" is no file
		got  func(Config) any
		want any
	}{
		{"default", nil, "", func(c Config) any { return c.HTTP.Port }, 8000},
		{"env", map[string]string{"APP_PORT": "9000"}, "", func(c Config) any { return c.HTTP.Port }, 9000},
		{"env trimmed", map[string]string{"APP_PORT": " 9000 "}, "", func(c Config) any { return c.HTTP.Port }, 9000},
		{"file", nil, "http: {port: 9001}", func(c Config) any { return c.HTTP.Port }, 9001},
		{"file wins", map[string]string{"APP_PORT": "9000"}, "http: {port: 9001}", func(c Config) any { return c.HTTP.Port }, 9001},
		{"file silent", map[string]string{"APP_PORT": "9000"}, "log: {level: warn}", func(c Config) any { return c.HTTP.Port }, 9000},
		{"file null", map[string]string{"APP_PORT": "9000"}, "http: {port: ~}", func(c Config) any { return c.HTTP.Port }, 9000},
		{"group null", map[string]string{"APP_PORT": "9000"}, "http:\n", func(c Config) any { return c.HTTP.Port }, 9000},
		{"empty file", map[string]string{"APP_PORT": "9000"}, "# nothing\n", func(c Config) any { return c.HTTP.Port }, 9000},
		{"file empty string wins", map[string]string{"APP_HOST": "10.0.0.1"}, `http: {host: ""}`, func(c Config) any { return c.HTTP.Host }, ""},
		{"env list", map[string]string{"AUTO_RECORD_ROOMS": "a, b,,c "}, "", func(c Config) any { return c.AutoRecord.Rooms }, []string{"a", "b", "c"}},
		{"file list wins", map[string]string{"AUTO_RECORD_ROOMS": "a"}, "auto_record: {rooms: [x, 'y,z']}", func(c Config) any { return c.AutoRecord.Rooms }, []string{"x", "y,z"}},
		{"file empty list wins", map[string]string{"AUTO_RECORD_ROOMS": "a"}, "auto_record: {rooms: []}", func(c Config) any { return c.AutoRecord.Rooms }, []string(nil)},
		{"env auth off", map[string]string{"API_AUTH": "OFF"}, "", func(c Config) any { return c.HTTP.Auth }, false},
		{"env auth false", map[string]string{"API_AUTH": "false"}, "", func(c Config) any { return c.HTTP.Auth }, false},
		{"file auth off", map[string]string{"API_AUTH": "on"}, "http: {auth: off}", func(c Config) any { return c.HTTP.Auth }, false},
		{"file auth true", map[string]string{"API_AUTH": "off"}, "http: {auth: true}", func(c Config) any { return c.HTTP.Auth }, true},
		{"env level", map[string]string{"LOG_LEVEL": "DEBUG"}, "", func(c Config) any { return c.Log.Level }, slog.LevelDebug},
		{"file level", map[string]string{"LOG_LEVEL": "debug"}, "log: {level: error}", func(c Config) any { return c.Log.Level }, slog.LevelError},
		{"file duration", map[string]string{"REJOIN_TIMEOUT": "1s"}, "limits: {rejoin_timeout: 1m30s}", func(c Config) any { return c.Limits.RejoinTimeout }, 90 * time.Second},
		{"file bool", map[string]string{"AUTO_RECORD": "true"}, "auto_record: {enabled: false}", func(c Config) any { return c.AutoRecord.Enabled }, false},
		{"file secret wins", nil, "livekit: {api_secret: other}", func(c Config) any { return c.LiveKit.APISecret }, "other"},

		{"redis off", nil, "", func(c Config) any { return c.Redis }, Redis{}},
		{"env redis", map[string]string{"REDIS_ADDRESS": "10.0.0.1:6379", "REDIS_DB": "2"}, "", func(c Config) any { return c.Redis }, Redis{Address: "10.0.0.1:6379", DB: 2}},
		{"env redis ipv6", map[string]string{"REDIS_ADDRESS": "[::1]:6379"}, "", func(c Config) any { return c.Redis.Address }, "[::1]:6379"},
		{"file address wins", map[string]string{"REDIS_ADDRESS": "a:1"}, "redis: {address: 'b:2'}", func(c Config) any { return c.Redis.Address }, "b:2"},
		{"file address null", map[string]string{"REDIS_ADDRESS": "a:1"}, "redis: {address: ~}", func(c Config) any { return c.Redis.Address }, "a:1"},
		{"file empty address wins", map[string]string{"REDIS_ADDRESS": "a:1"}, `redis: {address: ""}`, func(c Config) any { return c.Redis.Enabled() }, false},
		{"file password wins", map[string]string{"REDIS_ADDRESS": "a:1", "REDIS_PASSWORD": "env"}, "redis: {password: file}", func(c Config) any { return c.Redis.Password }, "file"},
		{"env password under file address", map[string]string{"REDIS_PASSWORD": "env"}, "redis: {address: 'a:1'}", func(c Config) any { return c.Redis }, Redis{Address: "a:1", Password: "env"}},
		{"file db wins", map[string]string{"REDIS_ADDRESS": "a:1", "REDIS_DB": "2"}, "redis: {db: 0}", func(c Config) any { return c.Redis.DB }, 0},
		{"file tls wins", map[string]string{"REDIS_ADDRESS": "a:1", "REDIS_USE_TLS": "true"}, "redis: {use_tls: false}", func(c Config) any { return c.Redis.UseTLS }, false},
		{"env sentinels", map[string]string{"REDIS_SENTINEL_MASTER_NAME": "m", "REDIS_SENTINEL_ADDRESSES": " s1:1 ,, s2:2 "}, "", func(c Config) any { return c.Redis.SentinelAddresses }, []string{"s1:1", "s2:2"}},
		{"file sentinels win", map[string]string{"REDIS_SENTINEL_MASTER_NAME": "m", "REDIS_SENTINEL_ADDRESSES": "s1:1"}, "redis: {sentinel_addresses: ['s3:3', 's4:4']}", func(c Config) any { return c.Redis.SentinelAddresses }, []string{"s3:3", "s4:4"}},
		{"file master wins", map[string]string{"REDIS_SENTINEL_MASTER_NAME": "m", "REDIS_SENTINEL_ADDRESSES": "s1:1"}, "redis: {sentinel_master_name: other}", func(c Config) any { return c.Redis.SentinelMasterName }, "other"},
		{"file empty cluster wins", map[string]string{"REDIS_CLUSTER_ADDRESSES": "n1:1"}, "redis: {cluster_addresses: []}", func(c Config) any { return c.Redis }, Redis{}},
		{"file cluster over env address", map[string]string{"REDIS_ADDRESS": "a:1"}, "redis: {address: '', cluster_addresses: ['n1:1', 'n2:2']}", func(c Config) any { return c.Redis }, Redis{ClusterAddresses: []string{"n1:1", "n2:2"}}},
		{"env cluster, file silent", map[string]string{"REDIS_CLUSTER_ADDRESSES": "n1:1,n2:2"}, "redis: {use_tls: true}", func(c Config) any { return c.Redis }, Redis{ClusterAddresses: []string{"n1:1", "n2:2"}, UseTLS: true}},
		{"livekit-server block", nil, `
redis:
  address: redis.internal:6379
  username: ""
  password: lkpw
  db: 0
  use_tls: false
  sentinel_master_name: ""
  sentinel_addresses: []
  cluster_addresses: []
`, func(c Config) any { return c.Redis }, Redis{Address: "redis.internal:6379", Password: "lkpw"}},
		{"env fleet", map[string]string{"LEASE_TTL": "1s", "MAX_TRACKS": "1"}, "", func(c Config) any { return c.Fleet }, Fleet{LeaseTTL: time.Second, MaxTracks: 1, CompletionWait: 15 * time.Minute}},
		{"file fleet wins", map[string]string{"LEASE_TTL": "1s", "MAX_TRACKS": "1"}, "fleet: {lease_ttl: 1m, max_tracks: 800}", func(c Config) any { return c.Fleet }, Fleet{LeaseTTL: time.Minute, MaxTracks: 800, CompletionWait: 15 * time.Minute}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := with(tc.set)
			if tc.file != "" {
				m["CONFIG_FILE"] = writeFile(t, tc.file)
			}
			c, err := Load(env(m))
			if err != nil {
				t.Fatal(err)
			}
			if got := tc.got(c); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %#v, want %#v", got, tc.want)
			}
		})
	}
}

// Errors about the file name it, the key and the line; values of the wrong
// shape are refused by key.
func TestFileErrors(t *testing.T) {
	cases := []struct {
		name, file, want string
	}{
		{"unknown key", "http:\n  prot: 1\n", `line 2: unknown key "http.prot"`},
		{"unknown group", "htp: {port: 1}\n", `line 1: unknown key "htp"`},
		{"flat key of old", "app_port: 8000\n", `unknown key "app_port"`},
		{"key twice", "http:\n  port: 1\n  port: 2\n", `line 3: "http.port" is given twice`},
		{"group twice", "http: {port: 1}\nhttp: {host: x}\n", `line 2: "http" is given twice`},
		{"group not a mapping", "http: 8000\n", `line 1: "http" is a group: want its keys under it`},
		{"file not a mapping", "- http\n", "want a mapping of groups"},
		{"syntax", "http: {port: 1\n", "parse: yaml:"},
		{"port text", "http:\n  port: abc\n", `APP_PORT (http.port, {file} line 2): "abc" is not a whole number`},
		{"port list", "http: {port: [1]}\n", "APP_PORT (http.port, {file} line 1): want one value, not a list or mapping"},
		{"url mapping", "livekit: {url: {a: b}}\n", "LIVEKIT_URL (livekit.url, {file} line 1): want one value"},
		{"list as text", "auto_record: {rooms: team-*}\n", "AUTO_RECORD_ROOMS (auto_record.rooms, {file} line 1): want a list ([a, b])"},
		{"list of lists", "auto_record: {rooms: [[a]]}\n", "AUTO_RECORD_ROOMS (auto_record.rooms, {file} line 1): want a list of strings"},
		{"duration without unit", "limits: {join_timeout: 10}\n", `JOIN_TIMEOUT (limits.join_timeout, {file} line 1): "10" is not a duration`},
		{"bool word", "s3: {force_path_style: yes}\n", `S3_FORCE_PATH_STYLE (s3.force_path_style, {file} line 1): "yes" is not true or false`},
		{"auth word", "http: {auth: maybe}\n", `API_AUTH (http.auth, {file} line 1): "maybe" is not on or off`},
		{"bad glob", "auto_record: {ignore_identities: ['[']}\n", `AUTO_RECORD_IGNORE_IDENTITIES: "[" is not a glob pattern`},
		{"validation of a file value", "storage: {file_format: flac}\n", `FILE_FORMAT: "flac" is not ogg or webm`},
		{"livekit key the recorder does not read", "redis:\n  address: h:6379\n  sentinel_username: u\n", `line 3: unknown key "redis.sentinel_username"`},
		{"addresses as text", "redis: {sentinel_addresses: 's1:1,s2:2'}\n", "REDIS_SENTINEL_ADDRESSES (redis.sentinel_addresses, {file} line 1): want a list ([a, b])"},
		{"address as a list", "redis: {address: ['h:1']}\n", "REDIS_ADDRESS (redis.address, {file} line 1): want one value"},
		{"bad cluster node", "redis: {cluster_addresses: ['n1:1', 'n2']}\n", `REDIS_CLUSTER_ADDRESSES: "n2" is not host:port`},
		{"db word", "redis: {address: 'h:1', db: first}\n", `REDIS_DB (redis.db, {file} line 1): "first" is not a whole number`},
		{"tls word", "redis: {address: 'h:1', use_tls: on}\n", `REDIS_USE_TLS (redis.use_tls, {file} line 1): "on" is not true or false`},
		{"password without redis", "redis: {password: pw}\n", "REDIS_PASSWORD is set without REDIS_ADDRESS"},
		{"lease of a file", "fleet: {lease_ttl: 0s}\n", "LEASE_TTL: 0s is not between 1s and 1m0s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := base()
			p := writeFile(t, tc.file)
			m["CONFIG_FILE"] = p
			_, err := Load(env(m))
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			want := strings.ReplaceAll(tc.want, "{file}", p)
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q\nwant it to contain %q", err, want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q is more than one line", err)
			}
		})
	}
}

// No error shows a secret's value, whatever is wrong with it.
func TestSecretsNeverInErrors(t *testing.T) {
	const value = "hunter2-value"
	for _, s := range table() {
		if !s.secret {
			continue
		}
		group, name, _ := strings.Cut(s.key, ".")
		files := []string{
			group + ": {" + name + ": [" + value + "]}\n",
			group + ": {" + name + ": {" + value + ": " + value + "}}\n",
			group + ": {" + name + ": " + value + "}\nnot_a_group: 1\n",
		}
		for _, f := range files {
			m := base()
			m[s.env] = value
			m["CONFIG_FILE"] = writeFile(t, f)
			if _, err := Load(env(m)); err == nil || strings.Contains(err.Error(), value) {
				t.Errorf("%s: error %v shows the value (file %q)", s.env, err, f)
			}
		}
		// From the environment, a secret is only ever missing or alone.
		m := base()
		m[s.env] = value
		if _, err := Load(env(m)); err != nil && strings.Contains(err.Error(), value) {
			t.Errorf("%s: error %v shows the value", s.env, err)
		}
	}
	// A secret whose text does not parse is not quoted either.
	s := setting{env: "X_SECRET", secret: true, bind: bind(func(c *Config) *int { return &c.HTTP.Port }, integer)}
	var c Config
	err := s.fromText(&c, value, "")
	if err == nil || strings.Contains(err.Error(), value) || !strings.HasPrefix(err.Error(), "X_SECRET: ") {
		t.Errorf("secret parse error %v", err)
	}
}

// The Redis password appears in no error, whatever else is wrong, from
// either source, and neither does an address that carries it.
func TestRedisPasswordNeverInErrors(t *testing.T) {
	const pw = "Redis-Pa55word"
	checked := 0
	check := func(name string, m map[string]string) {
		t.Helper()
		_, err := Load(env(m))
		if err != nil {
			checked++
			if strings.Contains(err.Error(), pw) {
				t.Errorf("%s: error %q shows the password", name, err)
			}
		}
	}
	for _, tc := range errorCases {
		m := with(tc.set)
		m["REDIS_PASSWORD"] = pw
		check(tc.name+" (env)", m)
		m = with(tc.set)
		m["CONFIG_FILE"] = writeFile(t, "redis: {password: "+pw+"}\n")
		check(tc.name+" (file)", m)
	}
	for _, addr := range []string{"u:" + pw + "@h:6379", ":" + pw + "@h:6379", pw + "@h:6379", "redis://:" + pw + "@h:6379/0", "rediss://u:" + pw + "@h"} {
		check("address "+addr, with(map[string]string{"REDIS_ADDRESS": addr}))
		check("sentinel "+addr, with(map[string]string{"REDIS_SENTINEL_MASTER_NAME": "m", "REDIS_SENTINEL_ADDRESSES": "s:1," + addr}))
		check("cluster "+addr, with(map[string]string{"CONFIG_FILE": writeFile(t, "redis: {cluster_addresses: ['"+addr+"']}\n")}))
	}
	// A password set with nothing else wrong is fine; with Redis off it is
	// refused by name.
	if _, err := Load(env(with(map[string]string{"REDIS_ADDRESS": "h:1", "REDIS_PASSWORD": pw}))); err != nil {
		t.Errorf("a valid Redis config with a password: %v", err)
	}
	if checked < 2*len(errorCases) {
		t.Errorf("only %d of the cases failed to load; the test checks too little", checked)
	}
}

// Validate reports and changes nothing, for a valid or an invalid config,
// built by Load or by hand.
func TestValidateChangesNothing(t *testing.T) {
	loaded, err := Load(env(with(map[string]string{
		"LIVEKIT_URL": "wss://lk.example/", "AUTO_RECORD_ROOMS": "a,b", "AUTO_RECORD_IGNORE_IDENTITIES": "c",
		"S3_DIRECTORY": "/tracks/", "API_AUTH": "off", "LOG_LEVEL": "warn",
		"REDIS_SENTINEL_MASTER_NAME": "m", "REDIS_SENTINEL_ADDRESSES": "s1:1,s2:2", "REDIS_PASSWORD": "pw",
	})))
	if err != nil {
		t.Fatal(err)
	}
	invalid := loaded
	invalid.AutoRecord.Rooms = []string{"["}
	invalid.HTTP.Port = 0
	invalid.Redis.SentinelAddresses = []string{"s1:1", "nope"}
	for name, c := range map[string]Config{"valid": loaded, "invalid": invalid, "zero": {}, "default": Default()} {
		t.Run(name, func(t *testing.T) {
			before := c
			before.AutoRecord.Rooms = slices.Clone(c.AutoRecord.Rooms)
			before.AutoRecord.IgnoreIdentities = slices.Clone(c.AutoRecord.IgnoreIdentities)
			before.Redis.SentinelAddresses = slices.Clone(c.Redis.SentinelAddresses)
			before.Redis.ClusterAddresses = slices.Clone(c.Redis.ClusterAddresses)
			_ = c.Validate()
			if !reflect.DeepEqual(c, before) {
				t.Errorf("Validate changed the config:\n%+v\nwas\n%+v", c, before)
			}
		})
	}
	if err := loaded.Validate(); err != nil {
		t.Errorf("a loaded config does not validate: %v", err)
	}
}

// Validate checks a config built by hand as Load checks one it read.
func TestValidateByHand(t *testing.T) {
	ok := Default()
	ok.LiveKit = devLiveKit()
	cases := []struct {
		name   string
		change func(*Config)
		want   string // "" is valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"zero", func(c *Config) { *c = Config{} }, "LIVEKIT_URL is required"},
		{"format", func(c *Config) { c.Storage.FileFormat = "mp4" }, `FILE_FORMAT: "mp4" is not ogg or webm`},
		{"mixdown mode", func(c *Config) { c.Mixdown.Mode = "" }, `MIXDOWN: "" is not builtin or none`},
		{"concurrency", func(c *Config) { c.Mixdown.Concurrency = 0 }, "MIXDOWN_CONCURRENCY: 0 must be at least 1"},
		{"max recordings", func(c *Config) { c.Limits.MaxRecordings = -1 }, "MAX_RECORDINGS: -1 must be at least 1"},
		{"arm", func(c *Config) { c.Limits.ArmTimeout = 0 }, "ARM_TIMEOUT: 0s must be more than 0"},
		{"pipeline pair", func(c *Config) { c.Pipeline.Secret = "s" }, "PIPELINE_WEBHOOK_SECRET is set but PIPELINE_WEBHOOK_KEY is not"},
		{"redis", func(c *Config) { c.Redis = Redis{Address: "h:6379", Username: "u", Password: "p", DB: 1, UseTLS: true} }, ""},
		{"redis sentinel", func(c *Config) {
			c.Redis = Redis{SentinelMasterName: "m", SentinelAddresses: []string{"s1:26379", "s2:26379"}}
		}, ""},
		{"redis cluster", func(c *Config) { c.Redis = Redis{ClusterAddresses: []string{"n1:6379"}, UseTLS: true} }, ""},
		{"redis address", func(c *Config) { c.Redis.Address = "h" }, `REDIS_ADDRESS: "h" is not host:port`},
		{"redis cluster and address", func(c *Config) {
			c.Redis = Redis{Address: "h:1", ClusterAddresses: []string{"n1:6379"}}
		}, "REDIS_CLUSTER_ADDRESSES cannot be combined with REDIS_ADDRESS"},
		{"redis cluster and master", func(c *Config) {
			c.Redis = Redis{SentinelMasterName: "m", ClusterAddresses: []string{"n1:6379"}}
		}, "REDIS_SENTINEL_MASTER_NAME is set but REDIS_SENTINEL_ADDRESSES is not"},
		{"redis tls alone", func(c *Config) { c.Redis.UseTLS = true }, "REDIS_USE_TLS is set without REDIS_ADDRESS"},
		{"redis db negative", func(c *Config) { c.Redis.DB = -2 }, "REDIS_DB: -2 must be at least 0"},
		{"fleet lease", func(c *Config) { c.Fleet.LeaseTTL = 0 }, "LEASE_TTL: 0s is not between 1s and 1m0s"},
		{"fleet tracks", func(c *Config) { c.Fleet.MaxTracks = -1 }, "MAX_TRACKS: -1 must be at least 0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.change(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("unexpected error %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestLiveKitHTTPURL(t *testing.T) {
	cases := map[string]string{
		"ws://h:7880":        "http://h:7880",
		"wss://lk.example/":  "https://lk.example",
		"https://h":          "https://h",
		"http://h:7880/lk//": "http://h:7880/lk",
		"ftp://h":            "",
		"localhost":          "",
	}
	for in, want := range cases {
		if got := (LiveKit{URL: in}).HTTPURL(); got != want {
			t.Errorf("HTTPURL(%s) = %q, want %q", in, got, want)
		}
	}
}

func TestListenAddr(t *testing.T) {
	cases := []struct {
		host string
		port int
		want string
	}{
		{"", 8000, ":8000"},
		{"127.0.0.1", 9000, "127.0.0.1:9000"},
		{"::1", 8000, "[::1]:8000"},
	}
	for _, tc := range cases {
		c := Config{HTTP: HTTP{Host: tc.host, Port: tc.port}}
		if got := c.ListenAddr(); got != tc.want {
			t.Errorf("ListenAddr(%q, %d) = %q, want %q", tc.host, tc.port, got, tc.want)
		}
	}
}

func TestS3Enabled(t *testing.T) {
	for _, tc := range []struct {
		s    S3
		want bool
	}{
		{S3{}, false},
		{S3{Bucket: "b"}, false},
		{S3{Region: "r"}, false},
		{S3{Bucket: "b", Region: "r"}, true},
	} {
		if got := tc.s.Enabled(); got != tc.want {
			t.Errorf("%+v.Enabled() = %v", tc.s, got)
		}
	}
}

func TestRedisEnabled(t *testing.T) {
	for _, tc := range []struct {
		r    Redis
		want bool
	}{
		{Redis{}, false},
		{Redis{Username: "u", Password: "p", DB: 1, UseTLS: true, SentinelMasterName: "m"}, false},
		{Redis{SentinelAddresses: []string{}, ClusterAddresses: []string{}}, false},
		{Redis{Address: "h:6379"}, true},
		{Redis{SentinelMasterName: "m", SentinelAddresses: []string{"s:26379"}}, true},
		{Redis{SentinelAddresses: []string{"s:26379"}}, true},
		{Redis{ClusterAddresses: []string{"n:6379"}}, true},
	} {
		if got := tc.r.Enabled(); got != tc.want {
			t.Errorf("%+v.Enabled() = %v, want %v", tc.r, got, tc.want)
		}
	}
}

func TestSigningKeys(t *testing.T) {
	c := Config{LiveKit: devLiveKit()}
	if k, s, shared := c.SigningKeys(); k != "devkey" || s != "secret" || !shared {
		t.Errorf("without a pipeline pair: %q %q %v, want the LiveKit pair, shared", k, s, shared)
	}
	c.Pipeline = Pipeline{Key: "pk", Secret: "ps"}
	if k, s, shared := c.SigningKeys(); k != "pk" || s != "ps" || shared {
		t.Errorf("with a pipeline pair: %q %q %v, want it, not shared", k, s, shared)
	}
}

// The shipped example loads on its own, sets every key of the table (as the
// default, but for LiveKit) and names each key's environment variable.
func TestExampleFile(t *testing.T) {
	c, err := Load(env(map[string]string{"CONFIG_FILE": "recorder.yaml"}))
	if err != nil {
		t.Fatalf("example does not load: %v", err)
	}
	want := Default()
	want.LiveKit = devLiveKit()
	if !reflect.DeepEqual(c, want) {
		t.Errorf("example loads as\n%+v\nwant the defaults\n%+v", c, want)
	}
	data, err := os.ReadFile("recorder.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var groups map[string]map[string]any
	if err := yaml.Unmarshal(data, &groups); err != nil {
		t.Fatal(err)
	}
	for _, s := range table() {
		group, name, _ := strings.Cut(s.key, ".")
		if _, ok := groups[group][name]; !ok {
			t.Errorf("example does not set %s", s.key)
		}
		if !regexp.MustCompile(`#.*\b` + s.env + `\b`).Match(data) {
			t.Errorf("example does not name %s in a comment", s.env)
		}
	}
}

// The README's configuration table is the table of settings, rendered.
func TestREADMETable(t *testing.T) {
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n### Configuration\n")
	if !ok {
		t.Fatal("README.md has no ### Configuration section")
	}
	if end := strings.Index(section, "\n#"); end >= 0 {
		section = section[:end]
	}
	if !strings.Contains(section, "`CONFIG_FILE`") {
		t.Error("the configuration section does not mention CONFIG_FILE")
	}
	var rows []string
	for line := range strings.Lines(section) {
		if strings.HasPrefix(line, "|") {
			rows = append(rows, line)
		} else if len(rows) > 0 {
			break
		}
	}
	got, want := strings.Join(rows, ""), markdownTable()
	for _, s := range table() {
		if !strings.Contains(got, "| `"+s.env+"` |") {
			t.Errorf("README's table does not list %s", s.env)
		}
	}
	if got != want {
		t.Errorf("README's configuration table differs from the settings; want:\n%s", want)
	}
}

// markdownTable renders the settings as the README shows them.
func markdownTable() string {
	var b strings.Builder
	b.WriteString("| variable | YAML key | default | |\n|---|---|---|---|\n")
	for _, s := range table() {
		def := "`" + s.def + "`"
		switch {
		case s.required:
			def = "required"
		case s.def == "":
			def = "empty"
		}
		b.WriteString("| `" + s.env + "` | `" + s.key + "` | " + def + " | " + s.doc + " |\n")
	}
	return b.String()
}

// Every field of Config is bound by exactly one setting, whose YAML key is
// the field's path in lower_snake case.
func TestTableMirrorsStruct(t *testing.T) {
	leaves := map[string]bool{}
	ct := reflect.TypeFor[Config]()
	for i := range ct.NumField() {
		g := ct.Field(i)
		for j := range g.Type.NumField() {
			leaves[g.Name+"."+g.Type.Field(j).Name] = false
		}
	}
	seen := map[string]bool{}
	for _, s := range table() {
		if seen[s.env] || seen[s.key] {
			t.Errorf("%s (%s) is in the table twice", s.env, s.key)
		}
		seen[s.env], seen[s.key] = true, true
		changed := ""
		for _, sample := range []string{"debug", "7s", "7", "true", "on", "0.5"} {
			var c Config
			if s.bind.text(&c, sample) != nil {
				continue
			}
			changed = changedField(reflect.ValueOf(c))
			break
		}
		if changed == "" {
			t.Errorf("%s sets no field", s.env)
			continue
		}
		if done, ok := leaves[changed]; !ok || done {
			t.Errorf("%s sets %s, which is unknown or bound twice", s.env, changed)
		}
		leaves[changed] = true
		if flat(s.key) != flat(changed) {
			t.Errorf("%s: key %s does not mirror the field %s", s.env, s.key, changed)
		}
		if s.doc == "" || strings.Contains(s.doc, "\n") || strings.Contains(s.doc, "|") {
			t.Errorf("%s: doc %q is not one line of a table", s.env, s.doc)
		}
	}
	for f, bound := range leaves {
		if !bound {
			t.Errorf("field %s has no setting", f)
		}
	}
}

// flat folds a key or field path for comparison: "auto_record.ignore_identities" and
// "AutoRecord.IgnoreIdentities" are the same.
func flat(s string) string {
	return strings.ToLower(strings.NewReplacer(".", "", "_", "").Replace(s))
}

// changedField is the "Group.Field" of the one non-zero leaf of c.
func changedField(c reflect.Value) string {
	for i := range c.NumField() {
		g := c.Field(i)
		for j := range g.NumField() {
			if !g.Field(j).IsZero() {
				return c.Type().Field(i).Name + "." + g.Type().Field(j).Name
			}
		}
	}
	return ""
}
