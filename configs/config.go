package configs

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the whole configuration of the service. Each field is one
// setting of the table in settings.go, which documents it.
type Config struct {
	LiveKit    LiveKit
	HTTP       HTTP
	Log        Log
	Storage    Storage
	S3         S3
	Mixdown    Mixdown
	Pipeline   Pipeline
	AutoRecord AutoRecord
	Limits     Limits
	Redis      Redis
	Fleet      Fleet
	Egress     Egress
}

// Egress is the egress worker mode: livekit-server's track egress requests
// served on its Redis.
type Egress struct {
	Worker     bool
	TrackKinds []string // "audio"
}

// LiveKit is the server the bots join and whose key pair signs and verifies
// tokens and webhooks.
type LiveKit struct {
	URL       string // ws, wss, http or https
	APIKey    string
	APISecret string
}

// HTTP is the recorder's own API.
type HTTP struct {
	Host string
	Port int
	// Auth requires a LiveKit access token with the roomRecord grant on
	// start, stop and the list.
	Auth bool
	// DebugAddress, if set, serves the runtime profiles (net/http/pprof).
	DebugAddress string
}

// Log configures the JSON logger.
type Log struct {
	Level slog.Level
}

// Storage is where and how track files are written.
type Storage struct {
	LocalDirectory string
	FileFormat     string // ogg or webm
	JitterWindow   time.Duration
	DrainTimeout   time.Duration
}

// S3 is the object store; it is on when bucket and region are both set.
type S3 struct {
	Bucket         string
	Region         string
	Directory      string // key prefix of track files
	Endpoint       string
	ForcePathStyle bool
}

// Mixdown is what runs once a room's recordings are complete.
type Mixdown struct {
	Mode        string // builtin or none
	Directory   string // key prefix of mixes
	Format      string // mp3 or opus
	Settle      time.Duration
	Concurrency int
}

// Pipeline is the webhook told about each complete room.
type Pipeline struct {
	WebhookURL string
	Key        string
	Secret     string
}

// AutoRecord is recording started by LiveKit's participant_joined webhook.
type AutoRecord struct {
	Enabled          bool
	Rooms            []string // globs; empty: every room
	IgnoreIdentities []string // globs
}

// Limits bounds waits and load.
type Limits struct {
	JoinTimeout      time.Duration
	RejoinTimeout    time.Duration
	ReconnectTimeout time.Duration
	ShutdownTimeout  time.Duration
	ArmTimeout       time.Duration
	MaxRecordings    int
	CPUGuard         float64 // share of the cores; 0: no guard
	AdaptiveProcs    bool
	LiveMaxLag       time.Duration // a live consumer further behind is closed
}

// Redis is the server instances share to run as a fleet, in the shape of
// livekit-server's own redis block: one address, Sentinels (with the
// master's name) or cluster nodes. Nothing set: the instance runs alone.
type Redis struct {
	Address            string // host:port
	Username           string
	Password           string
	DB                 int
	UseTLS             bool
	SentinelMasterName string
	SentinelAddresses  []string // host:port each
	ClusterAddresses   []string // host:port each
}

// Fleet bounds how instances sharing Redis hand work to each other.
type Fleet struct {
	LeaseTTL  time.Duration // how long a recording's claim outlives its instance
	MaxTracks int           // tracks this instance records at once; 0: TracksPerCore per core
	// CompletionWait is how long a room waits for a dead instance's files.
	CompletionWait time.Duration
	// AdvertiseURL is where the other instances reach this one's API;
	// empty: derived (AdvertisedURL).
	AdvertiseURL string
}

// configFileEnv names the optional YAML file laid over the environment.
const configFileEnv = "CONFIG_FILE"

// Default returns the configuration used where nothing is set: every
// setting's default from the table. It does not pass [Config.Validate] (the
// LiveKit settings have no default).
func Default() Config {
	var c Config
	for _, s := range table() {
		if s.def == "" {
			continue
		}
		if err := s.bind.text(&c, s.def); err != nil {
			// The defaults are constants; a test parses every one.
			panic(fmt.Sprintf("configs: default of %s: %v", s.env, err))
		}
	}
	return c
}

// Load builds the configuration from the defaults, the environment (getenv)
// and the YAML file named by CONFIG_FILE, whose keys win over the
// environment, and validates it. The error names the first setting, in
// table order, that is wrong.
func Load(getenv func(string) string) (Config, error) {
	settings := table()
	var file map[string]*yaml.Node
	path := getenv(configFileEnv)
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("%s: %w", configFileEnv, err)
		}
		if file, err = readFile(data, settings); err != nil {
			return Config{}, fmt.Errorf("%s %s: %w", configFileEnv, path, err)
		}
	}
	c := Default()
	parseErrs := make([]error, len(settings))
	for i, s := range settings {
		if n, ok := file[s.key]; ok {
			parseErrs[i] = s.fromYAML(&c, n, path)
		} else if v := getenv(s.env); v != "" {
			parseErrs[i] = s.fromText(&c, v, "")
		}
	}
	if err := c.validate(settings, parseErrs); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Validate checks every setting, in table order, and returns the first
