package configs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func base() map[string]string {
	return map[string]string{
		"LIVEKIT_URL":        "ws://127.0.0.1:7880",
		"LIVEKIT_API_KEY":    "devkey",
		"LIVEKIT_API_SECRET": "secret",
	}
}

func TestLoadDefaults(t *testing.T) {
	c, err := Load(env(base()))
	if err != nil {
		t.Fatal(err)
	}
	if c.AppPort != 8000 || c.LocalDirectory != "./recordings" || c.LogLevelName != "info" {
		t.Errorf("defaults not applied: %+v", c)
	}
	if c.LiveKitHTTPURL != "http://127.0.0.1:7880" {
		t.Errorf("http url = %q", c.LiveKitHTTPURL)
	}
	if c.ListenAddr() != ":8000" {
		t.Errorf("listen addr = %q", c.ListenAddr())
	}
}

func TestLoadErrorsNameTheSetting(t *testing.T) {
	cases := []struct {
		name    string
		set     map[string]string
		unset   string
		wantSub string
	}{
		{"missing url", nil, "LIVEKIT_URL", "LIVEKIT_URL is required"},
		{"missing key", nil, "LIVEKIT_API_KEY", "LIVEKIT_API_KEY is required"},
		{"missing secret", nil, "LIVEKIT_API_SECRET", "LIVEKIT_API_SECRET is required"},
		{"bad scheme", map[string]string{"LIVEKIT_URL": "ftp://x:1"}, "", "LIVEKIT_URL"},
		{"no host", map[string]string{"LIVEKIT_URL": "localhost"}, "", "LIVEKIT_URL"},
		{"port text", map[string]string{"APP_PORT": "eighty"}, "", "APP_PORT"},
		{"port range", map[string]string{"APP_PORT": "70000"}, "", "APP_PORT"},
		{"log level", map[string]string{"LOG_LEVEL": "verbose"}, "", "LOG_LEVEL"},
		{"duration", map[string]string{"JOIN_TIMEOUT": "5"}, "", "JOIN_TIMEOUT"},
		{"negative", map[string]string{"SHUTDOWN_TIMEOUT": "-1s"}, "", "SHUTDOWN_TIMEOUT"},
		{"negative reconnect", map[string]string{"RECONNECT_TIMEOUT": "-1s"}, "", "RECONNECT_TIMEOUT"},
		{"file format", map[string]string{"FILE_FORMAT": "mp3"}, "", "FILE_FORMAT"},
		{"jitter window", map[string]string{"JITTER_WINDOW": "5s"}, "", "JITTER_WINDOW"},
		{"bucket without region", map[string]string{"S3_BUCKET": "b"}, "", "S3_REGION"},
		{"region without bucket", map[string]string{"S3_REGION": "r"}, "", "S3_BUCKET"},
		{"endpoint", map[string]string{"S3_BUCKET": "b", "S3_REGION": "r", "S3_ENDPOINT": "localhost:9000"}, "", "S3_ENDPOINT"},
		{"path style", map[string]string{"S3_FORCE_PATH_STYLE": "maybe"}, "", "S3_FORCE_PATH_STYLE"},
		{"prefix", map[string]string{"S3_DIRECTORY": "a/../b"}, "", "S3_DIRECTORY"},
		{"mixdown", map[string]string{"MIXDOWN": "auto"}, "", "MIXDOWN"},
		{"mixdown format", map[string]string{"MIXDOWN_FORMAT": "wav"}, "", "MIXDOWN_FORMAT"},
		{"same prefixes", map[string]string{"S3_BUCKET": "b", "S3_REGION": "r", "MIXDOWN_DIRECTORY": "livekit"}, "", "MIXDOWN_DIRECTORY"},
		{"nested prefixes", map[string]string{"S3_BUCKET": "b", "S3_REGION": "r", "MIXDOWN_DIRECTORY": "livekit/mix"}, "", "MIXDOWN_DIRECTORY"},
		{"auto record", map[string]string{"AUTO_RECORD": "sometimes"}, "", "AUTO_RECORD"},
		{"room glob", map[string]string{"AUTO_RECORD_ROOMS": "a,[b"}, "", "AUTO_RECORD_ROOMS"},
		{"api auth", map[string]string{"API_AUTH": "maybe"}, "", "API_AUTH"},
		{"webhook", map[string]string{"PIPELINE_WEBHOOK_URL": "ftp://x"}, "", "PIPELINE_WEBHOOK_URL"},
		{"config file", map[string]string{"CONFIG_FILE": "/nonexistent/recorder.yaml"}, "", "CONFIG_FILE"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := base()
			for k, v := range tc.set {
				m[k] = v
			}
			delete(m, tc.unset)
			_, err := Load(env(m))
			if err == nil {
				t.Fatal("expected an error")
			}
			if !strings.Contains(err.Error(), tc.wantSub) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q should name %s on one line", err, tc.wantSub)
			}
		})
	}
}

func TestLoadConversions(t *testing.T) {
	cases := map[string]string{
		"ws://h:7880":       "http://h:7880",
		"wss://lk.example/": "https://lk.example",
		"https://h":         "https://h",
	}
	for in, want := range cases {
		m := base()
		m["LIVEKIT_URL"] = in
		c, err := Load(env(m))
		if err != nil {
			t.Fatal(err)
		}
		if c.LiveKitHTTPURL != want {
			t.Errorf("%s -> %s, want %s", in, c.LiveKitHTTPURL, want)
		}
	}
}

func TestYAMLOverlaysEnvironment(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(path, []byte("app_port: 9001\nrejoin_timeout: 3s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := base()
	m["CONFIG_FILE"] = path
	m["APP_PORT"] = "9000"
	m["LOG_LEVEL"] = "debug"
	c, err := Load(env(m))
	if err != nil {
		t.Fatal(err)
	}
	if c.AppPort != 9001 {
		t.Errorf("file should override env: port %d", c.AppPort)
	}
	if c.LogLevelName != "debug" {
		t.Errorf("env should remain where the file is silent: %q", c.LogLevelName)
	}
	if c.RejoinTimeout != 3*time.Second {
		t.Errorf("rejoin timeout %s", c.RejoinTimeout)
	}

	if err := os.WriteFile(path, []byte("app_prot: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(env(m)); err == nil || !strings.Contains(err.Error(), "app_prot") {
		t.Errorf("unknown key should be refused by name, got %v", err)
	}
}

// The shipped example must load and set every key, so it stays the reference.
func TestExampleFileIsComplete(t *testing.T) {
	m := map[string]string{"CONFIG_FILE": "recorder.yaml"}
	c, err := Load(env(m))
	if err != nil {
		t.Fatalf("example does not load: %v", err)
	}
	if c.LiveKitURL == "" || c.APIKey == "" {
		t.Errorf("example lacks LiveKit settings: %+v", c)
	}
	data, err := os.ReadFile("recorder.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"livekit_url", "livekit_api_key", "livekit_api_secret", "app_host", "app_port", "log_level", "local_directory", "file_format", "jitter_window", "s3_bucket", "s3_region", "s3_directory", "s3_endpoint", "s3_force_path_style", "drain_timeout", "mixdown", "mixdown_directory", "mixdown_format", "mixdown_settle", "pipeline_webhook_url", "auto_record", "auto_record_rooms", "auto_record_ignore_identities", "api_auth", "join_timeout", "rejoin_timeout", "reconnect_timeout", "shutdown_timeout"} {
		if !strings.Contains(string(data), "\n"+key+":") {
			t.Errorf("example does not document %s", key)
		}
	}
}
