// Package configs holds the recorder's configuration: one typed struct with
// defaults, read from environment variables and optionally overlaid by a YAML
// file, then validated so that a bad setting stops start-up with one line that
// names it. The example file beside this code (recorder.yaml) documents every
// key and is checked by the tests.
package configs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the whole configuration of the service.
type Config struct {
	// LiveKitURL is the signal URL bots connect to (ws:// or wss://).
	LiveKitURL string `yaml:"livekit_url"`
	// LiveKitHTTPURL is LiveKitURL with an http(s) scheme, for server APIs.
	LiveKitHTTPURL string `yaml:"-"`
	APIKey         string `yaml:"livekit_api_key"`
	APISecret      string `yaml:"livekit_api_secret"`

	AppHost  string     `yaml:"app_host"`
	AppPort  int        `yaml:"app_port"`
	LogLevel slog.Level `yaml:"-"`
	// LogLevelName is LOG_LEVEL as given; LogLevel is its parsed value.
	LogLevelName string `yaml:"log_level"`

	// LocalDirectory is where track files are written while recording.
	LocalDirectory string `yaml:"local_directory"`
	// FileFormat is the track container: "ogg" (Ogg Opus) or "webm".
	FileFormat string `yaml:"file_format"`
	// JitterWindow is how long a missing packet is waited for before the
	// packets after it are written (reordering).
	JitterWindow time.Duration `yaml:"jitter_window"`

	// S3: bucket and region both set turn it on; otherwise files stay in
	// LocalDirectory. Credentials come from the AWS SDK's standard chain.
	S3Bucket         string `yaml:"s3_bucket"`
	S3Region         string `yaml:"s3_region"`
	S3Directory      string `yaml:"s3_directory"` // key prefix
	S3Endpoint       string `yaml:"s3_endpoint"`
	S3ForcePathStyle bool   `yaml:"s3_force_path_style"`
	// DrainTimeout bounds how long shutdown waits for uploads.
	DrainTimeout time.Duration `yaml:"drain_timeout"`

	// Mixdown is "builtin" (ffmpeg mix of a room's tracks) or "none".
	Mixdown          string        `yaml:"mixdown"`
	MixdownDirectory string        `yaml:"mixdown_directory"` // key prefix of mixes
	MixdownFormat    string        `yaml:"mixdown_format"`    // mp3 or opus
	MixdownSettle    time.Duration `yaml:"mixdown_settle"`
	// PipelineWebhookURL, if set, receives each complete room's track list.
	PipelineWebhookURL string `yaml:"pipeline_webhook_url"`

	// AutoRecord starts recording participants on LiveKit's
	// participant_joined webhook; AutoRecordRooms (globs) limits it to
	// matching rooms, AutoRecordIgnore (globs) skips identities.
	AutoRecord bool `yaml:"auto_record"`
	// APIAuth requires a LiveKit access token with the roomRecord grant on
	// start, stop and the list. Off is for local development only.
	APIAuth bool `yaml:"-"`
	// APIAuthName is API_AUTH as given (on or off).
	APIAuthName      string   `yaml:"api_auth"`
	AutoRecordRooms  []string `yaml:"auto_record_rooms"`
	AutoRecordIgnore []string `yaml:"auto_record_ignore_identities"`

	// JoinTimeout bounds how long a start request waits for the bot to join.
	JoinTimeout time.Duration `yaml:"join_timeout"`
	// RejoinTimeout is how long a recording outlives its participant's
	// unexpected disconnect, waiting for a reconnect. A participant who leaves
	// on purpose ends the recording at once.
	RejoinTimeout time.Duration `yaml:"rejoin_timeout"`
	// ReconnectTimeout is how long recordings survive their bot losing
	// LiveKit (a server restart, a network partition): a new bot joins and
	// they go on in new files; past it they stop.
	ReconnectTimeout time.Duration `yaml:"reconnect_timeout"`
	// ShutdownTimeout bounds the graceful stop on SIGINT/SIGTERM.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
}

