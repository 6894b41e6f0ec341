package s3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/trackrec/trackrec/testbed"
	"github.com/trackrec/trackrec/uploader"
)

// installTimeout covers a first-time versitygw build (about 70 s).
const installTimeout = 5 * time.Minute

func TestMain(m *testing.M) {
	// Keep the developer's AWS setup out, and the SDK off the network
	// except for the loopback store.
	for _, k := range []string{
		"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
		"AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL",
		"AWS_ENDPOINT_URL_S3", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
	} {
		os.Unsetenv(k)
	}
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	os.Setenv("AWS_CONFIG_FILE", os.DevNull)
	os.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	os.Exit(m.Run())
}

func startS3(t *testing.T) *testbed.S3 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), installTimeout)
	defer cancel()
	s, err := testbed.StartS3(ctx)
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

// testClient is a Client on s with its credentials; hook, if set, sees
// every HTTP exchange.
func testClient(t *testing.T, s *testbed.S3, partSize int64, hook hookFunc) *Client {
	t.Helper()
	c, err := newClient(context.Background(), Config{
		Bucket: s.Bucket, Region: s.Region, Endpoint: s.Endpoint,
		ForcePathStyle: true, PartSize: partSize,
	}, func(o *awss3.Options) {
		o.Credentials = credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, "")
		if hook != nil {
			o.HTTPClient = &hookClient{next: o.HTTPClient, hook: hook}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// hookFunc runs around one HTTP exchange: it may act before sending (when
// resp and err are both nil, returning nothing to proceed) or replace the
// result after.
type hookFunc func(req *http.Request, resp *http.Response, err error) (*http.Response, error)

type hookClient struct {
	next interface {
		Do(*http.Request) (*http.Response, error)
	}
	hook hookFunc
}

func (h *hookClient) Do(req *http.Request) (*http.Response, error) {
	if resp, err := h.hook(req, nil, nil); resp != nil || err != nil {
		return resp, err
	}
	resp, err := h.next.Do(req)
	return h.hook(req, resp, err)
}

func isUploadPart(r *http.Request) bool {
	return r.Method == http.MethodPut && r.URL.Query().Has("partNumber")
}

func isCreateMultipart(r *http.Request) bool {
	return r.Method == http.MethodPost && r.URL.Query().Has("uploads")
}

// writeFile writes n pseudo-random bytes and returns the path and SHA-256.
func writeFile(t *testing.T, n int, seed uint64) (string, []byte) {
	t.Helper()
	b := make([]byte, n)
	rng := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	_, _ = rng.Read(b)
	p := filepath.Join(t.TempDir(), "f.ogg")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return p, sum[:]
}

func get(t *testing.T, c *Client, key string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := c.Get(context.Background(), key, &buf); err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	return buf.Bytes()
}

func sameAsFile(t *testing.T, c *Client, key, path string) {
	t.Helper()
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := get(t, c, key); !bytes.Equal(got, want) {
		t.Fatalf("%s: got %d bytes, want %d (identical: false)", key, len(got), len(want))
	}
}

func head(t *testing.T, c *Client, key string) *awss3.HeadObjectOutput {
	t.Helper()
	h, err := c.api.HeadObject(context.Background(), &awss3.HeadObjectInput{
		Bucket: &c.bucket, Key: &key, ChecksumMode: types.ChecksumModeEnabled,
	})
	if err != nil {
		t.Fatalf("head %s: %v", key, err)
	}
	return h
}

func assertAbsent(t *testing.T, c *Client, key string) {
	t.Helper()
	err := c.Get(context.Background(), key, io.Discard)
	if !errors.Is(err, uploader.ErrNotFound) {
		t.Fatalf("get %s: %v, want ErrNotFound", key, err)
	}
}

func assertNoUploads(t *testing.T, c *Client) {
	t.Helper()
	out, err := c.api.ListMultipartUploads(context.Background(), &awss3.ListMultipartUploadsInput{Bucket: &c.bucket})
	if err != nil {
		t.Fatalf("list multipart uploads: %v", err)
	}
	if len(out.Uploads) > 0 {
		t.Fatalf("%d multipart uploads left, first %s %s", len(out.Uploads), aws.ToString(out.Uploads[0].Key), aws.ToString(out.Uploads[0].UploadId))
	}
}

func TestS3PutGetList(t *testing.T) {
	t.Parallel()
	s := startS3(t)
	c := testClient(t, s, 0, nil)
	ctx := context.Background()

	keys := []struct {
		key, contentType string
		size             int
	}{
		{"livekit/room/alice-2026-11-22T010203-TR_a.ogg", "audio/ogg", 3000},
		{"livekit/room/alice-2026-11-22T010203-TR_a.json", "application/json", 200},
		{"livekit/room/bob-2026-11-22T010204-TR_b.webm", "audio/webm", 0},
		{"livekit/room/with space-2026-11-22T010203-TR_c.ogg", "audio/ogg", 10},
		{"livekit/room/Андрей-2026-11-22T010203-TR_d.ogg", "audio/ogg", 10},
		{"livekit/room/🎙️ emoji 😀-2026-11-22T010203-TR_e.ogg", "audio/ogg", 10},
		{"livekit/room/odd%20+&=?#;@$,chars-TR_f.ogg", "", 10},
		{"livekit/other/x.ogg", "audio/ogg", 10},
	}
	for i, k := range keys {
		path, sum := writeFile(t, k.size, uint64(i))
		if err := c.Put(ctx, k.key, path, k.contentType, sum); err != nil {
			t.Fatalf("put %s: %v", k.key, err)
		}
		sameAsFile(t, c, k.key, path)
		h := head(t, c, k.key)
		if k.contentType != "" && aws.ToString(h.ContentType) != k.contentType {
			t.Errorf("%s: content type %q, want %q", k.key, aws.ToString(h.ContentType), k.contentType)
		}
		if got := aws.ToString(h.ChecksumSHA256); got != b64(sum) {
			t.Errorf("%s: stored SHA-256 %q, want %q", k.key, got, b64(sum))
		}
	}

	for _, tc := range []struct {
		prefix string
		n      int
	}{
		{"livekit/room/", 7},
		{"livekit/room/alice-", 2},
		{"livekit/o", 1},
		{"livekit/room/🎙", 1},
		{"livekit/none/", 0},
		{"", len(keys)},
	} {
		var want []string
		for _, k := range keys {
			if strings.HasPrefix(k.key, tc.prefix) {
				want = append(want, k.key)
			}
		}
		slices.Sort(want)
		got, err := c.List(ctx, tc.prefix)
		if err != nil {
			t.Fatalf("list %q: %v", tc.prefix, err)
		}
		if len(got) != tc.n || !slices.Equal(got, want) {
			t.Errorf("list %q:\n got %q\nwant %q", tc.prefix, got, want)
		}
	}

	assertAbsent(t, c, "livekit/room/missing.ogg")
	if err := c.Put(ctx, "livekit/../x", os.DevNull, "", make([]byte, 32)); err == nil {
		t.Error("put with .. key succeeded")
	}
	if got := c.String(); got != "s3://"+s.Bucket+" at "+s.Endpoint {
		t.Errorf("String() = %q", got)
	}
}

// TestS3PutMultipart uploads 20 MB in 5 MiB parts: four parts, each verified
// by the store, and a composite checksum that matches the file's parts.
func TestS3PutMultipart(t *testing.T) {
	t.Parallel()
	s := startS3(t)
	var parts sync.Map
	c := testClient(t, s, 5<<20, func(r *http.Request, resp *http.Response, err error) (*http.Response, error) {
		if resp != nil && isUploadPart(r) {
			parts.Store(r.URL.Query().Get("partNumber"),
				[2]string{r.Header.Get("X-Amz-Checksum-Sha256"), resp.Header.Get("X-Amz-Checksum-Sha256")})
		}
		return resp, err
	})
	path, sum := writeFile(t, 20_000_000, 1)
	key := "livekit/room/big-2026-11-22T010203-TR_big.ogg"

	start := time.Now()
	if err := c.Put(context.Background(), key, path, "audio/ogg", sum); err != nil {
		t.Fatalf("put: %v", err)
	}
	t.Logf("20 MB multipart put: %v", time.Since(start).Round(time.Millisecond))
	sameAsFile(t, c, key, path)

	n := 0
	parts.Range(func(k, v any) bool {
		n++
		// The store echoes the checksum it verified; Put compares it with
		// the file's part hash.
		if sent := v.([2]string); sent[0] == "" || sent[1] != sent[0] {
			t.Errorf("part %s: sent x-amz-checksum-sha256 %q, store answered %q", k, sent[0], sent[1])
		}
		return true
	})
	if n != 4 {
		t.Errorf("%d parts sent, want 4", n)
	}
	h := head(t, c, key)
	t.Logf("stored checksum %s (%s)", aws.ToString(h.ChecksumSHA256), h.ChecksumType)
	if !strings.HasSuffix(aws.ToString(h.ChecksumSHA256), "-4") {
		t.Errorf("stored checksum %q is not a 4-part composite", aws.ToString(h.ChecksumSHA256))
	}
	assertNoUploads(t, c)
}

// A wrong SHA-256 never becomes an object: for a single PUT the store
// refuses the body; for multipart Put refuses before creating anything.
func TestS3PutWrongChecksum(t *testing.T) {
	t.Parallel()
	s := startS3(t)
	for _, tc := range []struct {
		name      string
		size      int
		fromStore bool
	}{
		{"single", 100_000, true},
		{"empty", 0, true},
		{"multipart", 12_000_000, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sent bool
			c := testClient(t, s, 5<<20, func(r *http.Request, resp *http.Response, err error) (*http.Response, error) {
				if resp == nil && err == nil && r.Method == http.MethodPut {
					sent = true
				}
				return resp, err
			})
			path, sum := writeFile(t, tc.size, 2)
			sum[0] ^= 1
			key := "livekit/room/wrong-" + tc.name + ".ogg"
			err := c.Put(context.Background(), key, path, "audio/ogg", sum)
			if err == nil {
				t.Fatal("put with a wrong SHA-256 succeeded")
			}
			t.Logf("error: %v", err)
			if code := apiCode(err); tc.fromStore && code == "" {
				t.Errorf("error does not come from the store: %v", err)
			} else if tc.fromStore {
				t.Logf("store error code %s", code)
			}
			if sent != tc.fromStore {
				t.Errorf("body sent: %v, want %v", sent, tc.fromStore)
			}
			assertAbsent(t, c, key)
			assertNoUploads(t, c)
		})
	}
}

// A body corrupted on the way is refused by the store (for plain HTTP the
// SigV4 payload hash catches it first, for HTTPS the checksum trailer), and
// nothing is left behind.
func TestS3PutCorruptedInTransit(t *testing.T) {
	t.Parallel()
	s := startS3(t)
	for _, tc := range []struct {
		name   string
		size   int
		target func(*http.Request) bool
	}{
		{"single", 1_000_000, func(r *http.Request) bool { return r.Method == http.MethodPut }},
		{"multipart", 12_000_000, func(r *http.Request) bool {
			return isUploadPart(r) && r.URL.Query().Get("partNumber") == "2"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var once sync.Once
			c := testClient(t, s, 5<<20, func(r *http.Request, resp *http.Response, err error) (*http.Response, error) {
				if resp == nil && err == nil && tc.target(r) {
					once.Do(func() {
						b, err := io.ReadAll(r.Body)
						if err != nil || len(b) == 0 {
							t.Errorf("read body: %d bytes, %v", len(b), err)
							return
						}
						b[len(b)/2] ^= 0x40
						r.Body = io.NopCloser(bytes.NewReader(b))
					})
				}
				return resp, err
			})
			path, sum := writeFile(t, tc.size, 7)
			key := "livekit/room/corrupt-" + tc.name + ".ogg"
			err := c.Put(context.Background(), key, path, "audio/ogg", sum)
			if err == nil {
				t.Fatal("put of a corrupted body succeeded")
			}
			t.Logf("store error code %s", apiCode(err))
			assertAbsent(t, c, key)
			assertNoUploads(t, c)
		})
	}
}

// verifyByReading is the check for stores that report no checksum.
func TestS3VerifyByReading(t *testing.T) {
	t.Parallel()
	s := startS3(t)
	c := testClient(t, s, 0, nil)
	ctx := context.Background()
	path, sum := writeFile(t, 100_000, 8)
	key := "livekit/room/readback.ogg"
	if err := c.Put(ctx, key, path, "", sum); err != nil {
		t.Fatal(err)
	}
	if err := c.verifyByReading(ctx, key, expected{size: 100_000, full: b64(sum)}); err != nil {
		t.Fatalf("matching object: %v", err)
	}
	other := sha256.Sum256(nil)
	if err := c.verifyByReading(ctx, key, expected{size: 100_000, full: b64(other[:])}); err == nil {
		t.Fatal("mismatching object verified")
	}
	// A mismatch removes the object rather than leave it for consumers.
	assertAbsent(t, c, key)
}

// TestS3PutStoreDown stops the store while a Put runs and starts it again
// about 5 s later: the Put's retries outlast the outage.
func TestS3PutStoreDown(t *testing.T) {
	t.Parallel()
	const outage = 5 * time.Second
	for _, tc := range []struct {
		name string
		size int
		// stopOn picks the request before which the store goes down.
		stopOn func(*http.Request) bool
	}{
		{"single", 1_000_000, func(r *http.Request) bool { return r.Method == http.MethodPut }},
		{"multipart", 12_000_000, isUploadPart},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startS3(t)
			var once sync.Once
			restarted := make(chan error, 1)
			c := testClient(t, s, 5<<20, func(r *http.Request, resp *http.Response, err error) (*http.Response, error) {
				if resp == nil && err == nil && tc.stopOn(r) {
					once.Do(func() {
						if err := s.Stop(); err != nil {
							t.Errorf("stop: %v", err)
						}
						time.AfterFunc(outage, func() { restarted <- s.Start(context.Background()) })
					})
				}
				return resp, err
			})
			path, sum := writeFile(t, tc.size, 3)
			key := "livekit/room/outage-" + tc.name + ".ogg"
			start := time.Now()
			err := c.Put(context.Background(), key, path, "audio/ogg", sum)
			took := time.Since(start)
			if err := <-restarted; err != nil {
				t.Fatalf("restart: %v", err)
			}
			if err != nil {
				t.Fatalf("put across a %v outage: %v", outage, err)
			}
			t.Logf("put across a %v outage took %v", outage, took.Round(time.Millisecond))
			if took < outage {
				t.Errorf("put took %v, less than the outage: was the store down?", took)
			}
			sameAsFile(t, c, key, path)
			assertNoUploads(t, c)
		})
	}
}

