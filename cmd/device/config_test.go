package main

import (
	"cmp"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/cli"
	"github.com/clipgate/clipgate/internal/cli/clitest"
	"github.com/clipgate/clipgate/internal/deviceconfig"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/testutil"
)

// writeDeviceKey writes a random device key of device to path.
func writeDeviceKey(t *testing.T, path, device string) {
	t.Helper()
	fleet, err := identity.NewFleetKeyring()
	if err != nil {
		t.Fatal(err)
	}
	key, err := identity.NewDeviceKey(fleet, device)
	if err != nil {
		t.Fatal(err)
	}
	if err := identity.WriteDeviceKey(path, key); err != nil {
		t.Fatal(err)
	}
}

// deviceFiles writes a device key and a config file naming it, and returns the config path.
func deviceFiles(t *testing.T, dir string, f deviceconfig.File) string {
	t.Helper()
	writeDeviceKey(t, filepath.Join(dir, "device.key"), cmp.Or(f.DeviceID, "cam-0001"))
	if f.DeviceKeyFile == "" {
		f.DeviceKeyFile = "device.key"
	}
	path := filepath.Join(dir, "device.yaml")
	if err := deviceconfig.Write(path, f); err != nil {
		t.Fatal(err)
	}
	return path
}

// parsed parses a command line without connecting; m.deviceFile() is the merged device
// configuration.
func parsed(t *testing.T, workDir string, env map[string]string, args ...string) (*Main, error) {
	t.Helper()
	if workDir == "" {
		workDir = t.TempDir()
	}
	m := &Main{Getenv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }, WorkDir: workDir}
	m.Stdout, m.Stderr = &testutil.SyncBuffer{}, &testutil.SyncBuffer{}
	_, err := m.parseFlags(args)
	return m, err
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
	m, err := parsed(t, "", env, "--config", cfg, "--device-id", "cam-flag", "credentials")
	if err != nil {
		t.Fatal(err)
	}
	f := m.deviceFile()
	if f.DeviceID != "cam-flag" || f.Mode != "wa" || f.PartSize != 400000 || f.Broker != "tcp://127.0.0.1:1001" {
		t.Errorf("merged %+v: want flag > env > file", f)
	}
	if f.StateDir != filepath.Join(dir, "state") || f.DeviceKeyFile != filepath.Join(dir, "device.key") {
		t.Errorf("file paths not relative to the file: %q %q", f.StateDir, f.DeviceKeyFile)
	}
	for flag, want := range map[string]string{"device-id": "--device-id", "mode": "$CLIPGATE_DEVICE_MODE", "broker": "broker in " + cfg, "topic-root": ""} {
		if got := m.ctx.Source(flag); got != want {
			t.Errorf("source of --%s: %q, want %q", flag, got, want)
		}
	}

	// The config file from the environment, and the default file in the working directory.
	if m, err = parsed(t, "", map[string]string{"CLIPGATE_DEVICE_CONFIG": cfg}, "credentials"); err != nil || m.deviceFile().DeviceID != "cam-file" {
		t.Errorf("CLIPGATE_DEVICE_CONFIG: %+v, %v", m.deviceFile(), err)
	}
	work := t.TempDir()
	if err := os.Mkdir(filepath.Join(work, ".devstack"), 0o700); err != nil {
		t.Fatal(err)
	}
	deviceFiles(t, filepath.Join(work, ".devstack"), deviceconfig.File{Broker: "tcp://127.0.0.1:1002", DeviceID: "cam-default", StateDir: "s"})
	if m, err = parsed(t, work, nil, "credentials"); err != nil || m.deviceFile().DeviceID != "cam-default" || m.ctx.ConfigFile() != filepath.Join(work, DefaultConfigPath) {
		t.Errorf("default config: %+v, %v", m.deviceFile(), err)
	}
	if m.cli.Config != filepath.Join(work, DefaultConfigPath) || m.deviceFile().StateDir != filepath.Join(work, ".devstack", "s") {
		t.Errorf("default config: --config %q, state dir %q", m.cli.Config, m.deviceFile().StateDir)
	}
	// An explicit file replaces the default one: nothing of the default is read.
	other := t.TempDir()
	explicit := filepath.Join(other, "d.yaml")
	if err := os.WriteFile(explicit, []byte("device-id: cam-explicit\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if m, err = parsed(t, work, nil, "--config", explicit, "credentials"); err != nil || m.deviceFile().DeviceID != "cam-explicit" || m.deviceFile().Broker != "" {
		t.Errorf("explicit config over the default: %+v, %v", m.deviceFile(), err)
	}
	// Without any file, flags alone suffice.
	if m, err = parsed(t, "", nil, "--broker", "tcp://h:1", "--device-id", "cam-x", "credentials"); err != nil || m.ctx.ConfigFile() != "" || m.deviceFile().Broker != "tcp://h:1" {
		t.Errorf("flags only: %+v, %v", m.deviceFile(), err)
	}
	// TLS settings from flags.
	m, err = parsed(t, "", nil, "--broker", "ssl://h:1", "--tls-server-name", "broker.test", "credentials")
	if err != nil || m.deviceFile().TLS == nil || m.deviceFile().TLS.ServerName != "broker.test" {
		t.Errorf("TLS flags: %+v, %v", m.deviceFile(), err)
	}
	if m, err = parsed(t, "", nil, "--broker", "ssl://h:1", "credentials"); err != nil || m.deviceFile().TLS != nil {
		t.Errorf("no TLS settings: %+v, %v", m.deviceFile(), err)
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
		{"nothing configured", nil, []string{"credentials"}, cli.ExitUsage,
			[]string{"broker is not set", "--broker", "CLIPGATE_DEVICE_BROKER", "none read"}},
		{"device id missing", nil, []string{"--broker", "tcp://h:1", "upload", clip}, cli.ExitUsage,
			[]string{"device-id is not set", "--device-id", "CLIPGATE_DEVICE_ID"}},
		{"key file missing", nil, []string{"--broker", "tcp://h:1", "--device-id", "cam-1", "credentials"}, cli.ExitUsage,
			[]string{"device-key-file is not set", "--device-key-file"}},
		{"explicit config missing", nil, []string{"--config", filepath.Join(dir, "nope.yaml"), "credentials"}, cli.ExitUsage,
			[]string{"nope.yaml", "no such file"}},
		{"config from env missing", map[string]string{"CLIPGATE_DEVICE_CONFIG": filepath.Join(dir, "nope.yaml")}, []string{"credentials"}, cli.ExitUsage,
			[]string{"nope.yaml"}},
		{"unknown field", nil, []string{"--config", garbage, "credentials"}, cli.ExitUsage,
			[]string{garbage, `unknown setting(s) colour (line 2)`}},
		{"binary config", nil, []string{"--config", notYAML, "credentials"}, cli.ExitUsage,
			[]string{notYAML}},
		{"readable key", nil, []string{"--config", readable, "credentials"}, cli.ExitUsage,
			[]string{"device-key-file in " + readable, "chmod 600"}},
		{"bad id flag", nil, []string{"--config", good, "--device-id", "cam/1", "credentials"}, cli.ExitUsage,
			[]string{"--device-id:"}},
		{"bad mode env", map[string]string{"CLIPGATE_DEVICE_MODE": "x"}, []string{"--config", good, "credentials"}, cli.ExitUsage,
			[]string{"CLIPGATE_DEVICE_MODE:"}},
		{"bad size env", map[string]string{"CLIPGATE_DEVICE_PART_SIZE": "1MiBB"}, []string{"--config", good, "credentials"}, cli.ExitUsage,
			[]string{`$CLIPGATE_DEVICE_PART_SIZE="1MiBB": "1MiBB" is not a size`}},
		{"part size out of range", nil, []string{"--config", good, "--part-size", "10", "credentials"}, cli.ExitUsage,
			[]string{"PartSize"}},
		{"bad broker flag", nil, []string{"--config", good, "--broker", "http://h:1", "credentials"}, cli.ExitUsage,
			[]string{"--broker:", "scheme"}},
		{"tls on tcp", nil, []string{"--config", good, "--tls-ca-file", "ca.pem", "credentials"}, cli.ExitUsage,
			[]string{"does not use TLS"}},
		{"upload without files", nil, []string{"--config", good, "upload"}, cli.ExitUsage,
			[]string{"expected"}},
		{"no command", nil, []string{"--config", good}, cli.ExitUsage, []string{"expected"}},
		{"zero timeout", nil, []string{"--config", good, "--timeout", "0s", "credentials"}, cli.ExitUsage, []string{"--timeout"}},
		{"unknown flag", nil, []string{"--colour", "credentials"}, cli.ExitUsage, []string{"--colour"}},
		{"broker unreachable", nil, []string{"--config", good, "--timeout", "300ms", "credentials"}, cli.ExitFailure,
			[]string{"connect to tcp://127.0.0.1:1 as cam-1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runCmd(t, tc.env, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, stdout, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not mention %q:\n%s", w, stderr)
				}
			}
			if strings.HasPrefix(tc.name, "upload") || tc.code == cli.ExitUsage {
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
	m, err := parsed(t, "", nil, "--config", cfg, "credentials")
	if err != nil || m.cli.PartSize != 512<<10 || m.cli.MultipartThreshold != 3e6 {
		t.Fatalf("config file sizes: %+v, %v", m.deviceFile(), err)
	}
	m, err = parsed(t, "", map[string]string{"CLIPGATE_DEVICE_PART_SIZE": "1MiB", "CLIPGATE_DEVICE_MULTIPART_THRESHOLD": "8 mib"}, "--config", cfg, "credentials")
	if err != nil || m.cli.PartSize != 1<<20 || m.cli.MultipartThreshold != 8<<20 || m.ctx.Source("part-size") != "$CLIPGATE_DEVICE_PART_SIZE" {
		t.Fatalf("environment sizes: %+v, %v", m.deviceFile(), err)
	}
	m, err = parsed(t, "", map[string]string{"CLIPGATE_DEVICE_PART_SIZE": "1MiB"}, "--config", cfg, "--part-size", "2MiB", "--multipart-threshold", "20971520", "credentials")
	if err != nil || m.cli.PartSize != 2<<20 || m.cli.MultipartThreshold != 20<<20 || m.ctx.Source("part-size") != "--part-size" {
		t.Fatalf("flag sizes: %+v, %v", m.deviceFile(), err)
	}
	if m, err = parsed(t, "", nil, "--config", cfg, "watch", dir, "--max-bytes", "1.5GiB"); err != nil || m.cli.Watch.MaxBytes != 3<<29 {
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
		{"env garbage", map[string]string{"CLIPGATE_DEVICE_MULTIPART_THRESHOLD": "lots"}, []string{"--config", cfg, "credentials"}, `$CLIPGATE_DEVICE_MULTIPART_THRESHOLD="lots": "lots" is not a size`},
		{"env unit", map[string]string{"CLIPGATE_DEVICE_PART_SIZE": "5 parsecs"}, []string{"--config", cfg, "credentials"}, `$CLIPGATE_DEVICE_PART_SIZE="5 parsecs": "5 parsecs" is not a size`},
		{"file garbage", nil, []string{"--config", bad("g.yaml", "part-size: lots\n"), "credentials"}, `g.yaml (line 3): "lots" is not a size`},
		{"file negative", nil, []string{"--config", bad("n.yaml", "multipart-threshold: -5\n"), "credentials"}, `multipart-threshold in ` + filepath.Join(dir, "n.yaml") + ` (line 3): "-5" is not a size`},
		{"file list", nil, []string{"--config", bad("l.yaml", "part-size: [1, 2]\n"), "credentials"}, "part-size in " + filepath.Join(dir, "l.yaml") + " (line 3): lists are not supported"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runCmd(t, c.env, c.args...)
			if code != cli.ExitUsage || stdout != "" || !strings.Contains(stderr, c.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d and %q", code, stdout, stderr, cli.ExitUsage, c.want)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	code, stdout, _ := runCmd(t, nil, "--help")
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
	code, stdout, _ := runCmd(t, nil, "watch", "--help")
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
	code, stdout, stderr := runCmd(t, nil, "--broker", "tcp://127.0.0.1:1", "upload", p1, p2, p3)
	if code != cli.ExitUsage || !strings.Contains(stderr, "would both be stored") || stdout != "" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	// The same file twice is not a conflict (the config error comes next).
	code, _, stderr = runCmd(t, nil, "--broker", "tcp://127.0.0.1:1", "upload", p1, p1)
	if code != cli.ExitUsage || strings.Contains(stderr, "would both be stored") {
		t.Errorf("same file twice: exit %d, %q", code, stderr)
	}
}

// TestFlagSources: every flag of every subcommand has its variable (CLIPGATE_DEVICE_*)
// and its configuration key, and each source sets it.
func TestFlagSources(t *testing.T) {
	t.Parallel()
	m := &Main{WorkDir: t.TempDir()}
	clitest.CheckFlags(t, clitest.Command{Spec: m.spec(), Grammar: func() any { return &CLI{} }, Args: map[string][]string{
		"upload": {"upload", "clip.mp4"},
		"watch":  {"watch", "spool"},
	}, Samples: map[string][]string{
		"upload-rate-at": {"22:00-06:00=0", "07:00-09:00=64KiB", "12:00-13:00=1MiB"},
		"class":          {"event=event/", "alarm=alarm-*", "continuous=continuous/@22:00-06:00"},
	}})
}

// TestExitCodes: 0 for --help and --version, 2 for usage and configuration errors, 1 when
// the broker cannot be reached.
func TestExitCodes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := deviceFiles(t, dir, deviceconfig.File{Broker: "tcp://127.0.0.1:1", DeviceID: "cam-1", StateDir: "state"})
	clitest.CheckExitCodes(t, "device", run, clitest.Exits{
		cli.ExitUsage: {
			{"--config", good, "upload"},
			{"--config", good, "--mode", "x", "credentials"},
			{"--config", filepath.Join(dir, "none.yaml"), "credentials"},
		},
		cli.ExitFailure: {{"--config", good, "--timeout", "300ms", "credentials"}},
	})
}

// TestReadsWrittenFile: a file deviceconfig.Write writes (as devstack does) is read back by
// the command as it was written: every setting, relative paths relative to the file,
// nothing invented for what was left out.
func TestReadsWrittenFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	full := deviceconfig.File{
		Broker: "ssl://127.0.0.1:8883", DeviceID: "cam-0001", DeviceKeyFile: "device.key", StateDir: "../state",
		TopicRoot: "acme/clips", Mode: "wa", MultipartThreshold: 16 << 20, PartSize: 2 << 20,
		TLS: &deviceconfig.TLS{CAFile: "ca.pem", CertFile: "/abs/c.pem", KeyFile: "k.pem", ServerName: "broker.local"},
	}
	path := filepath.Join(dir, "device.yaml")
	if err := deviceconfig.Write(path, full); err != nil {
		t.Fatal(err)
	}
	m, err := parsed(t, "", nil, "--config", path, "credentials")
	if err != nil {
		t.Fatal(err)
	}
	want := full
	want.DeviceKeyFile, want.StateDir = filepath.Join(dir, "device.key"), filepath.Join(filepath.Dir(dir), "state")
	want.TLS = &deviceconfig.TLS{CAFile: filepath.Join(dir, "ca.pem"), CertFile: "/abs/c.pem", KeyFile: filepath.Join(dir, "k.pem"), ServerName: "broker.local"}
	if got := m.deviceFile(); !reflect.DeepEqual(got, want) {
		t.Errorf("read back:\n got %+v %+v\nwant %+v %+v", got, got.TLS, want, want.TLS)
	}

	min := deviceconfig.File{Broker: "tcp://127.0.0.1:1883", DeviceID: "cam-2", DeviceKeyFile: "/k", StateDir: "/s"}
	if err := deviceconfig.Write(path, min); err != nil {
		t.Fatal(err)
	}
	if m, err = parsed(t, "", nil, "--config", path, "credentials"); err != nil || !reflect.DeepEqual(m.deviceFile(), min) {
		t.Errorf("minimal file read back as %+v, %v", m.deviceFile(), err)
	}
}

// TestConfigFileGarbage: what the configuration file must not hold, each refused with an
// error that names the file and the problem, and nothing uploaded.
func TestConfigFileGarbage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, text, want string }{
		{"not yaml", "{{{{", "yaml"},
		{"binary", "\x00\x01\x02\xff\xfe", "yaml"},
		{"list", "- a\n- b\n", "map of settings"},
		{"scalar", "hello\n", "map of settings"},
		{"unknown setting", "broker: tcp://127.0.0.1:1\nbrokr: x\n", "unknown setting(s) brokr (line 2)"},
		{"two unknown", "colour: red\ndevice-id: cam-1\nsize: 3\n", "colour (line 1), size (line 3)"},
		{"unknown tls setting", "tls:\n  ca-file: a\n  insecure: true\n", "tls-insecure (line 3)"},
		{"duplicate", "device-id: cam-1\ndevice-id: cam-2\n", `"device-id" is set twice`},
		{"same setting twice", "tls-ca-file: a\ntls:\n  ca-file: b\n", `"tls-ca-file" is set twice`},
		{"two documents", "device-id: cam-1\n---\ndevice-id: cam-2\n", "more than one"},
		{"wrong type", "mode: [w]\n", "lists are not supported"},
		{"map for a value", "broker: {a: 1}\n", "want a single value"},
		{"no value", "broker:\n", "no value"},
		{"alias", "a: &x tcp://h:1\nbroker: *x\n", "aliases"},
		{"size fraction", "part-size: 1048576.5\n", "must be whole"},
		{"size overflow", "part-size: 99999999999999999999\n", "too large"},
		{"bad device id", "device-id: cam/1\n", "device-id in"},
		{"short device id", "device-id: c\n", "device-id in"},
		{"bad broker scheme", "broker: http://127.0.0.1:1\n", "broker in"},
		{"broker without host", "broker: tcp://\n", "broker in"},
		{"bad mode", "mode: ww\n", "mode in"},
		{"bad topic root", "topic-root: a/+/b\n", "topic-root in"},
		{"cert without key", "broker: ssl://h:1\ntls:\n  cert-file: c.pem\n", "cert-file and key-file"},
		{"tls on tcp", "broker: tcp://h:1\ntls:\n  ca-file: ca.pem\n", "does not use TLS"},
		{"nul in path", "device-key-file: \"a\\0b\"\n", "NUL"},
		{"secret", "device-key: abc\n", "secrets do not belong"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, "device.yaml")
			if err := os.WriteFile(path, []byte(tc.text), 0o600); err != nil {
				t.Fatal(err)
			}
			code, stdout, stderr := runCmd(t, nil, "--config", path, "upload", writeClip(t, dir, "c.mp4", 10, testTime))
			if code != cli.ExitUsage || stdout != "" || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d and %q", code, stdout, stderr, cli.ExitUsage, tc.want)
			}
		})
	}
	// Keys may be written in other cases: they stand for the flag names.
	dir := t.TempDir()
	path := filepath.Join(dir, "device.yaml")
	if err := os.WriteFile(path, []byte("deviceId: cam-1\nstate_dir: s\nTLS:\n  serverName: b.test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := parsed(t, "", nil, "--config", path, "credentials")
	if f := m.deviceFile(); err != nil || f.DeviceID != "cam-1" || f.StateDir != filepath.Join(dir, "s") || f.TLS == nil || f.TLS.ServerName != "b.test" {
		t.Errorf("other spellings: %+v, %v", f, err)
	}
}
