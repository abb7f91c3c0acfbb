// Command localcloud runs clipgate's local OSS- and STS-compatible servers on loopback, for
// development and tests without a cloud account.
//
//	localcloud                          # development keys, role and bucket, made on first run
//	localcloud -c localcloud.yaml       # keys, roles and buckets from a file
//
// A configuration file looks like this (every field is optional; policies are JSON strings
// or YAML mappings; a relative dataDir is relative to the file):
//
//	ossAddr: 127.0.0.1:9100
//	stsAddr: 127.0.0.1:9101
//	dataDir: localcloud-data
//	region: cn-hangzhou
//	endpointDomain: localhost   # Host BUCKET.localhost addresses BUCKET; - turns it off
//	accountId: "1000000000000000"
//	stsRate: 50                 # AssumeRole calls per second; 0 = unlimited
//	buckets: [clips]
//	keys:
//	  - id: LTAIexampleworker
//	    secret: change-me-please
//	roles:
//	  - name: clipgate-device
//	    maxSessionDuration: 1h
//	    policy: {Version: "1", Statement: [{Effect: Allow, Action: "oss:*", Resource: "acs:oss:*:*:clips/*"}]}
//
// Flags override the file. SIGINT or SIGTERM stops the servers cleanly.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/alecthomas/kong"
	"github.com/rs/zerolog"

	"github.com/clipgate/clipgate/internal/localcloud"
)

// Default listen addresses of the command (the package's default is a random port).
const (
	defaultOSSAddr = "127.0.0.1:9100"
	defaultSTSAddr = "127.0.0.1:9101"
	defaultDataDir = "localcloud-data"
)

type cli struct {
	Config    string   `short:"c" type:"existingfile" placeholder:"FILE" help:"YAML configuration file."`
	DataDir   string   `placeholder:"DIR" help:"Data directory: objects, uploads, token key, dev keys (default ${defaultDataDir}, or the file's dataDir)."`
	OSSAddr   string   `name:"oss-addr" placeholder:"HOST:PORT" help:"OSS listen address (default ${defaultOSSAddr}); port 0 picks one."`
	STSAddr   string   `name:"sts-addr" placeholder:"HOST:PORT" help:"STS listen address (default ${defaultSTSAddr}); port 0 picks one."`
	Region    string   `placeholder:"REGION" help:"Region the servers claim (default cn-hangzhou)."`
	Domain    string   `name:"endpoint-domain" placeholder:"DOMAIN" help:"Domain for virtual-hosted-style requests: Host BUCKET.DOMAIN addresses BUCKET (default localhost; - turns it off). Path style always works."`
	AccountID string   `name:"account-id" placeholder:"DIGITS" help:"Account ID in role ARNs (default 1000000000000000)."`
	STSRate   *float64 `name:"sts-rate" placeholder:"N" help:"AssumeRole calls per second allowed; 0 is unlimited."`
	Bucket    []string `placeholder:"NAME" help:"A bucket to serve (repeatable); replaces the file's buckets."`
	LogLevel  string   `enum:"debug,info,warn,error" default:"info" help:"Log level: ${enum}."`
	LogFormat string   `enum:"console,json" default:"console" help:"Log format on stderr: ${enum}."`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "localcloud:", err)
		os.Exit(1)
	}
}

// run parses args, starts the servers, prints how to reach them on stdout and serves until
// ctx is done.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c cli
	exited := false
	parser, err := kong.New(&c,
		kong.Name("localcloud"),
		kong.Description("OSS- and STS-compatible servers on loopback, for clipgate development and tests."),
		kong.Writers(stdout, stderr),
		kong.Exit(func(int) { exited = true }),
		kong.Vars{"defaultOSSAddr": defaultOSSAddr, "defaultSTSAddr": defaultSTSAddr, "defaultDataDir": defaultDataDir},
	)
	if err != nil {
		return err
	}
	if _, err := parser.Parse(args); err != nil {
		return err
	}
	if exited { // --help
		return nil
	}
	cfg, err := c.config()
	if err != nil {
		return err
	}
	cfg.Logger = newLogger(stderr, c.LogFormat, c.LogLevel)
	dev, err := localcloud.ApplyDevDefaults(&cfg)
	if err != nil {
		return err
	}
	srv, err := localcloud.Start(cfg)
	if err != nil {
		return err
	}
	printBanner(stdout, srv, cfg, dev)
	<-ctx.Done()
	fmt.Fprintln(stdout, "localcloud: stopping")
	return srv.Close()
}

// config merges the file (if any) and the flags, flags winning.
func (c *cli) config() (localcloud.Config, error) {
	var cfg localcloud.Config
	if c.Config != "" {
		var err error
		if cfg, err = localcloud.LoadConfigFile(c.Config); err != nil {
			return cfg, err
		}
	}
	set := func(dst *string, flag, def string) {
		switch {
		case flag != "":
			*dst = flag
		case *dst == "":
			*dst = def
		}
	}
	set(&cfg.DataDir, c.DataDir, defaultDataDir)
	set(&cfg.OSSAddr, c.OSSAddr, defaultOSSAddr)
	set(&cfg.STSAddr, c.STSAddr, defaultSTSAddr)
	set(&cfg.Region, c.Region, "")
	set(&cfg.EndpointDomain, c.Domain, "")
	set(&cfg.AccountID, c.AccountID, "")
	if c.STSRate != nil {
		cfg.STSRate = *c.STSRate
	}
	if len(c.Bucket) > 0 {
		cfg.Buckets = c.Bucket
	}
	abs, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return cfg, err
	}
	cfg.DataDir = abs
	if err := localcloud.CheckConfig(cfg); err != nil {
		return cfg, err
	}
	return cfg, nil
}

func newLogger(w io.Writer, format, level string) zerolog.Logger {
	if format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000"}
	}
	lvl, err := zerolog.ParseLevel(level)
	if err != nil {
		lvl = zerolog.InfoLevel
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger()
}

func printBanner(w io.Writer, srv *localcloud.Server, cfg localcloud.Config, dev localcloud.DevDefaults) {
	var b strings.Builder
	line := func(k, v string) { fmt.Fprintf(&b, "  %-14s %s\n", k, v) }
	b.WriteString("localcloud is running (Ctrl-C to stop)\n")
	line("OSS endpoint", srv.OSSEndpoint())
	line("STS endpoint", srv.STSEndpoint()+"  (plain HTTP: set the request Scheme to \"http\")")
	line("region", srv.Region())
	if d := srv.EndpointDomain(); d != "" {
		line("virtual hosts", "BUCKET."+d+" (path style /BUCKET/KEY too)")
	}
	line("buckets", strings.Join(cfg.Buckets, ", "))
	line("data dir", cfg.DataDir)
	if dev.Key != nil {
		how := "reused from " + dev.KeyFilePath
		if dev.KeyCreated {
			how = "generated, kept in " + dev.KeyFilePath
		}
		line("access key", dev.Key.ID+"  ("+how+")")
		line("secret", dev.Key.Secret)
	} else {
		ids := make([]string, len(cfg.Keys))
		for i, k := range cfg.Keys {
			ids[i] = k.ID
		}
		line("access keys", strings.Join(ids, ", ")+"  (secrets as configured)")
	}
	for _, r := range cfg.Roles {
		line("role ARN", srv.RoleARN(r.Name))
	}
	_, _ = io.WriteString(w, b.String())
}
