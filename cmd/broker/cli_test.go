package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/clipgate/clipgate/internal/broker"
	"github.com/clipgate/clipgate/internal/cli"
	"github.com/clipgate/clipgate/internal/cli/clitest"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/mqttclient"
)

func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb clitest.Buffer
	code = cli.Exec(context.Background(), "broker", run, cli.IO{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb}, args)
	return code, out.String(), errb.String()
}

func TestFleetKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fleet.keys")
	if code, _, stderr := runCLI(t, "", "fleet-key", path); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("fleet key file: %v %v", fi, err)
	}
	ring, err := identity.LoadKeyring(path)
	if err != nil || ring.CurrentID() != "k1" {
		t.Fatalf("fleet keys: %v", err)
	}
	code, _, stderr := runCLI(t, "", "fleet-key", path)
	if code != 1 || !strings.Contains(stderr, "--force") {
		t.Fatalf("overwrite: exit %d: %s", code, stderr)
	}
	if code, _, stderr := runCLI(t, "", "fleet-key", "--force", path); code != 0 {
		t.Fatalf("--force: exit %d: %s", code, stderr)
	}
	ring2, _ := identity.LoadKeyring(path)
	if bytes.Equal(ring.Current().Key, ring2.Current().Key) {
		t.Fatal("--force kept the old key")
	}
}

// TestKeyCommands: connect-keys writes connect roots only; rotate-key adds k2 and keeps k1
// until the cutoff, in both files; device-key derives from the current key.
func TestKeyCommands(t *testing.T) {
	dir := t.TempDir()
	fleetFile, connectFile := filepath.Join(dir, "fleet.keys"), filepath.Join(dir, "connect.keys")
	if code, _, stderr := runCLI(t, "", "fleet-key", fleetFile); code != 0 {
		t.Fatal(stderr)
	}
	if code, _, stderr := runCLI(t, "", "connect-keys", "--fleet-keys-file", fleetFile, connectFile); code != 0 {
		t.Fatalf("connect-keys: exit %d: %s", code, stderr)
	}
	fleet, _ := identity.LoadKeyring(fleetFile)
	conn, err := identity.LoadKeyring(connectFile)
	if err != nil || !bytes.Equal(conn.Current().Key, identity.ConnectRoot(fleet.Current().Key)) {
		t.Fatalf("connect keys: %v", err)
	}
	code, stdout, stderr := runCLI(t, "", "rotate-key", "--fleet-keys-file", fleetFile, "--connect-keys-file", connectFile, "--grace", "2h")
	if code != 0 || !strings.Contains(stdout, "k2") {
		t.Fatalf("rotate-key: exit %d: %s %s", code, stdout, stderr)
	}
	fleet2, _ := identity.LoadKeyring(fleetFile)
	conn2, _ := identity.LoadKeyring(connectFile)
	keys := fleet2.Keys()
	if len(keys) != 2 || keys[0].ID != "k2" || keys[1].ID != "k1" || !bytes.Equal(keys[1].Key, fleet.Current().Key) ||
		keys[1].Until.Before(time.Now().Add(time.Hour)) || keys[1].Until.After(time.Now().Add(3*time.Hour)) {
		t.Fatalf("rotated keys %+v", keys)
	}
	if conn2.CurrentID() != "k2" || !bytes.Equal(conn2.Current().Key, identity.ConnectRoot(keys[0].Key)) {
		t.Fatal("connect keys not rotated")
	}
	for name, args := range map[string][]string{
		"grace too short":   {"rotate-key", "--fleet-keys-file", fleetFile, "--grace", "1s"},
		"no fleet keys":     {"rotate-key"},
		"missing keys":      {"rotate-key", "--fleet-keys-file", filepath.Join(dir, "none")},
		"connect from none": {"connect-keys", "--fleet-keys-file", filepath.Join(dir, "none"), connectFile},
	} {
		if code, _, stderr := runCLI(t, "", args...); code != cli.ExitUsage || stderr == "" {
			t.Errorf("%s: exit %d, stderr %q; want a usage error", name, code, stderr)
		}
	}
}

