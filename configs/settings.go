package configs

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"path"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// table is every setting, in the order errors are reported and documented.
// def is the default in the environment's syntax ("" is no default); doc is
// the line the README's configuration table shows.
func table() []setting {
	return []setting{
		{env: "LIVEKIT_URL", key: "livekit.url", required: true,
			doc:  "LiveKit server the bots join: `ws://`, `wss://`, `http://` or `https://` (the http(s) form is used for server APIs)",
			bind: bind(func(c *Config) *string { return &c.LiveKit.URL }, text, liveKitURL)},
		{env: "LIVEKIT_API_KEY", key: "livekit.api_key", required: true,
			doc:  "API key of the LiveKit server; it also verifies LiveKit's webhooks and the API's access tokens",
			bind: bind(func(c *Config) *string { return &c.LiveKit.APIKey }, text)},
		{env: "LIVEKIT_API_SECRET", key: "livekit.api_secret", required: true, secret: true,
			doc:  "API secret of that key",
			bind: bind(func(c *Config) *string { return &c.LiveKit.APISecret }, text)},

		{env: "APP_HOST", key: "http.host",
			doc:  "host the HTTP API listens on; empty: every interface",
			bind: bind(func(c *Config) *string { return &c.HTTP.Host }, text)},
		{env: "APP_PORT", key: "http.port", def: "8000",
			doc:  "port of the HTTP API",
			bind: bind(func(c *Config) *int { return &c.HTTP.Port }, integer, between(1, 65535))},
		{env: "API_AUTH", key: "http.auth", def: "on",
			doc:  "`on` (or `true`): start, stop and the list need a LiveKit access token with the `roomRecord` grant; `off` leaves them open (development only)",
			bind: bind(func(c *Config) *bool { return &c.HTTP.Auth }, onOff)},

		{env: "DEBUG_ADDRESS", key: "http.debug_address",
			doc:  "`host:port` of a second listener serving Go's runtime profiles at `/debug/pprof/` (`make bench-load` reads the CPU profile there); empty: none. It has no authentication: keep it on loopback",
			bind: bind(func(c *Config) *string { return &c.HTTP.DebugAddress }, text, optional(hostPort))},

		{env: "LOG_LEVEL", key: "log.level", def: "info",
			doc:  "`debug`, `info`, `warn` or `error` (JSON logs with room, participant, track)",
			bind: bind(func(c *Config) *slog.Level { return &c.Log.Level }, level)},

		{env: "LOCAL_DIRECTORY", key: "storage.local_directory", def: "./recordings",
			doc:  "where files are written (and kept when S3 is off)",
			bind: bind(func(c *Config) *string { return &c.Storage.LocalDirectory }, text, notBlank)},
		{env: "FILE_FORMAT", key: "storage.file_format", def: "ogg",
			doc:  "`ogg` (Ogg Opus) or `webm` (Opus in WebM)",
			bind: bind(func(c *Config) *string { return &c.Storage.FileFormat }, text, oneOf("ogg", "webm"))},
		{env: "JITTER_WINDOW", key: "storage.jitter_window", def: "60ms",
			doc:  "how long a missing packet is waited for to put late ones back in order, `0` (none) to `1s`",
			bind: bind(func(c *Config) *time.Duration { return &c.Storage.JitterWindow }, duration, between(0, time.Second))},
		{env: "DRAIN_TIMEOUT", key: "storage.drain_timeout", def: "60s",
			doc:  "how long shutdown waits for uploads",
			bind: bind(func(c *Config) *time.Duration { return &c.Storage.DrainTimeout }, duration, positive)},

		{env: "S3_BUCKET", key: "s3.bucket",
			doc:  "with `S3_REGION`, stores files in S3 (credentials from the AWS SDK chain: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, profiles, roles)",
			bind: bind(func(c *Config) *string { return &c.S3.Bucket }, text)},
		{env: "S3_REGION", key: "s3.region",
			doc:  "region of the bucket; set both or neither",
			bind: bind(func(c *Config) *string { return &c.S3.Region }, text),
			also: bothOrNeither("S3_BUCKET", "S3_REGION", func(c Config) (string, string) { return c.S3.Bucket, c.S3.Region })},
		{env: "S3_DIRECTORY", key: "s3.directory", def: "livekit",
			doc:  "key prefix of track files",
			bind: bind(func(c *Config) *string { return &c.S3.Directory }, text, cleanPrefix)},
		{env: "S3_ENDPOINT", key: "s3.endpoint",
			doc:  "http(s) URL of an S3-compatible server (MinIO, R2, Versity...); empty: AWS",
			bind: bind(func(c *Config) *string { return &c.S3.Endpoint }, text, optionalHTTPURL)},
		{env: "S3_FORCE_PATH_STYLE", key: "s3.force_path_style", def: "false",
			doc:  "path-style addressing, which most S3-compatible servers need",
			bind: bind(func(c *Config) *bool { return &c.S3.ForcePathStyle }, boolean)},

		{env: "MIXDOWN", key: "mixdown.mode", def: "builtin",
			doc:  "`builtin` (ffmpeg mix of a complete room) or `none`",
			bind: bind(func(c *Config) *string { return &c.Mixdown.Mode }, text, oneOf("builtin", "none"))},
		{env: "MIXDOWN_DIRECTORY", key: "mixdown.directory", def: "mixdown",
			doc:  "key prefix of mixes; must not overlap `S3_DIRECTORY` when S3 is on",
			bind: bind(func(c *Config) *string { return &c.Mixdown.Directory }, text, cleanPrefix),
			also: mixesApart},
		{env: "MIXDOWN_FORMAT", key: "mixdown.format", def: "mp3",
			doc:  "`mp3` or `opus`",
			bind: bind(func(c *Config) *string { return &c.Mixdown.Format }, text, oneOf("mp3", "opus"))},
		{env: "MIXDOWN_SETTLE", key: "mixdown.settle", def: "5s",
			doc:  "how long a room must stay without recordings before it is complete",
			bind: bind(func(c *Config) *time.Duration { return &c.Mixdown.Settle }, duration, notNegative)},
		{env: "MIXDOWN_CONCURRENCY", key: "mixdown.concurrency", def: "2",
			doc:  "room pipelines (ffmpeg mixes) run at once; more wait their turn",
			bind: bind(func(c *Config) *int { return &c.Mixdown.Concurrency }, integer, atLeast(1))},

		{env: "PIPELINE_WEBHOOK_URL", key: "pipeline.webhook_url",
			doc:  "http(s) URL that receives each complete room's track list, signed like a LiveKit webhook; empty: none",
			bind: bind(func(c *Config) *string { return &c.Pipeline.WebhookURL }, text, optionalHTTPURL)},
		{env: "PIPELINE_WEBHOOK_KEY", key: "pipeline.key",
			doc:  "key that signs the pipeline webhook, so receivers need not hold the LiveKit secret; empty: the LiveKit pair signs it (a warning is logged)",
			bind: bind(func(c *Config) *string { return &c.Pipeline.Key }, text)},
		{env: "PIPELINE_WEBHOOK_SECRET", key: "pipeline.secret", secret: true,
			doc:  "secret of that key; set both or neither",
			bind: bind(func(c *Config) *string { return &c.Pipeline.Secret }, text),
			also: bothOrNeither("PIPELINE_WEBHOOK_KEY", "PIPELINE_WEBHOOK_SECRET", func(c Config) (string, string) { return c.Pipeline.Key, c.Pipeline.Secret })},

		{env: "AUTO_RECORD", key: "auto_record.enabled", def: "true",
			doc:  "record participants when LiveKit's `participant_joined` webhook arrives",
			bind: bind(func(c *Config) *bool { return &c.AutoRecord.Enabled }, boolean)},
		{env: "AUTO_RECORD_ROOMS", key: "auto_record.rooms",
			doc:  "comma-separated globs (`team-*`, `bot-?`, `[a-c]*`) of the rooms recorded automatically; empty: all",
			bind: bindList(func(c *Config) *[]string { return &c.AutoRecord.Rooms }, globs)},
		{env: "AUTO_RECORD_IGNORE_IDENTITIES", key: "auto_record.ignore_identities",
			doc:  "comma-separated globs of identities never recorded automatically",
			bind: bindList(func(c *Config) *[]string { return &c.AutoRecord.IgnoreIdentities }, globs)},

		{env: "JOIN_TIMEOUT", key: "limits.join_timeout", def: "15s",
			doc:  "bound on a start request's join",
			bind: bind(func(c *Config) *time.Duration { return &c.Limits.JoinTimeout }, duration, positive)},
		{env: "REJOIN_TIMEOUT", key: "limits.rejoin_timeout", def: "10s",
			doc:  "how long a dropped participant may take to reconnect",
			bind: bind(func(c *Config) *time.Duration { return &c.Limits.RejoinTimeout }, duration, notNegative)},
		{env: "RECONNECT_TIMEOUT", key: "limits.reconnect_timeout", def: "60s",
			doc:  "how long recordings survive the recorder losing LiveKit (server restart, network partition)",
			bind: bind(func(c *Config) *time.Duration { return &c.Limits.ReconnectTimeout }, duration, notNegative)},
		{env: "SHUTDOWN_TIMEOUT", key: "limits.shutdown_timeout", def: "30s",
			doc:  "bound on the graceful stop after SIGINT/SIGTERM",
			bind: bind(func(c *Config) *time.Duration { return &c.Limits.ShutdownTimeout }, duration, positive)},
		{env: "ARM_TIMEOUT", key: "limits.arm_timeout", def: "1h",
			doc:  "a recording armed with `wait_for_participant` whose participant never comes ends after this",
			bind: bind(func(c *Config) *time.Duration { return &c.Limits.ArmTimeout }, duration, positive)},
		{env: "MAX_RECORDINGS", key: "limits.max_recordings", def: "500",
			doc:  "recordings this instance runs at once; a start beyond is refused with 503",
			bind: bind(func(c *Config) *int { return &c.Limits.MaxRecordings }, integer, atLeast(1))},
		{env: "CPU_GUARD", key: "limits.cpu_guard", def: "80%",
			doc:  "share of the machine's cores the process may use (averaged over 5 s) before new starts are refused with 503 (a fleet places them elsewhere); recordings running go on; `0` turns the guard off",
			bind: bind(func(c *Config) *float64 { return &c.Limits.CPUGuard }, percent)},
		{env: "ADAPTIVE_PROCS", key: "limits.adaptive_procs", def: "on",
			doc:  "run the Go scheduler on as many processors as the load needs (each at most half busy) and keep its system monitor awake (the process starts again once with `GODEBUG=schedtrace` at its largest period, decided by the environment variable alone; see Capacity): about half the recorder's CPU per packet; `off`: Go's defaults; an operator's `GOMAXPROCS` or `schedtrace` wins",
			bind: bind(func(c *Config) *bool { return &c.Limits.AdaptiveProcs }, onOff)},
		{env: "LIVE_MAX_LAG", key: "limits.live_max_lag", def: "10s",
			doc:  "how far a live stream's consumer (`GET /recordings/live`) may fall behind before it is closed (WebSocket close code 4001); the recording never waits for it",
			bind: bind(func(c *Config) *time.Duration { return &c.Limits.LiveMaxLag }, duration, between(time.Second, 10*time.Minute))},

		// Where Redis is comes first, so the settings after it can ask
		// whether it is on.
		{env: "REDIS_ADDRESS", key: "redis.address",
			doc:  "`host:port` of Redis: set, the instances sharing it run as a fleet (livekit-server's own Redis is fine); empty, with no Sentinels or cluster nodes either: this instance runs alone",
			bind: bind(func(c *Config) *string { return &c.Redis.Address }, text, optional(hostPort))},
		{env: "REDIS_SENTINEL_MASTER_NAME", key: "redis.sentinel_master_name",
			doc:  "with `REDIS_SENTINEL_ADDRESSES`, reaches Redis through Sentinel instead of `REDIS_ADDRESS`: the name of the master they watch",
			bind: bind(func(c *Config) *string { return &c.Redis.SentinelMasterName }, text)},
		{env: "REDIS_SENTINEL_ADDRESSES", key: "redis.sentinel_addresses",
			doc:  "comma-separated `host:port` of the Sentinels; set both or neither",
			bind: bindList(func(c *Config) *[]string { return &c.Redis.SentinelAddresses }, each(hostPort)),
			also: sentinelAlone},
		{env: "REDIS_CLUSTER_ADDRESSES", key: "redis.cluster_addresses",
			doc:  "comma-separated `host:port` of Redis Cluster nodes, instead of `REDIS_ADDRESS` or Sentinel",
			bind: bindList(func(c *Config) *[]string { return &c.Redis.ClusterAddresses }, each(hostPort)),
			also: clusterAlone},
		{env: "REDIS_USERNAME", key: "redis.username",
			doc:  "Redis ACL user; empty: the default user",
			bind: bind(func(c *Config) *string { return &c.Redis.Username }, text),
			also: needsRedis("REDIS_USERNAME", func(c Config) bool { return c.Redis.Username != "" })},
		{env: "REDIS_PASSWORD", key: "redis.password", secret: true,
			doc:  "Redis password (of that user)",
			bind: bind(func(c *Config) *string { return &c.Redis.Password }, text),
			also: needsRedis("REDIS_PASSWORD", func(c Config) bool { return c.Redis.Password != "" })},
		{env: "REDIS_DB", key: "redis.db", def: "0",
			doc:  "Redis database number; every instance of the fleet uses the same; a cluster has only `0`",
			bind: bind(func(c *Config) *int { return &c.Redis.DB }, integer, atLeast(0)),
			also: redisDB},
		{env: "REDIS_USE_TLS", key: "redis.use_tls", def: "false",
			doc:  "connect to Redis (and Sentinels or cluster nodes) over TLS",
			bind: bind(func(c *Config) *bool { return &c.Redis.UseTLS }, boolean),
			also: needsRedis("REDIS_USE_TLS", func(c Config) bool { return c.Redis.UseTLS })},

		{env: "LEASE_TTL", key: "fleet.lease_ttl", def: "5s",
			doc:  "in a fleet: how long a recording's claim outlives its instance (a crash, a lost Redis) before it is free again, `1s` to `1m`",
			bind: bind(func(c *Config) *time.Duration { return &c.Fleet.LeaseTTL }, duration, between(time.Second, time.Minute))},
		{env: "MAX_TRACKS", key: "fleet.max_tracks", def: "0",
			doc:  "tracks this instance records at once, alone or in a fleet; a start beyond is refused with 503 and `Retry-After` (a fleet sends it to an instance with room); `0`: sized to the machine, " + strconv.Itoa(TracksPerCore) + " per core (see Capacity)",
			bind: bind(func(c *Config) *int { return &c.Fleet.MaxTracks }, integer, atLeast(0))},
		{env: "COMPLETION_WAIT", key: "fleet.completion_wait", def: "15m",
			doc:  "in a fleet: how long a room's completion waits for files still on an instance that died; then it completes without them, lists them as missing, and a `recordings_updated` event carries each that arrives later, `0s` to `24h`",
			bind: bind(func(c *Config) *time.Duration { return &c.Fleet.CompletionWait }, duration, between(0, 24*time.Hour))},
		{env: "FLEET_ADVERTISE_URL", key: "fleet.advertise_url",
			doc:  "in a fleet: where the other instances reach this one's API, for live streams asked of an instance that does not record the participant (they are forwarded); empty: `http://APP_HOST:APP_PORT`, with the host's name when `APP_HOST` listens on every address",
			bind: bind(func(c *Config) *string { return &c.Fleet.AdvertiseURL }, text, optionalHTTPURL)},
		{env: "EGRESS_WORKER", key: "egress.worker", def: "false",
			doc:  "serve livekit-server's track egress requests (Auto Track Egress, StartTrackEgress) for Opus audio, untranscoded, on its Redis (`REDIS_*`, which it needs); video and composites are left to livekit/egress",
			bind: bind(func(c *Config) *bool { return &c.Egress.Worker }, boolean),
			also: func(c Config) error {
				if c.Egress.Worker && !c.Redis.Enabled() {
					return errors.New("EGRESS_WORKER needs livekit-server's Redis: set REDIS_ADDRESS (or Sentinels, or cluster nodes)")
				}

				return nil
			}},
		{env: "EGRESS_WORKER_TRACK_KINDS", key: "egress.track_kinds", def: "audio",
			doc:  "in egress worker mode, the kinds of track egress claimed: `audio` (video, reserved for later, is left to livekit/egress)",
			bind: bindList(func(c *Config) *[]string { return &c.Egress.TrackKinds }, onlyAudio)},
	}
}