// Setting names, shared by the environment and error messages.
const (
	envConfigFile       = "CONFIG_FILE"
	envLiveKitURL       = "LIVEKIT_URL"
	envAPIKey           = "LIVEKIT_API_KEY"
	envAPISecret        = "LIVEKIT_API_SECRET"
	envAppHost          = "APP_HOST"
	envAppPort          = "APP_PORT"
	envLogLevel         = "LOG_LEVEL"
	envLocalDirectory   = "LOCAL_DIRECTORY"
	envFileFormat       = "FILE_FORMAT"
	envJitterWindow     = "JITTER_WINDOW"
	envS3Bucket         = "S3_BUCKET"
	envS3Region         = "S3_REGION"
	envS3Directory      = "S3_DIRECTORY"
	envS3Endpoint       = "S3_ENDPOINT"
	envS3PathStyle      = "S3_FORCE_PATH_STYLE"
	envDrainTimeout     = "DRAIN_TIMEOUT"
	envMixdown          = "MIXDOWN"
	envMixdownDir       = "MIXDOWN_DIRECTORY"
	envMixdownFormat    = "MIXDOWN_FORMAT"
	envMixdownSettle    = "MIXDOWN_SETTLE"
	envPipelineWebhook  = "PIPELINE_WEBHOOK_URL"
	envAutoRecord       = "AUTO_RECORD"
	envAPIAuth          = "API_AUTH"
	envAutoRooms        = "AUTO_RECORD_ROOMS"
	envAutoIgnore       = "AUTO_RECORD_IGNORE_IDENTITIES"
	envJoinTimeout      = "JOIN_TIMEOUT"
	envRejoinTimeout    = "REJOIN_TIMEOUT"
	envReconnectTimeout = "RECONNECT_TIMEOUT"
	envShutdownTimeout  = "SHUTDOWN_TIMEOUT"
)

// Default returns the configuration used where nothing is set.
func Default() Config {
	return Config{
		AppPort:          8000,
		LogLevelName:     "info",
		LocalDirectory:   "./recordings",
		FileFormat:       "ogg",
		JitterWindow:     60 * time.Millisecond,
		S3Directory:      "livekit",
		DrainTimeout:     60 * time.Second,
		Mixdown:          "builtin",
		MixdownFormat:    "mp3",
		MixdownSettle:    5 * time.Second,
		AutoRecord:       true,
		APIAuthName:      "on",
		MixdownDirectory: "mixdown",
		JoinTimeout:      15 * time.Second,
		RejoinTimeout:    10 * time.Second,
		ReconnectTimeout: 60 * time.Second,
		ShutdownTimeout:  30 * time.Second,
	}
}

// Load builds the configuration from defaults, then the environment (getenv),
// then the YAML file named by CONFIG_FILE if set: keys present in the file win
// over the environment. The result is validated.
func Load(getenv func(string) string) (Config, error) {
	c := Default()
	if err := c.fromEnv(getenv); err != nil {
		return Config{}, err
	}
	if path := getenv(envConfigFile); path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("%s: %w", envConfigFile, err)
		}
		if err := c.overlayYAML(data); err != nil {
			return Config{}, fmt.Errorf("%s %s: %w", envConfigFile, path, err)
		}
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