func TestDeviceKey(t *testing.T) {
	dir := t.TempDir()
	fleetFile := filepath.Join(dir, "fleet.keys")
	if code, _, stderr := runCLI(t, "", "fleet-key", fleetFile); code != 0 {
		t.Fatal(stderr)
	}
	fleet, _ := identity.LoadKeyring(fleetFile)
	want, _ := identity.NewDeviceKey(fleet, "cam-1")
	same := func(k *identity.DeviceKey) bool {
		return k.Device == "cam-1" && k.KeyID == want.KeyID && bytes.Equal(k.Connect, want.Connect) && bytes.Equal(k.Request, want.Request)
	}

	code, stdout, stderr := runCLI(t, "", "device-key", "--fleet-keys-file", fleetFile, "cam-1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if got, err := identity.ParseDeviceKey([]byte(stdout)); err != nil || !same(got) {
		t.Fatalf("printed key %q: %v", stdout, err)
	}

	out := filepath.Join(dir, "cam-1.key")
	if code, _, stderr := runCLI(t, "", "device-key", "--fleet-keys-file", fleetFile, "--out", out, "cam-1"); code != 0 {
		t.Fatalf("--out: exit %d: %s", code, stderr)
	}
	if k, err := identity.LoadDeviceKey(out); err != nil || !same(k) {
		t.Fatalf("written key: %v", err)
	}

	code, stdout, _ = runCLI(t, "", "device-key", "--fleet-keys-file", fleetFile, "--allow-dot", "cam.1")
	if k, err := identity.ParseDeviceKey([]byte(stdout)); code != 0 || err != nil || k.Device != "cam.1" {
		t.Fatalf("--allow-dot cam.1: exit %d, %q: %v", code, stdout, err)
	}
	if code, _, stderr := runCLI(t, "", "device-key", "--fleet-keys-file", fleetFile, "cam.1"); !strings.Contains(stderr, "NATS") {
		t.Errorf("cam.1: exit %d, stderr %q: want an error that says why", code, stderr)
	}
	code, stdout, _ = runCLI(t, "", "device-key", "--fleet-keys-file", fleetFile, "--password", "cam-1")
	if code != 0 || identity.VerifyDevicePassword(fleet.ConnectRoots(), "cam-1", strings.TrimSpace(stdout), time.Now(), time.Minute) != nil {
		t.Fatalf("--password: exit %d, %q", code, stdout)
	}

	for name, args := range map[string][]string{
		"bad device ID":     {"device-key", "--fleet-keys-file", fleetFile, "cam/1"},
		"dot in device ID":  {"device-key", "--fleet-keys-file", fleetFile, "cam.1"},
		"missing fleet key": {"device-key", "--fleet-keys-file", filepath.Join(dir, "none"), "cam-1"},
		"no fleet key":      {"device-key", "cam-1"},
	} {
		if code, _, stderr := runCLI(t, "", args...); code != cli.ExitUsage || stderr == "" {
			t.Errorf("%s: exit %d, stderr %q; want a usage error", name, code, stderr)
		}
	}
}

func TestHashPassword(t *testing.T) {
	code, stdout, stderr := runCLI(t, "s3cret pass\n", "hash-password")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(strings.TrimSpace(stdout)), []byte("s3cret pass")); err != nil {
		t.Fatalf("hash %q: %v", stdout, err)
	}
	for name, in := range map[string]string{
		"empty":    "",
		"blank":    "\n",
		"too long": strings.Repeat("x", 2000) + "\n",
		"72+":      strings.Repeat("y", 100) + "\n",
	} {
		if code, _, stderr := runCLI(t, in, "hash-password"); code != 1 || stderr == "" {
			t.Errorf("%s: exit %d, stderr %q", name, code, stderr)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	if code, _, _ := runCLI(t, "", "serve", "--no-such-flag"); code != 2 {
		t.Errorf("unknown flag: exit %d", code)
	}
	if code, _, _ := runCLI(t, "", "frobnicate"); code != 2 {
		t.Errorf("unknown command: exit %d", code)
	}
	if code, stdout, _ := runCLI(t, "", "--help"); code != 0 || !strings.Contains(stdout, "serve") {
		t.Errorf("--help: exit %d %q", code, stdout)
	}
	code, _, stderr := runCLI(t, "", "serve", "--connect-keys-file", "x")
	if code != cli.ExitUsage || !strings.Contains(stderr, "--data-dir") {
		t.Errorf("serve without data dir: exit %d %q", code, stderr)
	}
}

// parseServe parses a serve command line with the variables env and returns its
// configuration.
func parseServe(t *testing.T, env map[string]string, args ...string) (broker.Config, error) {
	t.Helper()
	var c CLI
	ctx, err := cli.Parse(spec, &c, cli.IO{Getenv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }},
		append([]string{"serve"}, args...))
	if err != nil {
		return broker.Config{}, err
	}
	return c.Serve.config(ctx)
}

