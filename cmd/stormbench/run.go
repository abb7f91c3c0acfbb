package main

import (
	"context"
	"os"

	"github.com/clipgate/clipgate/internal/cli"
)

// spec is the command's description to the command-line plumbing.
var spec = cli.Spec{
	Name:        "stormbench",
	Description: "Reconnect storm: N device kits get credentials at once, with no credentials on disk (cold) and with them (warm).",
	EnvPrefix:   "CLIPGATE",
	LogLevel:    "warn",
	LogFormat:   "console",
}

// CLI is the command line; see package cli for how flags, variables and the
// configuration file set it.
type CLI struct {
	cli.Common
	Config `embed:""`
}

// run is the command, or a child process of it (see childEnv).
func run(ctx context.Context, io cli.IO, args []string) error {
	getenv := io.Getenv
	if getenv == nil {
		getenv = os.LookupEnv
	}
	if spec, ok := getenv(childEnv); ok {
		return runChild(ctx, spec, io.Stdout)
	}
	var c CLI
	kctx, err := cli.Parse(spec, &c, io, args)
	if err != nil {
		return err
	}
	if err := c.Config.validate(); err != nil {
		return cli.Usage(err)
	}
	c.Config.Logger = kctx.Logger()
	_, err = Run(ctx, c.Config, io.Stdout)
	return err
}