// TestS3PutCancel cancels multipart Puts at two points; neither leaves an
// unfinished upload (which the store would keep, and bill, forever) or an
// object behind.
func TestS3PutCancel(t *testing.T) {
	t.Parallel()
	s := startS3(t)
	for _, tc := range []struct {
		name string
		// hook cancels the Put's context at the point under test.
		hook func(cancel context.CancelFunc) hookFunc
	}{
		{"after first part", func(cancel context.CancelFunc) hookFunc {
			return func(r *http.Request, resp *http.Response, err error) (*http.Response, error) {
				if resp != nil && isUploadPart(r) {
					cancel()
				}
				return resp, err
			}
		}},
		{"create response lost", func(cancel context.CancelFunc) hookFunc {
			// The store creates the upload but its id never arrives, so
			// only a listing finds it.
			return func(r *http.Request, resp *http.Response, err error) (*http.Response, error) {
				if resp != nil && isCreateMultipart(r) {
					resp.Body.Close()
					cancel()
					return nil, context.Canceled
				}
				return resp, err
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			c := testClient(t, s, 5<<20, tc.hook(cancel))
			path, sum := writeFile(t, 20_000_000, 4)
			key := "livekit/room/cancel-" + strings.ReplaceAll(tc.name, " ", "-") + ".ogg"
			err := c.Put(ctx, key, path, "audio/ogg", sum)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("put: %v, want context.Canceled", err)
			}
			assertAbsent(t, c, key)
			assertNoUploads(t, c)
		})
	}
	t.Run("before start", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		c := testClient(t, s, 0, nil)
		path, sum := writeFile(t, 1000, 5)
		if err := c.Put(ctx, "livekit/room/early.ogg", path, "", sum); !errors.Is(err, context.Canceled) {
			t.Fatalf("put: %v, want context.Canceled", err)
		}
		assertAbsent(t, c, "livekit/room/early.ogg")
	})
}

