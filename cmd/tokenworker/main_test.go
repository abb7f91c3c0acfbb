package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clipgate/clipgate/internal/cli"
	"github.com/clipgate/clipgate/internal/cli/clitest"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/policy"
)

// Variables that hold secrets.
const (
	envPassword  = "CLIPGATE_PASSWORD"
	envSTSSecret = "CLIPGATE_STS_ACCESS_KEY_SECRET"
)

// newTestMain returns a Main whose environment is env (a map), not the process's.
func newTestMain(env map[string]string) (*Main, *clitest.Buffer) {
	var out clitest.Buffer
	return NewMain(cli.IO{
		Getenv: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		Stdout: &out,
		Stderr: &out,
	}), &out
}

func writeFile(t *testing.T, dir, name, text string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func fleetKeyFile(t *testing.T, dir string) string {
	t.Helper()
	k, err := identity.NewFleetKeyring()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "fleet.keys")
	if err := identity.WriteKeyring(p, k); err != nil {
		t.Fatal(err)
	}
	return p
}

// requiredArgs are the flags that have no default.
func requiredArgs(fleet string) []string {
	return []string{"--fleet-keys-file", fleet, "--sts-endpoint", "127.0.0.1:1", "--sts-access-key-id", "AK",
		"--sts-role-arn", "acs:ram::1:role/r", "--oss-endpoint", "http://127.0.0.1:2", "--oss-bucket", "clips"}
}

func TestParseFlagsPrecedence(t *testing.T) {
	dir := t.TempDir()
	fleet := fleetKeyFile(t, dir)
	cfgFile := writeFile(t, dir, "tokenworker.yaml", `
broker: tcp://127.0.0.1:1999
group: from-file
sts:
  endpoint: sts.example:80
  scheme: http
  access_key_id: AK-file
  role-arn: acs:ram::1:role/file
  duration: 2h
oss:
  endpoint: http://127.0.0.1:9
  bucket: file-bucket
  prefix: videos/
device-rate: 2.5
max-concurrent: 7
fleet-keys-file: `+fleet+`
`, 0o600)
	m, _ := newTestMain(map[string]string{"CLIPGATE_GROUP": "from-env", "CLIPGATE_MAX_CONCURRENT": "9"})
	if err := m.ParseFlags([]string{"--config", cfgFile, "--max-concurrent", "11", "--workers", "3"}); err != nil {
		t.Fatalf("ParseFlags: %v", err)
	}
	c := m.CLI
	for _, tc := range []struct{ name, got, want string }{
		{"broker (file)", c.Broker, "tcp://127.0.0.1:1999"},
		{"group (env over file)", c.Group, "from-env"},
		{"sts endpoint (nested)", c.STSEndpoint, "sts.example:80"},
		{"sts scheme", c.STSScheme, "http"},
		{"sts key id (snake case)", c.STSAccessKeyID, "AK-file"},
		{"role", c.STSRoleARN, "acs:ram::1:role/file"},
		{"bucket", c.OSSBucket, "file-bucket"},
		{"prefix", c.OSSPrefix, "videos/"},
		{"username (default)", c.Username, "tokenworker"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %q, want %q", tc.name, tc.got, tc.want)
		}
	}
	if c.MaxConcurrent != 11 || c.Workers != 3 || c.DeviceRate != 2.5 || c.STSDuration != 2*time.Hour {
		t.Errorf("max-concurrent %d (flag wins), workers %d, device-rate %v, duration %v", c.MaxConcurrent, c.Workers, c.DeviceRate, c.STSDuration)
	}
}