// setting is one entry of the table.
type setting struct {
	env      string // environment variable, which also names the setting in errors
	key      string // YAML key, "group.name"
	def      string // default, in the environment's syntax; "" is none
	doc      string
	required bool // the zero value is refused
	secret   bool // the value never appears in an error
	bind     binding
	also     func(Config) error // a check across settings; only reads earlier ones
}

// binding ties a setting to its typed field in Config.
type binding struct {
	text   func(c *Config, s string) error   // sets the field from an env value or a YAML scalar
	items  func(c *Config, v []string) error // sets it from a YAML sequence; nil for single values
	check  func(c Config) error              // validates the field's value
	isZero func(c Config) bool
}

// bind makes the binding of a field of type T: parse reads one value's
// text, checks validate the typed value (their errors follow the setting's
// name).
func bind[T any](field func(*Config) *T, parse func(string) (T, error), checks ...func(T) error) binding {
	return binding{
		text: func(c *Config, s string) error {
			v, err := parse(s)
			if err != nil {
				return err
			}
			*field(c) = v
			return nil
		},
		check: func(c Config) error {
			v := *field(&c)
			for _, check := range checks {
				if err := check(v); err != nil {
					return err
				}
			}
			return nil
		},
		isZero: func(c Config) bool { return reflect.ValueOf(field(&c)).Elem().IsZero() },
	}
}

