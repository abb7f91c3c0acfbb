package main

import (
	"testing"
	"time"
)

// TestExampleConfig loads deploy/config/device.yaml with the command's own loader, which
// refuses unknown keys and secrets in the file, for device watch.
func TestExampleConfig(t *testing.T) {
	t.Parallel()
	m := &Main{Getenv: func(string) (string, bool) { return "", false }, WorkDir: t.TempDir()}
	cmd, err := m.parseFlags([]string{"--config", "../../deploy/config/device.yaml", "watch", "/var/spool/clipgate"})
	if err != nil {
		t.Fatal(err)
	}
	c := m.cli
	if cmd != "watch <DIR>" || c.Watch.MetricsAddr != "127.0.0.1:9645" || c.DeviceID != "cam-0001" || c.Watch.MaxAge != 72*time.Hour ||
		c.DeviceKeyFile != "/var/lib/clipgate-device/device.key" || c.TLSCAFile != "/etc/clipgate/tls/ca.pem" {
		t.Fatalf("settings not as the file says (%q): %+v", cmd, c)
	}
}
