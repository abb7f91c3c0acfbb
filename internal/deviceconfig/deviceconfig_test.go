package deviceconfig

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/testpki"
)

// writeKey writes a random device key of device to path.
func writeKey(t *testing.T, path, device string) *identity.DeviceKey {
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

// TestWrite: Write writes every field set, and only those, readable by its owner only
// and through a temporary file (cmd/device's TestReadsWrittenFile reads such files back).
func TestWrite(t *testing.T) {
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
	var back File
	if text, err := os.ReadFile(path); err != nil || yaml.Unmarshal(text, &back) != nil || !reflect.DeepEqual(back, f) {
		t.Errorf("written:\n%s\nwant %+v %+v", text, f, f.TLS)
	}

	// A minimal file holds nothing else.
	min := File{Broker: "tcp://127.0.0.1:1883", DeviceID: "cam-2", DeviceKeyFile: "/k", StateDir: "/s"}
	if err := Write(path, min); err != nil {
		t.Fatal(err)
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
		{Broker: "tcp://127.0.0.1:1883", Failover: []string{"tcp://127.0.0.1:1884", "http://x"}},
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
	if text, err := os.ReadFile(path); err != nil || !bytes.Contains(text, []byte("device-id: cam-1\n")) {
		t.Errorf("after refused writes: %s, %v", text, err)
	}
	// Writing into a missing directory fails cleanly.
	if err := Write(filepath.Join(dir, "missing", "d.yaml"), good); err == nil {
		t.Error("Write into a missing directory succeeded")
	}
}

// TestRelativePaths: Write keeps relative paths as given (the reader takes them relative
// to the file); KitConfig loads the key from the resolved path.
func TestRelativePaths(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sub := filepath.Join(dir, "conf")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	key := writeKey(t, filepath.Join(sub, "device.key"), "cam-7")
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
	got := f
	got.DeviceKeyFile, got.StateDir = filepath.Join(sub, "device.key"), filepath.Join(dir, "state") // as the command reads them
	kc, err := got.KitConfig()
	if err != nil {
		t.Fatalf("KitConfig: %v", err)
	}
	if !bytes.Equal(kc.DeviceKey.Request, key.Request) || !bytes.Equal(kc.DeviceKey.Connect, key.Connect) || kc.DeviceKey.KeyID != key.KeyID || kc.DeviceKeyFile != got.DeviceKeyFile || kc.StateDir != filepath.Join(dir, "state") || kc.BrokerURL != f.Broker || kc.DeviceID != "cam-7" {
		t.Errorf("KitConfig = %+v", kc)
	}
	kit, err := devicekit.New(kc)
	if err != nil {
		t.Fatalf("devicekit.New: %v", err)
	}
	kit.Close()
}

func TestKitConfigRequiredFields(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "device.key")
	writeKey(t, keyPath, "cam-1")
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
	writeKey(t, keyPath, "cam-1")
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
	// The key file of another device.
	writeKey(t, keyPath, "cam-2")
	if _, err := f.KitConfig(); err == nil || !strings.Contains(err.Error(), `the key of device "cam-2", not of "cam-1"`) {
		t.Errorf("another device's key: %v", err)
	}
	// An old raw key (32 bytes, no key ID) is refused.
	if err := identity.WriteKey(keyPath, make([]byte, identity.KeySize)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.KitConfig(); err == nil || !strings.Contains(err.Error(), "device-key-file") {
		t.Errorf("raw key file: %v", err)
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
	writeKey(t, keyPath, "cam-1")
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

	// A device with a certificate needs no key file: its certificate's key signs.
	certOnly := f
	certOnly.DeviceKeyFile = ""
	kc, err = certOnly.KitConfig()
	if err != nil || kc.DeviceKey != nil || len(kc.TLS.Certificates) != 1 {
		t.Fatalf("certificate without a key file: %+v, %v", kc, err)
	}
	kit, err := devicekit.New(kc)
	if err != nil {
		t.Fatalf("devicekit.New with a certificate only: %v", err)
	}
	kit.Close()
	certOnly.Broker = "tcp://127.0.0.1:1883" // the certificate would never be presented
	if _, err := certOnly.KitConfig(); err == nil || !strings.Contains(err.Error(), "does not use TLS") {
		t.Errorf("certificate with a TCP broker and no key file: %v", err)
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

// TestKitConfigFailover: the failover URLs reach the kit's configuration.
func TestKitConfigFailover(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "device.key")
	writeKey(t, keyPath, "cam-1")
	urls := []string{"tcp://10.0.0.2:1883", "tcp://10.0.0.3:1883"}
	f := File{Broker: "tcp://10.0.0.1:1883", Failover: urls, DeviceID: "cam-1", DeviceKeyFile: keyPath, StateDir: dir}
	c, err := f.KitConfig()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.FailoverURLs, urls) {
		t.Fatalf("FailoverURLs %v, want %v", c.FailoverURLs, urls)
	}
}
