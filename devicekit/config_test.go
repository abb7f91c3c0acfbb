package devicekit

import (
	"crypto/tls"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/internal/testpki"
)

// zeroKey is a device key of all-zero keys for id (for configs that never reach a broker).
func zeroKey(id string) *DeviceKey {
	return &DeviceKey{Device: id, KeyID: "k1", Connect: make([]byte, 32), Request: make([]byte, 32)}
}

func validConfig(t *testing.T) Config {
	return Config{
		BrokerURL: "tcp://127.0.0.1:1883",
		DeviceID:  "cam-0001",
		DeviceKey: zeroKey("cam-0001"),
		StateDir:  filepath.Join(t.TempDir(), "state"),
	}
}

func TestNewDefaultsAndStateDir(t *testing.T) {
	t.Parallel()
	cfg := validConfig(t)
	k, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	c := k.cfg
	if c.Mode != "w" || c.RequestTimeout != DefaultRequestTimeout || c.RefreshMargin != DefaultRefreshMargin ||
		c.MultipartThreshold != DefaultMultipartThreshold || c.PartSize != DefaultPartSize || c.Now == nil {
		t.Fatalf("defaults not applied: %+v", c)
	}
	for _, d := range []string{"", checkpointDir, journalDir, outboxDir} {
		fi, err := os.Stat(filepath.Join(cfg.StateDir, d))
		if err != nil {
			t.Fatal(err)
		}
		if !fi.IsDir() || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v, want a 0700 directory", d, fi.Mode())
		}
	}
	if k.replyTopic != "clipgate/v1/devices/cam-0001/auth/reply" || k.requestTopic != "clipgate/v1/devices/cam-0001/auth/request" ||
		k.eventTopic != "clipgate/v1/devices/cam-0001/events/upload" {
		t.Errorf("topics: %q %q %q", k.replyTopic, k.requestTopic, k.eventTopic)
	}
	// The kit keeps its own copy of the key.
	cfg.DeviceKey.Request[0] = 1
	if k.deviceKey().Request[0] != 0 {
		t.Error("the kit aliases the caller's key slice")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"no broker", func(c *Config) { c.BrokerURL = "" }, "BrokerURL is required"},
		{"bad scheme", func(c *Config) { c.BrokerURL = "http://127.0.0.1:1883" }, "scheme"},
		{"no host", func(c *Config) { c.BrokerURL = "tcp://" }, "no host"},
		{"garbage url", func(c *Config) { c.BrokerURL = "tcp://[::1" }, "BrokerURL"},
		{"empty device", func(c *Config) { c.DeviceID = "" }, "DeviceID"},
		{"slash device", func(c *Config) { c.DeviceID = "cam/1" }, "DeviceID"},
		{"wildcard device", func(c *Config) { c.DeviceID = "cam+" }, "DeviceID"},
		{"dotdot device", func(c *Config) { c.DeviceID = ".." }, "DeviceID"},
		{"long device", func(c *Config) { c.DeviceID = strings.Repeat("a", 65) }, "DeviceID"},
		{"no key", func(c *Config) { c.DeviceKey = nil }, "DeviceKey is required"},
		{"short key", func(c *Config) { c.DeviceKey.Request = make([]byte, 16) }, "request key: key must be 32 bytes, got 16"},
		{"long key", func(c *Config) { c.DeviceKey.Connect = make([]byte, 33) }, "connect key: key must be 32 bytes, got 33"},
		{"no key ID", func(c *Config) { c.DeviceKey.KeyID = "" }, "key ID"},
		{"bad key ID", func(c *Config) { c.DeviceKey.KeyID = "k.1" }, "key ID"},
		{"another device's key", func(c *Config) { c.DeviceKey = zeroKey("cam-0002") }, `key of device "cam-0002"`},
		{"no state dir", func(c *Config) { c.StateDir = "" }, "StateDir is required"},
		{"state dir is a file", func(c *Config) { c.StateDir = file }, "StateDir"},
		{"bad mode", func(c *Config) { c.Mode = "x" }, "Mode"},
		{"repeated mode", func(c *Config) { c.Mode = "ww" }, "Mode"},
		{"negative timeout", func(c *Config) { c.RequestTimeout = -time.Second }, "RequestTimeout"},
		{"tiny timeout", func(c *Config) { c.RequestTimeout = time.Millisecond }, "RequestTimeout"},
		{"huge timeout", func(c *Config) { c.RequestTimeout = time.Hour }, "RequestTimeout"},
		{"negative margin", func(c *Config) { c.RefreshMargin = -time.Second }, "RefreshMargin"},
		{"huge margin", func(c *Config) { c.RefreshMargin = time.Hour }, "RefreshMargin"},
		{"small part", func(c *Config) { c.PartSize = 1024 }, "PartSize"},
		{"negative part", func(c *Config) { c.PartSize = -1 }, "PartSize"},
		{"huge part", func(c *Config) { c.PartSize = 6 << 30 }, "PartSize"},
		{"threshold below part", func(c *Config) { c.PartSize = 1 << 20; c.MultipartThreshold = 512 << 10 }, "MultipartThreshold"},
		{"huge threshold", func(c *Config) { c.MultipartThreshold = 6 << 30 }, "MultipartThreshold"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := validConfig(t)
			tc.mutate(&cfg)
			k, err := New(cfg)
			if err == nil {
				k.Close()
				t.Fatal("New accepted the config")
			}
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q: want ErrConfig mentioning %q", err, tc.want)
			}
		})
	}
}

