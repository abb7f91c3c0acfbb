package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/clipgate/clipgate/clipgatetest"
	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/cli"
	"github.com/clipgate/clipgate/internal/cli/clitest"
	"github.com/clipgate/clipgate/internal/testutil"
	"github.com/clipgate/clipgate/policy"
	"github.com/clipgate/clipgate/topics"
)

// Variables that hold secrets.
const (
	envPassword     = "CLIPGATE_PASSWORD"
	envOSSSecret    = "CLIPGATE_OSS_ACCESS_KEY_SECRET"
	envPasswordHash = "CLIPGATE_PASSWORD_HASH"
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

func writeFile(t *testing.T, name, text string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

var required = []string{"--oss-endpoint", "http://127.0.0.1:1", "--oss-bucket", "clips", "--oss-access-key-id", "AK"}

func TestParseFlagsPrecedence(t *testing.T) {
	cfg := writeFile(t, "console.yaml", `
listen: 127.0.0.1:9999
database: /var/lib/console.db
group: from-file
oss:
  endpoint: http://127.0.0.1:9100
  bucket: file-bucket
  access_key_id: AK-file
  prefix: videos/
url-expiry: 2m
concurrency: 3
`, 0o600)
	m, _ := newTestMain(map[string]string{"CLIPGATE_GROUP": "from-env", "CLIPGATE_CONCURRENCY": "5"})
	if err := m.ParseFlags([]string{"--config", cfg, "--concurrency", "7"}); err != nil {
		t.Fatal(err)
	}
	c := m.CLI
	if c.Listen != "127.0.0.1:9999" || c.Database != "/var/lib/console.db" || c.OSSBucket != "file-bucket" || c.OSSAccessKeyID != "AK-file" ||
		c.OSSPrefix != "videos/" || c.URLExpiry != 2*time.Minute || c.OSSEndpoint != "http://127.0.0.1:9100" {
		t.Fatalf("from the file: %+v", c)
	}
	if c.Group != "from-env" || c.Concurrency != 7 {
		t.Fatalf("precedence: group %q (want the environment's), concurrency %d (want the flag's)", c.Group, c.Concurrency)
	}
}

func TestParseFlagsDefaults(t *testing.T) {
	m, _ := newTestMain(nil)
	if err := m.ParseFlags(required); err != nil {
		t.Fatal(err)
	}
	if m.CLI.Listen != "127.0.0.1:8080" || m.CLI.Database != "console.db" || m.CLI.Broker != "tcp://127.0.0.1:1883" ||
		m.CLI.Username != "consumer" || m.CLI.Group != "console" || m.CLI.OSSPrefix != "clips/" || m.CLI.URLExpiry != 5*time.Minute {
		t.Fatalf("defaults: %+v", m.CLI)
	}
}

// TestDefaultPrefix: the console defaults to policy.DefaultPrefix, as the token worker
// does (cmd/tokenworker's TestDefaultPrefix) and the test stacks do, so that with the
// defaults it accepts the keys the devices are given; an empty prefix is still possible.
func TestDefaultPrefix(t *testing.T) {
	m, _ := newTestMain(nil)
	if err := m.ParseFlags(required); err != nil {
		t.Fatal(err)
	}
	if m.CLI.OSSPrefix != policy.DefaultPrefix || clipgatetest.DefaultPrefix != policy.DefaultPrefix {
		t.Fatalf("default --oss-prefix %q, clipgatetest's %q; want %q", m.CLI.OSSPrefix, clipgatetest.DefaultPrefix, policy.DefaultPrefix)
	}
	m, _ = newTestMain(nil)
	if err := m.ParseFlags(append([]string{"--oss-prefix="}, required...)); err != nil || m.CLI.OSSPrefix != "" {
		t.Fatalf("--oss-prefix= gives %q, %v; want no prefix", m.CLI.OSSPrefix, err)
	}
}

func TestParseFlagsErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		file string
		want string
	}{
		"missing required": {args: []string{"--oss-bucket", "clips"}, want: "missing flags"},
		"bad duration":     {args: append([]string{"--url-expiry", "soon"}, required...), want: "url-expiry"},
		"unknown flag":     {args: append([]string{"--nope"}, required...), want: "unknown flag"},
		"unknown key":      {file: "listen: x\nlisen: y\n", want: "unknown setting(s) lisen"},
		"secret in file":   {file: "oss:\n  access-key-secret: s3cr3t\n", want: "secrets do not belong in the file"},
		"list":             {file: "listen: [a, b]\n", want: "lists"},
		"two documents":    {file: "listen: a\n---\nlisten: b\n", want: "more than one YAML document"},
		"not a map":        {file: "just a string\n", want: "map of settings"},
		"null":             {file: "listen:\n", want: "no value"},
		"twice":            {file: "oss-bucket: a\noss:\n  bucket: b\n", want: "set twice"},
		"bad level":        {args: append([]string{"--log-level", "loud"}, required...), want: "log-level"},
	} {
		t.Run(name, func(t *testing.T) {
			args := tc.args
			if tc.file != "" {
				args = append([]string{"--config", writeFile(t, "c.yaml", tc.file, 0o600)}, required...)
			}
			m, _ := newTestMain(nil)
			err := m.ParseFlags(args)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseFlags: %v, want %q", err, tc.want)
			}
		})
	}
	m, out := newTestMain(nil)
	if err := m.ParseFlags([]string{"--help"}); err != cli.ErrExited || !strings.Contains(out.String(), "--oss-endpoint") {
		t.Fatalf("--help: %v\n%s", err, out)
	}
}

