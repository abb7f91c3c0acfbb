package devstack

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/deviceconfig"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/media/mediatest"
	"github.com/clipgate/clipgate/topics"
)

func randomPorts(dir string) Config {
	return Config{Dir: dir, MQTTAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", OSSAddr: "127.0.0.1:0", STSAddr: "127.0.0.1:0", ConsoleAddr: "127.0.0.1:0",
		BcryptCost: bcrypt.MinCost}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// TestStartWritesDeviceAndRestartReuses starts the stack twice on one state directory: the
// device file is written, its key works, and the second run reuses keys and objects.
func TestStartWritesDeviceAndRestartReuses(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	dir := filepath.Join(t.TempDir(), "state")
	d, err := Start(ctx, randomPorts(dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("state dir: %v, mode %v; want 0700", err, st.Mode().Perm())
	}
	// The service accounts are hashed at the configured cost (the minimum in the tests).
	accounts, err := os.ReadFile(filepath.Join(dir, "service-accounts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	hashes := regexp.MustCompile(`\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}`).FindAll(accounts, -1)
	if len(hashes) != 4 { // token worker, consumer, admin, console
		t.Fatalf("%d bcrypt hashes in the accounts file, want 4", len(hashes))
	}
	for _, h := range hashes {
		if cost, err := bcrypt.Cost(h); err != nil || cost != bcrypt.MinCost {
			t.Errorf("service account hash of cost %d (%v), want %d", cost, err, bcrypt.MinCost)
		}
	}
	// The device CLI reads the file (cmd/device's tests run it on this file); here it is
	// plain YAML with absolute paths.
	var f deviceconfig.File
	if text, err := os.ReadFile(filepath.Join(dir, "device.yaml")); err != nil || yaml.Unmarshal(text, &f) != nil {
		t.Fatalf("device.yaml: %v\n%s", err, text)
	}
	if f.DeviceID != DefaultDeviceID || f.Broker != d.Stack.BrokerURL() || f.TopicRoot != "clipgate/v1" ||
		f.StateDir != filepath.Join(dir, "devices", DefaultDeviceID) {
		t.Errorf("device file %+v", f)
	}
	key, err := identity.LoadDeviceKey(f.DeviceKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if want := d.Stack.DeviceKey(DefaultDeviceID); !bytes.Equal(key.Request, want.Request) || !bytes.Equal(key.Connect, want.Connect) || key.KeyID != want.KeyID {
		t.Error("the device key file does not hold the device's key")
	}

	// The device of the file uploads a clip.
	scheme, err := topics.New(f.TopicRoot)
	if err != nil {
		t.Fatal(err)
	}
	kit, err := devicekit.New(devicekit.Config{BrokerURL: f.Broker, DeviceID: f.DeviceID, DeviceKey: (*devicekit.DeviceKey)(key), StateDir: f.StateDir, Topics: scheme})
	if err != nil {
		t.Fatal(err)
	}
	if err := kit.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	clip := filepath.Join(t.TempDir(), "c.mp4")
	if err := os.WriteFile(clip, []byte("frames"), 0o600); err != nil {
		t.Fatal(err)
	}
	ev, err := kit.Upload(ctx, devicekit.Clip{Path: clip})
	_ = kit.Close()
	if err != nil {
		t.Fatal(err)
	}
	var banner bytes.Buffer
	if err := d.PrintBanner(&banner); err != nil {
		t.Fatal(err)
	}
	admin, secret := d.Stack.AdminKey()
	for _, want := range []string{d.Stack.BrokerURL(), d.Stack.OSSEndpoint(), d.Stack.STSEndpoint(), admin, secret,
		filepath.Join(dir, "device.yaml"), "cmd/device"} {
		if !strings.Contains(banner.String(), want) {
			t.Errorf("banner lacks %q:\n%s", want, banner.String())
		}
	}
	fleet := d.Stack.FleetKeys().Current().Key
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	d2, err := Start(ctx, randomPorts(dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d2.Close() })
	if id, _ := d2.Stack.AdminKey(); id != admin || !bytes.Equal(d2.Stack.FleetKeys().Current().Key, fleet) {
		t.Error("the restart made new keys")
	}
	client, err := d2.Stack.OSSClient()
	if err != nil {
		t.Fatal(err)
	}
	bucket, err := client.Bucket(d2.Stack.Bucket())
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := bucket.IsObjectExist(ev.Key); err != nil || !ok {
		t.Errorf("object %s after restart: exists %v, %v", ev.Key, ok, err)
	}
}

func TestStartRefusesBadConfig(t *testing.T) {
	t.Parallel()
	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"world-readable state", func(c *Config) { c.Dir = open }, "chmod 700"},
		{"bad device ID", func(c *Config) { c.DeviceID = "a/b" }, "device ID"},
		{"negative workers", func(c *Config) { c.Workers = -2 }, "workers"},
		{"bad bucket", func(c *Config) { c.Bucket = "UPPER" }, "bucket"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := randomPorts(filepath.Join(t.TempDir(), "s"))
			tc.mod(&cfg)
			d, err := Start(testContext(t), cfg)
			if err == nil {
				_ = d.Close()
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

// TestDemo runs the demo with 2 cameras x 2 clips and checks its summary.
func TestDemo(t *testing.T) {
	t.Parallel()
	for _, engine := range []string{inproc.EngineMochi, inproc.EngineNATS} {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			testDemo(t, engine)
		})
	}
}

func testDemo(t *testing.T, engine string) {
	var out bytes.Buffer
	res, err := Demo(testContext(t), DemoConfig{Devices: 2, Clips: 2, Config: Config{Engine: engine, BcryptCost: bcrypt.MinCost}}, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if res.Uploads != 4 || res.Multipart != 2 || res.Events != 4 || len(res.Failures) != 0 ||
		res.Bytes < 2*demoSmallMin+2*demoLargeMin {
		t.Errorf("result %+v\n%s", res, out.String())
	}
	text := out.String()
	if n := strings.Count(text, "\nevent "); n != 4 {
		t.Errorf("%d event lines, want 4:\n%s", n, text)
	}
	if n := strings.Count(text, "\nreadback "); n != 2 || !strings.Contains(text, "cam-01   uploads capped at") {
		t.Errorf("%d read-back lines, want 2, and the capped camera:\n%s", n, text)
	}
	if !strings.Contains(text, "demo: 2 cameras, 4 uploads (2 multipart), 4 events") || !strings.Contains(text, "0 failures") {
		t.Errorf("summary missing:\n%s", text)
	}
	// The HLS camera streams when ffmpeg is there (CI installs it), and is skipped with a
	// line saying why when it is not.
	if _, err := exec.LookPath("ffmpeg"); err != nil && os.Getenv(mediatest.E2EEnv) != "1" {
		if res.Segments != 0 || !strings.Contains(text, "cam-hls  skipped: ffmpeg is not installed") {
			t.Errorf("without ffmpeg: %d segments\n%s", res.Segments, text)
		}
		return
	}
	if res.Segments != hlsSeconds/hlsSegment || !strings.HasPrefix(res.Stream, "clips/cam-hls/") || !strings.HasSuffix(res.Stream, "/demo.m3u8") ||
		!strings.Contains(text, "live playlist") || !strings.Contains(text, "final playlist") || !strings.Contains(text, "its stream plays at") {
		t.Errorf("HLS camera: %d segments, playlist %q\n%s", res.Segments, res.Stream, text)
	}
}

func TestDemoRefusesBadConfig(t *testing.T) {
	t.Parallel()
	for _, c := range []DemoConfig{{Devices: -1}, {Clips: MaxDemoClips + 1}, {Devices: MaxDemoDevices + 1},
		{Timeout: -time.Second}, {Config: Config{Workers: -1}}} {
		if _, err := Demo(testContext(t), c, &bytes.Buffer{}); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}

// TestDemoReportsFailures revokes one camera: its uploads fail, the others still run, and
// the demo returns an error with the failure.
func TestDemoReportsFailures(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	cfg := DemoConfig{Devices: 2, Clips: 1, Timeout: 2 * time.Minute, Config: Config{BcryptCost: bcrypt.MinCost}} // cam-02 fails at its refused login; cam-01 has the whole timeout
	cfg.afterStart = func(s *inproc.Stack) { s.Revoke("cam-02") }
	res, err := Demo(testContext(t), cfg, &out)
	if err == nil {
		t.Fatalf("no error:\n%s", out.String())
	}
	if res == nil || res.Uploads != 1 || len(res.Failures) != 1 || !strings.Contains(res.Failures[0], "cam-02") {
		t.Errorf("result %+v\n%s", res, out.String())
	}
	if !strings.Contains(out.String(), "1 failures") {
		t.Errorf("summary missing:\n%s", out.String())
	}
}

// A devstack people run hashes its service accounts at production cost (issue 12.6):
// bcrypt.DefaultCost unless a test lowers it.
func TestBcryptCostDefault(t *testing.T) {
	t.Parallel()
	if got := (&Config{}).bcryptCost(); got != bcrypt.DefaultCost {
		t.Fatalf("default cost %d, want %d", got, bcrypt.DefaultCost)
	}
	if got := (&Config{BcryptCost: bcrypt.MinCost}).bcryptCost(); got != bcrypt.MinCost {
		t.Fatalf("lowered cost %d, want %d", got, bcrypt.MinCost)
	}
}
