// Command stormbench measures a fleet-wide reconnect storm (issue 15): N cameras, each a
// real devicekit.Kit with its own state directory, start at once and get credentials
// through the broker from the token workers, which call the local STS at their production
// rate. It runs two phases on the same state directories:
//
//   - cold: no credentials on disk, every device asks (the first start, or a fleet whose
//     credentials expired);
//   - warm: the same devices restart (a power cut) with the credentials their first run
//     kept on disk, sealed to the device key.
//
// It prints, per phase, when the last device held credentials, the STS calls, the busy
// replies and request timeouts, and what the broker dropped or held. The broker, the
// workers and the local cloud run in this process (internal/inproc) with their production
// defaults; the devices run in child processes of this command (the open-file limit of a
// process is 20,000 here, and each device holds its connection and its state lock), from
// many loopback source addresses (--per-source devices each: the broker limits connections
// per source address, 50 a second by default). Example:
//
//	go run ./cmd/stormbench --devices 10000 --workers 4
package main

import "github.com/clipgate/clipgate/internal/cli"

func main() { cli.Main("stormbench", run) }
