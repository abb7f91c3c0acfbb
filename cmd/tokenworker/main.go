// Command tokenworker answers clipgate device auth requests over MQTT: it verifies each
// request, builds the device's least-privilege policy, calls STS AssumeRole and replies on
// the device's own topic. Run as many as needed, in one process (--workers) or many; they
// share the requests through a shared subscription.
//
// Every flag can also be set by its CLIPGATE_* environment variable or in a YAML file
// (--config), in that order of precedence (see --help). Secrets are never flags: the
// broker password comes from CLIPGATE_PASSWORD or --password-file, the STS access key
// secret from CLIPGATE_STS_ACCESS_KEY_SECRET or --sts-access-key-secret-file.
package main

import "github.com/clipgate/clipgate/internal/cli"

func main() { cli.Main("tokenworker", run) }
