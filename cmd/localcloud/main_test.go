package main

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aliyun/alibaba-cloud-sdk-go/services/sts"

	"github.com/clipgate/clipgate/internal/cli"
	"github.com/clipgate/clipgate/internal/cli/clitest"
)

// noEnv is an empty environment.
func noEnv(string) (string, bool) { return "", false }

// TestMain lets the test binary act as the command itself, so signal handling is tested
// on a real process without building a separate binary.
func TestMain(m *testing.M) {
	if os.Getenv("LOCALCLOUD_RUN_MAIN") == "1" {
		os.Args = append([]string{"localcloud"}, os.Args[1:]...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestSignalsStopCleanly(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "--data-dir", t.TempDir(), "--oss-addr", "127.0.0.1:0", "--sts-addr", "127.0.0.1:0")
			cmd.Env = append(os.Environ(), "LOCALCLOUD_RUN_MAIN=1")
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr clitest.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(stdout)
			var out strings.Builder
			for sc.Scan() {
				out.WriteString(sc.Text() + "\n")
				if strings.Contains(sc.Text(), "role ARN") {
					break
				}
			}
			if !strings.Contains(out.String(), "role ARN") {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				t.Fatalf("no banner:\n%s\n%s", out.String(), stderr.String())
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			for sc.Scan() {
				out.WriteString(sc.Text() + "\n")
			}
			if err := cmd.Wait(); err != nil {
				t.Fatalf("exit after %v: %v\n%s", sig, err, stderr.String())
			}
			if !strings.Contains(out.String(), "stopping") || !strings.Contains(stderr.String(), "localcloud stopped") {
				t.Errorf("no clean shutdown:\n%s\n%s", out.String(), stderr.String())
			}
		})
	}
}

type running struct {
	out, errOut *clitest.Buffer
	cancel      context.CancelFunc
	done        chan error
}

// start runs the command until the test stops it, and waits for its banner.
func start(t *testing.T, args ...string) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{out: &clitest.Buffer{}, errOut: &clitest.Buffer{}, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- run(ctx, cli.IO{Stdout: r.out, Stderr: r.errOut, Getenv: noEnv}, args) }()
	t.Cleanup(func() { r.stop(t) })
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(r.out.String(), "role ARN") {
		select {
		case err := <-r.done:
			r.done <- err
			t.Fatalf("localcloud exited before serving: %v\nstdout:\n%s\nstderr:\n%s", err, r.out, r.errOut)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no banner:\n%s\n%s", r.out, r.errOut)
		}
	}
	return r
}

// stop cancels the run (as SIGINT does) and checks that it shut down cleanly.
func (r *running) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	if err := <-r.done; err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

func (r *running) field(t *testing.T, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(name) + ` +(\S+)`).FindStringSubmatch(r.out.String())
	if m == nil {
		t.Fatalf("banner has no %q:\n%s", name, r.out)
	}
	return m[1]
}

func assumeRole(t *testing.T, stsEndpoint, ak, sk, arn string) error {
	t.Helper()
	_, err := assumeRoleCreds(t, stsEndpoint, ak, sk, arn)
	return err
}

// assumeRoleCreds calls AssumeRole with the STS SDK and returns the credentials.
func assumeRoleCreds(t *testing.T, stsEndpoint, ak, sk, arn string) (sts.Credentials, error) {
	t.Helper()
	c, err := sts.NewClientWithAccessKey("cn-hangzhou", ak, sk)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	c.SetTransport(tr)
	defer tr.CloseIdleConnections()
	req := sts.CreateAssumeRoleRequest()
	req.Scheme = "http"
	req.Domain = stsEndpoint
	req.RoleArn = arn
	req.RoleSessionName = "cli-test"
	resp, err := c.AssumeRole(req)
	if err != nil {
		return sts.Credentials{}, err
	}
	return resp.Credentials, nil
}

func TestRunWithDevDefaults(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	args := []string{"--data-dir", dir, "--oss-addr", "127.0.0.1:0", "--sts-addr", "127.0.0.1:0", "--log-format", "json"}
	r := start(t, args...)
	if !strings.Contains(r.out.String(), "generated, kept in "+filepath.Join(dir, "dev-keys.json")) {
		t.Errorf("banner does not say the key was generated:\n%s", r.out)
	}
	ak, sk := r.field(t, "access key"), r.field(t, "secret")
	if err := assumeRole(t, r.field(t, "STS endpoint"), ak, sk, r.field(t, "role ARN")); err != nil {
		t.Fatalf("AssumeRole with the printed key and role: %v", err)
	}
	if !regexp.MustCompile(`^http://127\.0\.0\.1:\d+$`).MatchString(r.field(t, "OSS endpoint")) {
		t.Errorf("OSS endpoint %q", r.field(t, "OSS endpoint"))
	}
	if !strings.Contains(r.errOut.String(), `"message":"sts request"`) {
		t.Errorf("no JSON request log on stderr:\n%s", r.errOut)
	}
	clitest.CheckJSONLog(t, r.errOut.String())
	r.stop(t)
	if !strings.Contains(r.out.String(), "stopping") {
		t.Error("no stop message")
	}
	// The OSS port is closed after shutdown.
	if c, err := net.Dial("tcp", strings.TrimPrefix(r.field(t, "OSS endpoint"), "http://")); err == nil {
		c.Close()
		t.Error("OSS still listening after shutdown")
	}

	// A restart reuses the key.
	again := start(t, args...)
	if again.field(t, "access key") != ak || again.field(t, "secret") != sk {
		t.Error("restart generated a new key")
	}
	if !strings.Contains(again.out.String(), "reused from") {
		t.Errorf("banner does not say the key was reused:\n%s", again.out)
	}
}