// Flags beat environment variables, which beat the config file, which beats defaults.
// The file's keys are flag names, written in any case (httpAddr is http-addr).
func TestServeConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "broker.yaml")
	if err := os.WriteFile(file, []byte("addr: 127.0.0.1:1001\nhttpAddr: 127.0.0.1:1002\ndata-dir: /from/file\ndevice_rate: 3\nsessionExpiry: 2h\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"CLIPGATE_HTTP_ADDR": "127.0.0.1:2002", "CLIPGATE_DEVICE_RATE": "4"}
	cfg, err := parseServe(t, env, "--config", file, "--device-rate", "5", "--max-packet-size", "9000")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != "127.0.0.1:1001" || cfg.HTTPAddr != "127.0.0.1:2002" || cfg.DataDir != "/from/file" ||
		cfg.DeviceRate != 5 || cfg.SessionExpiry != 2*time.Hour || cfg.MaxPacketSize != 9000 || cfg.ServiceRate != 0 ||
		cfg.MessageExpiry != broker.DefaultMessageExpiry {
		t.Fatalf("%+v", cfg)
	}
	cfg, err = parseServe(t, nil, "--config", file, "--in-memory")
	if err != nil || cfg.DataDir != "" {
		t.Fatalf("--in-memory: %v %q", err, cfg.DataDir)
	}
	if _, err := parseServe(t, map[string]string{"CLIPGATE_CONFIG": filepath.Join(dir, "missing.yaml")}); err == nil {
		t.Fatal("missing config file accepted")
	}
}

// serve runs the broker until its context ends; a device can connect meanwhile.
func TestServe(t *testing.T) {
	dir := t.TempDir()
	fleetFile, connectFile := filepath.Join(dir, "fleet.keys"), filepath.Join(dir, "connect.keys")
	if code, _, stderr := runCLI(t, "", "fleet-key", fleetFile); code != 0 {
		t.Fatal(stderr)
	}
	if code, _, stderr := runCLI(t, "", "connect-keys", "--fleet-keys-file", fleetFile, connectFile); code != 0 {
		t.Fatal(stderr)
	}
	fleet, _ := identity.LoadKeyring(fleetFile)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr clitest.Buffer
	done := make(chan int, 1)
	go func() {
		done <- cli.Exec(ctx, "broker", run, cli.IO{Stderr: &stderr}, []string{"serve", "--data-dir", filepath.Join(dir, "data"),
			"--connect-keys-file", connectFile, "--addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-level", "debug"})
	}()
	var addr string
	deadline := time.Now().Add(15 * time.Second)
	for addr == "" {
		if time.Now().After(deadline) {
			t.Fatalf("no start line in the log: %s", stderr.String())
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited %d: %s", code, stderr.String())
		default:
		}
		sc := bufio.NewScanner(strings.NewReader(stderr.String()))
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) == nil && line["message"] == "broker started" {
				addr, _ = line["mqtt"].(string)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}

	dk, _ := identity.NewDeviceKey(fleet, "cam-1")
	pw := dk.Password(time.Now())
	c, err := mqttclient.New(mqttclient.Config{BrokerURL: "tcp://" + addr, ClientID: "cam-1", Username: "cam-1", Password: pw, NoReconnect: true})
	if err != nil {
		t.Fatal(err)
	}
	connectCtx, cancelConnect := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelConnect()
	if err := c.Connect(connectCtx); err != nil {
		t.Fatalf("connect: %v", err)
	}
	if tok := c.Publish("clipgate/v1/devices/cam-1/status", 1, false, []byte("up")); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	c.Close()

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop")
	}
	// Every line is a JSON object whose keys are unique (mochi's lines, through slog, once
	// carried "component" twice), and the components say who they are.
	components := map[string]bool{}
	for _, line := range clitest.CheckJSONLog(t, stderr.String()) {
		c, _ := line["component"].(string)
		components[c] = true
	}
	if !components["broker"] || !components["mochi"] {
		t.Errorf("log lines of components %v, want broker and mochi among them:\n%s", components, stderr.String())
	}
}