// TestS3New builds the client the way the service does, with credentials
// from the environment, and checks its configuration errors.
func TestS3New(t *testing.T) {
	s := startS3(t)
	for _, kv := range s.Env() {
		k, v, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "AWS_") {
			t.Setenv(k, v)
		}
	}
	ctx := context.Background()
	c, err := New(ctx, Config{Bucket: s.Bucket, Region: s.Region, Endpoint: s.Endpoint, ForcePathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	path, sum := writeFile(t, 1000, 6)
	if err := c.Put(ctx, "livekit/room/env.ogg", path, "audio/ogg", sum); err != nil {
		t.Fatalf("put with environment credentials: %v", err)
	}
	sameAsFile(t, c, "livekit/room/env.ogg", path)

	for _, tc := range []struct {
		name string
		c    Config
		want string
	}{
		{"no bucket", Config{Region: "r"}, "no bucket"},
		{"no region", Config{Bucket: "b"}, "no region"},
		{"small parts", Config{Bucket: "b", Region: "r", PartSize: 1 << 20}, "part size"},
		{"huge parts", Config{Bucket: "b", Region: "r", PartSize: 6 << 30}, "part size"},
		{"attempts", Config{Bucket: "b", Region: "r", MaxAttempts: -1}, "attempts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(ctx, tc.c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New(%+v) = %v, want error containing %q", tc.c, err, tc.want)
			}
		})
	}
}

