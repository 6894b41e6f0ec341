// Package s3 stores files in any S3-compatible object store (AWS S3, MinIO,
// Cloudflare R2, Versity Gateway) with the AWS SDK for Go v2.
//
// # Integrity
//
// Put never trusts a transfer it has not had confirmed, and how it checks
// depends on the file's size:
//
//   - Up to PartSize, one PutObject carries x-amz-checksum-sha256 set to the
//     caller's SHA-256. The store hashes the body it received and refuses it
//     (BadDigest) if they differ, so a wrong file or a corrupted transfer never
//     becomes the object. HeadObject then confirms the stored size and, where
//     the store reports it, the stored SHA-256.
//   - Above PartSize, a multipart upload. S3 has no whole-object SHA-256 for
//     multipart objects, so Put first reads the file once, checking the
//     caller's SHA-256 and hashing each part. Every UploadPart carries its
//     part's SHA-256, which the store verifies; afterwards the part checksums
//     the store reports and its composite checksum (SHA-256 of the part
//     SHA-256s, "-N" suffixed) must equal those hashed from the file. So the
//     stored bytes are the bytes whose SHA-256 the caller gave, even if the
//     file changed between the two reads.
//   - A store that reports no checksum at all gets the object read back and
//     hashed instead.
//
// A Put that fails its verification deletes the object it wrote.
//
// # Retries
//
// Every request is retried by the SDK's standard retryer: up to MaxAttempts
// attempts (default 10) on connection errors (refused, reset, timeouts),
// 5xx, throttling and the like, with exponential backoff from 1 s doubling to
// a cap of 10 s, "equal jitter" (half fixed, half random, so a fleet does not
// retry in step yet the retry window has a floor: about 32-65 s with the
// default attempts). The SDK's client-wide retry quota is off: during an
// outage it drains after 50 to 100 retries and then fails every request
// at once, which for a recorder means giving up exactly when waiting
// is needed. Beyond that window the caller keeps the file and retries later.
package s3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/trackrec/trackrec/uploader"
)

const (
	// DefaultPartSize is the multipart threshold and part size: an hour of
	// 32 kbit/s Opus (about 14 MB) goes up in two parts.
	DefaultPartSize = 8 << 20
	// DefaultMaxAttempts bounds the attempts of each request.
	DefaultMaxAttempts = 10

	maxPartSize = 5 << 30 // S3's limit

	baseDelay  = 500 * time.Millisecond // first retry waits 0.5-1 s
	maxBackoff = 10 * time.Second

	// A store that accepted a request but never answers would otherwise
	// hold a Put until its context ends. Counted from the end of the
	// request body, so it does not limit how long a part takes to send.
	responseHeaderTimeout = 2 * time.Minute
	// Aborting a failed multipart upload outlives the Put's context (which
	// may be why it failed) by at most this.
	abortTimeout = 10 * time.Second
)

// Config selects the bucket and how to reach it. Credentials come from the
// SDK's standard chain: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, shared
// profiles, web identity, container and instance roles.
type Config struct {
	Bucket string
	// Region is required unless the SDK finds one (AWS_REGION, profile).
	Region string
	// Endpoint is a custom endpoint URL (MinIO, R2, Versity); empty for AWS.
	Endpoint string
	// ForcePathStyle addresses the bucket as ENDPOINT/BUCKET rather than
	// BUCKET.ENDPOINT, which most self-hosted stores need.
	ForcePathStyle bool
	// PartSize is the multipart threshold and part size; 0 means
	// DefaultPartSize. S3 allows 5 MiB to 5 GiB.
	PartSize int64
	// MaxAttempts bounds the attempts of each request; 0 means
	// DefaultMaxAttempts.
	MaxAttempts int
	// AccessKey, SecretKey and SessionToken, if set, are the credentials
	// (an egress request carries its own); empty: the SDK's chain.
	AccessKey, SecretKey, SessionToken string
}

// Client is a uploader.Storage over one bucket. It is safe for concurrent use.
type Client struct {
	bucket   string
	partSize int64
	name     string
	api      *awss3.Client
	up       *manager.Uploader
}

var _ uploader.Storage = (*Client)(nil)

// New checks c and builds a client. It does not contact the store.
func New(ctx context.Context, c Config) (*Client, error) {
	return newClient(ctx, c)
}

