package api

import (
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The OpenAPI description stays true: every route the server registers is
// described, with its method, and nothing described is missing.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	data, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	e := New(&fakeRecorder{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	registered := map[string]bool{}
	for _, r := range e.Routes() {
		if strings.HasPrefix(r.Method, "echo_route_") || r.Method == "" {
			continue
		}
		m := strings.ToLower(r.Method)
		registered[m+" "+r.Path] = true
		if _, ok := doc.Paths[r.Path][m]; !ok {
			t.Errorf("%s %s is served but not described in openapi.yaml", r.Method, r.Path)
		}
	}
	if len(registered) < 7 {
		t.Fatalf("only %d routes seen: %v", len(registered), registered)
	}
	for path, ops := range doc.Paths {
		for m := range ops {
			if !registered[m+" "+path] {
				t.Errorf("openapi.yaml describes %s %s, which the server does not serve", strings.ToUpper(m), path)
			}
		}
	}
}

// A refused start carries Retry-After (see TestRequests); the description
// says so.
func TestOpenAPIStartUnavailableHasRetryAfter(t *testing.T) {
	data, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	type response struct {
		Ref     string         `yaml:"$ref"`
		Headers map[string]any `yaml:"headers"`
	}
	var doc struct {
		Components struct {
			Responses map[string]response `yaml:"responses"`
		} `yaml:"components"`
		Paths map[string]map[string]struct {
			Responses map[string]response `yaml:"responses"`
		} `yaml:"paths"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	r, ok := doc.Paths["/recordings/start"]["post"].Responses["503"]
	if !ok {
		t.Fatal("start's 503 is not described")
	}
	if name, isRef := strings.CutPrefix(r.Ref, "#/components/responses/"); isRef {
		r = doc.Components.Responses[name]
	}
	if _, ok := r.Headers["Retry-After"]; !ok {
		t.Errorf("start's 503 does not describe a Retry-After header: %+v", r)
	}
}