func TestObjectKeyAndDevicePrefix(t *testing.T) {
	t.Parallel()
	at := time.Date(2025, 3, 9, 23, 30, 0, 0, time.FixedZone("UTC+8", 8*3600)) // 15:30 UTC
	if got, want := ObjectKey("clips/", "cam-1", at, "c.mp4"), "clips/cam-1/2025/03/09/c.mp4"; got != want {
		t.Errorf("ObjectKey = %q, want %q", got, want)
	}
	k := &Kit{cfg: Config{DeviceID: "cam-1"}}
	for prefix, want := range map[string]string{
		"clips/cam-1/":  "clips/cam-1/", // the worker's full device prefix
		"cam-1/":        "cam-1/",
		"clips/":        "clips/cam-1/", // a global prefix is completed
		"":              "cam-1/",
		"clips/xcam-1/": "clips/xcam-1/cam-1/",
	} {
		if got := k.devicePrefix(clipgate.OSSInfo{Prefix: prefix}); got != want {
			t.Errorf("devicePrefix(%q) = %q, want %q", prefix, got, want)
		}
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	for attempt := range 10 {
		for range 100 {
			d := backoff(attempt, 0)
			if d <= 0 || d > backoffCap {
				t.Fatalf("backoff(%d) = %v outside (0, %v]", attempt, d, backoffCap)
			}
			if d > backoffBase<<attempt && backoffBase<<attempt < backoffCap {
				t.Fatalf("backoff(%d) = %v above its window %v", attempt, d, backoffBase<<attempt)
			}
		}
	}
	if d := backoff(0, 3*time.Second); d < 3*time.Second {
		t.Errorf("retryAfter 3s not honoured: %v", d)
	}
	if d := backoff(0, 24*time.Hour); d != maxRetryAfter {
		t.Errorf("retryAfter of a day: %v, want the cap %v", d, maxRetryAfter)
	}
}

func TestCredentialsRefused(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{oss.ServiceError{StatusCode: 403, Code: "SecurityTokenExpired"}, true},
		{oss.ServiceError{StatusCode: 403, Code: "InvalidSecurityToken"}, true},
		{oss.ServiceError{StatusCode: 403, Code: "AccessKeyIdAndSecurityTokenNotMatch"}, true},
		{oss.ServiceError{StatusCode: 403, Code: "InvalidAccessKeyId"}, true},
		{&oss.ServiceError{StatusCode: 403, Code: "InvalidAccessKeyId"}, true},
		{oss.ServiceError{StatusCode: 403, Code: "AccessDenied"}, false},
		{oss.ServiceError{StatusCode: 403, Code: "SignatureDoesNotMatch"}, false},
		{oss.ServiceError{StatusCode: 400, Code: "InvalidAccessKeyId"}, false},
		{errors.New("InvalidAccessKeyId"), false},
		{nil, false},
	} {
		if got := credentialsRefused(tc.err); got != tc.want {
			t.Errorf("credentialsRefused(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestCheckCRC(t *testing.T) {
	t.Parallel()
	h := http.Header{}
	if err := checkCRC(h, 1); err == nil {
		t.Error("a missing CRC header was accepted")
	}
	h.Set(oss.HTTPHeaderOssCRC64, "12345")
	if err := checkCRC(h, 12345); err != nil {
		t.Error(err)
	}
	if err := checkCRC(h, 12346); err == nil || !strings.Contains(err.Error(), "mismatch") {
		t.Errorf("mismatch: %v", err)
	}
	h.Set(oss.HTTPHeaderOssCRC64, "12x")
	if err := checkCRC(h, 12); err == nil {
		t.Error("a malformed CRC header was accepted")
	}
}

func TestPrepareRejectsBadClips(t *testing.T) {
	t.Parallel()
	k, err := New(validConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	dir := t.TempDir()
	good := filepath.Join(dir, "clip.mp4")
	if err := os.WriteFile(good, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	tooMany := map[string]string{}
	for i := range protocol.MaxMetadata + 1 {
		tooMany[strings.Repeat("k", i+1)] = "v"
	}
	for name, clip := range map[string]Clip{
		"no path":           {},
		"missing file":      {Path: filepath.Join(dir, "nope.mp4")},
		"directory":         {Path: dir, Name: "d.mp4"},
		"bad name":          {Path: good, Name: "../etc/passwd"},
		"bad base name":     {Path: filepath.Join(dir, "a b.mp4")},
		"bad content type":  {Path: good, ContentType: "video/"},
		"long content type": {Path: good, ContentType: "video/" + strings.Repeat("x", 300)},
		"too much metadata": {Path: good, Metadata: tooMany},
		"empty meta key":    {Path: good, Metadata: map[string]string{"": "v"}},
		"long meta value":   {Path: good, Metadata: map[string]string{"k": strings.Repeat("v", 257)}},
		"invalid utf8 meta": {Path: good, Metadata: map[string]string{"k": "\xff"}},
	} {
		if _, err := k.prepare(clip); !errors.Is(err, ErrInvalidClip) {
			t.Errorf("%s: got %v, want ErrInvalidClip", name, err)
		}
	}
	p, err := k.prepare(Clip{Path: good})
	if err != nil {
		t.Fatal(err)
	}
	defer p.file.Close()
	if p.Name != "clip.mp4" || p.ContentType != "video/mp4" || p.size != 4 || p.RecordedAt.Location() != time.UTC {
		t.Errorf("defaults: %+v", p)
	}
}

func TestUploadBeforeConnect(t *testing.T) {
	t.Parallel()
	k, err := New(validConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "c.mp4")
	os.WriteFile(file, []byte("x"), 0o600)
	if _, err := k.Upload(t.Context(), Clip{Path: file}); !errors.Is(err, ErrNotConnected) {
		t.Errorf("Upload before Connect: %v", err)
	}
	if _, err := k.Credentials(t.Context()); !errors.Is(err, ErrNotConnected) {
		t.Errorf("Credentials before Connect: %v", err)
	}
	k.Close()
	if _, err := k.Upload(t.Context(), Clip{Path: file}); !errors.Is(err, ErrClosed) {
		t.Errorf("Upload after Close: %v", err)
	}
	if err := k.Connect(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("Connect after Close: %v", err)
	}
}

// A kill during an atomic write leaves its temporary file; New removes those of every
// state directory once they are older than tmpMaxAge (a younger one may be another
// process's write in progress), and nothing else.
func TestNewSweepsTempFiles(t *testing.T) {
	t.Parallel()
	cfg := validConfig(t)
	k, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	k.Close()
	for _, sub := range []string{spoolDir, recordingsDir} {
		if err := os.MkdirAll(filepath.Join(cfg.StateDir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-tmpMaxAge - time.Minute)
	files := map[string]bool{} // path -> kept
	for _, sub := range []string{"", checkpointDir, journalDir, outboxDir, spoolDir, recordingsDir} {
		dir := filepath.Join(cfg.StateDir, sub)
		files[filepath.Join(dir, ".tmp-123456")] = false
		files[filepath.Join(dir, ".tmp-fresh")] = true
		files[filepath.Join(dir, "old.json")] = true
		files[filepath.Join(dir, "tmp-not-ours")] = true
	}
	for p := range files {
		if err := os.WriteFile(p, []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(p, "fresh") {
			if err := os.Chtimes(p, old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	k, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	k.Close()
	for p, kept := range files {
		_, err := os.Stat(p)
		if exists := err == nil; exists != kept {
			t.Errorf("%s: exists %v, want %v", p, exists, kept)
		}
	}
}

// TestCertDeviceNeedsTLSURLs: a device with a certificate and no DeviceKey has no
// password, so every URL it may connect to, failover ones included, must be TLS.
func TestCertDeviceNeedsTLSURLs(t *testing.T) {
	t.Parallel()
	ca := testpki.NewCA(t, "fleet")
	cert := ca.IssueClient(t, "cam-0001", testpki.ClientOptions{})
	for name, tc := range map[string]struct {
		broker   string
		failover []string
		want     string
	}{
		"plain broker":   {"tcp://127.0.0.1:1883", nil, "TLS BrokerURL"},
		"plain failover": {"ssl://127.0.0.1:8883", []string{"ssl://127.0.0.2:8883", "tcp://127.0.0.3:1883"}, "FailoverURLs[1]"},
		"all TLS":        {"ssl://127.0.0.1:8883", []string{"mqtts://127.0.0.2:8883"}, ""},
	} {
		cfg := validConfig(t)
		cfg.DeviceKey = nil
		cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		cfg.BrokerURL, cfg.FailoverURLs = tc.broker, tc.failover
		k, err := New(cfg)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", name, err)
			} else {
				k.Close()
			}
			continue
		}
		if err == nil {
			k.Close()
			t.Errorf("%s: New accepted the config", name)
		} else if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q, want ErrConfig mentioning %q", name, err, tc.want)
		}
	}
}
