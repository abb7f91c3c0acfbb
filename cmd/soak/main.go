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
//
// Every flag can also be set by its CLIPGATE_* environment variable or in a YAML file
// (--config), in that order of precedence (see --help). Exit status: 0 when nothing was
// lost, 1 when something was or the run failed, 2 for a usage or configuration error.
package main

import "github.com/clipgate/clipgate/internal/cli"

func main() { cli.Main("soak", run) }