func hashOf(t *testing.T, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func TestConfigErrors(t *testing.T) {
	hash := hashOf(t, "pw")
	hashFile := writeFile(t, "hash", hash+"\n", 0o600)
	openHashFile := writeFile(t, "open-hash", hash+"\n", 0o644)
	secrets := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	secretEnv := secrets(envOSSSecret, "secret", envPassword, "pw", envPasswordHash, hash)
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
		want string
	}{
		"no hash, no operator": {args: []string{"--broker", ""}, env: secrets(envOSSSecret, "secret"), want: "no operator can log in"},
		"both hashes":          {args: []string{"--password-hash-file", hashFile}, env: secretEnv, want: "not both"},
		"readable hash file":   {args: []string{"--password-hash-file", openHashFile}, env: secrets(envOSSSecret, "secret", envPassword, "pw"), want: "chmod 600"},
		"no OSS secret":        {env: secrets(envPassword, "pw", envPasswordHash, hash), want: "OSS access key secret is required"},
		"empty OSS secret":     {env: secrets(envOSSSecret, "", envPassword, "pw", envPasswordHash, hash), want: "is empty"},
		"secret twice":         {args: []string{"--oss-access-key-secret-file", hashFile}, env: secretEnv, want: "not both"},
		"no broker password":   {env: secrets(envOSSSecret, "s", envPasswordHash, hash), want: "broker password is required"},
		"bad endpoint":         {args: []string{"--oss-endpoint", "ftp://x"}, env: secretEnv, want: "--oss-endpoint"},
		"endpoint with path":   {args: []string{"--oss-endpoint", "http://127.0.0.1:1/x"}, env: secretEnv, want: "--oss-endpoint"},
		"tls cert alone":       {args: []string{"--tls-cert", hashFile}, env: secretEnv, want: "go together"},
		"tls garbage":          {args: []string{"--tls-cert", hashFile, "--tls-key", hashFile}, env: secretEnv, want: "--tls-cert"},
		"bad topic root":       {args: []string{"--topic-root", "a/+/b"}, env: secretEnv, want: "--topic-root"},
		"bad concurrency":      {args: []string{"--concurrency", "0"}, env: secretEnv, want: "--concurrency"},
		"not a bcrypt hash":    {args: []string{"--broker", ""}, env: secrets(envOSSSecret, "secret", envPasswordHash, "plaintext"), want: "not a bcrypt hash"},
		"bad prefix":           {args: []string{"--oss-prefix", "../x/", "--broker", ""}, env: secretEnv, want: "Prefix"},
		"broker CA not found":  {args: []string{"--broker-ca", "/nonexistent/ca.pem"}, env: secretEnv, want: "--broker-ca"},
		"negative timeout":     {args: []string{"--connect-timeout=-1s"}, env: secretEnv, want: "--connect-timeout"},
	} {
		t.Run(name, func(t *testing.T) {
			m, _ := newTestMain(tc.env)
			args := append(append([]string{"--database", filepath.Join(t.TempDir(), "c.db"), "--listen", "127.0.0.1:0"}, required...), tc.args...)
			if err := m.ParseFlags(args); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := m.Run(ctx)
			_ = m.Close()
			if err == nil || !strings.Contains(err.Error(), tc.want) || cli.ExitCode(err) != cli.ExitUsage {
				t.Fatalf("Run: %v (exit %d), want %q and a usage error", err, cli.ExitCode(err), tc.want)
			}
		})
	}
}

