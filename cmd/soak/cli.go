package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/alecthomas/kong"
	"github.com/rs/zerolog"

	"github.com/clipgate/clipgate/internal/bytesize"
	"github.com/clipgate/clipgate/internal/soak"
)

// Exit codes.
const (
	exitOK    = 0
	exitLost  = 1 // events lost, clips split or unfinished, or the run failed
	exitUsage = 2
)

// CLI is the command line.
type CLI struct {
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

	Dir      string        `help:"Working directory (clips, cluster data); default a temporary directory, removed at the end." placeholder:"DIR"`
	Progress time.Duration `default:"30s" help:"Interval of the progress lines on stderr."`
	LogFile  string        `help:"Write the components' logs (JSON) to this file." placeholder:"FILE"`
	LogLevel string        `default:"info" enum:"debug,info,warn,error" help:"Level of the log file."`
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

// run parses args, runs the soak and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var cli CLI
	exited := false
	parser, err := kong.New(&cli,
		kong.Name("soak"),
		kong.Description("Soak test: simulated cameras upload clips through the whole clipgate stack while faults are injected; lost events fail the run."),
		kong.Writers(stdout, stderr),
		kong.Exit(func(int) { exited = true }),
	)
	if err != nil {
		fmt.Fprintln(stderr, "soak:", err)
		return exitUsage
	}
	_, err = parser.Parse(args)
	if exited {
		return exitOK // --help
	}
	if err != nil {
		fmt.Fprintln(stderr, "soak:", err)
		return exitUsage
	}

	// soak.Config takes 0 for "default"; on the command line 0 is a mistake.
	switch {
	case cli.Devices < 1, cli.Clips < 1, cli.Workers < 1:
		fmt.Fprintln(stderr, "soak: --devices, --clips and --workers must be at least 1")
		return exitUsage
	case cli.Duration <= 0, cli.Drain <= 0, cli.SmallSize < 1, cli.LargeSize < 1, cli.PartSize < 1:
		fmt.Fprintln(stderr, "soak: --duration, --drain and the sizes must be positive")
		return exitUsage
	}
	cfg := soak.Config{
		Devices: cli.Devices, Clips: cli.Clips, Duration: cli.Duration, Drain: cli.Drain,
		Interval: cli.Interval, Workers: cli.Workers, SmallSize: int64(cli.SmallSize),
		LargeSize: int64(cli.LargeSize), LargeEvery: cli.LargeEvery, PartSize: int64(cli.PartSize),
		Faults: cli.faults(), FaultInterval: cli.FaultInterval, MaxPartition: cli.MaxPartition,
		MaxDown: cli.MaxDown, Dir: cli.Dir, Progress: stderr, ProgressEvery: cli.Progress,
	}
	if cli.LogFile != "" {
		f, err := os.OpenFile(cli.LogFile, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			fmt.Fprintln(stderr, "soak:", err)
			return exitUsage
		}
		defer f.Close()
		lvl, _ := zerolog.ParseLevel(cli.LogLevel) // the enum admits only valid levels
		cfg.Logger = zerolog.New(f).Level(lvl).With().Timestamp().Logger()
	}
	faults := strings.Join(cfg.Faults, ", ")
	if faults == "" {
		faults = "none"
	}
	fmt.Fprintf(stdout, "soak: %d devices x %d clips, %v (drain %v), faults every ~%v: %s\n",
		cli.Devices, cli.Clips, cli.Duration, cli.Drain, cli.FaultInterval, faults)
	fmt.Fprintf(stdout, "machine: %d CPUs, load average at start %s\n", runtime.NumCPU(), loadAverage())
	res, err := soak.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, err)
		if errors.Is(err, soak.ErrConfig) {
			return exitUsage
		}
		return exitLost
	}
	res.Print(stdout)
	fmt.Fprintf(stdout, "load average at end %s\n", loadAverage())
	if !res.OK() {
		fmt.Fprintf(stdout, "FAIL: %d lost, %d split, %d unfinished\n", res.Lost, res.Split, res.Unfinished)
		return exitLost
	}
	fmt.Fprintln(stdout, "PASS")
	return exitOK
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