// bindList binds a list: comma-separated in the environment, a sequence in
// YAML.
func bindList(field func(*Config) *[]string, checks ...func([]string) error) binding {
	b := bind(field, splitList, checks...)
	b.items = func(c *Config, v []string) error {
		*field(c) = nil
		if len(v) > 0 {
			*field(c) = v
		}
		return nil
	}
	return b
}

func (s setting) group() string { g, _, _ := strings.Cut(s.key, "."); return g }

// fromText sets the setting from text (an env value, or a YAML scalar whose
// place is where).
func (s setting) fromText(c *Config, v, where string) error {
	if err := s.bind.text(c, v); err != nil {
		shown := strconv.Quote(v)
		if s.secret {
			shown = "the value"
		}
		return fmt.Errorf("%s%s: %s %w", s.env, where, shown, err)
	}
	return nil
}

// fromYAML sets the setting from its node in the file at path.
func (s setting) fromYAML(c *Config, n *yaml.Node, file string) error {
	where := fmt.Sprintf(" (%s, %s line %d)", s.key, file, n.Line)
	switch {
	case n.Kind == yaml.ScalarNode && s.bind.items == nil:
		return s.fromText(c, n.Value, where)
	case n.Kind == yaml.SequenceNode && s.bind.items != nil:
		items := make([]string, 0, len(n.Content))
		for _, item := range n.Content {
			if item = deref(item); item.Kind != yaml.ScalarNode {
				return fmt.Errorf("%s%s: want a list of strings", s.env, where)
			}
			items = append(items, item.Value)
		}
		return s.bind.items(c, items)
	case s.bind.items != nil:
		return fmt.Errorf("%s%s: want a list ([a, b])", s.env, where)
	default:
		return fmt.Errorf("%s%s: want one value, not a list or mapping", s.env, where)
	}
}