func TestRunWithConfigFile(t *testing.T) {
	dir := t.TempDir()
	cfg := `
dataDir: state
ossAddr: 127.0.0.1:0
stsAddr: 127.0.0.1:0
region: cn-beijing
buckets: [from-file]
keys:
  - id: LTAIfilekey
    secret: file-key-secret-1
roles:
  - name: uploader
    policy: {Version: "1", Statement: [{Effect: Allow, Action: "oss:PutObject", Resource: "acs:oss:*:*:from-file/*"}]}
`
	path := filepath.Join(dir, "localcloud.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	r := start(t, "-c", path, "--buckets", "from-flag", "--log-level", "warn", "--endpoint-domain", "oss.example.test")
	out := r.out.String()
	for _, want := range []string{"cn-beijing", "from-flag", "BUCKET.oss.example.test", "LTAIfilekey", "acs:ram::1000000000000000:role/uploader", filepath.Join(dir, "state")} {
		if !strings.Contains(out, want) {
			t.Errorf("banner lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "file-key-secret-1") || strings.Contains(out, "from-file,") {
		t.Errorf("banner prints a configured secret or the overridden bucket:\n%s", out)
	}
	if err := assumeRole(t, r.field(t, "STS endpoint"), "LTAIfilekey", "file-key-secret-1", "acs:ram::1000000000000000:role/uploader"); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(r.errOut.String(), "sts request") {
		t.Errorf("info log written at --log-level warn:\n%s", r.errOut)
	}
}

func TestRunRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("buckets: [Not_A_Bucket]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	data := filepath.Join(dir, "data")
	cases := map[string]struct {
		args []string
		want string
	}{
		"unknown flag":      {[]string{"--colour"}, "unknown flag"},
		"missing file":      {[]string{"-c", filepath.Join(dir, "nope.yaml")}, "nope.yaml"},
		"bad file":          {[]string{"-c", bad}, "Not_A_Bucket"},
		"bad bucket flag":   {[]string{"--data-dir", data, "--buckets", "-x-"}, "-x-"},
		"bad log level":     {[]string{"--log-level", "loud"}, "loud"},
		"bad address":       {[]string{"--data-dir", data, "--oss-addr", "nowhere"}, "oss"},
		"negative rate":     {[]string{"--data-dir", data, "--sts-rate=-2"}, "negative"},
		"rate not a number": {[]string{"--sts-rate", "fast"}, "fast"},
		"bad domain":        {[]string{"--data-dir", data, "--endpoint-domain", "oss_local"}, "endpoint domain"},
		"address in use": {[]string{"--data-dir", data, "--oss-addr", busy.Addr().String(),
			"--sts-addr", "127.0.0.1:0"}, "address already in use"},
	}
	for name, c := range cases {
		var out, errOut clitest.Buffer
		err := run(context.Background(), cli.IO{Stdout: &out, Stderr: &errOut, Getenv: noEnv}, c.args)
		if err == nil || !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(c.want)) {
			t.Errorf("%s: err = %v, want one mentioning %q", name, err, c.want)
		}
	}
	var out, errOut clitest.Buffer
	if err := run(context.Background(), cli.IO{Stdout: &out, Stderr: &errOut}, []string{"--help"}); err != cli.ErrExited {
		t.Errorf("--help: %v", err)
	}
	if !strings.Contains(out.String(), "--sts-rate") {
		t.Errorf("--help output:\n%s", out.String())
	}
}

// The process exits 2 for a usage error, with a message (TestExitCodes runs the others
// in-process).
func TestMainExitsNonZeroOnBadInput(t *testing.T) {
	cmd := exec.Command(os.Args[0], "--sts-rate", "fast")
	cmd.Env = append(os.Environ(), "LOCALCLOUD_RUN_MAIN=1")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != cli.ExitUsage {
		t.Fatalf("err = %v, want exit status 2\n%s", err, out)
	}
	if !strings.HasPrefix(string(out), "localcloud: ") || !strings.Contains(string(out), "fast") {
		t.Errorf("message %q", out)
	}
}
