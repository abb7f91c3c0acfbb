package main

import (
	"context"
	"encoding/json"
	"hash/crc64"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	"golang.org/x/crypto/bcrypt"

	"github.com/clipgate/clipgate/internal/cli"
	"github.com/clipgate/clipgate/internal/devstack"
)

// okLine matches a successful result line and captures file, bucket, key, size, crc64, event.
var okLine = regexp.MustCompile(`^ok  (.+) -> oss://([a-z0-9-]+)/(.+?) size=(\d+) crc64=(\d+) event=([A-Za-z0-9_-]+)$`)

type okResult struct {
	file, bucket, key string
	size              int64
	crc               uint64
	event             string
}

// results parses stdout: ok lines by file, FAIL lines by file.
func parseResults(t *testing.T, stdout string) (ok map[string]okResult, fail map[string]string) {
	t.Helper()
	ok, fail = map[string]okResult{}, map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(stdout, "\n"), "\n") {
		if m := okLine.FindStringSubmatch(line); m != nil {
			size, _ := strconv.ParseInt(m[4], 10, 64)
			crc, _ := strconv.ParseUint(m[5], 10, 64)
			ok[m[1]] = okResult{file: m[1], bucket: m[2], key: m[3], size: size, crc: crc, event: m[6]}
			continue
		}
		if rest, found := strings.CutPrefix(line, "FAIL "); found {
			file, msg, _ := strings.Cut(rest, ": ")
			fail[file] = msg
			continue
		}
		t.Errorf("unexpected output line %q", line)
	}
	return ok, fail
}

// checkStored checks that the object of r holds exactly the bytes of file.
func checkStored(t *testing.T, s *stack, r okResult) {
	t.Helper()
	data, err := os.ReadFile(r.file)
	if err != nil {
		t.Fatal(err)
	}
	if r.bucket != s.Bucket() || r.size != int64(len(data)) || r.crc != crc64.Checksum(data, crc64.MakeTable(crc64.ECMA)) {
		t.Errorf("result %+v does not describe %s (%d bytes)", r, r.file, len(data))
	}
	h, err := s.bucket(t).GetObjectDetailedMeta(r.key)
	if err != nil {
		t.Fatalf("HEAD %s: %v", r.key, err)
	}
	if h.Get(oss.HTTPHeaderContentLength) != strconv.Itoa(len(data)) || h.Get(oss.HTTPHeaderOssCRC64) != strconv.FormatUint(r.crc, 10) {
		t.Errorf("stored %s: length %s crc64 %s, want %d %d", r.key, h.Get(oss.HTTPHeaderContentLength), h.Get(oss.HTTPHeaderOssCRC64), len(data), r.crc)
	}
}