// validate checks the setting's value in c.
func (s setting) validate(c Config) error {
	if s.required && s.bind.isZero(c) {
		return fmt.Errorf("%s is required", s.env)
	}
	if err := s.bind.check(c); err != nil {
		return fmt.Errorf("%s: %w", s.env, err)
	}
	if s.also != nil {
		return s.also(c)
	}
	return nil
}

// Parsers: their errors follow the value, as in `"x" is not a number`.

func text(s string) (string, error) { return s, nil }

func integer(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, errors.New("is not a whole number")
	}
	return n, nil
}

func boolean(s string) (bool, error) {
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	if err != nil {
		return false, errors.New("is not true or false")
	}
	return b, nil
}

// percent reads a share as "80%" or "0.8", from 0 to 1.
func percent(s string) (float64, error) {
	s = strings.TrimSpace(s)
	scale := 1.0
	if v, ok := strings.CutSuffix(s, "%"); ok {
		s, scale = strings.TrimSpace(v), 100
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f/scale < 0 || f/scale > 1 {
		return 0, errors.New("is not a share from 0 to 100% (for example 80% or 0.8)")
	}
	return f / scale, nil
}

func onOff(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "on", "true":
		return true, nil
	case "off", "false":
		return false, nil
	}
	return false, errors.New("is not on or off")
}

