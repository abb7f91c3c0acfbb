package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/cli"
	"github.com/clipgate/clipgate/internal/deviceconfig"
)

// The upload cap comes from flags, the environment or the config file, in sizes, and
// reaches the kit's configuration.
func TestUploadRateSettings(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := deviceFiles(t, dir, deviceconfig.File{Broker: "tcp://127.0.0.1:1", DeviceID: "cam-1", StateDir: "state"})
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("upload-rate: 512KiB\nupload-rate-at:\n  - 22:00-06:00=0\n  - 07:00-09:00=64KiB\n")
	f.Close()
	night := devicekit.Window{From: 22 * time.Hour, To: 6 * time.Hour}
	morning := devicekit.Window{From: 7 * time.Hour, To: 9 * time.Hour}

	m, err := parsed(t, "", nil, "--config", cfg, "credentials")
	if err != nil {
		t.Fatal(err)
	}
	kc, err := m.kitConfig()
	if err != nil {
		t.Fatal(err)
	}
	want := []devicekit.RateProfile{{Window: night, Rate: 0}, {Window: morning, Rate: 64 << 10}}
	if kc.UploadRate != 512<<10 || len(kc.UploadRates) != 2 || kc.UploadRates[0] != want[0] || kc.UploadRates[1] != want[1] {
		t.Errorf("from the file: rate %d, profiles %v; want %d, %v", kc.UploadRate, kc.UploadRates, 512<<10, want)
	}

	m, err = parsed(t, "", map[string]string{"CLIPGATE_DEVICE_UPLOAD_RATE": "2MiB"}, "--config", cfg,
		"--upload-rate-at", "09:30-17:00=1MiB,17:00-18:00=128KiB", "credentials")
	if err != nil {
		t.Fatal(err)
	}
	if kc, err = m.kitConfig(); err != nil {
		t.Fatal(err)
	}
	if kc.UploadRate != 2<<20 || len(kc.UploadRates) != 2 || kc.UploadRates[0].Rate != 1<<20 || kc.UploadRates[1].Window.String() != "17:00-18:00" {
		t.Errorf("from the environment and flags: rate %d, profiles %v", kc.UploadRate, kc.UploadRates)
	}
}

func TestUploadRateGarbage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := deviceFiles(t, dir, deviceconfig.File{Broker: "tcp://127.0.0.1:1", DeviceID: "cam-1", StateDir: "state"})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--upload-rate", "fast"}, `"fast" is not a size`},
		{[]string{"--upload-rate", "-1MiB"}, "--upload-rate"},
		{[]string{"--upload-rate", "100"}, "upload-rate: 100 bytes/s"},
		{[]string{"--upload-rate-at", "22:00-06:00"}, "HH:MM-HH:MM=RATE"},
		{[]string{"--upload-rate-at", "25:00-06:00=1MiB"}, `window "25:00-06:00"`},
		{[]string{"--upload-rate-at", "06:00-06:00=1MiB"}, "empty window"},
		{[]string{"--upload-rate-at", "22:00-06:00=lots"}, `"lots" is not a size`},
		{[]string{"--upload-rate-at", "22:00-06:00=10"}, "upload-rate-at: 22:00-06:00: 10 bytes/s"},
	} {
		args := append([]string{"--config", good}, tc.args...)
		code, stdout, stderr := runCmd(t, nil, append(args, "credentials")...)
		if code != cli.ExitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want usage error with %q (stdout %q)", tc.args, code, stderr, tc.want, stdout)
		}
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("broker: tcp://127.0.0.1:1\ndevice-id: cam-1\nupload-rate-at: [\"xx\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runCmd(t, nil, "--config", bad, "credentials"); code != cli.ExitUsage || !strings.Contains(stderr, "HH:MM-HH:MM=RATE") {
		t.Errorf("bad profile in the file: exit %d, %q", code, stderr)
	}
}

// Spool classes come from repeated --class flags, ';'-separated values or a list in the
// config file; garbage is a usage error naming it.
func TestWatchClasses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	m, err := parsed(t, "", nil, "--broker", "tcp://127.0.0.1:1", "watch", dir,
		"--class", "event=event/,evt-*", "--class", "continuous=continuous/@22:00-06:00;other=")
	if err != nil {
		t.Fatal(err)
	}
	cl := m.cli.Watch.Class
	if len(cl) != 3 || cl[0].Name != "event" || cl[0].Dir != "event" || cl[0].Patterns[0] != "evt-*" ||
		cl[1].Windows[0].String() != "22:00-06:00" || cl[2].Name != "other" {
		t.Fatalf("classes %+v", cl)
	}
	cfg := filepath.Join(dir, "device.yaml")
	if err := os.WriteFile(cfg, []byte("broker: tcp://127.0.0.1:1\nclass:\n  - event=event/\n  - continuous=continuous/@22:00-06:00,12:00-13:00\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if m, err = parsed(t, "", nil, "--config", cfg, "watch", dir); err != nil {
		t.Fatal(err)
	}
	if cl = m.cli.Watch.Class; len(cl) != 2 || len(cl[1].Windows) != 2 {
		t.Fatalf("classes from the file %+v", cl)
	}
	for _, tc := range []struct{ class, want string }{
		{"event", "want NAME=MATCH"},
		{"a=x/@25:00-01:00", `window "25:00-01:00"`},
		{"a=[", "not a file name pattern"},
	} {
		code, _, stderr := runCmd(t, nil, "--broker", "tcp://127.0.0.1:1", "--device-id", "cam-1", "watch", dir, "--class", tc.class)
		if code != cli.ExitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("--class %q: exit %d, %q; want usage error with %q", tc.class, code, stderr, tc.want)
		}
	}
	code, _, stderr := runCmd(t, nil, "--broker", "tcp://127.0.0.1:1", "--device-id", "cam-1", "watch", dir, "--class", "a=x/", "--class", "a=y/")
	if code != cli.ExitUsage || !strings.Contains(stderr, "named twice") {
		t.Errorf("duplicate class: exit %d, %q", code, stderr)
	}
}