// error. It changes nothing.
func (c Config) Validate() error {
	settings := table()
	return c.validate(settings, make([]error, len(settings)))
}

// validate reports, in table order, the first setting that did not parse
// (parseErrs, by table index) or is not valid. A setting's checks may read
// settings before it in the table, which are valid by then.
func (c Config) validate(settings []setting, parseErrs []error) error {
	for i, s := range settings {
		if parseErrs[i] != nil {
			return parseErrs[i]
		}
		if err := s.validate(c); err != nil {
			return err
		}
	}
	return nil
}

// HTTPURL is URL with an http(s) scheme (ws becomes http, wss https) and no
// trailing slash, for LiveKit's server APIs. It is empty when URL is not
// valid.
func (l LiveKit) HTTPURL() string {
	u, err := url.Parse(l.URL)
	if err != nil || u.Host == "" {
		return ""
	}
	switch u.Scheme {
	case "ws", "http":
		u.Scheme = "http"
	case "wss", "https":
		u.Scheme = "https"
	default:
		return ""
	}
	return strings.TrimRight(u.String(), "/")
}

// AdvertisedURL is where the other instances of a fleet reach this one's
// API: FLEET_ADVERTISE_URL, else http://APP_HOST:APP_PORT, with the host
// name for an APP_HOST that listens on every address.
func (c Config) AdvertisedURL() string {
	if c.Fleet.AdvertiseURL != "" {
		return strings.TrimRight(c.Fleet.AdvertiseURL, "/")
	}
	host := c.HTTP.Host
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		if h, err := os.Hostname(); err == nil && h != "" {
			host = h
		} else {
			host = "localhost"
		}
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(c.HTTP.Port))
}

// ListenAddr is the address the HTTP API listens on.
func (c Config) ListenAddr() string {
	return net.JoinHostPort(c.HTTP.Host, strconv.Itoa(c.HTTP.Port))
}

// Enabled says whether files go to S3 (bucket and region set).
func (s S3) Enabled() bool { return s.Bucket != "" && s.Region != "" }

// Enabled says fleet mode is on: an address, sentinels or cluster nodes are
// set.
func (r Redis) Enabled() bool {
	return r.Address != "" || len(r.SentinelAddresses) > 0 || len(r.ClusterAddresses) > 0
}

// SigningKeys returns the pair that signs the pipeline webhook: Key/Secret
// when set, else the LiveKit pair with shared=true (the caller logs a
// start-up warning then).
func (c Config) SigningKeys() (key, secret string, shared bool) {
	if c.Pipeline.Key != "" && c.Pipeline.Secret != "" {
		return c.Pipeline.Key, c.Pipeline.Secret, false
	}
	return c.LiveKit.APIKey, c.LiveKit.APISecret, true
}

// readFile reads a YAML configuration into its values by key
// ("group.name"). Unknown or repeated keys and groups that are not mappings
// are errors; a null value is left out, so the environment still applies.
func readFile(data []byte, settings []setting) (map[string]*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if len(doc.Content) == 0 {
		return nil, nil // empty, or only comments
	}
	root := deref(doc.Content[0])
	if isNull(root) {
		return nil, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: want a mapping of groups (livekit:, http:, ...)", root.Line)
	}
	known := make(map[string]bool, len(settings))
	groups := make(map[string]bool)
	for _, s := range settings {
		known[s.key] = true
		groups[s.group()] = true
	}
	values := make(map[string]*yaml.Node)
	seen := make(map[string]bool)
	for i := 0; i+1 < len(root.Content); i += 2 {
		g, body := root.Content[i], deref(root.Content[i+1])
		if !groups[g.Value] {
			return nil, fmt.Errorf("line %d: unknown key %q", g.Line, g.Value)
		}
		if seen[g.Value] {
			return nil, fmt.Errorf("line %d: %q is given twice", g.Line, g.Value)
		}
		seen[g.Value] = true
		if isNull(body) {
			continue
		}
		if body.Kind != yaml.MappingNode {
			return nil, fmt.Errorf("line %d: %q is a group: want its keys under it", g.Line, g.Value)
		}
		for j := 0; j+1 < len(body.Content); j += 2 {
			k, v := body.Content[j], deref(body.Content[j+1])
			key := g.Value + "." + k.Value
			if !known[key] {
				return nil, fmt.Errorf("line %d: unknown key %q", k.Line, key)
			}
			if seen[key] {
				return nil, fmt.Errorf("line %d: %q is given twice", k.Line, key)
			}
			seen[key] = true
			if !isNull(v) {
				values[key] = v
			}
		}
	}
	return values, nil
}

func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

// TracksPerCore sizes MAX_TRACKS when it is 0: what one core records with
// room to spare, from `make bench-load` on this project's machine (README,
// Capacity).
const TracksPerCore = 150

// Tracks is MAX_TRACKS, sized to cores when it is 0.
func (f Fleet) Tracks(cores int) int {
	if f.MaxTracks > 0 {
		return f.MaxTracks
	}
	return TracksPerCore * max(cores, 1)
}
