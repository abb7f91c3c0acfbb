package main

import (
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/ops/opstest"
	"github.com/clipgate/clipgate/internal/quota"
	"github.com/clipgate/clipgate/topics"
)

// TestRunOnNATS runs the command with --nats against a 3-node NATS cluster with the auth
// callout (internal/inproc's NATS stack, whose own token worker is stopped first, so that
// the command's two workers, a queue group on the partitioned request subjects, are the
// only ones): a device gets credentials through them and uploads a clip with them. With
// --quotas-key-file the workers read the console's signed quota snapshot retained in the
// MQTT gateway's stream at start (a device over its quota is refused), then follow it
// live (a new snapshot lifts the quota).
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

	// The console's signing key, and its snapshot putting one device over its day quota,
	// retained before the workers start.
	seed, err := identity.NewRevocationKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := identity.RevocationPublicKey(seed)
	if err != nil {
		t.Fatal(err)
	}
	quotasKeyFile := writeFile(t, t.TempDir(), "console.pub", hex.EncodeToString(pub)+"\n", 0o644)
	const over = "cam-nats-over"
	start := time.Now().UTC()
	publishSnapshot := func(issued time.Time, used int64) {
		data, err := quota.Sign(seed, &quota.Snapshot{Issued: issued, Day: start,
			Entries: []quota.Entry{{Device: over, DayLimit: 100, DayUsed: used}}})
		if err != nil {
			t.Fatal(err)
		}
		s.PublishAs(t, ctx, topics.RoleConsole, s.Topics().Quotas(), data, true)
	}
	publishSnapshot(start, 100)

	m, logs := newTestMain(map[string]string{envPassword: pass, envSTSSecret: akSecret})
	err = m.ParseFlags([]string{"--nats", strings.Join(s.Cluster().ClientURLs(), ","), "--username", user,
		"--fleet-keys-file", s.FleetKeysFile(), "--quotas-key-file", quotasKeyFile,
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

	// The retained snapshot was in force before the first request; a later one is
	// followed live. (Quotas count per UTC day: across midnight the device is under its
	// quota again, so the refusal is checked only within the day the snapshot counts.)
	snapshots := func() (n uint64) {
		for _, w := range m.Workers() {
			n += w.Stats().QuotaSnapshots
		}
		return n
	}
	if got := snapshots(); got != 2 {
		t.Errorf("quota snapshots applied at start: %d, want 2 (one per worker)", got)
	}
	overKit := s.Kit(t, ctx, over, func(c *devicekit.Config) { c.Mode = clipgate.ModeWrite })
	_, err = overKit.Credentials(ctx)
	var ae *clipgate.AuthError
	if quota.DayStart(time.Now()).Equal(quota.DayStart(start)) && (!errors.As(err, &ae) || ae.Code != clipgate.CodeQuotaExceeded) {
		t.Fatalf("credentials of a device over its quota: %v, want an AuthError with CodeQuotaExceeded", err)
	}
	publishSnapshot(start.Add(time.Second), 0)
	for snapshots() < 4 {
		select {
		case <-ctx.Done():
			t.Fatalf("the workers applied %d snapshots, want 4: %v\n%s", snapshots(), ctx.Err(), logs.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if _, err := overKit.Credentials(ctx); err != nil {
		t.Fatalf("credentials once the quota is lifted: %v", err)
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
