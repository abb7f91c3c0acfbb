package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/clipgate/clipgate/internal/cli"
	"github.com/clipgate/clipgate/internal/cli/clitest"
)

// The tests' stacks hash their service accounts at bcrypt's minimum cost: under the race
// detector on a loaded machine a cost-10 login outlasts the clients' timeouts.
func init() { bcryptCost = bcrypt.MinCost }

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// TestRunDemo runs the command's demo mode with 2 cameras x 2 clips, on each engine.
func TestRunDemo(t *testing.T) {
	t.Parallel()
	for _, engine := range []string{"mochi", "nats"} {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			testRunDemo(t, engine)
		})
	}
}

func testRunDemo(t *testing.T, engine string) {
	var stdout, stderr bytes.Buffer
	dir := filepath.Join(t.TempDir(), "demo")
	err := run(testContext(t), cli.IO{Stdout: &stdout, Stderr: &stderr}, []string{"--demo", "--devices", "2", "--clips", "2", "--dir", dir, "--engine", engine})
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
	if _, err := os.Stat(filepath.Join(dir, "fleet.keys")); err != nil {
		t.Errorf("--dir was not used: %v", err)
	}
}

// TestRunServe runs the stack until its context is cancelled.
func TestRunServe(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "state")
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	var stdout, stderr clitest.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, cli.IO{Stdout: &stdout, Stderr: &stderr}, []string{"--dir", dir, "--mqtt-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
			"--oss-addr", "127.0.0.1:0", "--sts-addr", "127.0.0.1:0", "--console-addr", "127.0.0.1:0", "--device-id", "cam-77",
			"--log-format", "json", "--log-level", "debug"})
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
	if lines := clitest.CheckJSONLog(t, stderr.String()); len(lines) == 0 {
		t.Error("no log at --log-level debug")
	}
}

func TestRunRefusesBadFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--workers", "0"},
		{"--demo", "--devices", "0"},
		{"--demo", "--clips", "-1"},
		{"--demo", "--demo-timeout", "0s"},
		{"--log-level", "loud"},
		{"--no-such-flag"},
		{"--demo", "--clips", "many"},
	} {
		var stdout, stderr bytes.Buffer
		if err := run(testContext(t), cli.IO{Stdout: &stdout, Stderr: &stderr}, args); cli.ExitCode(err) != cli.ExitUsage {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}

func TestRunHelp(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	if err := run(testContext(t), cli.IO{Stdout: &stdout, Stderr: &stderr}, []string{"--help"}); err != cli.ErrExited {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), "--demo") {
		t.Errorf("help lacks --demo:\n%s", stdout.String())
	}
}

// TestFlagSources: every flag has its variable and its configuration key, and each
// source sets it.
func TestFlagSources(t *testing.T) {
	t.Parallel()
	clitest.CheckFlags(t, clitest.Command{Spec: spec, Grammar: func() any { return &CLI{} }})
}

// TestExitCodes: 0 for --help and --version, 2 for usage and configuration errors, 1 when
// an address is taken.
func TestExitCodes(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	clitest.CheckExitCodes(t, "devstack", run, clitest.Exits{
		cli.ExitUsage: {{"--workers", "0"}, {"--demo", "--clips", "0"}},
		cli.ExitFailure: {{"--dir", t.TempDir(), "--mqtt-addr", busy.Addr().String(), "--http-addr", "127.0.0.1:0",
			"--oss-addr", "127.0.0.1:0", "--sts-addr", "127.0.0.1:0", "--console-addr", "127.0.0.1:0"}},
	})
}
