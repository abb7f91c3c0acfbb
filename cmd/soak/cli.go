package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/clipgate/clipgate/internal/bytesize"
	"github.com/clipgate/clipgate/internal/cli"
	"github.com/clipgate/clipgate/internal/soak"
)

// spec is the command's description to the command-line plumbing.
var spec = cli.Spec{
	Name:        "soak",
	Description: "Soak test: simulated cameras upload clips through the whole clipgate stack while faults are injected; lost events fail the run.",
	EnvPrefix:   "CLIPGATE",
}

// CLI is the command line; see package cli for how flags, variables and the
// configuration file set it.
type CLI struct {
	cli.Common

	Devices    int           `default:"10" help:"Simulated cameras."`
	Clips      int           `default:"4" help:"Clip files per camera, uploaded in turn under new names each round."`
	Duration   time.Duration `default:"5m" help:"How long new uploads start."`
	Drain      time.Duration `default:"2m" help:"How much longer the last uploads and the events may take."`
	Interval   time.Duration `default:"1s" help:"Pause between two uploads of a camera (±50%)."`
	Workers    int           `default:"2" help:"Token workers."`
	SmallSize  bytesize.Size `default:"32KiB" help:"Size of most clips: bytes or a size such as 32KiB."`
	LargeSize  bytesize.Size `default:"450KiB" help:"Size of the large clips (uploaded in parts): bytes or a size such as 450KiB."`
	LargeEvery int           `default:"4" help:"Every n-th clip of a camera is large (0: none)."`
	PartSize   bytesize.Size `default:"100KiB" help:"Multipart part size (at least 100 KiB): bytes or a size such as 1MiB."`

	FaultInterval time.Duration `default:"20s" help:"Mean pause between two faults (±50%)."`
	MaxPartition  time.Duration `default:"30s" help:"Longest network partition."`
	MaxDown       time.Duration `default:"5s" help:"Longest time a stopped part stays down."`
	BrokerRestart bool          `default:"true" negatable:"" help:"Restart the broker (stop, wait, start over the same data)."`
	WorkerRestart bool          `default:"true" negatable:"" help:"Stop a token worker, start another after a while."`
	Partition     bool          `default:"true" negatable:"" help:"Cut some cameras off the broker (OSS stays reachable)."`
	CloudRestart  bool          `default:"true" negatable:"" help:"Restart the local cloud (OSS and STS) over the same data."`

	Dir      string        `type:"path" help:"Working directory (clips, cluster data); default a temporary directory, removed at the end." placeholder:"DIR"`
	Progress time.Duration `default:"30s" help:"Interval of the progress lines on stderr."`
	LogFile  string        `type:"path" help:"Write the components' logs to this file, as --log-level and --log-format say (without it, they are not kept)." placeholder:"FILE"`
}

// faults returns the enabled fault kinds.
func (c *CLI) faults() []string {
	var f []string
	for _, k := range []struct {
		on   bool
		kind string
	}{
		{c.BrokerRestart, soak.FaultBrokerRestart},
		{c.WorkerRestart, soak.FaultWorkerRestart},
		{c.Partition, soak.FaultPartition},
		{c.CloudRestart, soak.FaultCloudRestart},
	} {
		if k.on {
			f = append(f, k.kind)
		}
	}
	return f
}

// run parses args and runs the soak.
func run(ctx context.Context, io cli.IO, args []string) error {
	var c CLI
	if _, err := cli.Parse(spec, &c, io, args); err != nil {
		return err
	}
	stdout, stderr := io.Stdout, io.Stderr
	// soak.Config takes 0 for "default"; on the command line 0 is a mistake.
	switch {
	case c.Devices < 1, c.Clips < 1, c.Workers < 1:
		return cli.Usagef("--devices, --clips and --workers must be at least 1")
	case c.Duration <= 0, c.Drain <= 0, c.SmallSize < 1, c.LargeSize < 1, c.PartSize < 1:
		return cli.Usagef("--duration, --drain and the sizes must be positive")
	}
	cfg := soak.Config{
		Devices: c.Devices, Clips: c.Clips, Duration: c.Duration, Drain: c.Drain,
		Interval: c.Interval, Workers: c.Workers, SmallSize: int64(c.SmallSize),
		LargeSize: int64(c.LargeSize), LargeEvery: c.LargeEvery, PartSize: int64(c.PartSize),
		Faults: c.faults(), FaultInterval: c.FaultInterval, MaxPartition: c.MaxPartition,
		MaxDown: c.MaxDown, Dir: c.Dir, Progress: stderr, ProgressEvery: c.Progress,
	}
	if c.LogFile != "" {
		f, err := os.OpenFile(c.LogFile, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return cli.Usage(fmt.Errorf("--log-file: %w", err))
		}
		defer f.Close()
		cfg.Logger = cli.NewLogger(f, c.LogLevel, c.LogFormat)
	}
	faults := strings.Join(cfg.Faults, ", ")
	if faults == "" {
		faults = "none"
	}
	fmt.Fprintf(stdout, "soak: %d devices x %d clips, %v (drain %v), faults every ~%v: %s\n",
		c.Devices, c.Clips, c.Duration, c.Drain, c.FaultInterval, faults)
	fmt.Fprintf(stdout, "machine: %d CPUs, load average at start %s\n", runtime.NumCPU(), loadAverage())
	res, err := soak.Run(ctx, cfg)
	if err != nil {
		if errors.Is(err, soak.ErrConfig) {
			return cli.Usage(err)
		}
		return err
	}
	res.Print(stdout)
	fmt.Fprintf(stdout, "load average at end %s\n", loadAverage())
	if !res.OK() {
		fmt.Fprintf(stdout, "FAIL: %d lost, %d split, %d unfinished\n", res.Lost, res.Split, res.Unfinished)
		return cli.ErrReported
	}
	fmt.Fprintln(stdout, "PASS")
	return nil
}

// loadAverage returns the 1-, 5- and 15-minute load averages from /proc/loadavg, or
// "unknown".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
