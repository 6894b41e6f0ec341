//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package spool

import (
	"errors"
	"os"
)

// lockDir refuses: without flock, two recorders could share a directory.
func lockDir(dir string) (*os.File, error) {
	return nil, errors.New("LOCAL_DIRECTORY " + dir + ": locking is not supported on this system")
}

func unlockDir(f *os.File) error { return f.Close() }