func (c *Config) fromEnv(getenv func(string) string) error {
	str := func(name string, dst *string) {
		if v := getenv(name); v != "" {
			*dst = v
		}
	}
	str(envLiveKitURL, &c.LiveKitURL)
	str(envAPIKey, &c.APIKey)
	str(envAPISecret, &c.APISecret)
	str(envAppHost, &c.AppHost)
	str(envLogLevel, &c.LogLevelName)
	str(envLocalDirectory, &c.LocalDirectory)
	str(envFileFormat, &c.FileFormat)
	str(envS3Bucket, &c.S3Bucket)
	str(envS3Region, &c.S3Region)
	str(envS3Directory, &c.S3Directory)
	str(envS3Endpoint, &c.S3Endpoint)
	str(envMixdown, &c.Mixdown)
	str(envMixdownDir, &c.MixdownDirectory)
	str(envMixdownFormat, &c.MixdownFormat)
	str(envPipelineWebhook, &c.PipelineWebhookURL)
	str(envAPIAuth, &c.APIAuthName)
	if v := getenv(envAutoRecord); v != "" {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("%s: %q is not true or false", envAutoRecord, v)
		}
		c.AutoRecord = b
	}
	if v := getenv(envAutoRooms); v != "" {
		c.AutoRecordRooms = splitList(v)
	}
	if v := getenv(envAutoIgnore); v != "" {
		c.AutoRecordIgnore = splitList(v)
	}
	if v := getenv(envS3PathStyle); v != "" {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("%s: %q is not true or false", envS3PathStyle, v)
		}
		c.S3ForcePathStyle = b
	}
	if v := getenv(envAppPort); v != "" {
		p, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("%s: %q is not a port number", envAppPort, v)
		}
		c.AppPort = p
	}
	for name, dst := range map[string]*time.Duration{
		envJoinTimeout:      &c.JoinTimeout,
		envRejoinTimeout:    &c.RejoinTimeout,
		envReconnectTimeout: &c.ReconnectTimeout,
		envShutdownTimeout:  &c.ShutdownTimeout,
		envJitterWindow:     &c.JitterWindow,
		envDrainTimeout:     &c.DrainTimeout,
		envMixdownSettle:    &c.MixdownSettle,
	} {
		if v := getenv(name); v != "" {
			d, err := time.ParseDuration(strings.TrimSpace(v))
			if err != nil {
				return fmt.Errorf("%s: %q is not a duration (for example 10s)", name, v)
			}
			*dst = d
		}
	}
	return nil
}

// fileConfig mirrors Config with pointer fields so that only keys present in
// the file override what the environment set.
type fileConfig struct {
	LiveKitURL       *string   `yaml:"livekit_url"`
	APIKey           *string   `yaml:"livekit_api_key"`
	APISecret        *string   `yaml:"livekit_api_secret"`
	AppHost          *string   `yaml:"app_host"`
	AppPort          *int      `yaml:"app_port"`
	LogLevel         *string   `yaml:"log_level"`
	LocalDirectory   *string   `yaml:"local_directory"`
	FileFormat       *string   `yaml:"file_format"`
	JitterWindow     *string   `yaml:"jitter_window"`
	S3Bucket         *string   `yaml:"s3_bucket"`
	S3Region         *string   `yaml:"s3_region"`
	S3Directory      *string   `yaml:"s3_directory"`
	S3Endpoint       *string   `yaml:"s3_endpoint"`
	S3PathStyle      *bool     `yaml:"s3_force_path_style"`
	DrainTimeout     *string   `yaml:"drain_timeout"`
	Mixdown          *string   `yaml:"mixdown"`
	MixdownDir       *string   `yaml:"mixdown_directory"`
	MixdownFormat    *string   `yaml:"mixdown_format"`
	MixdownSettle    *string   `yaml:"mixdown_settle"`
	PipelineWebhook  *string   `yaml:"pipeline_webhook_url"`
	APIAuth          *string   `yaml:"api_auth"`
	AutoRecord       *bool     `yaml:"auto_record"`
	AutoRooms        *[]string `yaml:"auto_record_rooms"`
	AutoIgnore       *[]string `yaml:"auto_record_ignore_identities"`
	JoinTimeout      *string   `yaml:"join_timeout"`
	RejoinTimeout    *string   `yaml:"rejoin_timeout"`
	ReconnectTimeout *string   `yaml:"reconnect_timeout"`
	ShutdownTimeout  *string   `yaml:"shutdown_timeout"`
}