func TestParseFlagsErrors(t *testing.T) {
	dir := t.TempDir()
	fleet := fleetKeyFile(t, dir)
	for name, tc := range map[string]struct {
		yaml string
		args []string
		want string
	}{
		"unknown key":        {"brokr: tcp://x:1\n", nil, "brokr"},
		"secret in file":     {"password: hunter2\n", nil, "secrets do not belong"},
		"sts secret in file": {"sts:\n  access-key-secret: x\n", nil, "secrets do not belong"},
		"list value":         {"broker: [a, b]\n", nil, "lists are not supported"},
		"scalar document":    {"just text\n", nil, "map of settings"},
		"two documents":      {"broker: a\n---\nbroker: b\n", nil, "more than one"},
		"duplicate":          {"sts-endpoint: a\nsts:\n  endpoint: b\n", nil, "twice"},
		"null":               {"broker:\n", nil, "no value"},
		"bad yaml":           {"broker: 'open\n", nil, "configuration file"},
		"bad duration":       {"clock-window: soon\n", nil, "clock-window"},
		"bad enum":           {"sts-scheme: ftp\n", nil, "sts-scheme"},
		"missing required":   {"", []string{"--fleet-keys-file", fleet}, "sts-endpoint"},
		"workers zero":       {"", append(requiredArgs(fleet), "--workers", "0"), "--workers"},
		"password flag":      {"", append(requiredArgs(fleet), "--password", "x"), "unknown flag"},
	} {
		t.Run(name, func(t *testing.T) {
			args := tc.args
			if tc.yaml != "" {
				f := writeFile(t, t.TempDir(), "c.yaml", tc.yaml, 0o600)
				args = append(append([]string{"--config", f}, requiredArgs(fleet)...), args...)
			}
			m, _ := newTestMain(nil)
			err := m.ParseFlags(args)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestParseFlagsHelp(t *testing.T) {
	m, out := newTestMain(nil)
	if err := m.ParseFlags([]string{"--help"}); err != cli.ErrExited {
		t.Fatalf("err = %v, want cli.ErrExited", err)
	}
	for _, s := range []string{"--sts-endpoint", envPassword, envSTSSecret, "--workers"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("help does not mention %s", s)
		}
	}
}

func TestConfigSecrets(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fleet := fleetKeyFile(t, dir)
	pwFile := writeFile(t, dir, "pw", "broker-pass\n", 0o600)
	skFile := writeFile(t, dir, "sk", "sts-secret\n", 0o600)
	open := writeFile(t, dir, "open", "sts-secret\n", 0o644)
	empty := writeFile(t, dir, "empty", "\n", 0o600)
	multi := writeFile(t, dir, "multi", "a\nb\n", 0o600)

	build := func(env map[string]string, extra ...string) (string, string, error) {
		m, _ := newTestMain(env)
		if err := m.ParseFlags(append(requiredArgs(fleet), extra...)); err != nil {
			t.Fatalf("ParseFlags: %v", err)
		}
		cfg, _, err := m.config()
		return cfg.Password, cfg.STS.AccessKeySecret, err
	}
	pw, sk, err := build(nil, "--password-file", pwFile, "--sts-access-key-secret-file", skFile)
	if err != nil || pw != "broker-pass" || sk != "sts-secret" {
		t.Fatalf("files: %q %q %v", pw, sk, err)
	}
	// Neither fleet keys nor a fleet CA: a usage error naming both.
	m, _ := newTestMain(map[string]string{envSTSSecret: "x"})
	if err := m.ParseFlags(requiredArgs(fleet)[2:]); err != nil {
		t.Fatalf("ParseFlags: %v", err)
	}
	if _, _, err := m.config(); err == nil || !strings.Contains(err.Error(), "--fleet-keys-file is required (or --fleet-ca-file") {
		t.Errorf("no fleet keys or CA: %v", err)
	}
	pw, sk, err = build(map[string]string{envPassword: "p-env", envSTSSecret: "s-env"})
	if err != nil || pw != "p-env" || sk != "s-env" {
		t.Fatalf("env: %q %q %v", pw, sk, err)
	}
	for name, tc := range map[string]struct {
		env   map[string]string
		extra []string
		want  string
	}{
		"no STS secret":   {nil, nil, envSTSSecret},
		"both":            {map[string]string{envSTSSecret: "x"}, []string{"--sts-access-key-secret-file", skFile}, "not both"},
		"world readable":  {nil, []string{"--sts-access-key-secret-file", open}, "chmod 600"},
		"empty file":      {nil, []string{"--sts-access-key-secret-file", empty}, "empty"},
		"two lines":       {nil, []string{"--sts-access-key-secret-file", multi}, "more than one line"},
		"missing file":    {nil, []string{"--sts-access-key-secret-file", filepath.Join(dir, "nope")}, "no such file"},
		"empty env":       {map[string]string{envSTSSecret: ""}, nil, "empty"},
		"bad topic root":  {map[string]string{envSTSSecret: "x"}, []string{"--topic-root", "a/+/b"}, "topic-root"},
		"bad fleet key":   {map[string]string{envSTSSecret: "x"}, []string{"--fleet-keys-file", open}, "fleet-keys-file"},
		"bad CA":          {map[string]string{envSTSSecret: "x"}, []string{"--broker-ca", skFile}, "no PEM"},
		"bad fleet CA":    {map[string]string{envSTSSecret: "x"}, []string{"--fleet-ca-file", skFile}, "fleet-ca-file"},
		"negative margin": {map[string]string{envSTSSecret: "x"}, []string{"--reuse-margin=-1s"}, "reuse-margin"},
		"zero rate":       {map[string]string{envSTSSecret: "x"}, []string{"--sts-rate", "0"}, "positive"},
	} {
		if _, _, err := build(tc.env, tc.extra...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one mentioning %q", name, err, tc.want)
		}
	}
}

// TestDefaultPrefix: the token worker defaults to policy.DefaultPrefix, as the console
// does (cmd/console's TestDefaultPrefix), so that with both defaults the console accepts
// the keys the devices are given; an empty prefix is still possible.
func TestDefaultPrefix(t *testing.T) {
	fleet := fleetKeyFile(t, t.TempDir())
	m, _ := newTestMain(nil)
	if err := m.ParseFlags(requiredArgs(fleet)); err != nil {
		t.Fatal(err)
	}
	if m.CLI.OSSPrefix != policy.DefaultPrefix {
		t.Fatalf("default --oss-prefix %q, want %q (the console's default)", m.CLI.OSSPrefix, policy.DefaultPrefix)
	}
	m, _ = newTestMain(nil)
	if err := m.ParseFlags(append(requiredArgs(fleet), "--oss-prefix=")); err != nil || m.CLI.OSSPrefix != "" {
		t.Fatalf("--oss-prefix= gives %q, %v; want no prefix", m.CLI.OSSPrefix, err)
	}
}

// TestFlagSources: every flag has its variable and its configuration key, and each
// source sets it.
func TestFlagSources(t *testing.T) {
	t.Parallel()
	clitest.CheckFlags(t, clitest.Command{Spec: spec, Grammar: func() any { return &CLI{} },
		Samples: map[string][]string{"nats-owned": {"1", "2", "3"}}})
}

// TestExitCodes: 0 for --help and --version, 2 for usage and configuration errors, 1 when
// the broker cannot be reached.
func TestExitCodes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fleet := fleetKeyFile(t, dir)
	secret := writeFile(t, dir, "sk", "sts-secret\n", 0o600)
	args := append(requiredArgs(fleet), "--log-level", "error", "--sts-access-key-secret-file", secret)
	clitest.CheckExitCodes(t, "tokenworker", run, clitest.Exits{
		cli.ExitUsage: {
			requiredArgs(fleet), // no STS secret
			slices.Concat(args, []string{"--workers", "0"}),
			slices.Concat(args, []string{"--topic-root", "a/+/b"}),
			slices.Concat(args, []string{"--fleet-keys-file", secret}),
		},
		cli.ExitFailure: {slices.Concat(args, []string{"--broker", "tcp://127.0.0.1:1", "--connect-timeout", "300ms"})},
	})
}
