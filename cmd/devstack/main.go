// Command devstack runs all of clipgate in one process on loopback — the local OSS and
// STS, the MQTT broker and token workers — for a first run and for demos:
//
//	devstack            # fixed ports (MQTT 1883, OSS 9100, STS 9101), state in .devstack/
//	devstack --demo     # random ports, 5 simulated cameras upload 3 clips each, then exit
//
// The state directory keeps the development keys, passwords, objects and sessions, so a
// restart picks up where the last run stopped; it also holds device.yaml, the
// configuration of a device ("cam-01") for cmd/device. The demo exits 0 when every clip
// was uploaded, announced, received by the consumer and stored with the right size and
// CRC-64, and 1 otherwise. SIGINT or SIGTERM stops either mode cleanly.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
	"github.com/rs/zerolog"

	"github.com/clipgate/clipgate/internal/devstack"
)

type cli struct {
	Dir         string        `placeholder:"DIR" help:"State directory (default ${defaultDir}; the demo uses a temporary one)."`
	MQTTAddr    string        `name:"mqtt-addr" placeholder:"HOST:PORT" help:"MQTT listen address (default ${defaultMQTT}; the demo picks a free port)."`
	HTTPAddr    string        `name:"http-addr" placeholder:"HOST:PORT" help:"Broker health/statistics address (default ${defaultHTTP}; the demo picks a free port)."`
	OSSAddr     string        `name:"oss-addr" placeholder:"HOST:PORT" help:"Local OSS listen address (default ${defaultOSS}; the demo picks a free port)."`
	STSAddr     string        `name:"sts-addr" placeholder:"HOST:PORT" help:"Local STS listen address (default ${defaultSTS}; the demo picks a free port)."`
	ConsoleAddr string        `name:"console-addr" placeholder:"HOST:PORT" help:"Operator console listen address (default ${defaultConsole}; the demo picks a free port)."`
	Bucket      string        `placeholder:"NAME" help:"OSS bucket (default clips)."`
	Prefix      string        `placeholder:"PREFIX" help:"Global key prefix, ending in '/' (default clips/)."`
	DeviceID    string        `name:"device-id" default:"${defaultDevice}" help:"Device written to device.yaml."`
	Workers     int           `default:"${defaultWorkers}" help:"Token workers."`
	Demo        bool          `help:"Run simulated cameras and a consumer, check every upload, print a summary and exit."`
	Devices     int           `default:"${defaultDevices}" help:"Demo: simulated cameras."`
	Clips       int           `default:"${defaultClips}" help:"Demo: clips per camera (a few hundred KiB each; the last above the multipart threshold)."`
	Timeout     time.Duration `default:"${defaultTimeout}" help:"Demo: give up after this long."`
	LogLevel    string        `enum:"debug,info,warn,error," default:"" help:"Log level on stderr: debug, info, warn or error (default warn; error with --demo)."`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		os.Exit(1)
	}
}

// run parses args and runs the stack (until ctx is done) or the demo.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c cli
	exited := false
	parser, err := kong.New(&c,
		kong.Name("devstack"),
		kong.Description("All of clipgate in one process on loopback: local OSS/STS, MQTT broker, token workers."),
		kong.Writers(stdout, stderr),
		kong.Exit(func(int) { exited = true }),
		kong.Vars{
			"defaultDir": devstack.DefaultDir, "defaultMQTT": devstack.DefaultMQTTAddr,
			"defaultHTTP": devstack.DefaultHTTPAddr, "defaultOSS": devstack.DefaultOSSAddr,
			"defaultSTS": devstack.DefaultSTSAddr, "defaultConsole": devstack.DefaultConsoleAddr, "defaultDevice": devstack.DefaultDeviceID,
			"defaultWorkers": fmt.Sprint(devstack.DefaultWorkers), "defaultDevices": fmt.Sprint(devstack.DefaultDemoDevices),
			"defaultClips": fmt.Sprint(devstack.DefaultDemoClips), "defaultTimeout": devstack.DefaultDemoTimeout.String(),
		},
	)
	if err != nil {
		return err
	}
	if _, err := parser.Parse(args); err != nil {
		return err
	}
	if exited {
		return nil // --help
	}
	if c.LogLevel == "" {
		// The demo's in-memory broker would warn that it keeps no sessions on disk.
		c.LogLevel = "warn"
		if c.Demo {
			c.LogLevel = "error"
		}
	}
	lvl, _ := zerolog.ParseLevel(c.LogLevel) // kong checked the enum
	cfg := devstack.Config{
		Dir: c.Dir, MQTTAddr: c.MQTTAddr, HTTPAddr: c.HTTPAddr, OSSAddr: c.OSSAddr, STSAddr: c.STSAddr, ConsoleAddr: c.ConsoleAddr,
		Bucket: c.Bucket, Prefix: c.Prefix, DeviceID: c.DeviceID, Workers: c.Workers,
		Logger: zerolog.New(zerolog.ConsoleWriter{Out: stderr, TimeFormat: "15:04:05.000"}).Level(lvl).With().Timestamp().Logger(),
	}
	if c.Workers < 1 {
		return fmt.Errorf("--workers %d: at least 1", c.Workers)
	}
	if !c.Demo {
		return devstack.Run(ctx, cfg, stdout)
	}
	if c.Devices < 1 || c.Clips < 1 || c.Timeout <= 0 {
		return fmt.Errorf("--devices, --clips and --timeout must be positive")
	}
	_, err = devstack.Demo(ctx, devstack.DemoConfig{Config: cfg, Devices: c.Devices, Clips: c.Clips, Timeout: c.Timeout}, stdout)
	return err
}
