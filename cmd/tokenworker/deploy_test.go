package main

import (
	"testing"

	"github.com/clipgate/clipgate/internal/cli"
)

// TestExampleConfig loads deploy/config/tokenworker.yaml with the command's own loader,
// which refuses unknown keys and secrets in the file.
func TestExampleConfig(t *testing.T) {
	t.Parallel()
	m := NewMain(cli.IO{Getenv: func(string) (string, bool) { return "", false }})
	if err := m.ParseFlags([]string{"--config", "../../deploy/config/tokenworker.yaml"}); err != nil {
		t.Fatal(err)
	}
	c := m.CLI
	if c.MetricsAddr != "127.0.0.1:9642" || c.STSEndpoint != "sts.cn-hangzhou.aliyuncs.com" || c.Workers != 2 ||
		c.STSAccessKeySecretFile != "/run/credentials/clipgate-tokenworker.service/sts-access-key-secret" || c.OSSBucket != "example-camera-clips" {
		t.Fatalf("settings not as the file says: %+v", c)
	}
}