func (c *Config) overlayYAML(data []byte) error {
	var f fileConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	// An empty file decodes to io.EOF: it simply sets nothing.
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("parse: %w", err)
	}
	set := func(src *string, dst *string) {
		if src != nil {
			*dst = *src
		}
	}
	set(f.LiveKitURL, &c.LiveKitURL)
	set(f.APIKey, &c.APIKey)
	set(f.APISecret, &c.APISecret)
	set(f.AppHost, &c.AppHost)
	set(f.LogLevel, &c.LogLevelName)
	set(f.LocalDirectory, &c.LocalDirectory)
	set(f.FileFormat, &c.FileFormat)
	set(f.S3Bucket, &c.S3Bucket)
	set(f.S3Region, &c.S3Region)
	set(f.S3Directory, &c.S3Directory)
	set(f.S3Endpoint, &c.S3Endpoint)
	set(f.Mixdown, &c.Mixdown)
	set(f.MixdownDir, &c.MixdownDirectory)
	set(f.MixdownFormat, &c.MixdownFormat)
	set(f.PipelineWebhook, &c.PipelineWebhookURL)
	set(f.APIAuth, &c.APIAuthName)
	if f.AutoRecord != nil {
		c.AutoRecord = *f.AutoRecord
	}
	if f.AutoRooms != nil {
		c.AutoRecordRooms = *f.AutoRooms
	}
	if f.AutoIgnore != nil {
		c.AutoRecordIgnore = *f.AutoIgnore
	}
	if f.S3PathStyle != nil {
		c.S3ForcePathStyle = *f.S3PathStyle
	}
	if f.AppPort != nil {
		c.AppPort = *f.AppPort
	}
	for name, p := range map[string]struct {
		src *string
		dst *time.Duration
	}{
		"join_timeout":      {f.JoinTimeout, &c.JoinTimeout},
		"rejoin_timeout":    {f.RejoinTimeout, &c.RejoinTimeout},
		"reconnect_timeout": {f.ReconnectTimeout, &c.ReconnectTimeout},
		"shutdown_timeout":  {f.ShutdownTimeout, &c.ShutdownTimeout},
		"jitter_window":     {f.JitterWindow, &c.JitterWindow},
		"drain_timeout":     {f.DrainTimeout, &c.DrainTimeout},
		"mixdown_settle":    {f.MixdownSettle, &c.MixdownSettle},
	} {
		if p.src == nil {
			continue
		}
		d, err := time.ParseDuration(*p.src)
		if err != nil {
			return fmt.Errorf("%s: %q is not a duration (for example 10s)", name, *p.src)
		}
		*p.dst = d
	}
	return nil
}

