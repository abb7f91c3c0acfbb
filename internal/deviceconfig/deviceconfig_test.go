package deviceconfig

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/testpki"
)

func writeKey(t *testing.T, path string) []byte {
	t.Helper()
	key, err := identity.NewFleetKey() // any 32 random bytes
	if err != nil {
		t.Fatal(err)
	}
	if err := identity.WriteKey(path, key); err != nil {
		t.Fatal(err)
	}
	return key
}

func writeText(t *testing.T, dir, text string) string {
	t.Helper()
	path := filepath.Join(dir, "device.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestWriteLoadRoundTrip(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f := File{
		Broker:             "ssl://127.0.0.1:8883",
		DeviceID:           "cam-0001",
		DeviceKeyFile:      filepath.Join(dir, "device.key"),
		StateDir:           filepath.Join(dir, "state"),
		TopicRoot:          "acme/clips",
		TLS:                &TLS{CAFile: filepath.Join(dir, "ca.pem"), CertFile: filepath.Join(dir, "c.pem"), KeyFile: filepath.Join(dir, "k.pem"), ServerName: "broker.local"},
		Mode:               "wa",
		MultipartThreshold: 16 << 20,
		PartSize:           2 << 20,
	}
	path := filepath.Join(dir, "device.yaml")
	if err := Write(path, f); err != nil {
		t.Fatalf("Write: %v", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %04o, want 0600", st.Mode().Perm())
	}
	got, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !reflect.DeepEqual(got, f) {
		t.Errorf("round trip:\n got %+v %+v\nwant %+v %+v", got, got.TLS, f, f.TLS)
	}

	// A minimal file round-trips too, with nothing invented.
	min := File{Broker: "tcp://127.0.0.1:1883", DeviceID: "cam-2", DeviceKeyFile: "/k", StateDir: "/s"}
	if err := Write(path, min); err != nil {
		t.Fatal(err)
	}
	if got, err = Load(path); err != nil || !reflect.DeepEqual(got, min) {
		t.Errorf("minimal round trip: %+v, %v", got, err)
	}
	text, _ := os.ReadFile(path)
	for _, absent := range []string{"tls", "mode", "part-size", "topic-root"} {
		if bytes.Contains(text, []byte(absent)) {
			t.Errorf("unset field %s written:\n%s", absent, text)
		}
	}
	// No temporary file is left behind.
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
}

func TestWriteReplacesAndRefusesBadValues(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "device.yaml")
	good := File{Broker: "tcp://127.0.0.1:1883", DeviceID: "cam-1"}
	if err := Write(path, good); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []File{
		{Broker: "http://x"},
		{DeviceID: "bad id"},
		{Mode: "wx"},
		{PartSize: -1},
		{Broker: "tcp://127.0.0.1:1", TLS: &TLS{CAFile: "ca.pem"}},
	} {
		if err := Write(path, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("Write(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
	// The good file is untouched by the refused writes.
	if got, err := Load(path); err != nil || got.DeviceID != "cam-1" {
		t.Errorf("after refused writes: %+v, %v", got, err)
	}
	// Writing into a missing directory fails cleanly.
	if err := Write(filepath.Join(dir, "missing", "d.yaml"), good); err == nil {
		t.Error("Write into a missing directory succeeded")
	}
}

func TestRelativePaths(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sub := filepath.Join(dir, "conf")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	key := writeKey(t, filepath.Join(sub, "device.key"))
	f := File{Broker: "tcp://127.0.0.1:1883", DeviceID: "cam-7", DeviceKeyFile: "device.key", StateDir: "../state",
		TLS: nil}
	path := filepath.Join(sub, "device.yaml")
	if err := Write(path, f); err != nil {
		t.Fatal(err)
	}
	text, _ := os.ReadFile(path)
	if !bytes.Contains(text, []byte("device-key-file: device.key")) {
		t.Errorf("relative path not written as given:\n%s", text)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.DeviceKeyFile != filepath.Join(sub, "device.key") || got.StateDir != filepath.Join(dir, "state") {
		t.Errorf("paths not resolved against %s: key %q state %q", sub, got.DeviceKeyFile, got.StateDir)
	}
	kc, err := got.KitConfig()
	if err != nil {
		t.Fatalf("KitConfig: %v", err)
	}
	if !bytes.Equal(kc.DeviceKey, key) || kc.StateDir != filepath.Join(dir, "state") || kc.BrokerURL != f.Broker || kc.DeviceID != "cam-7" {
		t.Errorf("KitConfig = %+v", kc)
	}
	kit, err := devicekit.New(kc)
	if err != nil {
		t.Fatalf("devicekit.New: %v", err)
	}
	kit.Close()

	// TLS paths resolve too.
	tlsPath := writeText(t, sub, "broker: ssl://127.0.0.1:8883\ntls:\n  ca-file: ca.pem\n  cert-file: /abs/c.pem\n  key-file: k.pem\n")
	got, err = Load(tlsPath)
	if err != nil {
		t.Fatal(err)
	}
	if got.TLS.CAFile != filepath.Join(sub, "ca.pem") || got.TLS.CertFile != "/abs/c.pem" || got.TLS.KeyFile != filepath.Join(sub, "k.pem") {
		t.Errorf("TLS paths: %+v", got.TLS)
	}
}

func TestLoadGarbage(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, text, want string }{
		{"empty", "", "empty"},
		{"blank", " \n\t\n", "empty"},
		{"comment only", "# nothing\n", "empty"},
		{"not yaml", "{{{{", "invalid device config"},
		{"binary", "\x00\x01\x02\xff\xfe", "invalid device config"},
		{"list", "- a\n- b\n", "mapping"},
		{"scalar", "hello\n", "mapping"},
		{"unknown field", "broker: tcp://127.0.0.1:1\nbrokr: x\n", `unknown field "brokr" (line 2)`},
		{"two unknown", "colour: red\ndevice-id: cam-1\nsize: 3\n", `"colour" (line 1), "size" (line 3)`},
		{"unknown tls field", "tls:\n  ca-file: a\n  insecure: true\n", `"tls.insecure" (line 3)`},
		{"camel case", "deviceId: cam-1\n", `unknown field "deviceId"`},
		{"snake case", "device_id: cam-1\n", `unknown field "device_id"`},
		{"duplicate", "device-id: cam-1\ndevice-id: cam-2\n", "already defined"},
		{"two documents", "device-id: cam-1\n---\ndevice-id: cam-2\n", "more than one"},
		{"wrong type", "mode: [w]\n", "invalid device config"},
		{"size garbage", "part-size: lots\n", `part-size: line 1: "lots" is not a size`},
		{"size with a bad unit", "multipart-threshold: 8 MiBs\n", "multipart-threshold: line 1"},
		{"size fraction", "part-size: 1048576.5\n", "must be whole"},
		{"size overflow", "part-size: 99999999999999999999\n", "too large"},
		{"size not a scalar", "part-size: {a: 1}\n", "part-size: line 1: want a size"},
		{"tls not a map", "tls: true\n", "invalid device config"},
		{"bad device id", "device-id: cam/1\n", "device-id"},
		{"short device id", "device-id: c\n", "device-id"},
		{"bad broker scheme", "broker: http://127.0.0.1:1\n", "broker"},
		{"broker without host", "broker: tcp://\n", "broker"},
		{"bad mode", "mode: ww\n", "mode"},
		{"bad topic root", "topic-root: a/+/b\n", "topic-root"},
		{"negative part", "part-size: -5\n", `part-size: line 1: "-5" is not a size`},
		{"negative threshold", "multipart-threshold: -5\n", "multipart-threshold"},
		{"cert without key", "broker: ssl://h:1\ntls:\n  cert-file: c.pem\n", "cert-file and key-file"},
		{"tls on tcp", "broker: tcp://h:1\ntls:\n  ca-file: ca.pem\n", "does not use TLS"},
		{"nul in path", "device-key-file: \"a\\0b\"\n", "NUL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := writeText(t, t.TempDir(), tc.text)
			_, err := Load(path)
			if err == nil {
				t.Fatalf("Load accepted %q", tc.text)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

// Sizes in the file may carry a unit, as the flags (issue 9, point 5).
func TestSizesWithUnits(t *testing.T) {
	t.Parallel()
	path := writeText(t, t.TempDir(), "part-size: 1MiB\nmultipart-threshold: \"2.5 MB\"\n")
	f, err := Load(path)
	if err != nil || f.PartSize != 1<<20 || f.MultipartThreshold != 2.5e6 {
		t.Fatalf("%+v, %v", f, err)
	}
	if f, err = Parse([]byte("part-size: 204800\n")); err != nil || f.PartSize != 200<<10 {
		t.Errorf("plain bytes: %+v, %v", f, err)
	}
}

// TestLoadsDevstackFile reads a file as devstack writes it (internal/devstack, before it
// switches to Write): a comment, then absolute paths and the topic root.
func TestLoadsDevstackFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "devices", "cam-01.key")
	if err := os.Mkdir(filepath.Dir(keyPath), 0o700); err != nil {
		t.Fatal(err)
	}
	key := writeKey(t, keyPath)
	text := "# Written by devstack at every start: device cam-01 on the local stack.\n" +
		"broker: tcp://127.0.0.1:1883\n" +
		"device-id: cam-01\n" +
		"device-key-file: " + keyPath + "\n" +
		"state-dir: " + filepath.Join(dir, "devices", "cam-01") + "\n" +
		"topic-root: clipgate/v1\n"
	f, err := Load(writeText(t, dir, text))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := File{Broker: "tcp://127.0.0.1:1883", DeviceID: "cam-01", DeviceKeyFile: keyPath,
		StateDir: filepath.Join(dir, "devices", "cam-01"), TopicRoot: "clipgate/v1"}
	if !reflect.DeepEqual(f, want) {
		t.Fatalf("Load = %+v, want %+v", f, want)
	}
	kc, err := f.KitConfig()
	if err != nil || !bytes.Equal(kc.DeviceKey, key) || kc.Topics != "clipgate/v1" {
		t.Fatalf("KitConfig = %+v, %v", kc, err)
	}
}

func TestLoadFileErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
	big := writeText(t, dir, "device-id: cam-1\n"+strings.Repeat("# padding\n", MaxFileSize/10+1))
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversized file: %v", err)
	}
}

func TestKitConfigRequiredFields(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "device.key")
	writeKey(t, keyPath)
	full := File{Broker: "tcp://127.0.0.1:1883", DeviceID: "cam-1", DeviceKeyFile: keyPath, StateDir: filepath.Join(dir, "s")}
	if _, err := full.KitConfig(); err != nil {
		t.Fatalf("complete config: %v", err)
	}
	for _, field := range []string{"broker", "device-id", "device-key-file", "state-dir"} {
		f := full
		switch field {
		case "broker":
			f.Broker = ""
		case "device-id":
			f.DeviceID = ""
		case "device-key-file":
			f.DeviceKeyFile = ""
		case "state-dir":
			f.StateDir = ""
		}
		_, err := f.KitConfig()
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != field || !fe.Missing {
			t.Errorf("without %s: %v, want a missing-field error", field, err)
		}
		if err != nil && err.Error() != field+" is required" {
			t.Errorf("message %q", err)
		}
	}
}

func TestKitConfigRefusesReadableKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "device.key")
	writeKey(t, keyPath)
	f := File{Broker: "tcp://127.0.0.1:1883", DeviceID: "cam-1", DeviceKeyFile: keyPath, StateDir: dir}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o644} {
		if err := os.Chmod(keyPath, mode); err != nil {
			t.Fatal(err)
		}
		_, err := f.KitConfig()
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "device-key-file" {
			t.Errorf("key mode %04o: %v, want a device-key-file error", mode, err)
		}
	}
	// Garbage in the key file.
	if err := os.WriteFile(keyPath, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.KitConfig(); err == nil || !strings.Contains(err.Error(), "device-key-file") {
		t.Errorf("garbage key: %v", err)
	}
	f.DeviceKeyFile = filepath.Join(dir, "missing.key")
	if _, err := f.KitConfig(); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing key: %v", err)
	}
}

func TestKitConfigTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "device.key")
	writeKey(t, keyPath)
	ca := testpki.NewCA(t, "CA")
	certFile, keyFile := testpki.WritePair(t, dir, "cam-1", ca.Issue(t, "cam-1", false))
	f := File{Broker: "ssl://127.0.0.1:8883", DeviceID: "cam-1", DeviceKeyFile: keyPath, StateDir: dir,
		TLS: &TLS{CAFile: ca.WriteCA(t, dir), CertFile: certFile, KeyFile: keyFile, ServerName: "broker.test"}}
	kc, err := f.KitConfig()
	if err != nil {
		t.Fatalf("KitConfig: %v", err)
	}
	if kc.TLS == nil || kc.TLS.RootCAs == nil || len(kc.TLS.Certificates) != 1 || kc.TLS.ServerName != "broker.test" {
		t.Fatalf("TLS config %+v", kc.TLS)
	}

	bad := f
	bad.TLS = &TLS{CAFile: keyPath} // not PEM
	if _, err := bad.KitConfig(); err == nil || !strings.Contains(err.Error(), "tls.ca-file") {
		t.Errorf("non-PEM CA: %v", err)
	}
	bad.TLS = &TLS{CAFile: filepath.Join(dir, "missing.pem")}
	if _, err := bad.KitConfig(); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing CA: %v", err)
	}
	certAsKey := filepath.Join(dir, "cert-as-key.pem")
	if b, err := os.ReadFile(certFile); err != nil || os.WriteFile(certAsKey, b, 0o600) != nil {
		t.Fatal(err)
	}
	bad.TLS = &TLS{CertFile: certFile, KeyFile: certAsKey} // a certificate is not a key
	if _, err := bad.KitConfig(); err == nil || !strings.Contains(err.Error(), "tls.cert-file") {
		t.Errorf("bad key pair: %v", err)
	}
	if err := os.Chmod(keyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := f.KitConfig(); err == nil || !strings.Contains(err.Error(), "tls.key-file") {
		t.Errorf("readable TLS key: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("broker: tcp://127.0.0.1:1883\ndevice-id: cam-1\ntls:\n  ca-file: a\n"))
	f.Add([]byte("device-id: [1, 2]\n"))
	f.Add([]byte("&a x: *a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			return
		}
		// Whatever parses is valid and survives a write and a reload unchanged.
		if err := c.check(); err != nil {
			t.Fatalf("Parse accepted an invalid config: %v", err)
		}
		path := filepath.Join(t.TempDir(), "d.yaml")
		if err := Write(path, c); err != nil {
			t.Fatalf("Write: %v", err)
		}
		back, err := readLimited(path)
		if err != nil {
			t.Fatal(err)
		}
		again, err := Parse(back)
		if err != nil {
			t.Fatalf("reparse: %v\n%s", err, back)
		}
		if c.TLS != nil && *c.TLS == (TLS{}) {
			c.TLS = nil
		}
		if !reflect.DeepEqual(again, c) {
			t.Fatalf("round trip changed %+v to %+v", c, again)
		}
	})
}
