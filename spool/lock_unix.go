//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package spool

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockDir takes the exclusive lock of dir: flock on its lock file, which
// then holds this process's pid. A lock held elsewhere leaves the file as
// it was. The descriptor is close-on-exec, so no child process (ffmpeg)
// keeps the lock after this process is gone.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("LOCAL_DIRECTORY %s: lock: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		pid := holder(f)
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			if pid > 0 {
				return nil, fmt.Errorf("LOCAL_DIRECTORY %s is %w (pid %d)", dir, ErrLocked, pid)
			}
			return nil, fmt.Errorf("LOCAL_DIRECTORY %s is %w", dir, ErrLocked)
		}
		return nil, fmt.Errorf("LOCAL_DIRECTORY %s: lock: %w", dir, err)
	}
	pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt(pid, 0)
	}
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("LOCAL_DIRECTORY %s: lock: %w", dir, err)
	}
	return f, nil
}

// holder is the pid in the lock file, or 0 when there is none to read (the
// holder may be between taking the lock and writing it).
func holder(f *os.File) int {
	buf := make([]byte, 32)
	n, err := f.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

func unlockDir(f *os.File) error {
	uerr := syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	cerr := f.Close()
	if err := errors.Join(uerr, cerr); err != nil {
		return fmt.Errorf("spool: unlock: %w", err)
	}
	return nil
}
