// Command broker runs clipgate's MQTT broker and provisions its keys:
//
//	broker serve --data-dir DIR --fleet-key FILE [--service-accounts FILE] [--revocations FILE]
//	broker fleet-key FILE
//	broker device-key --fleet-key FILE DEVICE_ID
//	broker hash-password < password.txt
//
// See internal/broker for what the broker enforces.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
