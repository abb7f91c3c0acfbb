// Command soak runs clipgate under load with faults: N simulated cameras upload M clips
// each, in turn and under new names, for a given time against the whole stack in this
// process (local OSS and STS, the broker with persistent sessions, token workers, a
// backend consumer with a persistent session), while faults are injected at random:
// broker restarts, token worker stops, network partitions between devices and broker,
// local cloud restarts. After a drain period it prints uploads, events delivered,
// duplicates, lost events (uploads whose event never arrived), clips announced under two
// event IDs, and upload latency; it exits 1 if anything was lost.
//
//	go run ./cmd/soak --devices 10 --clips 4 --duration 5m
//	go run ./cmd/soak --duration 1m --no-broker-restart --fault-interval 5s
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