// --worker-routing (or its variable, or workerRouting in the file) selects the token
// workers' routing; anything but the two strategies is a usage error.
func TestServeWorkerRouting(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "broker.yaml")
	if err := os.WriteFile(file, []byte("dataDir: /from/file\nworkerRouting: device\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, broker.WorkerRoutingRoundRobin}, // the default
		{[]string{"--worker-routing", "device"}, broker.WorkerRoutingDevice},
		{[]string{"--worker-routing", "round-robin"}, broker.WorkerRoutingRoundRobin},
		{[]string{"--config", file}, broker.WorkerRoutingDevice},
		{[]string{"--config", file, "--worker-routing", "round-robin"}, broker.WorkerRoutingRoundRobin},
	} {
		cfg, err := parseServe(t, nil, append([]string{"--in-memory"}, c.args...)...)
		if err != nil || cfg.WorkerRouting != c.want {
			t.Fatalf("%v: %v %q, want %q", c.args, err, cfg.WorkerRouting, c.want)
		}
	}
	if code, _, stderr := runCLI(t, "", "serve", "--in-memory", "--worker-routing", "hash"); code != 2 || !strings.Contains(stderr, "worker-routing") {
		t.Fatalf("--worker-routing hash: exit %d %q", code, stderr)
	}
	if cfg, err := parseServe(t, map[string]string{"CLIPGATE_WORKER_ROUTING": "device"}, "--in-memory"); err != nil || cfg.WorkerRouting != broker.WorkerRoutingDevice {
		t.Fatalf("environment: %v %q", err, cfg.WorkerRouting)
	}
}

// TestFlagSources: every flag of every subcommand has its variable and its configuration
// key, and each source sets it.
func TestFlagSources(t *testing.T) {
	t.Parallel()
	clitest.CheckFlags(t, clitest.Command{Spec: spec, Grammar: func() any { return &CLI{} }, Args: map[string][]string{
		"fleet-key":    {"fleet-key", "/nonexistent/fleet.keys"},
		"connect-keys": {"connect-keys", "/nonexistent/connect.keys"},
		"device-key":   {"device-key", "cam-1"},
	}})
}

