// Command tokenworker answers clipgate device auth requests over MQTT: it verifies each
// request, builds the device's least-privilege policy, calls STS AssumeRole and replies on
// the device's own topic. Run as many as needed, in one process (--workers) or many; they
// share the requests through a shared subscription.
//
// Configuration comes from flags, CLIPGATE_* environment variables and a YAML file
// (--config), in that order of precedence. Secrets are never flags: the broker password
// comes from CLIPGATE_PASSWORD or --password-file, the STS access key secret from
// CLIPGATE_STS_ACCESS_KEY_SECRET or --sts-access-key-secret-file.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	m := NewMain()
	if err := m.ParseFlags(os.Args[1:]); err != nil {
		if errors.Is(err, errHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "tokenworker:", err)
		os.Exit(2)
	}
	if err := m.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "tokenworker:", err)
		_ = m.Close()
		os.Exit(1)
	}
	<-ctx.Done()
	stop() // a second signal kills the process at once
	if err := m.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "tokenworker:", err)
		os.Exit(1)
	}
}
