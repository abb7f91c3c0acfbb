package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aliyun/alibaba-cloud-sdk-go/services/sts"

	"github.com/clipgate/clipgate/internal/cli"
	"github.com/clipgate/clipgate/internal/cli/clitest"
)

func TestMain(m *testing.M) {
	_ = sts.GetEndpointMap() // the STS SDK fills it lazily, without a lock
	os.Exit(m.Run())
}

// A short run with the faults that do not touch the broker: it prints every figure and
// passes.
func TestRunShort(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	logFile := filepath.Join(t.TempDir(), "soak.log")
	code := cli.Exec(ctx, "soak", run, cli.IO{Stdout: &out, Stderr: &errOut}, []string{
		"--devices", "2", "--clips", "2", "--duration", "6s", "--drain", "90s",
		"--interval", "200ms", "--large-every", "2", "--fault-interval", "2s",
		"--max-down", "1s", "--max-partition", "2s", "--no-broker-restart",
		"--dir", t.TempDir(), "--progress", "2s", "--log-file", logFile, "--log-level", "debug",
	})
	if code != cli.ExitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	}
	for _, want := range []string{
		"soak: 2 devices x 2 clips, 6s (drain 1m30s), faults every ~2s: worker-restart, partition, cloud-restart",
		"\nuploads ", "\nevents delivered ", "\nduplicates ", "\nlost             0 ", "\nlatency          p50 ",
		"\nfaults ", "load average at start", "\nPASS\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if !strings.Contains(errOut.String(), "uploads ") {
		t.Errorf("no progress line on stderr:\n%s", errOut.String())
	}
	log, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if lines := clitest.CheckJSONLog(t, string(log)); len(lines) == 0 {
		t.Error("nothing in --log-file at --log-level debug")
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--devices", "0"},
		{"--devices", "x"},
		{"--clips", "-1"},
		{"--duration", "0s"},
		{"--duration", "forever"},
		{"--part-size", "1000"},
		{"--part-size", "1KiB"},
		{"--small-size", "lots"},
		{"--large-size=-1KiB"},
		{"--small-size", "1.5"},
		{"--fault-interval", "1ms"},
		{"--log-level", "loud"},
		{"--no-such-flag"},
		{"extra-argument"},
		{"--log-file", "/nonexistent-dir/x.log"},
	} {
		var out, errOut bytes.Buffer
		if code := cli.Exec(context.Background(), "soak", run, cli.IO{Stdout: &out, Stderr: &errOut}, args); code != cli.ExitUsage {
			t.Errorf("%v: exit %d, want %d (stderr %q)", args, code, cli.ExitUsage, errOut.String())
		} else if errOut.Len() == 0 {
			t.Errorf("%v: no message on stderr", args)
		}
	}
	var out, errOut bytes.Buffer
	if code := cli.Exec(context.Background(), "soak", run, cli.IO{Stdout: &out, Stderr: &errOut}, []string{"--help"}); code != cli.ExitOK || !strings.Contains(out.String(), "--[no-]broker-restart") {
		t.Errorf("--help: exit %d, output %q", code, out.String())
	}
}

// TestFlagSources: every flag has its variable and its configuration key, and each
// source sets it.
func TestFlagSources(t *testing.T) {
	t.Parallel()
	clitest.CheckFlags(t, clitest.Command{Spec: spec, Grammar: func() any { return &CLI{} }})
}

// TestExitCodes: 0 for --help and --version, 2 for usage and configuration errors, 1 for
// a run that fails (here: its working directory is a file).
func TestExitCodes(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	clitest.CheckExitCodes(t, "soak", run, clitest.Exits{
		cli.ExitUsage:   {{"--workers", "0"}},
		cli.ExitFailure: {{"--dir", file, "--duration", "1s", "--drain", "1s", "--devices", "1", "--clips", "1"}},
	})
}
