// Command broker runs clipgate's MQTT broker and provisions its keys:
//
//	broker serve --data-dir DIR --fleet-key-file FILE [--service-accounts-file FILE] [--revocations-file FILE]
//	broker fleet-key FILE
//	broker device-key --fleet-key-file FILE DEVICE_ID
//	broker nats-issuer FILE
//	broker nats-callout --nats URL --issuer-seed-file FILE --fleet-key-file FILE [--service-accounts-file FILE] [--revocations-file FILE]
//	broker hash-password < password.txt
//
// Every flag can also be set by its CLIPGATE_* environment variable or in a YAML file
// (--config), in that order of precedence (see --help). See internal/broker for what the
// broker enforces.
package main

import "github.com/clipgate/clipgate/internal/cli"

func main() { cli.Main("broker", run) }
