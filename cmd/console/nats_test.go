package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/broker"
	"github.com/clipgate/clipgate/internal/cli"
	"github.com/clipgate/clipgate/internal/cli/clitest"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/natsauth"
	"github.com/clipgate/clipgate/internal/natscluster"
	"github.com/clipgate/clipgate/internal/ops/opstest"
	"github.com/clipgate/clipgate/internal/testutil"
	"github.com/clipgate/clipgate/topics"
)

// TestRunOnNATS runs the command with --nats against a 3-node NATS cluster with the auth
// callout and token workers (internal/inproc's NATS stack), started before any device as
// the README's deployment steps say: a device's clip is indexed from the JetStream durable
// consumer and listed by the API.
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
	// The stack has bootstrapped the gateway's streams: no --broker is needed.
	m, logs, err := start(args...)
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

// TestRunOnNewNATSCluster: on a new cluster, whose MQTT gateway has not created its
// streams (no MQTT client has connected), the console creates them through the gateway
// named by --broker; without --broker it refuses to start, naming the flag. (It used to
// take the MQTT default, tcp://127.0.0.1:1883, for the gateway: no node of the cluster.)
func TestRunOnNewNATSCluster(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	const user, pass = "consumer", "consumer-password-1"
	issuer, _ := nkeys.CreateAccount()
	seed, _ := issuer.Seed()
	pub, _ := issuer.PublicKey()
	cl, err := natscluster.Start(ctx, natscluster.Options{Dir: filepath.Join(dir, "nats"), Topics: topics.Default(),
		CalloutUser: "callout", CalloutPassword: "callout-password-1", SysUser: "sys", SysPassword: "sys-password-1", Issuer: pub})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	accounts, err := identity.LoadServiceAccounts(testutil.AccountsFile(t, dir, testutil.Account{User: user, Password: pass, Role: "consumer"}))
	if err != nil {
		t.Fatal(err)
	}
	fleet, err := identity.NewFleetKeyring()
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(broker.Config{HTTPAddr: "none", ConnectKeys: fleet.ConnectRoots(), ServiceAccounts: accounts})
	if err != nil {
		t.Fatal(err)
	}
	// Everything on node 0, where the callout subscribes: no wait for its interest to
	// reach the other nodes.
	node := cl.Nodes()[0]
	callout, err := natsauth.New(natsauth.Config{URLs: []string{node.ClientURL()}, Username: "callout", Password: "callout-password-1",
		IssuerSeed: seed, Topics: topics.Default(), Broker: b})
	if err != nil {
		t.Fatal(err)
	}
	if err := callout.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer callout.Close()

	args := []string{"--listen", "127.0.0.1:0", "--database", "sqlite:" + filepath.Join(dir, "console.db"),
		"--nats", node.ClientURL(), "--username", user,
		"--oss-endpoint", "http://127.0.0.1:1", "--oss-bucket", "clips", "--oss-access-key-id", "AK",
		"--connect-timeout", "2m"}
	hash := hashOf(t, "operator pw")
	env := func(k string) (string, bool) {
		v, ok := map[string]string{envPassword: pass, envOSSSecret: "secret", envPasswordHash: hash}[k]
		return v, ok
	}
	run := func(args ...string) error {
		var logs clitest.Buffer
		m := NewMain(cli.IO{Stdout: &logs, Stderr: &logs, Getenv: env})
		if err := m.ParseFlags(args); err != nil {
			t.Fatal(err)
		}
		err := m.Run(ctx)
		if cerr := m.Close(); err == nil && cerr != nil {
			t.Fatalf("Close: %v\n%s", cerr, logs.String())
		}
		if err != nil {
			t.Logf("Run: %v\n%s", err, logs.String())
		}
		return err
	}
	if err := run(args...); cli.ExitCode(err) != cli.ExitUsage || !strings.Contains(err.Error(), "--broker") {
		t.Fatalf("without --broker on a new cluster: %v, want a usage error naming --broker", err)
	}
	if err := run(append(args, "--broker", node.MQTTURL())...); err != nil {
		t.Fatalf("with --broker: %v", err)
	}
}
