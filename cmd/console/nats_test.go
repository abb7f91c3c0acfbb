package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/cli"
	"github.com/clipgate/clipgate/internal/cli/clitest"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/ops/opstest"
	"github.com/clipgate/clipgate/topics"
)

// TestRunOnNATS runs the command with --nats against a fresh 3-node NATS cluster with the
// auth callout and token workers (internal/inproc's NATS stack), started before any
// device as the README's deployment steps say: a device's clip is indexed from the
// JetStream durable consumer and listed by the API.
func TestRunOnNATS(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := inproc.New(t, inproc.Options{Engine: inproc.EngineNATS})
	dir := t.TempDir()
	hashFile := writeFile(t, "hash", hashOf(t, "operator pw")+"\n", 0o600)
	user, pass := s.ServiceAccount(topics.RoleConsumer)
	id, secret := s.AdminKey()
	env := func(k string) (string, bool) {
		v, ok := map[string]string{envPassword: pass, envOSSSecret: secret}[k]
		return v, ok
	}
	args := []string{
		"--listen", "127.0.0.1:0", "--database", "sqlite:" + filepath.Join(dir, "console.db"),
		"--nats", strings.Join(s.Cluster().ClientURLs(), ","), "--nats-durable", "console", "--username", user,
		"--oss-endpoint", s.OSSEndpoint(), "--oss-region", s.Region(), "--oss-bucket", s.Bucket(),
		"--oss-prefix", s.Prefix(), "--oss-access-key-id", id, "--password-hash-file", hashFile,
		"--connect-timeout", "1m", "--metrics-addr", "127.0.0.1:0", "--log-level", "debug",
	}
	start := func(args ...string) (*Main, *clitest.Buffer, error) {
		var out, logs clitest.Buffer
		m := NewMain(cli.IO{Stdout: &out, Stderr: &logs, Getenv: env})
		if err := m.ParseFlags(args); err != nil {
			t.Fatal(err)
		}
		err := m.Run(ctx)
		if err != nil {
			_ = m.Close()
		}
		return m, &logs, err
	}
	// No MQTT client has connected yet, so the gateway's stream does not exist: without
	// --broker the console cannot create it, and says so (it used to try the MQTT
	// default, tcp://127.0.0.1:1883, which is no node of the cluster).
	if _, logs, err := start(args...); cli.ExitCode(err) != cli.ExitUsage || !strings.Contains(err.Error(), "--broker") {
		t.Fatalf("without --broker on a new cluster: %v, want a usage error naming --broker\n%s", err, logs.String())
	}
	m, logs, err := start(append(args, "--broker", s.Cluster().Nodes()[1].MQTTURL())...)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, logs.String())
	}
	defer m.Close()

	kit := s.Kit(t, ctx, "cam-nats-c", nil)
	clip := filepath.Join(dir, "a.mp4")
	if err := os.WriteFile(clip, []byte("a clip through the NATS cluster"), 0o600); err != nil {
		t.Fatal(err)
	}
	ev, err := kit.Upload(ctx, devicekit.Clip{Path: clip})
	if err != nil {
		t.Fatal(err)
	}
	api := login(t, m.URL(), "admin", "operator pw")
	api.waitClip("cam-nats-c", ev.Key)

	// The console's events consumer verified the one event once.
	metrics := opstest.Scrape(t, m.OpsAddr())
	if got := metrics.Get("clipgate_events_total", "outcome", "verified"); got != 1 {
		t.Errorf("verified events %v, want 1", got)
	}
	if got := metrics.Get("clipgate_events_broker_connected"); got != 1 {
		t.Errorf("events_broker_connected %v, want 1", got)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
}
