package main

import (
	"context"

	"github.com/clipgate/clipgate/internal/cli"
)

// spec is the command's description to the command-line plumbing.
var spec = cli.Spec{
	Name:        "tokenbench",
	Description: "Token round trips through the broker: real token workers against echo workers.",
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

// run is the command.
func run(ctx context.Context, io cli.IO, args []string) error {
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