// newClient lets tests adjust the SDK client (its HTTP client, mostly).
func newClient(ctx context.Context, c Config, optFns ...func(*awss3.Options)) (*Client, error) {
	if c.Bucket == "" {
		return nil, errors.New("s3: no bucket")
	}
	if c.PartSize == 0 {
		c.PartSize = DefaultPartSize
	}
	if c.PartSize < manager.MinUploadPartSize || c.PartSize > maxPartSize {
		return nil, fmt.Errorf("s3: part size %d outside [%d, %d]", c.PartSize, manager.MinUploadPartSize, int64(maxPartSize))
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.MaxAttempts < 1 {
		return nil, fmt.Errorf("s3: max attempts %d < 1", c.MaxAttempts)
	}

	httpClient := awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		t.ResponseHeaderTimeout = responseHeaderTimeout
	})
	opts := []func(*config.LoadOptions) error{
		config.WithHTTPClient(httpClient),
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = c.MaxAttempts
				o.MaxBackoff = maxBackoff
				o.Backoff = retry.BackoffDelayerFunc(backoff)
				o.RateLimiter = ratelimit.None
			})
		}),
	}
	if c.Region != "" {
		opts = append(opts, config.WithRegion(c.Region))
	}
	if c.AccessKey != "" || c.SecretKey != "" {
		opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(c.AccessKey, c.SecretKey, c.SessionToken)))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3: load AWS config: %w", err)
	}
	if cfg.Region == "" {
		return nil, errors.New("s3: no region (set S3_REGION or AWS_REGION)")
	}

	api := awss3.NewFromConfig(cfg, append([]func(*awss3.Options){func(o *awss3.Options) {
		if c.Endpoint != "" {
			o.BaseEndpoint = aws.String(c.Endpoint)
		}
		o.UsePathStyle = c.ForcePathStyle
		// Get streams multipart objects, whose composite checksum the SDK
		// cannot check, and would log a warning for each.
		o.DisableLogOutputChecksumValidationSkipped = true
	}}, optFns...)...)

	name := "s3://" + c.Bucket
	if c.Endpoint != "" {
		name += " at " + c.Endpoint
	}
	return &Client{
		bucket:   c.Bucket,
		partSize: c.PartSize,
		name:     name,
		api:      api,
		up: manager.NewUploader(api, func(u *manager.Uploader) {
			u.PartSize = c.PartSize
		}),
	}, nil
}

// backoff is exponential from baseDelay, capped at maxBackoff, with equal
// jitter: never less than half the step, so an outage of a given length is
// always outlasted by enough attempts.
func backoff(attempt int, _ error) (time.Duration, error) {
	d := maxBackoff
	if attempt < 16 {
		d = min(baseDelay<<attempt, maxBackoff)
	}
	return d/2 + rand.N(d/2+1), nil
}

// String names the bucket (and endpoint) for logs.
func (c *Client) String() string { return c.name }

