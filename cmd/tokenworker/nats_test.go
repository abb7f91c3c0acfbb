package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/ops/opstest"
	"github.com/clipgate/clipgate/topics"
)

// TestRunOnNATS runs the command with --nats against a 3-node NATS cluster with the auth
// callout (internal/inproc's NATS stack, whose own token worker is stopped first, so that
// the command's two workers, a queue group on the partitioned request subjects, are the
// only ones): a device gets credentials through them and uploads a clip with them.
func TestRunOnNATS(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := inproc.New(t, inproc.Options{Engine: inproc.EngineNATS})
	if err := s.StopWorker(0); err != nil {
		t.Fatal(err)
	}
	user, pass := s.ServiceAccount(topics.RoleTokenWorker)
	akID, akSecret := s.AdminKey() // the local cloud's admin key may assume the role
	m, logs := newTestMain(map[string]string{envPassword: pass, envSTSSecret: akSecret})
	err := m.ParseFlags([]string{"--nats", strings.Join(s.Cluster().ClientURLs(), ","), "--username", user,
		"--fleet-keys-file", s.FleetKeysFile(),
		"--sts-scheme", "http", "--sts-endpoint", s.STSEndpoint(), "--sts-region", s.Region(),
		"--sts-access-key-id", akID, "--sts-role-arn", s.RoleARN(),
		"--oss-endpoint", s.OSSEndpoint(), "--oss-region", s.Region(), "--oss-bucket", s.Bucket(), "--oss-prefix", s.Prefix(),
		"--workers", "2", "--connect-timeout", "1m", "--metrics-addr", "127.0.0.1:0", "--log-level", "debug"})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Run(ctx); err != nil {
		t.Fatalf("Run: %v\n%s", err, logs.String())
	}
	closed := false
	defer func() {
		if !closed {
			_ = m.Close()
		}
	}()

	kit := s.Kit(t, ctx, "cam-nats-tw", nil)
	if _, err := kit.Credentials(ctx); err != nil {
		t.Fatalf("credentials: %v\n%s", err, logs.String())
	}
	clip := filepath.Join(t.TempDir(), "a.mp4")
	if err := os.WriteFile(clip, []byte("a clip through the NATS workers"), 0o600); err != nil {
		t.Fatal(err)
	}
	ev, err := kit.Upload(ctx, devicekit.Clip{Path: clip})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := s.AdminBucket(t).IsObjectExist(ev.Key); err != nil || !ok {
		t.Fatalf("%s not stored: %v", ev.Key, err)
	}

	// Only the command's workers answered: its metrics count the credentials, and both
	// workers are connected (to NATS) and ready.
	var served uint64
	for _, w := range m.Workers() {
		served += w.Stats().OK
	}
	if served == 0 {
		t.Fatal("the command's workers served no request")
	}
	metrics := opstest.Scrape(t, m.OpsAddr())
	if got := metrics.Get("clipgate_tokenworker_replies_total", "code", "ok"); got != float64(served) {
		t.Errorf("replies ok %v, the workers' stats %d", got, served)
	}
	if got := metrics.Get("clipgate_tokenworker_broker_connected"); got != 2 {
		t.Errorf("broker_connected %v, want 2", got)
	}
	if status, rep := opstest.Health(t, m.OpsAddr(), "/readyz"); status != 200 {
		t.Errorf("/readyz: %d %+v", status, rep)
	}
	closed = true
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}