func TestAgainstStack(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	recorded := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

	t.Run("UploadTwoFiles", func(t *testing.T) {
		t.Parallel()
		cfg := s.device(t, "cam-upload")
		dir := t.TempDir()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		consumer, err := s.Consumer(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		defer consumer.Close()
		small := writeClip(t, dir, "clip one#1.mp4", 1000, recorded)
		// Above the multipart threshold given by flags: uploaded in parts.
		large := writeClip(t, dir, "large.mp4", 350<<10, recorded.Add(48*time.Hour))
		code, stdout, stderr := runCmd(t, nil, "--config", cfg, "--part-size", strconv.Itoa(100<<10),
			"--multipart-threshold", strconv.Itoa(200<<10), "upload", small, large)
		if code != 0 {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
		ok, fail := parseResults(t, stdout)
		if len(ok) != 2 || len(fail) != 0 {
			t.Fatalf("want 2 ok lines, got:\n%s", stdout)
		}
		if k := ok[small].key; k != s.Prefix()+"cam-upload/2024/05/06/clip one#1.mp4" {
			t.Errorf("small clip key %q (the name as it is, dated by mtime)", k)
		}
		if k := ok[large].key; k != s.Prefix()+"cam-upload/2024/05/08/large.mp4" {
			t.Errorf("large clip key %q", k)
		}
		if ok[small].event == ok[large].event {
			t.Error("two uploads share an event ID")
		}
		for _, r := range ok {
			checkStored(t, s, r)
		}
		// The events announced on the broker are the ones on the result lines.
		byID := map[string]okResult{}
		for _, r := range ok {
			byID[r.event] = r
		}
		for len(byID) > 0 {
			ev, err := consumer.Next(ctx)
			if err != nil {
				t.Fatalf("waiting for the upload events: %v (missing %v)", err, byID)
			}
			r, found := byID[ev.ID]
			if !found {
				continue // another subtest's device
			}
			delete(byID, ev.ID)
			if ev.Device != "cam-upload" || ev.Status != "completed" || ev.Key != r.key || ev.Size != r.size || ev.CRC64 != strconv.FormatUint(r.crc, 10) {
				t.Errorf("event %+v does not match result %+v", ev, r)
			}
		}
		if stderr != "" {
			t.Errorf("stderr not empty:\n%s", stderr)
		}
	})

	t.Run("MissingFileFailsAlone", func(t *testing.T) {
		t.Parallel()
		cfg := s.device(t, "cam-missing")
		dir := t.TempDir()
		a := writeClip(t, dir, "a.mp4", 2000, recorded)
		missing := filepath.Join(dir, "missing.mp4")
		b := writeClip(t, dir, "b.mp4", 3000, recorded)
		code, stdout, stderr := runCmd(t, map[string]string{"CLIPGATE_DEVICE_CONFIG": cfg}, "upload", a, missing, dir, b)
		if code != cli.ExitFailure {
			t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, cli.ExitFailure, stdout, stderr)
		}
		ok, fail := parseResults(t, stdout)
		if len(ok) != 2 || len(fail) != 2 {
			t.Fatalf("want 2 ok and 2 FAIL lines, got:\n%s", stdout)
		}
		if !strings.Contains(fail[missing], "no such file") {
			t.Errorf("missing file: %q", fail[missing])
		}
		if !strings.Contains(fail[dir], "not a regular file") {
			t.Errorf("directory: %q", fail[dir])
		}
		checkStored(t, s, ok[a])
		checkStored(t, s, ok[b])
		if !strings.Contains(stderr, "2 of 4 uploads failed") {
			t.Errorf("stderr has no summary:\n%s", stderr)
		}
		// The result lines come in the order of the arguments.
		if ia, im, ib := strings.Index(stdout, a+" ->"), strings.Index(stdout, "FAIL "+missing), strings.Index(stdout, b+" ->"); !(ia < im && im < ib) {
			t.Errorf("results out of order:\n%s", stdout)
		}
	})

	t.Run("ProgressBarOnTerminal", func(t *testing.T) {
		t.Parallel()
		cfg := s.device(t, "cam-progress")
		dir := t.TempDir()
		a := writeClip(t, dir, "p1.mp4", 5000, recorded)
		b := writeClip(t, dir, "p2.mp4", 7000, recorded)
		term := &Main{IsTerminal: func(io.Writer) bool { return true }}
		code, stdout, stderr := runWith(t, term, nil, "--config", cfg, "upload", a, b)
		if code != 0 {
			t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
		}
		if !strings.Contains(stdout, "[1/2] p1.mp4") || !strings.Contains(stdout, "[2/2] p2.mp4") {
			t.Errorf("no progress bar in the output:\n%q", stdout)
		}
		// The result lines are whole lines despite the bar.
		var lines int
		for _, l := range strings.Split(stdout, "\n") {
			l = l[strings.LastIndexByte(l, '\r')+1:]
			if okLine.MatchString(l) {
				lines++
			}
		}
		if lines != 2 {
			t.Errorf("%d clean result lines, want 2:\n%q", lines, stdout)
		}
	})

	t.Run("Credentials", func(t *testing.T) {
		t.Parallel()
		cfg := s.device(t, "cam-creds")
		code, stdout, stderr := runCmd(t, nil, "--config", cfg, "credentials", "--json", "--show-secret")
		if code != 0 {
			t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
		}
		var full map[string]any
		if err := json.Unmarshal([]byte(stdout), &full); err != nil {
			t.Fatalf("--json output: %v\n%s", err, stdout)
		}
		want := map[string]string{"device": "cam-creds", "bucket": s.Bucket(), "prefix": s.Prefix() + "cam-creds/",
			"endpoint": s.OSSEndpoint(), "region": s.Region(), "mode": "w"}
		for k, v := range want {
			if full[k] != v {
				t.Errorf("%s = %v, want %q", k, full[k], v)
			}
		}
		secret, _ := full["accessKeySecret"].(string)
		token, _ := full["securityToken"].(string)
		akid, _ := full["accessKeyId"].(string)
		if secret == "" || token == "" || !strings.HasPrefix(akid, "STS.") {
			t.Fatalf("--show-secret: secret %q token %q key %q", secret, token, akid)
		}
		exp, err := time.Parse(time.RFC3339, full["expiration"].(string))
		if err != nil || time.Until(exp) < 10*time.Minute {
			t.Errorf("expiration %v (%v)", full["expiration"], err)
		}

		// Without --show-secret: the same credentials (the worker reuses them), secret absent.
		code, stdout, _ = runCmd(t, nil, "--config", cfg, "credentials", "--json")
		if code != 0 {
			t.Fatalf("exit %d", code)
		}
		var plain map[string]any
		if err := json.Unmarshal([]byte(stdout), &plain); err != nil {
			t.Fatal(err)
		}
		if plain["accessKeyId"] != akid {
			t.Fatalf("second call got other credentials (%v, then %v): the absence check below would prove nothing", akid, plain["accessKeyId"])
		}
		if _, has := plain["accessKeySecret"]; has || strings.Contains(stdout, secret) || strings.Contains(stdout, token) {
			t.Errorf("--json without --show-secret shows the secret:\n%s", stdout)
		}

		code, stdout, _ = runCmd(t, nil, "--config", cfg, "credentials")
		if code != 0 {
			t.Fatalf("exit %d", code)
		}
		for _, w := range []string{"bucket:", s.Bucket(), "prefix:", s.Prefix() + "cam-creds/", "endpoint:", "region:", "mode:", "expires:", akid, "(hidden"} {
			if !strings.Contains(stdout, w) {
				t.Errorf("text output lacks %q:\n%s", w, stdout)
			}
		}
		if strings.Contains(stdout, secret) || strings.Contains(stdout, token) {
			t.Errorf("text output without --show-secret shows the secret:\n%s", stdout)
		}
		code, stdout, _ = runCmd(t, nil, "--config", cfg, "credentials", "--show-secret")
		if code != 0 || !strings.Contains(stdout, secret) || !strings.Contains(stdout, token) {
			t.Errorf("text --show-secret (exit %d) lacks the secret or token:\n%s", code, stdout)
		}
	})

	t.Run("RevokedDeviceFailsEveryFile", func(t *testing.T) {
		t.Parallel()
		cfg := s.device(t, "cam-revoked")
		s.RevokeAtWorkers("cam-revoked") // the broker lets it in; the workers refuse
		dir := t.TempDir()
		a := writeClip(t, dir, "r1.mp4", 100, recorded)
		b := writeClip(t, dir, "r2.mp4", 100, recorded)
		code, stdout, stderr := runCmd(t, nil, "--config", cfg, "upload", a, b)
		if code != cli.ExitFailure {
			t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
		}
		ok, fail := parseResults(t, stdout)
		if len(ok) != 0 || len(fail) != 2 || !strings.Contains(fail[a], "revoked") || !strings.Contains(fail[b], "revoked") {
			t.Errorf("want two FAIL lines naming the revocation:\n%s", stdout)
		}
		code, _, stderr = runCmd(t, nil, "--config", cfg, "credentials")
		if code != cli.ExitFailure || !strings.Contains(stderr, "revoked") {
			t.Errorf("credentials of a revoked device: exit %d, stderr %q", code, stderr)
		}
	})

	t.Run("BrokerRefusesRevokedDevice", func(t *testing.T) {
		t.Parallel()
		cfg := s.device(t, "cam-banned")
		s.Revoke("cam-banned")
		clip := writeClip(t, t.TempDir(), "b.mp4", 100, recorded)
		// A one-shot command gives up at the refusal, long before this timeout.
		code, stdout, stderr := runCmd(t, nil, "--config", cfg, "--timeout", "1h", "upload", clip)
		if code != cli.ExitFailure || stdout != "" || !strings.Contains(stderr, "connect to "+s.BrokerURL()+" as cam-banned") ||
			!strings.Contains(stderr, "refused the connection") || !strings.Contains(stderr, "revoked") {
			t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
	})

	t.Run("FlagsOverrideFile", func(t *testing.T) {
		t.Parallel()
		// The file names a device whose key does not match; the flag's ID and key win.
		cfg := s.device(t, "cam-file")
		keyDir := t.TempDir()
		other := s.device(t, "cam-flag")
		code, stdout, stderr := runCmd(t, map[string]string{"CLIPGATE_DEVICE_ID": "cam-env"},
			"--config", cfg, "--device-id", "cam-flag", "--device-key-file", filepath.Join(filepath.Dir(other), "device.key"),
			"--state-dir", keyDir, "credentials", "--json")
		if code != 0 {
			t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
		}
		if !strings.Contains(stdout, `"prefix": "`+s.Prefix()+`cam-flag/"`) {
			t.Errorf("flags did not win:\n%s", stdout)
		}
	})
}

// TestDevstackConfig runs the command on the device.yaml that devstack writes, found at
// the default path .devstack/device.yaml of the working directory.
func TestDevstackConfig(t *testing.T) {
	t.Parallel()
	work := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The cheapest bcrypt cost: devstack's production cost 10 outlasts the workers' login
	// timeout under -race on a busy machine.
	d, err := devstack.Start(ctx, devstack.Config{Dir: filepath.Join(work, devstack.DefaultDir), Workers: 1,
		MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", OSSAddr: "127.0.0.1:0", STSAddr: "127.0.0.1:0",
		BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if filepath.Join(work, DefaultConfigPath) != d.DeviceFilePath {
		t.Fatalf("devstack wrote %s, the command looks for %s", d.DeviceFilePath, DefaultConfigPath)
	}
	clip := writeClip(t, t.TempDir(), "demo.mp4", 4000, testTime)
	code, stdout, stderr := runWith(t, &Main{WorkDir: work}, nil, "upload", clip)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	want := "-> oss://" + d.Stack.Bucket() + "/" + d.Stack.Prefix() + devstack.DefaultDeviceID + "/2024/05/06/demo.mp4 size=4000 "
	if !strings.HasPrefix(stdout, "ok  "+clip+" ") || !strings.Contains(stdout, want) {
		t.Errorf("result %q, want it to contain %q", stdout, want)
	}
}
