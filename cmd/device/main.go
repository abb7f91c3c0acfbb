// Command device is the clipgate camera CLI: it gets short-lived OSS credentials over
// MQTT with devicekit and uploads files as clips, each announced with an upload event.
//
//	device upload FILE...        upload files; one result line per file
//	device credentials           show the scope and expiry of the device's credentials
//	device watch DIR             upload the clips a recorder writes into DIR (spool mode)
//
// Every flag can also be set by its CLIPGATE_DEVICE_* environment variable or in a YAML
// file keyed by flag names (--config, default .devstack/device.yaml when it exists, as
// devstack writes it), in that order of precedence (see --help).
//
// Exit status: 0 when everything succeeded, 1 when an upload or the connection failed,
// 2 for a usage or configuration error.
package main

import "github.com/clipgate/clipgate/internal/cli"

func main() { cli.Main("device", run) }
