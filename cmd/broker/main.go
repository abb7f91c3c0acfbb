// Command broker runs clipgate's MQTT broker and provisions its keys:
//
//	broker serve --data-dir DIR --connect-keys-file FILE [--service-accounts-file FILE] [--revocations-file FILE]
//	broker fleet-key FILE                                  (the token workers' fleet keys)
//	broker connect-keys --fleet-keys-file FILE OUT         (the broker's connect keys)
//	broker rotate-key --fleet-keys-file FILE [--grace D] [--connect-keys-file FILE]
//	broker device-key --fleet-keys-file FILE DEVICE_ID [--out FILE]
//	broker nats-issuer FILE
//	broker nats-callout --nats URL --issuer-seed-file FILE --connect-keys-file FILE [--service-accounts-file FILE] [--revocations-file FILE | --revocations-key-file FILE]
//	broker revocation-key FILE                             (the console's revocation list signing key)
//	broker hash-password < password.txt
//
// Every flag can also be set by its CLIPGATE_* environment variable or in a YAML file
// (--config), in that order of precedence (see --help). See internal/broker for what the
// broker enforces.
package main

import "github.com/clipgate/clipgate/internal/cli"

func main() { cli.Main("broker", run) }