func duration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, errors.New("is not a duration (for example 10s)")
	}
	return d, nil
}

func level(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, errors.New("is not one of debug, info, warn, error")
}

// splitList reads a comma-separated list, trimming blanks.
func splitList(v string) ([]string, error) {
	var out []string
	for s := range strings.SplitSeq(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out, nil
}

// Checks of one value: their errors follow the setting's name.

func between[T cmp.Ordered](lo, hi T) func(T) error {
	return func(v T) error {
		if v < lo || v > hi {
			return fmt.Errorf("%v is not between %v and %v", v, lo, hi)
		}
		return nil
	}
}

func atLeast(lo int) func(int) error {
	return func(v int) error {
		if v < lo {
			return fmt.Errorf("%d must be at least %d", v, lo)
		}
		return nil
	}
}

func positive(d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("%s must be more than 0", d)
	}
	return nil
}

func notNegative(d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("%s must not be negative", d)
	}
	return nil
}

func notBlank(s string) error {
	if strings.TrimSpace(s) == "" {
		return errors.New("must not be empty")
	}
	return nil
}

func oneOf(choices ...string) func(string) error {
	return func(s string) error {
		for _, c := range choices {
			if s == c {
				return nil
			}
		}
		return fmt.Errorf("%q is not %s", s, strings.Join(choices, " or "))
	}
}

func liveKitURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q is not a URL like ws://host:7880", s)
	}
	switch u.Scheme {
	case "ws", "wss", "http", "https":
		return nil
	}
	return fmt.Errorf("scheme %q is not ws, wss, http or https", u.Scheme)
}

func optionalHTTPURL(s string) error {
	if s == "" {
		return nil
	}
	if u, err := url.Parse(s); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("%q is not an http(s) URL", s)
	}
	return nil
}

// cleanPrefix accepts a key prefix of plain segments: no "..", no empty or
// dot segments, no backslashes or control characters. Slashes around it are
// ignored; empty is the root.
func cleanPrefix(p string) error {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" || seg == "." || seg == ".." || strings.ContainsAny(seg, "\\") ||
			strings.IndexFunc(seg, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
			return fmt.Errorf("%q is not a clean key prefix", p)
		}
	}
	return nil
}

// optional lets the empty value through check.
func optional(check func(string) error) func(string) error {
	return func(s string) error {
		if s == "" {
			return nil
		}
		return check(s)
	}
}

// each applies check to every item of a list.
func each(check func(string) error) func([]string) error {
	return func(items []string) error {
		for _, s := range items {
			if err := check(s); err != nil {
				return err
			}
		}
		return nil
	}
}

// hostPort accepts host:port with a host name or IP and a numeric port
// 1..65535, as Redis clients dial it. An address holding user info
// (user:password@host) is refused without being shown, since it may carry
// the password.
func hostPort(addr string) error {
	if strings.Contains(addr, "@") {
		return errors.New("holds user info (user:password@): give host:port, and the credentials in REDIS_USERNAME and REDIS_PASSWORD")
	}
	shown := strconv.Quote(addr)
	host, port, err := net.SplitHostPort(addr)
	if err != nil || !hostName(host) {
		return fmt.Errorf("%s is not host:port", shown)
	}
	if n, err := strconv.Atoi(port); err != nil || strings.Trim(port, "0123456789") != "" || n < 1 || n > 65535 {
		return fmt.Errorf("%s: port %q is not a number from 1 to 65535", shown, port)
	}
	return nil
}

// hostName accepts an IP address or a DNS name (letters, digits, '.', '-',
// '_').
func hostName(h string) bool {
	if h == "" {
		return false
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	return strings.IndexFunc(h, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_')
	}) < 0
}

func globs(patterns []string) error {
	for _, g := range patterns {
		if _, err := path.Match(g, ""); err != nil {
			return fmt.Errorf("%q is not a glob pattern", g)
		}
	}
	return nil
}

