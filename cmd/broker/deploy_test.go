package main

import (
	"testing"

	"github.com/clipgate/clipgate/internal/cli"
)

// TestExampleConfig loads deploy/config/broker.yaml with the broker's own loader, which
// refuses unknown keys and secrets in the file, and builds the broker configuration.
func TestExampleConfig(t *testing.T) {
	t.Parallel()
	var c CLI
	ctx, err := cli.Parse(spec, &c, cli.IO{Getenv: func(string) (string, bool) { return "", false }},
		[]string{"--config", "../../deploy/config/broker.yaml", "serve"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := c.Serve.config(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TLS.Addr != "0.0.0.0:8883" || c.Serve.MetricsAddr != "127.0.0.1:9641" || cfg.DataDir != "/var/lib/clipgate-broker" ||
		cfg.ConnectKeysFile != "/run/credentials/clipgate-broker.service/connect.keys" || cfg.DeviceRate != 2 {
		t.Fatalf("settings not as the file says: %+v (metrics %q)", cfg, c.Serve.MetricsAddr)
	}
}

// TestExampleCalloutConfig loads deploy/config/nats-callout.yaml with the broker's own
// loader: its keys are nats-callout's flags, and it names the connect keys.
func TestExampleCalloutConfig(t *testing.T) {
	t.Parallel()
	var c CLI
	_, err := cli.Parse(spec, &c, cli.IO{Getenv: func(string) (string, bool) { return "", false }},
		[]string{"--config", "../../deploy/config/nats-callout.yaml", "nats-callout"})
	if err != nil {
		t.Fatal(err)
	}
	n := c.NATSCallout
	if got := splitURLs(n.NATS); len(got) != 3 || got[0] != "tls://n1:4222" ||
		n.ConnectKeysFile != "/run/credentials/clipgate-nats-callout.service/connect.keys" ||
		n.IssuerSeedFile != "/run/credentials/clipgate-nats-callout.service/nats-issuer.seed" || n.Instances != 2 {
		t.Fatalf("settings not as the file says: %+v", n)
	}
}
