package console

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/clipgate/clipgate/internal/broker"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/mqttclient"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/internal/tokenworker"
)

// TestRevocationAcrossProcesses: the console and the broker and token workers share
// nothing but the revocation file, as separate processes do. The broker loads and
// watches it itself (its RevocationsFile setting, as cmd/broker); the workers use a list
// that watches it (as cmd/tokenworker does). Revoking in the console disconnects the
// device and makes the workers answer "revoked"; restoring undoes both.
func TestRevocationAcrossProcesses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "revoked.txt")
	// An operator's hand edit from before the console ran is taken in at its start.
	if err := os.WriteFile(file, []byte("# by hand\ncam-hand\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	workers := identity.NewRevocations()
	ctx, cancel := context.WithCancel(context.Background())
	watchErr := make(chan error, 1)
	go func() { watchErr <- workers.Watch(ctx, file, func(err error) { t.Errorf("worker watch: %v", err) }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-watchErr; err != nil {
			t.Error(err)
		}
	})
	e := newEnv(t, envOptions{
		stack: inproc.Options{
			BrokerConfig: func(b *broker.Config) { b.Revocations, b.RevocationsFile = nil, file },
			WorkerConfig: func(w *tokenworker.Config) { w.Revocations = workers },
		},
		config: func(c *Config) { c.RevocationsFile = file },
	})
	bg := context.Background()
	if ids, err := e.db.RevokedDevices(bg); err != nil || !slices.Equal(ids, []string{"cam-hand"}) {
		t.Fatalf("revoked after start: %v, %v", ids, err)
	}
	waitFor(t, "the workers' list loaded", func() bool { return workers.Revoked("cam-hand") })
	e.kit("cam-01")
	adm := e.admin()
	if code := authReply(t, e, adm, "cam-01"); code != "" {
		t.Fatalf("worker before revocation: %s", code)
	}

	a := e.api()
	a.login()
	var dev Device
	a.json(http.MethodPost, "/api/devices/cam-01/revoke", nil, http.StatusOK, &dev)
	text, err := os.ReadFile(file)
	if err != nil || !strings.Contains(string(text), "\ncam-01\n") || !strings.Contains(string(text), "\ncam-hand\n") {
		t.Fatalf("revocation file: %q, %v", text, err)
	}
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o644 {
		t.Fatalf("file mode: %v, %v", st, err)
	}
	// The broker reloads the file and disconnects the device within seconds.
	waitFor(t, "the broker disconnected cam-01", func() bool { return e.stack.BrokerStats().RevokedDisconnects >= 1 })
	e.closeKit("cam-01")
	if err := e.tryConnect("cam-01", 3*time.Second); err == nil {
		t.Fatal("the broker let a revoked device connect")
	}
	// The workers answer its requests with "revoked".
	waitFor(t, "the workers' list reloaded", func() bool { return workers.Revoked("cam-01") })
	if code := authReply(t, e, adm, "cam-01"); code != protocol.CodeRevoked {
		t.Fatalf("worker after revocation: %q", code)
	}

	a.json(http.MethodPost, "/api/devices/cam-01/restore", nil, http.StatusOK, &dev)
	waitFor(t, "the workers' list reloaded", func() bool { return !workers.Revoked("cam-01") })
	if err := e.tryConnect("cam-01", 30*time.Second); err != nil {
		t.Fatalf("restored device: %v", err)
	}
	if !workers.Revoked("cam-hand") {
		t.Fatal("restoring one device dropped another's revocation")
	}
	// No temporary files are left beside the list.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries", len(entries))
	}
}

// authReply sends a correctly signed auth request for device on its request topic (as
// the admin account: the broker refuses a revoked device itself) and returns the reply's
// error code ("" for credentials).
func authReply(t *testing.T, e *env, c *mqttclient.Client, device string) protocol.Code {
	t.Helper()
	scheme := e.stack.Topics()
	replies := make(chan []byte, 4)
	tok := c.Paho().Subscribe(scheme.AuthReply(device), 1, func(_ mqtt.Client, m mqtt.Message) { replies <- m.Payload() })
	if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	defer c.Paho().Unsubscribe(scheme.AuthReply(device))
	nonce := make([]byte, protocol.NonceSize)
	if _, err := rand.Read(nonce); err != nil {
		t.Fatal(err)
	}
	req := &protocol.AuthRequest{V: protocol.Version, ID: "req-" + randHex(t, 4), Device: device,
		TS: time.Now().UTC().Format(time.RFC3339), Nonce: base64.RawURLEncoding.EncodeToString(nonce), Mode: "w", KID: e.stack.DeviceKey(device).KeyID}
	req.Sig = identity.Sign(e.stack.DeviceKey(device).Request, req.SigningString())
	payload, err := protocol.Encode(req)
	if err != nil {
		t.Fatal(err)
	}
	publish(t, c, scheme.AuthRequest(device), payload)
	timeout := time.After(30 * time.Second)
	for {
		select {
		case b := <-replies:
			r, err := protocol.DecodeAuthReply(b)
			if err != nil {
				t.Fatal(err)
			}
			if r.ID != req.ID {
				continue // a reply to the device's own request
			}
			if r.OK {
				return ""
			}
			return r.Error.Code
		case <-timeout:
			t.Fatal("no auth reply")
		}
	}
}

func TestRevocationFileGarbage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, text := range map[string]string{
		"bad-id":   "cam-01\nnot a device id\n",
		"too-long": strings.Repeat("a", 65) + "\n",
	} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := readRevocationIDs(path); err == nil {
			t.Errorf("%s: accepted", name)
		}
		// The console refuses to start on it, rather than overwrite what it cannot read.
		db := openTestDB(t, SQLite)
		c, err := New(Config{Bucket: testBucket(t), Store: db, PasswordHash: testHash, RevocationsFile: path, Addr: "127.0.0.1:0"})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(context.Background()); err == nil {
			_ = c.Close()
			t.Errorf("%s: console started", name)
		}
		if got, _ := os.ReadFile(path); string(got) != text {
			t.Errorf("%s: file changed to %q", name, got)
		}
	}
	if _, err := readRevocationIDs(dir); err == nil {
		t.Error("a directory was read as a list")
	}
	if _, err := readRevocationIDs(filepath.Join(dir, "none")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	ok := filepath.Join(dir, "ok")
	if err := os.WriteFile(ok, []byte("  cam-02 # comment\r\n\n# only a comment\ncam-01\ncam-02\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if ids, err := readRevocationIDs(ok); err != nil || !slices.Equal(ids, []string{"cam-01", "cam-02"}) {
		t.Fatalf("ids = %v, %v", ids, err)
	}
	// What the console writes, identity reads back.
	out := filepath.Join(dir, "written")
	if err := writeRevocationsFile(out, []string{"cam-01", "cam-02"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	r, err := identity.LoadRevocations(out)
	if err != nil || r.Len() != 2 || !r.Revoked("cam-02") {
		t.Fatalf("identity reading the console's file: %v, %v", r, err)
	}
	// An unwritable directory is an error, not a silent skip.
	if err := writeRevocationsFile(filepath.Join(dir, "no", "such", "dir", "f"), nil, time.Now()); err == nil {
		t.Fatal("wrote into a missing directory")
	}
}
