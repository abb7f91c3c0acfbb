package main

import (
	"testing"

	"github.com/clipgate/clipgate/internal/cli"
)

// TestExampleConfig loads deploy/config/localcloud.yaml with the command's own loader,
// which refuses unknown keys and secrets in the file.
func TestExampleConfig(t *testing.T) {
	t.Parallel()
	var c CLI
	if _, err := cli.Parse(spec, &c, cli.IO{Getenv: func(string) (string, bool) { return "", false }},
		[]string{"--config", "../../deploy/config/localcloud.yaml"}); err != nil {
		t.Fatal(err)
	}
	if c.MetricsAddr != "127.0.0.1:9644" || c.OSSAddr != "127.0.0.1:9100" || len(c.Buckets) != 1 || len(c.Keys) != 1 {
		t.Fatalf("settings not as the file says: %+v", c)
	}
}
