package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/deviceconfig"
	"github.com/clipgate/clipgate/internal/identity"
)

// deviceFiles writes a device key and a config file naming it, and returns the config path.
func deviceFiles(t *testing.T, dir string, f deviceconfig.File) string {
	t.Helper()
	key, err := identity.NewFleetKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := identity.WriteKey(filepath.Join(dir, "device.key"), key); err != nil {
		t.Fatal(err)
	}
	if f.DeviceKeyFile == "" {
		f.DeviceKeyFile = "device.key"
	}
	path := filepath.Join(dir, "device.yaml")
	if err := deviceconfig.Write(path, f); err != nil {
		t.Fatal(err)
	}
	return path
}

// parsed runs the flag parsing and the configuration merge without connecting.
func parsed(t *testing.T, workDir string, env map[string]string, args ...string) (*resolved, error) {
	t.Helper()
	m := &Main{Getenv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }, WorkDir: workDir}
	m.Stdout, m.Stderr = &syncBuffer{}, &syncBuffer{}
	if _, err := m.parseFlags(args); err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	return m.config()
}

func TestPrecedence(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := deviceFiles(t, dir, deviceconfig.File{Broker: "tcp://127.0.0.1:1001", DeviceID: "cam-file", StateDir: "state", Mode: "r", PartSize: 300 << 10})
	env := map[string]string{
		"CLIPGATE_DEVICE_ID":        "cam-env",
		"CLIPGATE_DEVICE_MODE":      "wa",
		"CLIPGATE_DEVICE_PART_SIZE": "400000",
		"CLIPGATE_DEVICE_BROKER":    "", // empty: not set
	}
	r, err := parsed(t, "", env, "--config", cfg, "--device-id", "cam-flag", "credentials")
	if err != nil {
		t.Fatal(err)
	}
	f := r.file
	if f.DeviceID != "cam-flag" || f.Mode != "wa" || f.PartSize != 400000 || f.Broker != "tcp://127.0.0.1:1001" {
		t.Errorf("merged %+v: want flag > env > file", f)
	}
	if f.StateDir != filepath.Join(dir, "state") || f.DeviceKeyFile != filepath.Join(dir, "device.key") {
		t.Errorf("file paths not relative to the file: %q %q", f.StateDir, f.DeviceKeyFile)
	}
	if r.sources["device-id"] != "--device-id" || r.sources["mode"] != "CLIPGATE_DEVICE_MODE" || r.sources["broker"] != cfg {
		t.Errorf("sources %v", r.sources)
	}

	// The config file from the environment, and the default file in the working directory.
	if r, err = parsed(t, "", map[string]string{"CLIPGATE_DEVICE_CONFIG": cfg}, "credentials"); err != nil || r.file.DeviceID != "cam-file" {
		t.Errorf("CLIPGATE_DEVICE_CONFIG: %+v, %v", r, err)
	}
	work := t.TempDir()
	if err := os.Mkdir(filepath.Join(work, ".devstack"), 0o700); err != nil {
		t.Fatal(err)
	}
	deviceFiles(t, filepath.Join(work, ".devstack"), deviceconfig.File{Broker: "tcp://127.0.0.1:1002", DeviceID: "cam-default", StateDir: "s"})
	if r, err = parsed(t, work, nil, "credentials"); err != nil || r.file.DeviceID != "cam-default" || r.path != filepath.Join(work, DefaultConfigPath) {
		t.Errorf("default config: %+v, %v", r, err)
	}
	// Without any file, flags alone suffice.
	if r, err = parsed(t, t.TempDir(), nil, "--broker", "tcp://h:1", "--device-id", "cam-x", "credentials"); err != nil || r.path != "" || r.file.Broker != "tcp://h:1" {
		t.Errorf("flags only: %+v, %v", r, err)
	}
	// TLS settings from flags.
	r, err = parsed(t, t.TempDir(), nil, "--broker", "ssl://h:1", "--tls-server-name", "broker.test", "credentials")
	if err != nil || r.file.TLS == nil || r.file.TLS.ServerName != "broker.test" {
		t.Errorf("TLS flags: %+v, %v", r, err)
	}
	if r, err = parsed(t, t.TempDir(), nil, "--broker", "ssl://h:1", "credentials"); err != nil || r.file.TLS != nil {
		t.Errorf("no TLS settings: %+v, %v", r, err)
	}
}

func TestBadConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := deviceFiles(t, dir, deviceconfig.File{Broker: "tcp://127.0.0.1:1", DeviceID: "cam-1", StateDir: "state"})
	garbage := filepath.Join(dir, "garbage.yaml")
	if err := os.WriteFile(garbage, []byte("broker: tcp://h:1\ncolour: blue\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	notYAML := filepath.Join(dir, "binary.yaml")
	if err := os.WriteFile(notYAML, []byte{0xff, 0xfe, 0, 1, '{', '['}, 0o600); err != nil {
		t.Fatal(err)
	}
	readableDir := t.TempDir()
	readable := deviceFiles(t, readableDir, deviceconfig.File{Broker: "tcp://127.0.0.1:1", DeviceID: "cam-1", StateDir: "state"})
	if err := os.Chmod(filepath.Join(readableDir, "device.key"), 0o644); err != nil {
		t.Fatal(err)
	}
	clip := writeClip(t, dir, "c.mp4", 10, testTime)

	cases := []struct {
		name string
		env  map[string]string
		args []string
		code int
		want []string
	}{
		{"nothing configured", nil, []string{"credentials"}, exitUsage,
			[]string{"broker is not set", "--broker", "CLIPGATE_DEVICE_BROKER", "none read"}},
		{"device id missing", nil, []string{"--broker", "tcp://h:1", "upload", clip}, exitUsage,
			[]string{"device-id is not set", "--device-id", "CLIPGATE_DEVICE_ID"}},
		{"key file missing", nil, []string{"--broker", "tcp://h:1", "--device-id", "cam-1", "credentials"}, exitUsage,
			[]string{"device-key-file is not set", "--device-key-file"}},
		{"explicit config missing", nil, []string{"--config", filepath.Join(dir, "nope.yaml"), "credentials"}, exitUsage,
			[]string{"nope.yaml", "no such file"}},
		{"config from env missing", map[string]string{"CLIPGATE_DEVICE_CONFIG": filepath.Join(dir, "nope.yaml")}, []string{"credentials"}, exitUsage,
			[]string{"nope.yaml"}},
		{"unknown field", nil, []string{"--config", garbage, "credentials"}, exitUsage,
			[]string{garbage, `unknown field "colour" (line 2)`}},
		{"binary config", nil, []string{"--config", notYAML, "credentials"}, exitUsage,
			[]string{notYAML}},
		{"readable key", nil, []string{"--config", readable, "credentials"}, exitUsage,
			[]string{"device-key-file in " + readable, "chmod 600"}},
		{"bad id flag", nil, []string{"--config", good, "--device-id", "cam/1", "credentials"}, exitUsage,
			[]string{"--device-id:"}},
		{"bad mode env", map[string]string{"CLIPGATE_DEVICE_MODE": "x"}, []string{"--config", good, "credentials"}, exitUsage,
			[]string{"CLIPGATE_DEVICE_MODE:"}},
		{"bad size env", map[string]string{"CLIPGATE_DEVICE_PART_SIZE": "1MiBB"}, []string{"--config", good, "credentials"}, exitUsage,
			[]string{`CLIPGATE_DEVICE_PART_SIZE: "1MiBB" is not a size`}},
		{"part size out of range", nil, []string{"--config", good, "--part-size", "10", "credentials"}, exitUsage,
			[]string{"PartSize"}},
		{"bad broker flag", nil, []string{"--config", good, "--broker", "http://h:1", "credentials"}, exitUsage,
			[]string{"--broker:", "scheme"}},
		{"tls on tcp", nil, []string{"--config", good, "--tls-ca-file", "ca.pem", "credentials"}, exitUsage,
			[]string{"does not use TLS"}},
		{"upload without files", nil, []string{"--config", good, "upload"}, exitUsage,
			[]string{"expected"}},
		{"no command", nil, []string{"--config", good}, exitUsage, []string{"expected"}},
		{"zero timeout", nil, []string{"--config", good, "--timeout", "0s", "credentials"}, exitUsage, []string{"--timeout"}},
		{"unknown flag", nil, []string{"--colour", "credentials"}, exitUsage, []string{"--colour"}},
		{"broker unreachable", nil, []string{"--config", good, "--timeout", "300ms", "credentials"}, exitFailed,
			[]string{"connect to tcp://127.0.0.1:1 as cam-1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := run(t, tc.env, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, stdout, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not mention %q:\n%s", w, stderr)
				}
			}
			if strings.HasPrefix(tc.name, "upload") || tc.code == exitUsage {
				if strings.Contains(stdout, "ok  ") {
					t.Errorf("something was uploaded:\n%s", stdout)
				}
			}
		})
	}
}

