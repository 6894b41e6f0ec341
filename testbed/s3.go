package testbed

import (
	"context"
	"crypto/rand"
	"debug/buildinfo"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
)

// VersityVersion is the pinned Versity S3 Gateway release.
const VersityVersion = "v1.8.0"

const versityModule = "github.com/versity/versitygw"

// prebuiltVersity is where a warm `go install` of VersityVersion may already
// sit on a development machine. It is used only if its build info says it is
// exactly that version, so a stale or half-written file is ignored.
const prebuiltVersity = "/tmp/vgw/versitygw"

func versityBinary() cachedBinary {
	return cachedBinary{name: "versitygw", version: VersityVersion, file: "versitygw"}
}

// VersityBin returns the path of the installed pinned versitygw. It never
// installs: a missing one is an error wrapping ErrNotInstalled.
func VersityBin() (string, error) { return versityBinary().lookup() }

// InstallVersity returns the path of the pinned versitygw binary, building it
// with `go install` (about 70 s) if it is not in the cache yet, or copying a
// warm build of exactly that version from prebuiltVersity.
func InstallVersity(ctx context.Context) (string, error) {
	return versityBinary().install(ctx, func(ctx context.Context, dir string) error {
		if src := findPrebuiltVersity(); src != "" {
			slog.InfoContext(ctx, "copying prebuilt versitygw", "from", src)
			if err := copyExecutable(src, filepath.Join(dir, "versitygw")); err != nil {
				return fmt.Errorf("install versitygw: %w", err)
			}
			return nil
		}
		pkg := versityModule + "/cmd/versitygw@" + VersityVersion
		slog.InfoContext(ctx, "installing versitygw (takes about 70 s)", "pkg", pkg)
		return goInstall(ctx, pkg, dir)
	})
}

func findPrebuiltVersity() string {
	if !isExecutable(prebuiltVersity) {
		return ""
	}
	info, err := buildinfo.ReadFile(prebuiltVersity)
	if err != nil || info.Main.Path != versityModule || info.Main.Version != VersityVersion {
		return ""
	}
	return prebuiltVersity
}

func copyExecutable(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// S3 is a Versity S3 Gateway serving a posix folder on loopback, with one
// bucket and root credentials. Stop and Start simulate an outage.
type S3 struct {
	Endpoint  string // http://127.0.0.1:PORT
	Region    string
	AccessKey string
	SecretKey string
	Bucket    string
	Dir       string // posix root: the bucket is the folder Dir/Bucket

	bin  string
	addr string

	mu   sync.Mutex
	proc *childProc // nil while stopped
}

// StartS3 starts the installed versitygw (see VersityBin) over a new
// temporary folder on a free loopback port and creates the bucket.
func StartS3(ctx context.Context) (*S3, error) {
	bin, err := VersityBin()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "trackrec-s3-")
	if err != nil {
		return nil, fmt.Errorf("start s3: %w", err)
	}
	s := &S3{
		Region:    "us-east-1",
		AccessKey: "trackrec-" + s3RandomHex(6),
		SecretKey: s3RandomHex(20),
		Bucket:    "trackrec",
		Dir:       dir,
		bin:       bin,
	}
	// A free port is found by binding and closing it, so another process
	// can take it before versitygw binds: retry with a new one.
	for attempt := 0; ; attempt++ {
		ports, err := freePorts()
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		s.addr = "127.0.0.1:" + strconv.Itoa(ports.signal)
		s.Endpoint = "http://" + s.addr
		err = s.Start(ctx)
		if err == nil {
			break
		}
		if attempt == 2 || ctx.Err() != nil || !errors.Is(err, errVersityExited) {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	if _, err := s.client().CreateBucket(ctx, &awss3.CreateBucketInput{Bucket: &s.Bucket}); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("create bucket %s: %w", s.Bucket, err)
	}
	return s, nil
}

var errVersityExited = errors.New("versitygw exited during startup")

// Start starts the gateway again, on the same port and folder, and returns
// once it answers.
func (s *S3) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return fmt.Errorf("versitygw on %s is already running", s.addr)
	}
	cmd := exec.Command(s.bin,
		"--access", s.AccessKey, "--secret", s.SecretKey,
		"--region", s.Region, "--port", s.addr, "--quiet",
		"posix", s.Dir)
	// versitygw reads many settings from the environment (VGW_*, ROOT_*,
	// WEBHOOK, LOGFILE): give it none of the caller's.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	p, err := startChildProc(cmd)
	if err != nil {
		return fmt.Errorf("start versitygw: %w", err)
	}
	if err := s.waitReady(ctx, p); err != nil {
		_ = p.stop()
		return err
	}
	s.proc = p
	return nil
}

func (s *S3) waitReady(ctx context.Context, p *childProc) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	c := s.client()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		reqCtx, reqCancel := context.WithTimeout(ctx, time.Second)
		_, err := c.ListBuckets(reqCtx, &awss3.ListBucketsInput{})
		reqCancel()
		if err == nil {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%w (%v): %s", errVersityExited, p.waitErr, p.out.String())
		case <-ctx.Done():
			return fmt.Errorf("versitygw on %s not ready: %w (last error: %v): %s",
				s.addr, ctx.Err(), err, p.out.String())
		case <-tick.C:
		}
	}
}

// Stop stops the gateway and keeps its folder, so Start brings the same
// objects back. It is a no-op when already stopped.
func (s *S3) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return nil
	}
	err := s.proc.stop()
	s.proc = nil
	return err
}

// Close stops the gateway and removes its folder.
func (s *S3) Close() error {
	err := s.Stop()
	if rmErr := os.RemoveAll(s.Dir); rmErr != nil && err == nil {
		err = fmt.Errorf("remove s3 dir: %w", rmErr)
	}
	return err
}

// Env is the environment a recorder process needs to use this store. It
// also blanks settings of the caller's own AWS setup that would override it.
func (s *S3) Env() []string {
	return []string{
		"S3_BUCKET=" + s.Bucket,
		"S3_REGION=" + s.Region,
		"S3_ENDPOINT=" + s.Endpoint,
		"S3_FORCE_PATH_STYLE=true",
		"AWS_ACCESS_KEY_ID=" + s.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + s.SecretKey,
		"AWS_SESSION_TOKEN=",
		"AWS_EC2_METADATA_DISABLED=true",
	}
}

// client is a plain SDK client with the root credentials and no retries,
// for the harness's own calls.
func (s *S3) client() *awss3.Client {
	return awss3.New(awss3.Options{
		Region:       s.Region,
		BaseEndpoint: aws.String(s.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
		Retryer:      aws.NopRetryer{},
	})
}

// childProc is a child process whose exit is observed in the background.
type childProc struct {
	cmd     *exec.Cmd
	exited  chan struct{} // closed once the process has been waited for
	waitErr error         // valid after exited is closed
	out     *tailBuffer
}

func startChildProc(cmd *exec.Cmd) (*childProc, error) {
	p := &childProc{cmd: cmd, exited: make(chan struct{}), out: &tailBuffer{max: 8 << 10}}
	cmd.Stdout = p.out
	cmd.Stderr = p.out
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// stop sends SIGTERM, then SIGKILL after stopGrace, and waits for the exit.
func (p *childProc) stop() error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s had exited on its own: %v: %s", p.cmd.Path, p.waitErr, p.out.String())
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(stopGrace):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	return nil
}

func s3RandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	return hex.EncodeToString(b)
}
