package main

import (
	"context"
	"fmt"
	"time"

	"github.com/alecthomas/kong"

	"github.com/clipgate/clipgate/internal/cli"
	"github.com/clipgate/clipgate/internal/devstack"
)

// spec is the command's description to the command-line plumbing.
var spec = cli.Spec{
	Name:        "devstack",
	Description: "All of clipgate in one process on loopback: local OSS/STS, MQTT broker, token workers.",
	EnvPrefix:   "CLIPGATE",
	LogLevel:    "warn",
	LogFormat:   "console",
	Vars: kong.Vars{
		"defaultDir": devstack.DefaultDir, "defaultMQTT": devstack.DefaultMQTTAddr,
		"defaultHTTP": devstack.DefaultHTTPAddr, "defaultOSS": devstack.DefaultOSSAddr,
		"defaultSTS": devstack.DefaultSTSAddr, "defaultConsole": devstack.DefaultConsoleAddr, "defaultDevice": devstack.DefaultDeviceID,
		"defaultWorkers": fmt.Sprint(devstack.DefaultWorkers), "defaultDevices": fmt.Sprint(devstack.DefaultDemoDevices),
		"defaultClips": fmt.Sprint(devstack.DefaultDemoClips), "defaultTimeout": devstack.DefaultDemoTimeout.String(),
	},
}

// CLI is the command line; see package cli for how flags, variables and the
// configuration file set it.
type CLI struct {
	cli.Common

	Dir         string        `type:"path" placeholder:"DIR" help:"State directory (default ${defaultDir}; the demo uses a temporary one)."`
	MQTTAddr    string        `name:"mqtt-addr" placeholder:"HOST:PORT" help:"MQTT listen address (default ${defaultMQTT}; the demo picks a free port)."`
	HTTPAddr    string        `name:"http-addr" placeholder:"HOST:PORT" help:"Broker health/statistics address (default ${defaultHTTP}; the demo picks a free port)."`
	OSSAddr     string        `name:"oss-addr" placeholder:"HOST:PORT" help:"Local OSS listen address (default ${defaultOSS}; the demo picks a free port)."`
	STSAddr     string        `name:"sts-addr" placeholder:"HOST:PORT" help:"Local STS listen address (default ${defaultSTS}; the demo picks a free port)."`
	ConsoleAddr string        `name:"console-addr" placeholder:"HOST:PORT" help:"Operator console listen address (default ${defaultConsole}; the demo picks a free port)."`
	OSSBucket   string        `name:"oss-bucket" placeholder:"NAME" help:"OSS bucket (default clips)."`
	OSSPrefix   string        `name:"oss-prefix" placeholder:"PREFIX" help:"Global key prefix, ending in '/' (default clips/)."`
	DeviceID    string        `name:"device-id" default:"${defaultDevice}" help:"Device written to device.yaml."`
	Workers     int           `default:"${defaultWorkers}" help:"Token workers."`
	Engine      string        `default:"mochi" enum:"mochi,nats" help:"Broker engine: mochi (one embedded broker) or nats (a 3-node NATS JetStream cluster in this process, with the auth callout; devices connect to its MQTT gateways)."`
	Demo        bool          `help:"Run simulated cameras and a consumer, check every upload, print a summary and exit."`
	Devices     int           `default:"${defaultDevices}" help:"Demo: simulated cameras."`
	Clips       int           `default:"${defaultClips}" help:"Demo: clips per camera (a few hundred KiB each; the last above the multipart threshold)."`
	DemoTimeout time.Duration `name:"demo-timeout" default:"${defaultTimeout}" help:"Demo: give up after this long."`
}

// run is the command: the stack until ctx ends, or the demo.
// bcryptCost is the service accounts' bcrypt cost: 0, production's (devstack.Config);
// the command's tests lower it.
var bcryptCost int

func run(ctx context.Context, io cli.IO, args []string) error {
	var c CLI
	kctx, err := cli.Parse(spec, &c, io, args)
	if err != nil {
		return err
	}
	if c.Demo && !kctx.Set("log-level") {
		// The demo's in-memory broker would warn that it keeps no sessions on disk.
		c.LogLevel = "error"
	}
	if c.Workers < 1 {
		return cli.Usagef("--workers %d: at least 1", c.Workers)
	}
	cfg := devstack.Config{
		Dir: c.Dir, MQTTAddr: c.MQTTAddr, HTTPAddr: c.HTTPAddr, OSSAddr: c.OSSAddr, STSAddr: c.STSAddr, ConsoleAddr: c.ConsoleAddr,
		Bucket: c.OSSBucket, Prefix: c.OSSPrefix, DeviceID: c.DeviceID, Workers: c.Workers,
		Engine: c.Engine, BcryptCost: bcryptCost, Logger: kctx.Logger(),
	}
	if !c.Demo {
		return devstack.Run(ctx, cfg, io.Stdout)
	}
	if c.Devices < 1 || c.Clips < 1 || c.DemoTimeout <= 0 {
		return cli.Usagef("--devices, --clips and --demo-timeout must be positive")
	}
	_, err = devstack.Demo(ctx, devstack.DemoConfig{Config: cfg, Devices: c.Devices, Clips: c.Clips, Timeout: c.DemoTimeout}, io.Stdout)
	return err
}
