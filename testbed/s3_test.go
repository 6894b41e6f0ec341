package testbed

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
)

func startS3(t *testing.T) *S3 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startupTimeout)
	defer cancel()
	s, err := StartS3(ctx)
	if err != nil {
		t.Fatalf("StartS3: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close s3: %v", err)
		}
	})
	return s
}

// TestS3StopStart checks what failure tests rely on: a stopped store refuses
// connections, and Start brings it back on the same endpoint with its data.
func TestS3StopStart(t *testing.T) {
	s := startS3(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if !strings.HasPrefix(s.Endpoint, "http://127.0.0.1:") {
		t.Fatalf("endpoint %s is not on loopback", s.Endpoint)
	}
	c := s.client()
	body := []byte("hello, bucket")
	key := "livekit/room/a b-ü-🎙.ogg"
	if _, err := c.PutObject(ctx, &awss3.PutObjectInput{
		Bucket: &s.Bucket, Key: &key, Body: bytes.NewReader(body),
	}); err != nil {
		t.Fatalf("put: %v", err)
	}
	// The posix backend keeps the object as a file under Dir/Bucket.
	if b, err := os.ReadFile(filepath.Join(s.Dir, s.Bucket, filepath.FromSlash(key))); err != nil || !bytes.Equal(b, body) {
		t.Fatalf("object file: %q, %v", b, err)
	}

	if err := s.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	_, err := c.ListBuckets(ctx, &awss3.ListBucketsInput{})
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("list buckets while stopped: %v, want connection refused", err)
	}

	start := time.Now()
	if err := s.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Logf("restart took %v", time.Since(start).Round(time.Millisecond))
	if err := s.Start(ctx); err == nil {
		t.Fatal("second Start succeeded")
	}
	out, err := c.GetObject(ctx, &awss3.GetObjectInput{Bucket: &s.Bucket, Key: &key})
	if err != nil {
		t.Fatalf("get after restart: %v", err)
	}
	got, err := io.ReadAll(out.Body)
	out.Body.Close()
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("get after restart: %q, %v", got, err)
	}

	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if _, err := os.Stat(s.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("dir after close: %v", err)
	}
}

func TestS3Env(t *testing.T) {
	s := &S3{Endpoint: "http://127.0.0.1:1", Region: "r", AccessKey: "ak", SecretKey: "sk", Bucket: "b"}
	env := s.Env()
	for _, want := range []string{
		"S3_BUCKET=b", "S3_REGION=r", "S3_ENDPOINT=http://127.0.0.1:1", "S3_FORCE_PATH_STYLE=true",
		"AWS_ACCESS_KEY_ID=ak", "AWS_SECRET_ACCESS_KEY=sk", "AWS_EC2_METADATA_DISABLED=true",
	} {
		if !slices.Contains(env, want) {
			t.Errorf("Env() lacks %s: %v", want, env)
		}
	}
}

// Two stores run side by side without sharing anything.
func TestStartS3Twice(t *testing.T) {
	a, b := startS3(t), startS3(t)
	if a.Endpoint == b.Endpoint || a.Dir == b.Dir || a.AccessKey == b.AccessKey {
		t.Fatalf("stores share endpoint, dir or key: %+v %+v", a, b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, s := range []*S3{a, b} {
		out, err := s.client().ListBuckets(ctx, &awss3.ListBucketsInput{})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Buckets) != 1 || aws.ToString(out.Buckets[0].Name) != s.Bucket {
			t.Fatalf("buckets on %s: %+v", s.Endpoint, out.Buckets)
		}
	}
}