// TestExitCodes: 0 for --help and --version, 2 for usage and configuration errors, 1 when
// the broker cannot listen.
func TestExitCodes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fleetFile, connectFile := filepath.Join(dir, "fleet.keys"), filepath.Join(dir, "connect.keys")
	if code, _, stderr := runCLI(t, "", "fleet-key", fleetFile); code != 0 {
		t.Fatal(stderr)
	}
	if code, _, stderr := runCLI(t, "", "connect-keys", "--fleet-keys-file", fleetFile, connectFile); code != 0 {
		t.Fatal(stderr)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	short := filepath.Join(dir, "short-token")
	if err := os.WriteFile(short, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	serve := []string{"serve", "--in-memory", "--connect-keys-file", connectFile, "--http-addr", "none", "--log-level", "error"}
	clitest.CheckExitCodes(t, "broker", run, clitest.Exits{
		cli.ExitUsage: {
			{"serve"}, // no data dir
			slices.Concat(serve, []string{"--connect-keys-file", filepath.Join(dir, "none")}),
			slices.Concat(serve, []string{"--max-packet-size", "10"}),
			slices.Concat(serve, []string{"--emqx", "--emqx-token-file", short}), // too short to be secret
		},
		cli.ExitFailure: {
			slices.Concat(serve, []string{"--addr", busy.Addr().String()}),
			{"fleet-key", fleetFile}, // exists
		},
	})
}

// TestRevocationKey: the key pair the console signs with and the followers verify with.
func TestRevocationKey(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "revocation.key")
	if code, _, stderr := runCLI(t, "", "revocation-key", path); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	seed, err := identity.LoadKey(path)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := identity.LoadRevocationPublicKey(path + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	list, err := identity.SignRevocationList(seed, time.Now(), []identity.Revocation{{Device: "cam-1"}})
	if err != nil {
		t.Fatal(err)
	}
	r := identity.NewRevocations()
	if err := r.ApplySigned(pub, list, time.Now()); err != nil || !r.Revoked("cam-1") {
		t.Fatalf("a list signed with the key: %v", err)
	}
	if code, _, stderr := runCLI(t, "", "revocation-key", path); code != 1 || !strings.Contains(stderr, "--force") {
		t.Fatalf("overwrite: exit %d: %s", code, stderr)
	}
	// The broker follows the list with the public key.
	code, _, stderr := runCLI(t, "", "serve", "--in-memory", "--connect-keys-file", path, "--revocations-key-file", path+".pub",
		"--revocations-file", path, "--addr", "127.0.0.1:0", "--http-addr", "none")
	if code != 2 || !strings.Contains(stderr, "choose one") {
		t.Fatalf("both list sources: exit %d: %s", code, stderr)
	}
}

// The abuse limits come from flags, variables or the file; the defaults are the broker's;
// garbage is a usage error or a configuration error naming the setting.
func TestServeLimits(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "broker.yaml")
	if err := os.WriteFile(file, []byte("in-memory: true\nmaxSubscriptions: 7\nlogin-block-for: 5m\nsourceConnectRate: -1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := parseServe(t, map[string]string{"CLIPGATE_CLIENT_CONNECT_BURST": "3"}, "--config", file, "--login-block-after", "4")
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.Limits
	if l.MaxSubscriptions != 7 || l.BlockFor != 5*time.Minute || l.SourceConnectRate != -1 || l.ClientConnectBurst != 3 ||
		l.BlockAfter != 4 || l.FailureDelay != broker.DefaultFailureDelay || l.MaxPendingPerSource != broker.DefaultMaxPendingPerSource ||
		l.PasswordCacheEntries != broker.DefaultPasswordCacheEntries {
		t.Fatalf("%+v", l)
	}
	for _, args := range [][]string{
		{"--max-subscriptions", "lots"},
		{"--login-block-for", "forever"},
		{"--client-connect-rate", "1/s"},
		{"--max-pending-per-source", "9999999999999999999999"},
	} {
		if _, err := parseServe(t, nil, append([]string{"--in-memory"}, args...)...); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--login-failure-delay", "2m", "--login-max-failure-delay", "1m"}, "maxFailureDelay"},
		{[]string{"--login-block-for=-1s"}, "blockFor"},
		{[]string{"--bcrypt-wait=-1s"}, "bcryptWait"},
		{[]string{"--password-cache-entries=-5"}, "passwordCacheEntries"},
		{[]string{"--source-connect-burst=-1"}, "sourceConnectBurst"},
	} {
		cfg, err := parseServe(t, nil, append([]string{"--in-memory", "--connect-keys-file", "x"}, c.args...)...)
		if err != nil {
			t.Fatalf("%q: %v", c.args, err)
		}
		fleet, _ := identity.NewFleetKeyring()
		cfg.ConnectKeysFile, cfg.ConnectKeys = "", fleet.ConnectRoots()
		if _, err := broker.New(cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want an error naming %s", c.args, err, c.want)
		}
	}
	if err := os.WriteFile(file, []byte("in-memory: true\nmaxSubscriptions: [1, 2]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := parseServe(t, nil, "--config", file); err == nil {
		t.Error("a list for maxSubscriptions accepted")
	}
}
