package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// TestRunDemo runs the command's demo mode with 2 cameras x 2 clips.
func TestRunDemo(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	dir := filepath.Join(t.TempDir(), "demo")
	err := run(testContext(t), []string{"--demo", "--devices", "2", "--clips", "2", "--dir", dir}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	if !strings.Contains(out, "demo: 2 cameras, 4 uploads (2 multipart), 4 events") || !strings.Contains(out, " 0 failures") {
		t.Errorf("no summary:\n%s", out)
	}
	if n := strings.Count(out, "\nupload "); n != 4 {
		t.Errorf("%d upload lines, want 4:\n%s", n, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "fleet.key")); err != nil {
		t.Errorf("--dir was not used: %v", err)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader in two goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRunServe runs the stack until its context is cancelled.
func TestRunServe(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "state")
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--dir", dir, "--mqtt-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
			"--oss-addr", "127.0.0.1:0", "--sts-addr", "127.0.0.1:0", "--console-addr", "127.0.0.1:0", "--device-id", "cam-77"}, &stdout, &stderr)
	}()
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(stdout.String(), "is running") {
		select {
		case err := <-done:
			t.Fatalf("run ended: %v\n%s\n%s", err, stdout.String(), stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no banner:\n%s", stdout.String())
		}
	}
	text, err := os.ReadFile(filepath.Join(dir, "device.yaml"))
	if err != nil || !strings.Contains(string(text), "device-id: cam-77") {
		t.Errorf("device.yaml: %v\n%s", err, text)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	if !strings.Contains(stdout.String(), "devstack: stopping") {
		t.Errorf("no stop message:\n%s", stdout.String())
	}
}

func TestRunRefusesBadFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--workers", "0"},
		{"--demo", "--devices", "0"},
		{"--demo", "--clips", "-1"},
		{"--demo", "--timeout", "0s"},
		{"--log-level", "loud"},
		{"--no-such-flag"},
		{"--demo", "--clips", "many"},
	} {
		var stdout, stderr bytes.Buffer
		if err := run(testContext(t), args, &stdout, &stderr); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

func TestRunHelp(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	if err := run(testContext(t), []string{"--help"}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), "--demo") {
		t.Errorf("help lacks --demo:\n%s", stdout.String())
	}
}
