// Command tokenbench measures clipgate's token round trip: simulated devices (one MQTT
// connection each, with its own device key) publish signed auth requests through the
// broker and wait for the replies, first answered by the real token workers (verification,
// session policy, STS AssumeRole on the local cloud, sealed reply), then by echo workers
// that answer at once without verifying or calling STS. It prints round trips per
// second, p50 and p99 latency of both, and their ratio.
//
// Everything runs in this process on loopback (internal/inproc): the broker, the workers,
// the local STS and the devices share the machine, so the figures are a lower bound of
// each part's capacity. Example:
//
//	go run ./cmd/tokenbench --devices 1000 --rounds 5 --workers 2
//
// Every flag can also be set by its CLIPGATE_* environment variable or in a YAML file
// (--config), in that order of precedence (see --help).
package main

import "github.com/clipgate/clipgate/internal/cli"

func main() { cli.Main("tokenbench", run) }