// Sizes are read the same way from flags, the environment and the config file: bytes or
// a number with a unit (issue 9, point 5: --part-size and --multipart-threshold took raw
// integers only, and refused 1MiB, while --max-bytes took 500MB).
func TestSizesEverywhere(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "device.yaml")
	if err := os.WriteFile(cfg, []byte("broker: tcp://127.0.0.1:1\ndevice-id: cam-1\nstate-dir: s\npart-size: 512KiB\nmultipart-threshold: 3MB\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := parsed(t, "", nil, "--config", cfg, "credentials")
	if err != nil || r.file.PartSize != 512<<10 || r.file.MultipartThreshold != 3e6 {
		t.Fatalf("config file sizes: %+v, %v", r, err)
	}
	r, err = parsed(t, "", map[string]string{"CLIPGATE_DEVICE_PART_SIZE": "1MiB", "CLIPGATE_DEVICE_MULTIPART_THRESHOLD": "8 mib"}, "--config", cfg, "credentials")
	if err != nil || r.file.PartSize != 1<<20 || r.file.MultipartThreshold != 8<<20 || r.sources["part-size"] != "CLIPGATE_DEVICE_PART_SIZE" {
		t.Fatalf("environment sizes: %+v, %v", r, err)
	}
	r, err = parsed(t, "", map[string]string{"CLIPGATE_DEVICE_PART_SIZE": "1MiB"}, "--config", cfg, "--part-size", "2MiB", "--multipart-threshold", "20971520", "credentials")
	if err != nil || r.file.PartSize != 2<<20 || r.file.MultipartThreshold != 20<<20 || r.sources["part-size"] != "--part-size" {
		t.Fatalf("flag sizes: %+v, %v", r, err)
	}
	m := &Main{Getenv: func(string) (string, bool) { return "", false }, Stdout: &syncBuffer{}, Stderr: &syncBuffer{}}
	if _, err := m.parseFlags([]string{"--config", cfg, "watch", dir, "--max-bytes", "1.5GiB"}); err != nil || m.cli.Watch.MaxBytes != 3<<29 {
		t.Errorf("--max-bytes 1.5GiB: %d, %v", m.cli.Watch.MaxBytes, err)
	}

	bad := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("broker: tcp://127.0.0.1:1\ndevice-id: cam-1\n"+content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"flag garbage", nil, []string{"--part-size", "1MiBx", "credentials"}, `--part-size: "1MiBx" is not a size`},
		{"flag fraction", nil, []string{"--multipart-threshold", "1.5", "credentials"}, `--multipart-threshold: "1.5" is not a size: a number of bytes must be whole`},
		{"flag negative", nil, []string{"--part-size=-1MiB", "credentials"}, `--part-size: "-1MiB" is not a size`},
		{"flag overflow", nil, []string{"--part-size", "9999999TiB", "credentials"}, "too large"},
		{"env garbage", map[string]string{"CLIPGATE_DEVICE_MULTIPART_THRESHOLD": "lots"}, []string{"--config", cfg, "credentials"}, `CLIPGATE_DEVICE_MULTIPART_THRESHOLD: "lots" is not a size`},
		{"env unit", map[string]string{"CLIPGATE_DEVICE_PART_SIZE": "5 parsecs"}, []string{"--config", cfg, "credentials"}, `CLIPGATE_DEVICE_PART_SIZE: "5 parsecs" is not a size`},
		{"file garbage", nil, []string{"--config", bad("g.yaml", "part-size: lots\n"), "credentials"}, `part-size: line 3: "lots" is not a size`},
		{"file negative", nil, []string{"--config", bad("n.yaml", "multipart-threshold: -5\n"), "credentials"}, `multipart-threshold: line 3: "-5" is not a size`},
		{"file list", nil, []string{"--config", bad("l.yaml", "part-size: [1, 2]\n"), "credentials"}, "part-size: line 3: want a size"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := run(t, c.env, c.args...)
			if code != exitUsage || stdout != "" || !strings.Contains(stderr, c.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d and %q", code, stdout, stderr, exitUsage, c.want)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	code, stdout, _ := run(t, nil, "--help")
	if code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, w := range []string{"upload", "credentials", "CLIPGATE_DEVICE_BROKER", DefaultConfigPath} {
		if !strings.Contains(stdout, w) {
			t.Errorf("help lacks %q:\n%s", w, stdout)
		}
	}
}

// The watch command deletes uploaded clips by default: its help and the README's example
// say so (issue 9, point 5: the README's example did not).
func TestWatchSaysItDeletes(t *testing.T) {
	t.Parallel()
	code, stdout, _ := run(t, nil, "watch", "--help")
	if code != 0 || !strings.Contains(stdout, "DELETED") || !strings.Contains(stdout, "--after remove, the default") {
		t.Errorf("watch --help (exit %d) does not say that uploaded clips are deleted:\n%s", code, stdout)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, line := range strings.Split(string(readme), "\n") {
		if strings.Contains(line, "cmd/device watch spool/") {
			found = true
			if !strings.Contains(line, "DELETE") {
				t.Errorf("README: %q does not say the clips are deleted", line)
			}
		}
	}
	if !found || !strings.Contains(string(readme), "`--after remove`, the default") {
		t.Error("README does not document --after remove as the default of device watch")
	}
}

func TestClipName(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 300)
	cases := []struct{ path, want string }{
		{"/x/clip-0001.mp4", "clip-0001.mp4"},
		{"clip one#1.mp4", "clip one#1.mp4"}, // OSS keys are UTF-8: names stay as they are
		{"dir/caméra.mp4", "caméra.mp4"},
		{"门口 camera #1.mp4", "门口 camera #1.mp4"},
		{"日本.ts", "日本.ts"},
		{"tab\there.mp4", "tab_here.mp4"},
		{"bad\xffbyte", "bad_byte"},
		{".hidden", ".hidden"},
		{"..", "__"},
		{"/", "_"},
		{long + ".mp4", strings.Repeat("a", devicekit.MaxClipNameLen-4) + ".mp4"},
		{long + "." + strings.Repeat("e", 20), (long + "." + strings.Repeat("e", 20))[:devicekit.MaxClipNameLen]},
	}
	for _, tc := range cases {
		got := clipName(tc.path)
		if got != tc.want {
			t.Errorf("clipName(%q) = %q, want %q", tc.path, got, tc.want)
		}
		if err := devicekit.ValidClipName(got); err != nil {
			t.Errorf("clipName(%q) = %q is not valid: %v", tc.path, got, err)
		}
	}
}

func FuzzClipName(f *testing.F) {
	f.Add("clip.mp4")
	f.Add("../..")
	f.Add("a\x00b")
	f.Fuzz(func(t *testing.T, path string) {
		if err := devicekit.ValidClipName(clipName(path)); err != nil {
			t.Fatalf("clipName(%q) = %q: %v", path, clipName(path), err)
		}
	})
}

func TestDuplicateNamesRefused(t *testing.T) {
	t.Parallel()
	a, b := t.TempDir(), t.TempDir()
	p1 := writeClip(t, a, "same.mp4", 10, testTime)
	p2 := writeClip(t, b, "same.mp4", 10, testTime)
	p3 := writeClip(t, t.TempDir(), "same.mp4", 10, testTime.Add(24*time.Hour)) // other day: fine
	code, stdout, stderr := run(t, nil, "--broker", "tcp://127.0.0.1:1", "upload", p1, p2, p3)
	if code != exitUsage || !strings.Contains(stderr, "would both be stored") || stdout != "" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	// The same file twice is not a conflict (the config error comes next).
	code, _, stderr = run(t, nil, "--broker", "tcp://127.0.0.1:1", "upload", p1, p1)
	if code != exitUsage || strings.Contains(stderr, "would both be stored") {
		t.Errorf("same file twice: exit %d, %q", code, stderr)
	}
}