func TestS3Backoff(t *testing.T) {
	for _, tc := range []struct {
		attempt int
		step    time.Duration
	}{
		{1, time.Second},
		{2, 2 * time.Second},
		{3, 4 * time.Second},
		{4, 8 * time.Second},
		{5, maxBackoff},
		{9, maxBackoff},
		{100, maxBackoff},
	} {
		for range 100 {
			d, err := backoff(tc.attempt, nil)
			if err != nil || d < tc.step/2 || d > tc.step {
				t.Fatalf("backoff(%d) = %v, %v; want within [%v, %v]", tc.attempt, d, err, tc.step/2, tc.step)
			}
		}
	}
}

func TestS3EffectivePartSize(t *testing.T) {
	for _, tc := range []struct{ size, part, want int64 }{
		{0, 8 << 20, 8 << 20},
		{20 << 20, 5 << 20, 5 << 20},
		{9999 * (5 << 20), 5 << 20, 5 << 20},
		{10000 * (5 << 20), 5 << 20, 5<<20 + 1},
	} {
		if got := effectivePartSize(tc.size, tc.part); got != tc.want {
			t.Errorf("effectivePartSize(%d, %d) = %d, want %d", tc.size, tc.part, got, tc.want)
		}
	}
}

func TestS3ExpectedMatches(t *testing.T) {
	p1, p2 := sha256.Sum256([]byte("a")), sha256.Sum256([]byte("b"))
	whole := sha256.Sum256([]byte("ab"))
	comp := sha256.Sum256(append(p1[:], p2[:]...))
	multi := expected{full: b64(whole[:]), parts: [][]byte{p1[:], p2[:]}}
	single := expected{full: b64(whole[:])}
	for _, tc := range []struct {
		name string
		e    expected
		got  string
		want bool
	}{
		{"single full", single, b64(whole[:]), true},
		{"single other", single, b64(p1[:]), false},
		{"single composite", single, b64(comp[:]) + "-2", false},
		{"multi composite", multi, b64(comp[:]) + "-2", true},
		{"multi composite no count", multi, b64(comp[:]), true},
		{"multi composite wrong count", multi, b64(comp[:]) + "-3", false},
		{"multi full object", multi, b64(whole[:]), true},
		{"multi other", multi, b64(p2[:]) + "-2", false},
	} {
		if got := tc.e.matches(tc.got); got != tc.want {
			t.Errorf("%s: matches(%q) = %v, want %v", tc.name, tc.got, got, tc.want)
		}
	}
}
