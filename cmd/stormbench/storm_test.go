package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/clipgate/clipgate/internal/cli"
	"github.com/clipgate/clipgate/internal/cli/clitest"
)

// TestMain runs the devices of a child process when the test binary is started as one
// (Run starts children from os.Executable, here the test binary).
func TestMain(m *testing.M) {
	if spec, ok := os.LookupEnv(childEnv); ok {
		if err := runChild(context.Background(), spec, os.Stdout); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// A small storm, end to end with real child processes: cold, every device asks once;
// warm, every device uses the credentials it kept on disk (no request, no STS call).
func TestStormColdThenWarm(t *testing.T) {
	cfg := Config{Devices: 24, Workers: 2, PerChild: 12, PerSource: 6, ConnectConcurrency: 8,
		Phases: "both", Dir: t.TempDir(), Timeout: 2 * time.Minute}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	phases, err := Run(t.Context(), cfg, &out)
	t.Log(out.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(phases) != 2 {
		t.Fatalf("%d phases, want cold and warm", len(phases))
	}
	cold, warm := phases[0], phases[1]
	for _, p := range phases {
		if p.Ready != cfg.Devices || p.Connected != cfg.Devices || len(p.Errors) != 0 || p.Dropped != 0 {
			t.Errorf("%s: %+v, want every device ready, no error, nothing dropped", p.Name, p)
		}
	}
	if cold.Requests != int64(cfg.Devices) || cold.STSCalls < uint64(cfg.Devices) {
		t.Errorf("cold: %d replies accepted, %d STS calls, want one each per device", cold.Requests, cold.STSCalls)
	}
	if warm.Requests != 0 || warm.STSCalls != 0 || warm.WorkerRequests != 0 {
		t.Errorf("warm: %d replies accepted, %d worker requests, %d STS calls, want none", warm.Requests, warm.WorkerRequests, warm.STSCalls)
	}
}

func TestConfigRefused(t *testing.T) {
	t.Parallel()
	ok := Config{Devices: 10, Workers: 1, PerChild: 5, PerSource: 5, ConnectConcurrency: 1, Phases: "both", Timeout: time.Minute}
	for name, mod := range map[string]func(*Config){
		"devices":    func(c *Config) { c.Devices = 0 },
		"workers":    func(c *Config) { c.Workers = -1 },
		"per-child":  func(c *Config) { c.PerChild = 0 },
		"per-source": func(c *Config) { c.PerSource = 0 },
		"too many":   func(c *Config) { c.Devices, c.PerSource = 100000, 10 },
		"timeout":    func(c *Config) { c.Timeout = 0 },
		"warm":       func(c *Config) { c.Phases = "warm" },
	} {
		c := ok
		mod(&c)
		if err := c.validate(); err == nil {
			t.Errorf("%s: accepted %+v", name, c)
		} else if !strings.Contains(err.Error(), "must") && !strings.Contains(err.Error(), "--") {
			t.Errorf("%s: unclear error %v", name, err)
		}
	}
	if err := ok.validate(); err != nil {
		t.Fatal(err)
	}
}

// TestFlagSources: every flag has its variable and its configuration key, and each
// source sets it.
func TestFlagSources(t *testing.T) {
	t.Parallel()
	clitest.CheckFlags(t, clitest.Command{Spec: spec, Grammar: func() any { return &CLI{} }})
}

// TestExitCodes: 0 for --help and --version, 2 for usage and configuration errors.
func TestExitCodes(t *testing.T) {
	t.Parallel()
	clitest.CheckExitCodes(t, "stormbench", run, clitest.Exits{
		cli.ExitUsage: {{"--devices", "0"}, {"--phases", "warm"}, {"--timeout", "0s"}, {"--per-source", "1", "--devices", "1000"}},
	})
}
