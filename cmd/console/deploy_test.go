package main

import (
	"testing"

	"github.com/clipgate/clipgate/internal/cli"
)

// TestExampleConfig loads deploy/config/console.yaml with the command's own loader, which
// refuses unknown keys and secrets in the file.
func TestExampleConfig(t *testing.T) {
	t.Parallel()
	m := NewMain(cli.IO{Getenv: func(string) (string, bool) { return "", false }})
	if err := m.ParseFlags([]string{"--config", "../../deploy/config/console.yaml"}); err != nil {
		t.Fatal(err)
	}
	c := m.CLI
	if c.MetricsAddr != "127.0.0.1:9643" || c.Database != "/var/lib/clipgate-console/console.db" || c.OSSBucket != "example-camera-clips" ||
		c.OSSAccessKeySecretFile != "/run/credentials/clipgate-console.service/oss-access-key-secret" || c.Listen != "0.0.0.0:8443" {
		t.Fatalf("settings not as the file says: %+v", c)
	}
}
