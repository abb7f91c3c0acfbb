package devicekit

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// inUse checks that err is a *StateInUseError on dir and returns it.
func inUse(t *testing.T, err error, dir string) *StateInUseError {
	t.Helper()
	var e *StateInUseError
	if !errors.As(err, &e) || !errors.Is(err, ErrStateInUse) {
		t.Fatalf("New on a held state directory: %v (%T), want a *StateInUseError", err, err)
	}
	if errors.Is(err, ErrConfig) {
		t.Errorf("%v wraps ErrConfig: the config is fine", err)
	}
	if e.StateDir != dir {
		t.Errorf("StateDir %q, want %q", e.StateDir, dir)
	}
	return e
}

// Two Kits of one process on one state directory: the second is refused, named after the
// holder, until the first is closed.
func TestStateDirHeldByOneKit(t *testing.T) {
	t.Parallel()
	cfg := validConfig(t)
	first, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	second, err := New(cfg)
	if err == nil {
		second.Close()
		t.Fatal("a second Kit opened the state directory of a running one")
	}
	e := inUse(t, err, cfg.StateDir)
	if e.Holder.PID != os.Getpid() || e.Holder.Command != commandLine() || e.Holder.Since.IsZero() {
		t.Errorf("holder %+v, want this process (%d, %q)", e.Holder, os.Getpid(), commandLine())
	}
	for _, w := range []string{cfg.StateDir, "process " + strconv.Itoa(os.Getpid()), filepath.Base(os.Args[0])} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not name %q", err, w)
		}
	}
	// A relative path to the same directory is the same directory.
	wd, _ := os.Getwd()
	if rel, rerr := filepath.Rel(wd, cfg.StateDir); rerr == nil {
		c := cfg
		c.StateDir = rel
		if k, err := New(c); err == nil {
			k.Close()
			t.Error("the same state directory by a relative path was not refused")
		}
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	third, err := New(cfg)
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	third.Close()
	// Another state directory is independent.
	other := validConfig(t)
	k1, err1 := New(cfg)
	k2, err2 := New(other)
	if err1 != nil || err2 != nil {
		t.Fatalf("two state directories: %v, %v", err1, err2)
	}
	k1.Close()
	k2.Close()
}

// A running Spool is recorded in the lock, so that another process can hand it files;
// the record goes when Run ends.
func TestStateHolderListsSpools(t *testing.T) {
	t.Parallel()
	cfg := validConfig(t)
	k, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	dir := t.TempDir()
	s, err := NewSpool(k, SpoolConfig{Dir: dir, PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	running := make(chan struct{})
	s.onRunning = func() { close(running) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	<-running
	_, err = New(cfg)
	if e := inUse(t, err, cfg.StateDir); !slices.Equal(e.Holder.Spools, []string{dir}) {
		t.Errorf("holder spools %q, want [%s]", e.Holder.Spools, dir)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	_, err = New(cfg)
	if e := inUse(t, err, cfg.StateDir); len(e.Holder.Spools) != 0 || e.Holder.PID != os.Getpid() {
		t.Errorf("after Run: holder %+v, want no spool", e.Holder)
	}
}

// A garbled or empty lock file of a process that is gone does not stand in the way.
func TestStateLockFileLeftOver(t *testing.T) {
	t.Parallel()
	cfg := validConfig(t)
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, content := range []string{"", "\x00\xff garbage {", strings.Repeat("x", 3*holderRecordSize)} {
		if err := os.WriteFile(filepath.Join(cfg.StateDir, lockFile), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		k, err := New(cfg)
		if err != nil {
			t.Fatalf("lock file %q: %v", content, err)
		}
		_, err = New(cfg)
		if e := inUse(t, err, cfg.StateDir); e.Holder.PID != os.Getpid() {
			t.Errorf("holder %+v over a lock file of %d bytes", e.Holder, len(content))
		}
		k.Close()
	}
}

// The lock of a real process: held while it runs, named after it, and released when it
// is killed (no stale lock after a crash).
func TestStateDirHeldByAnotherProcess(t *testing.T) {
	t.Parallel()
	cfg := validConfig(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestStateLockHelperProcess$")
	cmd.Env = append(os.Environ(), lockHelperEnv+"="+cfg.StateDir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe() // the helper ends when it closes, should this test die
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() || sc.Text() != "locked" {
		t.Fatalf("helper: %q, %v", sc.Text(), sc.Err())
	}
	_, err = New(cfg)
	e := inUse(t, err, cfg.StateDir)
	if e.Holder.PID != cmd.Process.Pid || !strings.Contains(e.Holder.Command, "TestStateLockHelperProcess") {
		t.Errorf("holder %+v, want pid %d", e.Holder, cmd.Process.Pid)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	k, err := New(cfg)
	if err != nil {
		t.Fatalf("after the holder was killed: %v", err)
	}
	k.Close()
}

const lockHelperEnv = "CLIPGATE_DEVICEKIT_LOCK_HELPER"

// TestStateLockHelperProcess holds a Kit on the state directory named by lockHelperEnv
// until killed (or its stdin closes), when the test above runs the test binary; otherwise
// it does nothing.
func TestStateLockHelperProcess(t *testing.T) {
	dir := os.Getenv(lockHelperEnv)
	if dir == "" {
		return
	}
	cfg := validConfig(t)
	cfg.StateDir = dir
	k, err := New(cfg)
	if err != nil {
		os.Stdout.WriteString("error: " + err.Error() + "\n")
		os.Exit(3)
	}
	os.Stdout.WriteString("locked\n")
	_, _ = io.Copy(io.Discard, os.Stdin)
	// The kit must stay reachable: once collected, its lock file's descriptor is closed
	// by the file's cleanup and the lock released while this helper still runs.
	runtime.KeepAlive(k)
	os.Exit(0)
}