// TestRun runs the command's Main against a whole stack: it indexes a device's upload,
// serves the UI and API, and writes the revocation file.
func TestRun(t *testing.T) {
	stack := clipgatetest.New(t, clipgatetest.Options{})
	dir := t.TempDir()
	hashFile := writeFile(t, "hash", hashOf(t, "operator pw")+"\n", 0o600)
	user, pass := stack.ServiceAccount(topics.RoleConsumer)
	id, secret := stack.AdminKey()
	revFile := filepath.Join(dir, "revoked.txt")
	var out, logs clitest.Buffer
	m := NewMain(cli.IO{Stdout: &out, Stderr: &logs, Getenv: func(k string) (string, bool) {
		v, ok := map[string]string{envPassword: pass, envOSSSecret: secret}[k]
		return v, ok
	}})
	if err := m.ParseFlags([]string{
		"--listen", "127.0.0.1:0", "--database", "sqlite:" + filepath.Join(dir, "console.db"),
		"--broker", stack.BrokerURL(), "--username", user, "--client-id", "consumer:console-test",
		"--oss-endpoint", stack.OSSEndpoint(), "--oss-region", stack.Region(), "--oss-bucket", stack.Bucket(),
		"--oss-prefix", stack.Prefix(), "--oss-access-key-id", id, "--password-hash-file", hashFile,
		"--revocations-file", revFile, "--log-level", "debug",
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if !strings.Contains(out.String(), "console: serving "+m.URL()) || !strings.HasPrefix(m.URL(), "http://127.0.0.1:") {
		t.Fatalf("output: %q (URL %q)", out.String(), m.URL())
	}
	if _, err := os.Stat(revFile); err != nil {
		t.Fatalf("revocation file not written at start: %v", err)
	}

	kit, err := devicekit.New(stack.DeviceConfig("cam-01"))
	if err != nil {
		t.Fatal(err)
	}
	defer kit.Close()
	if err := kit.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	clip := filepath.Join(dir, "a.mp4")
	if err := os.WriteFile(clip, []byte("a clip"), 0o600); err != nil {
		t.Fatal(err)
	}
	ev, err := kit.Upload(ctx, devicekit.Clip{Path: clip})
	if err != nil {
		t.Fatal(err)
	}

	// Log in through the API and find the clip.
	api := login(t, m.URL(), "admin", "operator pw")
	api.waitClip("cam-01", ev.Key)
	if status := api.call("POST", "/api/devices/cam-01/revoke", api.CSRF, nil, nil); status != 200 {
		t.Fatalf("revoke: %d", status)
	}
	text, err := os.ReadFile(revFile)
	if err != nil || !strings.Contains(string(text), "\ncam-01 2") {
		t.Fatalf("revocation file: %q, %v", text, err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	// The log is JSON lines whose keys are unique.
	if lines := clitest.CheckJSONLog(t, logs.String()); len(lines) == 0 {
		t.Error("no log at --log-level debug")
	}
}

// consoleAPI is a logged-in client of the console's JSON API.
type consoleAPI struct {
	t    *testing.T
	url  string
	hc   *http.Client
	CSRF string
}

// login logs in to the console at url as the operator name.
func login(t *testing.T, url, name, password string) *consoleAPI {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	a := &consoleAPI{t: t, url: url, hc: &http.Client{Jar: jar, Timeout: 30 * time.Second}}
	a.call("GET", "/api/session", "", nil, a)
	if status := a.call("POST", "/api/login", a.CSRF, map[string]string{"name": name, "password": password}, a); status != 200 {
		t.Fatalf("login: %d", status)
	}
	return a
}

// call sends a JSON request, decodes the response into v when set and returns its status.
func (a *consoleAPI) call(method, path, csrf string, body any, v any) int {
	t := a.t
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, a.url+path, r)
	req.Header.Set("Content-Type", "application/json")
	if csrf != "" {
		req.Header.Set("X-CSRF-Token", csrf)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode
}

// waitClip waits until the API lists key, and only key, among device's clips.
func (a *consoleAPI) waitClip(device, key string) {
	t := a.t
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		var page struct {
			Clips []struct{ Key string }
		}
		if status := a.call("GET", "/api/clips?device="+device, "", nil, &page); status != 200 {
			t.Fatalf("clips: %d", status)
		}
		if len(page.Clips) == 1 && page.Clips[0].Key == key {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("clip %s not indexed: %+v", key, page)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRunWaitsForBroker: with --connect-timeout 0, a console started while the broker is
// down (a stack stopped, nothing listening on its addresses) keeps trying, and Run returns once the
// broker is back there and the console is subscribed.
func TestRunWaitsForBroker(t *testing.T) {
	opts := clipgatetest.Options{Dir: t.TempDir(), MQTTAddr: clipgatetest.HoldAddr(t),
		OSSAddr: clipgatetest.HoldAddr(t), STSAddr: clipgatetest.HoldAddr(t)}
	first := clipgatetest.New(t, opts)
	user, pass := first.ServiceAccount(topics.RoleConsumer)
	id, secret := first.AdminKey()
	args := []string{
		"--listen", "127.0.0.1:0", "--database", "sqlite:" + filepath.Join(t.TempDir(), "console.db"),
		"--broker", first.BrokerURL(), "--username", user, "--client-id", "consumer:console-late",
		"--oss-endpoint", first.OSSEndpoint(), "--oss-region", first.Region(), "--oss-bucket", first.Bucket(),
		"--oss-access-key-id", id, "--connect-timeout", "0",
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	dials := testutil.NewLogSignal("cannot connect to the broker")
	m := NewMain(cli.IO{Getenv: func(k string) (string, bool) {
		v, ok := map[string]string{envPassword: pass, envOSSSecret: secret, envPasswordHash: hashOf(t, "pw")}[k]
		return v, ok
	}, Stdout: io.Discard, Stderr: dials})
	if err := m.ParseFlags(args); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	started := make(chan error, 1)
	go func() { started <- m.Run(ctx) }()
	select {
	case <-dials.Seen(): // a dial failed: nothing listens yet
	case err := <-started:
		t.Fatalf("Run returned while the broker was down: %v", err)
	}
	clipgatetest.New(t, opts)
	if err := <-started; err != nil {
		t.Fatalf("Run after the broker came back: %v", err)
	}
}

// TestFlagSources: every flag has its variable and its configuration key, and each
// source sets it.
func TestFlagSources(t *testing.T) {
	t.Parallel()
	clitest.CheckFlags(t, clitest.Command{Spec: spec, Grammar: func() any { return &CLI{} }})
}

// TestExitCodes: 0 for --help and --version, 2 for usage and configuration errors, 1 when
// the console cannot start (its address is taken).
func TestExitCodes(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	hash := writeFile(t, "hash", hashOf(t, "pw")+"\n", 0o600)
	secret := writeFile(t, "secret", "oss-secret\n", 0o600)
	args := append([]string{"--database", filepath.Join(t.TempDir(), "c.db"), "--broker", "", "--password-hash-file", hash,
		"--oss-access-key-secret-file", secret, "--log-level", "error"}, required...)
	clitest.CheckExitCodes(t, "console", run, clitest.Exits{
		cli.ExitUsage: {
			required, // no secrets
			slices.Concat(args, []string{"--concurrency", "0"}),
			slices.Concat(args, []string{"--oss-endpoint", "ftp://x"}),
		},
		cli.ExitFailure: {slices.Concat(args, []string{"--listen", busy.Addr().String()})},
	})
}
