package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/alecthomas/kong"

	"github.com/clipgate/clipgate/internal/cli"
	"github.com/clipgate/clipgate/internal/localcloud"
	"github.com/clipgate/clipgate/internal/ops"
)

// Default listen addresses and data directory of the command (the package's default
// addresses are random ports).
const (
	defaultOSSAddr = "127.0.0.1:9100"
	defaultSTSAddr = "127.0.0.1:9101"
	defaultDataDir = "localcloud-data"
)

// spec is the command's description to the command-line plumbing.
var spec = cli.Spec{
	Name:        "localcloud",
	Description: "OSS- and STS-compatible servers on loopback, for clipgate development and tests.",
	EnvPrefix:   "CLIPGATE",
	LogFormat:   "console",
	Vars: kong.Vars{
		"defaultOSSAddr":   defaultOSSAddr,
		"defaultSTSAddr":   defaultSTSAddr,
		"defaultDataDir":   defaultDataDir,
		"defaultRegion":    localcloud.DefaultRegion,
		"defaultDomain":    localcloud.DefaultEndpointDomain,
		"defaultAccountID": localcloud.DefaultAccountID,
		"defaultBucket":    localcloud.DevBucket,
		"defaultRole":      localcloud.DevRoleName,
	},
}

// CLI is the command line; see package cli for how flags, variables and the
// configuration file set it.
type CLI struct {
	cli.Common
	cli.Ops

	DataDir   string    `name:"data-dir" type:"path" placeholder:"DIR" default:"${defaultDataDir}" help:"Data directory: objects, uploads, token key, dev keys (default ${default})."`
	OSSAddr   string    `name:"oss-addr" placeholder:"HOST:PORT" default:"${defaultOSSAddr}" help:"OSS listen address (default ${default}); port 0 picks one."`
	STSAddr   string    `name:"sts-addr" placeholder:"HOST:PORT" default:"${defaultSTSAddr}" help:"STS listen address (default ${default}); port 0 picks one."`
	Region    string    `placeholder:"REGION" default:"${defaultRegion}" help:"Region the servers claim (default ${default})."`
	Domain    string    `name:"endpoint-domain" placeholder:"DOMAIN" default:"${defaultDomain}" help:"Domain for virtual-hosted-style requests: Host BUCKET.DOMAIN addresses BUCKET (default ${default}; - turns it off). Path style always works."`
	AccountID string    `name:"account-id" placeholder:"DIGITS" default:"${defaultAccountID}" help:"Account ID in role ARNs (default ${default})."`
	STSRate   float64   `name:"sts-rate" placeholder:"N" default:"0" help:"AssumeRole calls per second allowed; 0 is unlimited."`
	Buckets   []string  `name:"buckets" placeholder:"NAME" help:"Buckets to serve (repeat the flag, or separate with ','; default ${defaultBucket})."`
	Keys      keySpecs  `name:"keys" placeholder:"ID,secret-file=FILE[,user=NAME][,policy-file=FILE]" help:"Long-term access keys (repeat the flag, or separate with ';'): the secret in a file (one line, mode 0600), the RAM user's name (default the ID), a permission policy file (JSON; default full access). Default: a development key with full access, kept in the data directory."`
	Roles     roleSpecs `name:"roles" placeholder:"NAME,policy-file=FILE[,trust-file=FILE][,max-session-duration=D]" help:"Roles for AssumeRole (repeat the flag, or separate with ';'): the permission policy file (JSON), the trust policy file (default: the account's users and role sessions), the longest session (1h to 12h, default 1h). Default: ${defaultRole}, allowed everything in the buckets."`
}

// run is the command: it starts the servers, prints how to reach them on stdout and serves
// until ctx ends.
func run(ctx context.Context, io cli.IO, args []string) error {
	var c CLI
	kctx, err := cli.Parse(spec, &c, io, args)
	if err != nil {
		return err
	}
	cfg, err := c.config()
	if err != nil {
		return cli.Usage(err)
	}
	cfg.Logger = kctx.Logger()
	dev, err := localcloud.ApplyDevDefaults(&cfg)
	if err != nil {
		return cli.Usage(err)
	}
	srv, err := localcloud.Start(cfg)
	if err != nil {
		return err
	}
	reg := ops.NewRegistry("localcloud")
	reg.MustRegister(srv.Collector())
	opsSrv, err := ops.Serve(c.MetricsAddr, "localcloud", reg)
	if err != nil {
		return errors.Join(cli.Usage(fmt.Errorf("--metrics-addr: %w", err)), srv.Close())
	}
	printBanner(io.Stdout, srv, cfg, dev)
	if opsSrv != nil {
		fmt.Fprintf(io.Stdout, "  %-14s http://%s/metrics\n", "metrics", opsSrv.Addr())
	}
	<-ctx.Done()
	fmt.Fprintln(io.Stdout, "localcloud: stopping")
	return errors.Join(opsSrv.Close(), srv.Close())
}

// config returns the servers' configuration, with the keys' secrets and the policies read
// from their files.
func (c *CLI) config() (localcloud.Config, error) {
	abs, err := filepath.Abs(c.DataDir)
	if err != nil {
		return localcloud.Config{}, err
	}
	cfg := localcloud.Config{
		DataDir: abs, OSSAddr: c.OSSAddr, STSAddr: c.STSAddr, Region: c.Region, EndpointDomain: c.Domain,
		AccountID: c.AccountID, STSRate: c.STSRate, Buckets: c.Buckets,
	}
	for _, k := range c.Keys {
		key, err := k.accessKey()
		if err != nil {
			return cfg, fmt.Errorf("--keys: %w", err)
		}
		cfg.Keys = append(cfg.Keys, key)
	}
	for _, r := range c.Roles {
		role, err := r.role()
		if err != nil {
			return cfg, fmt.Errorf("--roles: %w", err)
		}
		cfg.Roles = append(cfg.Roles, role)
	}
	if err := localcloud.CheckConfig(cfg); err != nil {
		return cfg, err
	}
	return cfg, nil
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