// Validate checks every setting and fills the derived fields. Its errors name
// the setting and are meant to be printed as they are.
func (c *Config) Validate() error {
	if c.LiveKitURL == "" {
		return fmt.Errorf("%s is required (the LiveKit server, for example ws://localhost:7880)", envLiveKitURL)
	}
	u, err := url.Parse(c.LiveKitURL)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%s: %q is not a URL like ws://host:7880", envLiveKitURL, c.LiveKitURL)
	}
	switch u.Scheme {
	case "ws", "http":
		u.Scheme = "http"
	case "wss", "https":
		u.Scheme = "https"
	default:
		return fmt.Errorf("%s: scheme %q is not ws, wss, http or https", envLiveKitURL, u.Scheme)
	}
	c.LiveKitHTTPURL = strings.TrimRight(u.String(), "/")
	if c.APIKey == "" {
		return fmt.Errorf("%s is required", envAPIKey)
	}
	if c.APISecret == "" {
		return fmt.Errorf("%s is required", envAPISecret)
	}
	if c.AppPort < 1 || c.AppPort > 65535 {
		return fmt.Errorf("%s: %d is not a port between 1 and 65535", envAppPort, c.AppPort)
	}
	if err := c.LogLevel.UnmarshalText([]byte(c.LogLevelName)); err != nil || !validLevel(c.LogLevelName) {
		return fmt.Errorf("%s: %q is not one of debug, info, warn, error", envLogLevel, c.LogLevelName)
	}
	if strings.TrimSpace(c.LocalDirectory) == "" {
		return fmt.Errorf("%s must not be empty", envLocalDirectory)
	}
	for name, d := range map[string]time.Duration{
		envJoinTimeout:     c.JoinTimeout,
		envShutdownTimeout: c.ShutdownTimeout,
	} {
		if d <= 0 {
			return fmt.Errorf("%s: %s must be positive", name, d)
		}
	}
	switch c.FileFormat {
	case "ogg", "webm":
	default:
		return fmt.Errorf("%s: %q is not ogg or webm", envFileFormat, c.FileFormat)
	}
	if c.JitterWindow < 0 || c.JitterWindow > time.Second {
		return fmt.Errorf("%s: %s must be between 0 and 1s", envJitterWindow, c.JitterWindow)
	}
	if (c.S3Bucket == "") != (c.S3Region == "") {
		if c.S3Bucket == "" {
			return fmt.Errorf("%s is set but %s is not: both turn S3 on", envS3Region, envS3Bucket)
		}
		return fmt.Errorf("%s is set but %s is not: both turn S3 on", envS3Bucket, envS3Region)
	}
	if c.S3Endpoint != "" {
		if u, err := url.Parse(c.S3Endpoint); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return fmt.Errorf("%s: %q is not an http(s) URL", envS3Endpoint, c.S3Endpoint)
		}
	}
	if err := checkPrefix(envS3Directory, c.S3Directory); err != nil {
		return err
	}
	switch c.Mixdown {
	case "builtin", "none":
	default:
		return fmt.Errorf("%s: %q is not builtin or none", envMixdown, c.Mixdown)
	}
	switch c.MixdownFormat {
	case "mp3", "opus":
	default:
		return fmt.Errorf("%s: %q is not mp3 or opus", envMixdownFormat, c.MixdownFormat)
	}
	if err := checkPrefix(envMixdownDir, c.MixdownDirectory); err != nil {
		return err
	}
	if md, sd := strings.Trim(c.MixdownDirectory, "/")+"/", strings.Trim(c.S3Directory, "/")+"/"; c.S3Enabled() && (sd == "/" || strings.HasPrefix(md, sd) || strings.HasPrefix(sd, md)) {
		return fmt.Errorf("%s must differ from %s so mixes never look like participant tracks", envMixdownDir, envS3Directory)
	}
	if c.PipelineWebhookURL != "" {
		if u, err := url.Parse(c.PipelineWebhookURL); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return fmt.Errorf("%s: %q is not an http(s) URL", envPipelineWebhook, c.PipelineWebhookURL)
		}
	}
	for name, globs := range map[string][]string{envAutoRooms: c.AutoRecordRooms, envAutoIgnore: c.AutoRecordIgnore} {
		for _, g := range globs {
			if _, err := path.Match(g, ""); err != nil {
				return fmt.Errorf("%s: %q is not a glob pattern", name, g)
			}
		}
	}
	switch strings.ToLower(c.APIAuthName) {
	case "on", "true":
		c.APIAuth = true
	case "off", "false":
		c.APIAuth = false
	default:
		return fmt.Errorf("%s: %q is not on or off", envAPIAuth, c.APIAuthName)
	}
	if c.DrainTimeout <= 0 || c.MixdownSettle < 0 {
		return fmt.Errorf("%s and %s must be positive", envDrainTimeout, envMixdownSettle)
	}
	if c.RejoinTimeout < 0 {
		return fmt.Errorf("%s: %s must not be negative", envRejoinTimeout, c.RejoinTimeout)
	}
	if c.ReconnectTimeout < 0 {
		return fmt.Errorf("%s: %s must not be negative", envReconnectTimeout, c.ReconnectTimeout)
	}
	return nil
}

// splitList reads a comma-separated list, trimming blanks.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// S3Enabled says whether files go to S3 (bucket and region set).
func (c Config) S3Enabled() bool { return c.S3Bucket != "" && c.S3Region != "" }

// checkPrefix accepts a key prefix of plain segments: no "..", no empty or
// dot segments, no control characters.
func checkPrefix(name, p string) error {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." || strings.ContainsAny(seg, "\\\x00") || strings.IndexFunc(seg, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
			return fmt.Errorf("%s: %q is not a clean key prefix", name, p)
		}
	}
	return nil
}

func validLevel(s string) bool {
	switch strings.ToLower(s) {
	case "debug", "info", "warn", "error":
		return true
	}
	return false
}

// ListenAddr is the address the HTTP API listens on.
func (c Config) ListenAddr() string {
	return c.AppHost + ":" + strconv.Itoa(c.AppPort)
}
