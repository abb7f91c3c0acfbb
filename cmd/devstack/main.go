// Command devstack runs all of clipgate in one process on loopback — the local OSS and
// STS, the MQTT broker and token workers — for a first run and for demos:
//
//	devstack            # fixed ports (MQTT 1883, OSS 9100, STS 9101), state in .devstack/
//	devstack --demo     # random ports, 5 simulated cameras upload 3 clips each, then exit
//
// The state directory keeps the development keys, passwords, objects and sessions, so a
// restart picks up where the last run stopped; it also holds device.yaml, the
// configuration of a device ("cam-01") for cmd/device. The demo exits 0 when every clip
// was uploaded, announced, received by the consumer and stored with the right size and
// CRC-64, and 1 otherwise. SIGINT or SIGTERM stops either mode cleanly. Every flag can
// also be set by its CLIPGATE_* environment variable or in a YAML file (--config), in
// that order of precedence (see --help).
package main

import "github.com/clipgate/clipgate/internal/cli"

func main() { cli.Main("devstack", run) }
