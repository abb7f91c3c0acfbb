package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/clipgate/clipgate/internal/cli"
	"github.com/clipgate/clipgate/internal/cli/clitest"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/mqttclient"
	"github.com/clipgate/clipgate/internal/natscluster"
	"github.com/clipgate/clipgate/internal/ops/opstest"
	"github.com/clipgate/clipgate/topics"
)

// TestNATSCallout: nats-issuer writes an account seed; nats-callout, run against a
// cluster whose auth_callout names that issuer, admits a device with its
// password and refuses a wrong one. Its --metrics-addr then counts real traffic exactly:
// decisions by outcome, their latency, the kick of a revoked device; --revocations-key-file is
// refused with --revocations-file or an unreadable key (TestSignedRevocationsNATS runs it).
func TestNATSCallout(t *testing.T) {
	dir := t.TempDir()
	seedFile := filepath.Join(dir, "issuer.seed")
	code, stdout, stderr := runCLI(t, "", "nats-issuer", seedFile)
	if code != 0 {
		t.Fatalf("nats-issuer: exit %d: %s", code, stderr)
	}
	seed, _ := os.ReadFile(seedFile)
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(seed))))
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	if fi, _ := os.Stat(seedFile); fi.Mode().Perm() != 0o600 || !strings.Contains(stdout, pub) {
		t.Fatalf("seed file mode %v; stdout %q does not name %s", fi.Mode().Perm(), stdout, pub)
	}
	if code, _, _ := runCLI(t, "", "nats-issuer", seedFile); code == 0 {
		t.Fatal("nats-issuer replaced an existing seed")
	}
	fleetFile, connectFile := filepath.Join(dir, "fleet.keys"), filepath.Join(dir, "connect.keys")
	if code, _, stderr := runCLI(t, "", "fleet-key", fleetFile); code != 0 {
		t.Fatal(stderr)
	}
	if code, _, stderr := runCLI(t, "", "connect-keys", "--fleet-keys-file", fleetFile, connectFile); code != 0 {
		t.Fatal(stderr)
	}
	fleet, _ := identity.LoadKeyring(fleetFile)
	key, err := identity.NewDeviceKey(fleet, "cam-1")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"callout", "sys"} {
		if err := os.WriteFile(filepath.Join(dir, name+".pw"), []byte(name+"-secret-1\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := natscluster.Start(ctx, natscluster.Options{Dir: filepath.Join(dir, "nats"), Topics: topics.Default(),
		CalloutUser: "callout", CalloutPassword: "callout-secret-1", SysUser: "sys", SysPassword: "sys-secret-1", Issuer: pub})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	if code, _, stderr := runCLI(t, "", "nats-callout", "--connect-keys-file", connectFile, "--issuer-seed-file", seedFile); code != cli.ExitUsage {
		t.Fatalf("without --nats: exit %d: %s", code, stderr)
	}
	// The callout holds connect roots only: given the fleet keys, which open sealed
	// replies, it refuses to start.
	code, _, stderr = runCLI(t, "", "nats-callout", "--nats", strings.Join(cl.ClientURLs(), ","), "--issuer-seed-file", seedFile,
		"--connect-keys-file", fleetFile, "--callout-password-file", filepath.Join(dir, "callout.pw"), "--sys-password-file", filepath.Join(dir, "sys.pw"))
	if code != cli.ExitUsage || !strings.Contains(stderr, "fleet") {
		t.Fatalf("fleet keys as --connect-keys-file: exit %d: %s", code, stderr)
	}
	revFile := filepath.Join(dir, "revoked.txt")
	if err := os.WriteFile(revFile, []byte("# none\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The signed revocation list: one source only, and a readable key.
	revKey := filepath.Join(dir, "revocation.key")
	if code, _, stderr := runCLI(t, "", "revocation-key", revKey); code != 0 {
		t.Fatal(stderr)
	}
	base := []string{"nats-callout", "--nats", strings.Join(cl.ClientURLs(), ","), "--issuer-seed-file", seedFile,
		"--connect-keys-file", connectFile, "--callout-password-file", filepath.Join(dir, "callout.pw"), "--sys-password-file", filepath.Join(dir, "sys.pw")}
	for name, extra := range map[string][]string{
		"both":    {"--revocations-key-file", revKey + ".pub", "--revocations-file", filepath.Join(dir, "revoked.txt")},
		"garbage": {"--revocations-key-file", seedFile},
	} {
		if code, _, stderr := runCLI(t, "", append(append([]string{}, base...), extra...)...); code != cli.ExitUsage {
			t.Fatalf("%s: exit %d: %s", name, code, stderr)
		}
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var errb clitest.Buffer
	done := make(chan int, 1)
	go func() {
		done <- cli.Exec(runCtx, "broker", run, cli.IO{Stderr: &errb}, []string{"nats-callout",
			"--nats", strings.Join(cl.ClientURLs(), ","), "--issuer-seed-file", seedFile, "--connect-keys-file", connectFile,
			"--callout-password-file", filepath.Join(dir, "callout.pw"), "--sys-password-file", filepath.Join(dir, "sys.pw"),
			"--revocations-file", revFile, "--revocation-sweep", "20ms", "--metrics-addr", "127.0.0.1:0", "--log-format", "json"})
	}()
	dial := func(clientID, password string, lost func(error)) (*mqttclient.Client, error) {
		c, err := mqttclient.New(mqttclient.Config{BrokerURL: cl.Nodes()[0].MQTTURL(), ClientID: clientID, Username: "cam-1",
			Password: password, NoReconnect: true, ConnectTimeout: 5 * time.Second, OnConnectionLost: lost})
		if err != nil {
			t.Fatal(err)
		}
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		defer ccancel()
		if err := c.Connect(cctx); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
	connect := func(password string) error {
		c, err := dial("cam-1", password, nil)
		if err == nil {
			c.Close()
		}
		return err
	}
	pw := func() string {
		return key.Password(time.Now())
	}
	// Until the callout has joined its queue group, logins are refused: try until admitted.
	for err := connect(pw()); err != nil; err = connect(pw()) {
		select {
		case code := <-done:
			t.Fatalf("nats-callout exited %d: %s", code, errb.String())
		case <-ctx.Done():
			t.Fatalf("the device was never admitted: %v\n%s", err, errb.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err := connect("v1.0.AAAA"); err == nil {
		t.Fatal("a wrong password was admitted")
	}
	checkCalloutMetrics(t, ctx, errb.String(), revFile, connect, dial, pw)
	stop()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errb.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("nats-callout did not stop")
	}
}

// checkCalloutMetrics runs known traffic through the running nats-callout and checks the
// exact changes of its metrics, scraped from the --metrics-addr named in its log.
func checkCalloutMetrics(t *testing.T, ctx context.Context, log string, revFile string,
	connect func(string) error, dial func(string, string, func(error)) (*mqttclient.Client, error), pw func() string) {
	t.Helper()
	var addr string
	for _, line := range strings.Split(log, "\n") {
		var l struct{ Metrics string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Metrics != "" {
			addr = l.Metrics
		}
	}
	if addr == "" {
		t.Fatalf("no metrics address in the log:\n%s", log)
	}
	const sub = "clipgate_nats_callout_"
	before := opstest.Scrape(t, addr)

	// Allowed, then refused for a bad password and for a client ID that is not the
	// device's.
	if err := connect(pw()); err != nil {
		t.Fatal(err)
	}
	if err := connect("v1.0.AAAA"); err == nil {
		t.Fatal("a wrong password was admitted")
	}
	if _, err := dial("cam-2", pw(), nil); err == nil {
		t.Fatal("cam-1 was admitted as client cam-2")
	}
	// A connected device is revoked: kicked, then refused.
	lost := make(chan struct{})
	live, err := dial("cam-1", pw(), func(error) { close(lost) })
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	tmp := revFile + ".tmp"
	if err := os.WriteFile(tmp, []byte("cam-1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, revFile); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lost:
	case <-ctx.Done():
		t.Fatal("the revoked device was not kicked")
	}
	if err := connect(pw()); err == nil {
		t.Fatal("a revoked device was admitted")
	}
	// The kick is counted once its request is answered, maybe after the device saw it.
	var after opstest.Metrics
	for {
		if after = opstest.Scrape(t, addr); after.Get(sub+"kicks_total", "result", "ok") > before.Get(sub+"kicks_total", "result", "ok") {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the kick was never counted")
		case <-time.After(20 * time.Millisecond):
		}
	}
	for _, c := range []struct {
		name   string
		labels []string
		delta  float64
	}{
		{"decisions_total", []string{"outcome", "allowed"}, 2},
		{"decisions_total", []string{"outcome", "bad_login"}, 1},
		{"decisions_total", []string{"outcome", "client_id_rejected"}, 1},
		{"decisions_total", []string{"outcome", "not_authorized"}, 1},
		{"decisions_total", []string{"outcome", "invalid_request"}, 0},
		{"decisions_total", []string{"outcome", "error"}, 0},
		{"decision_duration_seconds_count", nil, 5},
		{"kicks_total", []string{"result", "ok"}, 1},
		{"kicks_total", []string{"result", "error"}, 0},
	} {
		if d := after.Get(sub+c.name, c.labels...) - before.Get(sub+c.name, c.labels...); d != c.delta {
			t.Errorf("%s%s %v: changed by %v, want %v", sub+c.name, c.labels, after.Get(sub+c.name, c.labels...), d, c.delta)
		}
	}
	if got := after.Get(sub + "nats_connected"); got != 2 {
		t.Errorf("nats_connected %v, want the 2 instances", got)
	}
	if got := after.Get(sub + "admitted_devices"); got != 0 {
		t.Errorf("admitted_devices %v, want 0 once the one device is revoked", got)
	}
	if status, rep := opstest.Health(t, addr, "/readyz"); status != 200 || len(rep.Checks) != 1 {
		t.Errorf("/readyz: %d %+v", status, rep)
	}
}
