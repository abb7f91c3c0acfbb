package main

import (
	"context"
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
	"github.com/clipgate/clipgate/topics"
)

// TestNATSCallout: nats-issuer writes an account seed; nats-callout, run against a
// cluster whose auth_callout names that issuer, admits a device with its
// password and refuses a wrong one; with --revocations-key-file it starts (its reader
// admitted by itself, no list retained yet).
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
			"--revocations-key-file", revKey + ".pub"})
	}()
	connect := func(password string) error {
		c, err := mqttclient.New(mqttclient.Config{BrokerURL: cl.Nodes()[0].MQTTURL(), ClientID: "cam-1", Username: "cam-1",
			Password: password, NoReconnect: true, ConnectTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		defer ccancel()
		return c.Connect(cctx)
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