// onlyAudio accepts the track kinds the egress worker records now.
func onlyAudio(kinds []string) error {
	for _, k := range kinds {
		if k != "audio" {
			return fmt.Errorf("%q: only audio track egress is served yet (video is left to livekit/egress)", k)
		}
	}
	return nil
}

// Checks across settings: their errors name every setting involved.

func bothOrNeither(first, second string, get func(Config) (string, string)) func(Config) error {
	return func(c Config) error {
		a, b := get(c)
		switch {
		case a != "" && b == "":
			return fmt.Errorf("%s is set but %s is not: set both or neither", first, second)
		case a == "" && b != "":
			return fmt.Errorf("%s is set but %s is not: set both or neither", second, first)
		}
		return nil
	}
}

// mixesApart keeps mixes out of the track prefix (and tracks out of the
// mix prefix) in the bucket, so a consumer listing one never sees the other.
func mixesApart(c Config) error {
	if !c.S3.Enabled() {
		return nil
	}
	md, sd := strings.Trim(c.Mixdown.Directory, "/")+"/", strings.Trim(c.S3.Directory, "/")+"/"
	if md == "/" || sd == "/" || strings.HasPrefix(md, sd) || strings.HasPrefix(sd, md) {
		return fmt.Errorf("MIXDOWN_DIRECTORY must differ from S3_DIRECTORY (neither empty nor inside the other) so mixes never look like participant tracks")
	}
	return nil
}

// sentinelAlone pairs the Sentinels with their master's name, and keeps
// them apart from REDIS_ADDRESS: the Sentinels tell where the master is.
func sentinelAlone(c Config) error {
	pair := bothOrNeither("REDIS_SENTINEL_MASTER_NAME", "REDIS_SENTINEL_ADDRESSES", func(c Config) (string, string) {
		return c.Redis.SentinelMasterName, strings.Join(c.Redis.SentinelAddresses, ",")
	})
	if err := pair(c); err != nil {
		return err
	}
	if len(c.Redis.SentinelAddresses) > 0 && c.Redis.Address != "" {
		return errors.New("REDIS_SENTINEL_ADDRESSES cannot be combined with REDIS_ADDRESS: the Sentinels tell where the master is, so for Sentinel drop REDIS_ADDRESS")
	}
	return nil
}

// clusterAlone keeps a cluster's nodes the only way to Redis: a client
// reaches a cluster, a Sentinel-watched master or one server, never a mix.
func clusterAlone(c Config) error {
	if len(c.Redis.ClusterAddresses) == 0 {
		return nil
	}
	var with, drop []string
	if c.Redis.Address != "" {
		with, drop = append(with, "REDIS_ADDRESS"), append(drop, "REDIS_ADDRESS")
	}
	if len(c.Redis.SentinelAddresses) > 0 || c.Redis.SentinelMasterName != "" {
		with = append(with, "Sentinel")
		drop = append(drop, "REDIS_SENTINEL_ADDRESSES", "REDIS_SENTINEL_MASTER_NAME")
	}
	if len(with) == 0 {
		return nil
	}
	return fmt.Errorf("REDIS_CLUSTER_ADDRESSES cannot be combined with %s: for a cluster, drop %s",
		strings.Join(with, " or "), joinAnd(drop))
}

// redisDB refuses a database a cluster does not have, or one chosen with
// Redis off.
func redisDB(c Config) error {
	if c.Redis.DB != 0 && len(c.Redis.ClusterAddresses) > 0 {
		return fmt.Errorf("REDIS_DB: %d is not 0, the only database of a Redis Cluster (REDIS_CLUSTER_ADDRESSES)", c.Redis.DB)
	}
	return needsRedis("REDIS_DB", func(c Config) bool { return c.Redis.DB != 0 })(c)
}

// needsRedis refuses a Redis setting that is set while Redis is off, where
// it would be ignored without a word.
func needsRedis(name string, set func(Config) bool) func(Config) error {
	return func(c Config) error {
		if set(c) && !c.Redis.Enabled() {
			return fmt.Errorf("%s is set without REDIS_ADDRESS (or REDIS_SENTINEL_ADDRESSES, REDIS_CLUSTER_ADDRESSES): set one to run in a fleet, or unset %s", name, name)
		}
		return nil
	}
}

// joinAnd joins names as "a", "a and b", "a, b and c".
func joinAnd(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}