// Put uploads the file at path to key and returns once the store has
// confirmed it; see the package documentation for what is verified.
func (c *Client) Put(ctx context.Context, key, path, contentType string, sum []byte) error {
	if err := uploader.CheckKey(key); err != nil {
		return err
	}
	if len(sum) != sha256.Size {
		return fmt.Errorf("put %s: sha256 has %d bytes, want %d", key, len(sum), sha256.Size)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	size := st.Size()
	// Pin the size: bytes appended during the upload are not sent.
	body := io.NewSectionReader(f, 0, size)
	partSize := effectivePartSize(size, c.partSize)

	in := &awss3.PutObjectInput{
		Bucket:            aws.String(c.bucket),
		Key:               aws.String(key),
		Body:              body,
		ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
	}
	if contentType != "" {
		in.ContentType = aws.String(contentType)
	}
	want := expected{size: size, full: b64(sum)}
	multipart := size > partSize // the upload manager's own rule
	if multipart {
		// A full-object value here would be taken for the composite of
		// the parts and fail the upload; the parts are checked instead.
		parts, err := hashParts(ctx, body, partSize, sum)
		if err != nil {
			return fmt.Errorf("put %s: %w", key, err)
		}
		want.parts = parts
	} else {
		in.ChecksumSHA256 = aws.String(want.full)
	}

	out, err := c.up.Upload(ctx, in, func(u *manager.Uploader) { u.PartSize = partSize })
	if err != nil {
		err = fmt.Errorf("put %s: %w", key, err)
		if multipart {
			var mf manager.MultiUploadFailure
			id := ""
			if errors.As(err, &mf) {
				id = mf.UploadID()
			}
			if abortErr := c.abortUploads(ctx, key, id); abortErr != nil {
				err = fmt.Errorf("%w (and %w)", err, abortErr)
			}
		}
		return err
	}
	if multipart {
		if err := want.checkParts(out.CompletedParts); err != nil {
			return c.discard(ctx, key, err)
		}
	}
	return c.verify(ctx, key, want)
}

// expected is what the stored object must match.
type expected struct {
	size  int64
	full  string   // base64 SHA-256 of the whole file
	parts [][]byte // SHA-256 of each part, for multipart uploads
}

// composite is S3's checksum of a multipart object: the SHA-256 of the
// concatenated part SHA-256s, with the part count.
func (e expected) composite() string {
	h := sha256.New()
	for _, p := range e.parts {
		h.Write(p)
	}
	return b64(h.Sum(nil)) + "-" + strconv.Itoa(len(e.parts))
}

// checkParts compares the part checksums the store reported with the
// file's. Stores that report none leave this to verify.
func (e expected) checkParts(parts []types.CompletedPart) error {
	if len(parts) != len(e.parts) {
		return fmt.Errorf("uploaded %d parts, want %d", len(parts), len(e.parts))
	}
	for i, p := range parts {
		if n := aws.ToInt32(p.PartNumber); n != int32(i+1) {
			return fmt.Errorf("part %d reported as part %d", i+1, n)
		}
		if got := aws.ToString(p.ChecksumSHA256); got != "" && got != b64(e.parts[i]) {
			return fmt.Errorf("store has SHA-256 %s for part %d, file has %s", got, i+1, b64(e.parts[i]))
		}
	}
	return nil
}

// matches reports whether a checksum the store reports for the object
// proves its content: the whole-file SHA-256 (single PUT, or a store that
// computes full-object checksums) or the composite of the parts.
func (e expected) matches(got string) bool {
	if got == e.full {
		return true
	}
	if e.parts == nil {
		return false
	}
	want := e.composite()
	if got == want {
		return true
	}
	// Some stores leave out the part count.
	base, _, _ := strings.Cut(want, "-")
	return got == base
}

// verify checks the stored object against want with HeadObject, falling
// back to reading it back when the store reports no checksum.
func (c *Client) verify(ctx context.Context, key string, want expected) error {
	h, err := c.api.HeadObject(ctx, &awss3.HeadObjectInput{
		Bucket:       aws.String(c.bucket),
		Key:          aws.String(key),
		ChecksumMode: types.ChecksumModeEnabled,
	})
	if err != nil {
		// Not known to be wrong, so leave it; the caller keeps the file.
		return fmt.Errorf("put %s: confirm: %w", key, err)
	}
	if got := aws.ToInt64(h.ContentLength); got != want.size {
		return c.discard(ctx, key, fmt.Errorf("store has %d bytes, file has %d", got, want.size))
	}
	got := aws.ToString(h.ChecksumSHA256)
	switch {
	case got == "":
		return c.verifyByReading(ctx, key, want)
	case !want.matches(got):
		return c.discard(ctx, key, fmt.Errorf("store has SHA-256 %s, file has %s", got, want.full))
	}
	return nil
}

func (c *Client) verifyByReading(ctx context.Context, key string, want expected) error {
	h := sha256.New()
	if err := c.Get(ctx, key, h); err != nil {
		return fmt.Errorf("put %s: read back: %w", key, err)
	}
	if got := b64(h.Sum(nil)); got != want.full {
		return c.discard(ctx, key, fmt.Errorf("read back SHA-256 %s, file has %s", got, want.full))
	}
	return nil
}

// discard deletes an object found not to match its file, so nothing
// corrupt is left where consumers look, and returns the reason.
func (c *Client) discard(ctx context.Context, key string, reason error) error {
	err := fmt.Errorf("put %s: verify: %w", key, reason)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	if _, delErr := c.api.DeleteObject(ctx, &awss3.DeleteObjectInput{
		Bucket: aws.String(c.bucket),
		Key:    aws.String(key),
	}); delErr != nil {
		return fmt.Errorf("%w (and delete: %w)", err, delErr)
	}
	return err
}

// abortUploads aborts the failed multipart upload id and any other
// unfinished upload of key: one whose CreateMultipartUpload response was
// lost has no id we know of. A key belongs to one recording, so no other
// writer uses it. The upload manager's own abort uses the Put's context,
// which fails when that context is why the upload failed.
func (c *Client) abortUploads(ctx context.Context, key, id string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	var ids []string
	if id != "" {
		ids = append(ids, id)
	}
	p := awss3.NewListMultipartUploadsPaginator(c.api, &awss3.ListMultipartUploadsInput{
		Bucket: aws.String(c.bucket),
		Prefix: aws.String(key),
	})
	var errs []error
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("list multipart uploads: %w", err))
			break
		}
		for _, u := range page.Uploads {
			if aws.ToString(u.Key) == key && !slices.Contains(ids, aws.ToString(u.UploadId)) {
				ids = append(ids, aws.ToString(u.UploadId))
			}
		}
	}
	for _, id := range ids {
		_, err := c.api.AbortMultipartUpload(ctx, &awss3.AbortMultipartUploadInput{
			Bucket:   aws.String(c.bucket),
			Key:      aws.String(key),
			UploadId: aws.String(id),
		})
		var nsu *types.NoSuchUpload
		if err != nil && !errors.As(err, &nsu) && apiCode(err) != "NoSuchUpload" {
			errs = append(errs, fmt.Errorf("abort multipart upload %s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

// Get writes the object at key to w. The SDK validates the object's
// full-object checksum, where the store has one, as the body streams.
func (c *Client) Get(ctx context.Context, key string, w io.Writer) error {
	if err := uploader.CheckKey(key); err != nil {
		return err
	}
	out, err := c.api.GetObject(ctx, &awss3.GetObjectInput{
		Bucket:       aws.String(c.bucket),
		Key:          aws.String(key),
		ChecksumMode: types.ChecksumModeEnabled,
	})
	if isNotFound(err) {
		return fmt.Errorf("get %s: %w", key, uploader.ErrNotFound)
	} else if err != nil {
		return fmt.Errorf("get %s: %w", key, err)
	}
	defer out.Body.Close()
	if _, err := io.Copy(w, out.Body); err != nil {
		return fmt.Errorf("get %s: %w", key, err)
	}
	return nil
}

// List returns the keys under prefix, sorted.
func (c *Client) List(ctx context.Context, prefix string) ([]string, error) {
	p := awss3.NewListObjectsV2Paginator(c.api, &awss3.ListObjectsV2Input{
		Bucket: aws.String(c.bucket),
		Prefix: aws.String(prefix),
	})
	var keys []string
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list %q in %s: %w", prefix, c, err)
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	// S3 already lists in UTF-8 byte order; not every compatible store does.
	slices.Sort(keys)
	return keys, nil
}

// hashParts reads the file once, checking it against the caller's SHA-256
// and returning the SHA-256 of each partSize part.
func hashParts(ctx context.Context, r *io.SectionReader, partSize int64, sum []byte) ([][]byte, error) {
	whole := sha256.New()
	var parts [][]byte
	for off := int64(0); off < r.Size(); off += partSize {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		part := sha256.New()
		n, err := io.Copy(io.MultiWriter(whole, part), io.NewSectionReader(r, off, partSize))
		if err != nil {
			return nil, fmt.Errorf("hash file: %w", err)
		}
		if want := min(partSize, r.Size()-off); n != want {
			return nil, fmt.Errorf("hash file: part at %d: read %d bytes, want %d", off, n, want)
		}
		parts = append(parts, part.Sum(nil))
	}
	if got := whole.Sum(nil); !bytes.Equal(got, sum) {
		return nil, fmt.Errorf("file has SHA-256 %x, want %x", got, sum)
	}
	return parts, nil
}

// effectivePartSize is the part size the upload manager will use: it grows
// the configured one when the file would need more than S3's 10,000 parts.
func effectivePartSize(size, partSize int64) int64 {
	if size/partSize >= int64(manager.MaxUploadParts) {
		return size/int64(manager.MaxUploadParts) + 1
	}
	return partSize
}

func isNotFound(err error) bool {
	if err == nil {
		return false
	}
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	if errors.As(err, &nsk) || errors.As(err, &nf) {
		return true
	}
	code := apiCode(err)
	return code == "NoSuchKey" || code == "NotFound"
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
