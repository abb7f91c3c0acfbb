package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clipgate/clipgate/internal/cli"
	"github.com/clipgate/clipgate/internal/cli/clitest"
	"github.com/clipgate/clipgate/internal/protocol"
)

// TestRunSmall runs both phases with a small fleet and checks what was measured: every
// request of the real phase brought credentials that opened with the device key, every
// echo request got the echo reply, nothing timed out, and the report names the figures.
func TestRunSmall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const devices, rounds = 20, 2
	var out bytes.Buffer
	rep, err := Run(ctx, Config{Devices: devices, Rounds: rounds, Workers: 2, ReplyTimeout: 10 * time.Second, ConnectConcurrency: 8}, &out)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
	want := devices * rounds
	for _, p := range []*Phase{rep.Real, rep.Echo} {
		if p == nil {
			t.Fatal("a phase is missing")
		}
		if p.RoundTrips != want || p.Timeouts != 0 || len(p.Failures) != 0 {
			t.Errorf("%s: %d round trips, %d timeouts, failures %v; want %d, 0, none", p.Name, p.RoundTrips, p.Timeouts, p.Failures, want)
		}
		if p.Wall <= 0 || p.P50 <= 0 || p.P99 < p.P50 || p.Rate() <= 0 {
			t.Errorf("%s: wall %v, p50 %v, p99 %v", p.Name, p.Wall, p.P50, p.P99)
		}
	}
	if rep.Real.Codes["ok"] != want {
		t.Errorf("real phase replies %v, want ok=%d", rep.Real.Codes, want)
	}
	if rep.Echo.Codes[string(protocol.CodeUnavailable)] != want {
		t.Errorf("echo phase replies %v, want unavailable=%d", rep.Echo.Codes, want)
	}
	// Every request of the real phase (and its warm-up) called STS: nothing was reused.
	var stsCalls, reused uint64
	for _, st := range rep.WorkerStats {
		stsCalls += st.STSCalls
		reused += st.Reused
	}
	if stsCalls != uint64(want+devices) || reused != 0 {
		t.Errorf("workers made %d STS calls and reused %d credentials; want %d and 0", stsCalls, reused, want+devices)
	}
	for _, s := range []string{"real warm-up", "echo warm-up", "round trips/s", "p99", "ratio real (with credentials) / echo"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("the report does not mention %q", s)
		}
	}
}

// With --reuse and device routing, each device's requests reach one worker, whose cache
// serves all but the first: one STS call per device across the two workers.
func TestRunDeviceRoutingReuse(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const devices, rounds = 20, 3
	var out bytes.Buffer
	rep, err := Run(ctx, Config{Devices: devices, Rounds: rounds, Workers: 2, Reuse: true, WorkerRouting: "device",
		Phases: "real", ReplyTimeout: 10 * time.Second, ConnectConcurrency: 8}, &out)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
	if rep.Real == nil || rep.Real.Codes["ok"] != devices*rounds {
		t.Fatalf("real phase %+v, want ok=%d", rep.Real, devices*rounds)
	}
	var stsCalls, reused uint64
	for _, st := range rep.WorkerStats {
		stsCalls += st.STSCalls
		reused += st.Reused
	}
	if stsCalls != devices || reused != devices*rounds {
		t.Errorf("workers made %d STS calls and reused %d credentials; want %d and %d", stsCalls, reused, devices, devices*rounds)
	}
	if !strings.Contains(out.String(), "worker routing device") {
		t.Error("the report does not name the routing")
	}
}

func TestRunRefusesBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{Devices: 0, Rounds: 1, Workers: 1, ReplyTimeout: time.Second, ConnectConcurrency: 1},
		{Devices: 1, Rounds: 0, Workers: 1, ReplyTimeout: time.Second, ConnectConcurrency: 1},
		{Devices: 1, Rounds: 1, Workers: 0, ReplyTimeout: time.Second, ConnectConcurrency: 1},
		{Devices: 1, Rounds: 1, Workers: 1, ReplyTimeout: 0, ConnectConcurrency: 1},
		{Devices: 1, Rounds: 1, Workers: 1, ReplyTimeout: time.Second, ConnectConcurrency: 0},
		{Devices: 1, Rounds: 1, Workers: 1, EchoWorkers: -1, ReplyTimeout: time.Second, ConnectConcurrency: 1},
		{Devices: 1, Rounds: 1, Workers: 1, MaxConcurrent: -1, ReplyTimeout: time.Second, ConnectConcurrency: 1},
		{Devices: 1, Rounds: 1, Workers: 1, MaxWritesPending: -1, ReplyTimeout: time.Second, ConnectConcurrency: 1},
		{Devices: 1, Rounds: 1, Workers: 1, QueueSize: -1, ReplyTimeout: time.Second, ConnectConcurrency: 1},
		{Devices: 1, Rounds: 1, Workers: 1, WorkerRouting: "hash", ReplyTimeout: time.Second, ConnectConcurrency: 1},
	} {
		var out bytes.Buffer
		if _, err := Run(context.Background(), cfg, &out); err == nil {
			t.Errorf("Run(%+v) accepted", cfg)
		}
		if out.Len() != 0 {
			t.Errorf("Run(%+v) printed %q before refusing", cfg, out.String())
		}
	}
}

func TestPercentile(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	var xs []time.Duration
	for i := 1; i <= 100; i++ {
		xs = append(xs, ms(i))
	}
	for _, c := range []struct {
		xs   []time.Duration
		q    float64
		want time.Duration
	}{
		{xs, 0.5, ms(50)}, {xs, 0.99, ms(99)}, {xs, 1, ms(100)},
		{xs[:1], 0.5, ms(1)}, {xs[:1], 0.99, ms(1)}, {nil, 0.5, 0},
		{xs[:3], 0.5, ms(2)}, {xs[:3], 0.99, ms(3)},
	} {
		if got := percentile(c.xs, c.q); got != c.want {
			t.Errorf("percentile(%d values, %v) = %v, want %v", len(c.xs), c.q, got, c.want)
		}
	}
}

// TestFlagSources: every flag has its variable and its configuration key, and each
// source sets it.
func TestFlagSources(t *testing.T) {
	t.Parallel()
	clitest.CheckFlags(t, clitest.Command{Spec: spec, Grammar: func() any { return &CLI{} }})
}

// TestExitCodes: 0 for --help and --version, 2 for usage and configuration errors (a
// failed measurement exits 1).
func TestExitCodes(t *testing.T) {
	t.Parallel()
	clitest.CheckExitCodes(t, "tokenbench", run, clitest.Exits{
		cli.ExitUsage: {{"--devices", "0"}, {"--reply-timeout", "0s"}, {"--max-concurrent=-1"}},
		// The profile cannot be written: found once the stack runs.
		cli.ExitFailure: {{"--devices", "2", "--rounds", "1", "--phases", "real", "--cpu-profile", filepath.Join(t.TempDir(), "none", "cpu.out")}},
	})
}
