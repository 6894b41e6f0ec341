package loadbench

import (
	"os"
	"runtime"
	"testing"
	"time"
)

// This process's own CPU time and RSS read from /proc grow as it works and
// allocates.
func TestProcReadsThisProcess(t *testing.T) {
	pid := os.Getpid()
	w, err := startWindow(pid)
	if err != nil {
		t.Fatal(err)
	}
	before, err := rss(pid)
	if err != nil || before <= 0 {
		t.Fatalf("rss %d, %v", before, err)
	}
	buf := make([]byte, 64<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	for deadline := time.Now().Add(300 * time.Millisecond); time.Now().Before(deadline); {
	}
	if err := w.end(); err != nil {
		t.Fatal(err)
	}
	after, _ := rss(pid)
	if w.cpu() < 100*time.Millisecond {
		t.Errorf("%v of CPU over a 300 ms busy loop", w.cpu())
	}
	if after-before < 32<<20 {
		t.Errorf("RSS grew %d bytes after touching 64 MiB", after-before)
	}
	runtime.KeepAlive(buf)
}
