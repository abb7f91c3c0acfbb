package console

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/events"

	"github.com/clipgate/clipgate/internal/broker"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/mqttclient"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/internal/testutil"
	"github.com/clipgate/clipgate/internal/tokenworker"
	"github.com/clipgate/clipgate/topics"
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
	testutil.WaitFor(t, "the workers' list loaded", func() bool { return workers.Revoked("cam-hand") })
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
	if err != nil || !strings.Contains(string(text), "\ncam-01 2") || !strings.Contains(string(text), "\ncam-hand 2") {
		t.Fatalf("revocation file: %q, %v", text, err)
	}
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o644 {
		t.Fatalf("file mode: %v, %v", st, err)
	}
	// The broker reloads the file and disconnects the device within seconds.
	testutil.WaitFor(t, "the broker disconnected cam-01", func() bool { return e.stack.BrokerStats().RevokedDisconnects >= 1 })
	e.closeKit("cam-01")
	if err := e.tryConnect("cam-01", 3*time.Second); err == nil {
		t.Fatal("the broker let a revoked device connect")
	}
	// The workers answer its requests with "revoked".
	testutil.WaitFor(t, "the workers' list reloaded", func() bool { return workers.Revoked("cam-01") })
	if code := authReply(t, e, adm, "cam-01"); code != protocol.CodeRevoked {
		t.Fatalf("worker after revocation: %q", code)
	}

	a.json(http.MethodPost, "/api/devices/cam-01/restore", nil, http.StatusOK, &dev)
	testutil.WaitFor(t, "the workers' list reloaded", func() bool { return !workers.Revoked("cam-01") })
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
	if list, err := readRevocationIDs(ok); err != nil || len(list) != 2 || list[0].Device != "cam-01" || list[1].Device != "cam-02" {
		t.Fatalf("list = %v, %v", list, err)
	}
	// What the console writes, identity reads back, with the revocation times.
	out := filepath.Join(dir, "written")
	at := time.Date(2026, 12, 2, 3, 4, 5, 6, time.UTC)
	if err := writeRevocationsFile(out, []identity.Revocation{{Device: "cam-01"}, {Device: "cam-02", At: at}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	r, err := identity.LoadRevocations(out)
	if got, ok := r.RevokedAt("cam-02"); err != nil || r.Len() != 2 || !ok || !got.Equal(at) {
		t.Fatalf("identity reading the console's file: %v, %v", r, err)
	}
	// An unwritable directory is an error, not a silent skip.
	if err := writeRevocationsFile(filepath.Join(dir, "no", "such", "dir", "f"), nil, time.Now()); err == nil {
		t.Fatal("wrote into a missing directory")
	}
}

// TestRevokeReachesOSS (issue 12 point 3): with DenyRoleARN, revoking a device in the
// console writes a bucket-policy Deny, so the credentials it got before (from the token
// workers, through STS) get 403 AccessDenied from OSS at once; the other devices and the
// console's own reads are unaffected; after a restore the Deny is gone and new
// credentials work.
func TestRevokeReachesOSS(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{denyOSS: true})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	before := e.upload("cam-01", "before.mp4", []byte("clip before"), time.Now())
	creds, err := e.kit("cam-01").Credentials(ctx)
	if err != nil {
		t.Fatal(err)
	}
	other, err := e.kit("cam-02").Credentials(ctx)
	if err != nil {
		t.Fatal(err)
	}
	put := func(c *devicekit.Credentials, device, name string) error {
		cl, err := oss.New(e.stack.OSSEndpoint(), c.AccessKeyID, c.AccessKeySecret, oss.SecurityToken(c.SecurityToken),
			oss.ForcePathStyle(true), oss.AuthVersion(oss.AuthV4), oss.Region(e.stack.Region()))
		if err != nil {
			t.Fatal(err)
		}
		b, err := cl.Bucket(e.stack.Bucket())
		if err != nil {
			t.Fatal(err)
		}
		return b.PutObject(e.stack.Prefix()+device+"/"+name, strings.NewReader("x"))
	}
	if err := put(creds, "cam-01", "probe-before"); err != nil {
		t.Fatalf("before the revocation: %v", err)
	}

	a := e.api()
	a.login()
	var dev Device
	a.json(http.MethodPost, "/api/devices/cam-01/revoke", nil, http.StatusOK, &dev)
	err = put(creds, "cam-01", "probe-after")
	var se oss.ServiceError
	if !errors.As(err, &se) || se.StatusCode != http.StatusForbidden || se.Code != "AccessDenied" {
		t.Fatalf("credentials issued before the revocation: %v, want 403 AccessDenied", err)
	}
	if err := put(other, "cam-02", "probe"); err != nil {
		t.Fatalf("another device: %v", err)
	}
	if _, err := e.bucket.GetObjectDetailedMeta(before.Key); err != nil {
		t.Fatalf("the console reading the revoked device's clip: %v", err)
	}
	policy, err := e.bucket.Client.GetBucketPolicy(e.stack.Bucket())
	if err != nil || !strings.Contains(policy, "assumed-role/") || !strings.Contains(policy, "/cam-01/*") {
		t.Fatalf("bucket policy: %q, %v", policy, err)
	}

	a.json(http.MethodPost, "/api/devices/cam-01/restore", nil, http.StatusOK, &dev)
	if _, err := e.bucket.Client.GetBucketPolicy(e.stack.Bucket()); err == nil {
		t.Fatal("the bucket policy is still there after the restore")
	}
	e.closeKit("cam-01")
	fresh, err := e.kit("cam-01").Credentials(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := put(fresh, "cam-01", "probe-restored"); err != nil {
		t.Fatalf("new credentials after the restore: %v", err)
	}
}

// TestRevokeKicksEMQX (issue 12 point 8): with EMQX set, a revocation clears the
// device's authorization cache and kicks it out through EMQX 5's REST API (a stub
// serving the documented endpoints, checking the API key); an API failure is reported
// while the revocation stays recorded.
func TestRevokeKicksEMQX(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var calls []string
	fail := false
	stub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, secret, ok := r.BasicAuth()
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, r.Method+" "+r.URL.Path)
		switch {
		case !ok || key != "api-key" || secret != "api-secret":
			w.WriteHeader(http.StatusUnauthorized)
		case fail:
			http.Error(w, `{"code":"INTERNAL_ERROR"}`, http.StatusInternalServerError)
		case r.Method != http.MethodDelete:
			w.WriteHeader(http.StatusMethodNotAllowed)
		case r.URL.Path == "/api/v5/clients/cam-01/authorization/cache", r.URL.Path == "/api/v5/clients/cam-01":
			w.WriteHeader(http.StatusNoContent)
		case strings.HasPrefix(r.URL.Path, "/api/v5/clients/"):
			http.Error(w, `{"code":"CLIENTID_NOT_FOUND","message":"Client ID not found"}`, http.StatusNotFound)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(stub.Close)
	e := newEnv(t, envOptions{config: func(c *Config) {
		c.BrokerURL = ""
		c.EMQX = &EMQXAdmin{URL: stub.URL, APIKey: "api-key", APISecret: "api-secret"}
	}})
	bg := context.Background()
	if err := e.console.SetRevoked(bg, "cam-01", true); err != nil {
		t.Fatal(err)
	}
	if err := e.console.SetRevoked(bg, "cam-02", true); err != nil { // not connected: 404
		t.Fatal(err)
	}
	mu.Lock()
	want := []string{
		"DELETE /api/v5/clients/cam-01/authorization/cache", "DELETE /api/v5/clients/cam-01",
		"DELETE /api/v5/clients/cam-02/authorization/cache", "DELETE /api/v5/clients/cam-02",
	}
	if !slices.Equal(calls, want) {
		t.Fatalf("EMQX calls %q, want %q", calls, want)
	}
	calls, fail = nil, true
	mu.Unlock()
	// A restore does not call EMQX.
	if err := e.console.SetRevoked(bg, "cam-02", false); err != nil {
		t.Fatal(err)
	}
	err := e.console.SetRevoked(bg, "cam-03", true)
	if err == nil || !strings.Contains(err.Error(), "EMQX") || !strings.Contains(err.Error(), "500") {
		t.Fatalf("EMQX failing: %v", err)
	}
	if ids, _ := e.db.RevokedDevices(bg); !slices.Equal(ids, []string{"cam-01", "cam-03"}) {
		t.Fatalf("revoked: %v", ids)
	}
	for name, bad := range map[string]*EMQXAdmin{
		"no URL":    {APIKey: "k", APISecret: "s"},
		"bad URL":   {URL: "ftp://x", APIKey: "k", APISecret: "s"},
		"no secret": {URL: stub.URL, APIKey: "k"},
	} {
		cfg := e.console.cfg
		cfg.EMQX = bad
		if _, err := New(cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// serviceClient connects a client with the stack's account of role.
func (e *env) serviceClient(role topics.Role) *mqttclient.Client {
	e.t.Helper()
	user, pass := e.stack.ServiceAccount(role)
	c, err := mqttclient.New(mqttclient.Config{BrokerURL: e.stack.BrokerURL(), ClientID: user + ":t-" + randHex(e.t, 4),
		Username: user, Password: pass, NoReconnect: true})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		e.t.Fatalf("%s connect: %v", role, err)
	}
	return c
}

// TestRevocationListOverMQTT (issue 12 point 3): the broker and the token workers share
// no filesystem with the console; they follow the list it signs and publishes, retained,
// on the revocation topic. A revocation disconnects the device and makes the workers
// answer "revoked"; a restore undoes both. Lists signed with another key, or older than
// the one in force, are refused by both and change nothing; an admin may not publish on
// the topic at all.
func TestRevocationListOverMQTT(t *testing.T) {
	t.Parallel()
	seed, err := identity.NewRevocationKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := identity.RevocationPublicKey(seed)
	if err != nil {
		t.Fatal(err)
	}
	workers := identity.NewRevocations()
	e := newEnv(t, envOptions{
		stack: inproc.Options{
			BrokerConfig: func(b *broker.Config) { b.Revocations, b.RevocationsKey = nil, pub },
			WorkerConfig: func(w *tokenworker.Config) { w.Revocations, w.RevocationsKey = workers, pub },
		},
		serviceRole: topics.RoleConsole,
		config:      func(c *Config) { c.RevocationKey = seed },
	})
	// The list published at start (empty) reaches the workers.
	testutil.WaitFor(t, "the workers got the first list", func() bool { return !workers.Issued().IsZero() })
	e.kit("cam-01")
	adm := e.admin()
	if code := authReply(t, e, adm, "cam-01"); code != "" {
		t.Fatalf("worker before revocation: %s", code)
	}

	a := e.api()
	a.login()
	var dev Device
	a.json(http.MethodPost, "/api/devices/cam-01/revoke", nil, http.StatusOK, &dev)
	testutil.WaitFor(t, "the broker disconnected cam-01", func() bool { return e.stack.BrokerStats().RevokedDisconnects >= 1 })
	testutil.WaitFor(t, "the workers applied the list", func() bool { return workers.Revoked("cam-01") })
	if at, _ := workers.RevokedAt("cam-01"); !at.Equal(dev.RevokedAt) {
		t.Fatalf("the workers' revocation time %v, the console's %v", at, dev.RevokedAt)
	}
	if code := authReply(t, e, adm, "cam-01"); code != protocol.CodeRevoked {
		t.Fatalf("worker after revocation: %q", code)
	}
	e.closeKit("cam-01")
	if err := e.tryConnect("cam-01", 3*time.Second); err == nil {
		t.Fatal("the broker let a revoked device connect")
	}

	// Forged and old lists, published with the console's own account (as a thief of
	// its password without its key would), are refused by every follower.
	otherSeed, _ := identity.NewRevocationKey()
	forged, err := identity.SignRevocationList(otherSeed, time.Now().Add(time.Second), nil)
	if err != nil {
		t.Fatal(err)
	}
	old, err := identity.SignRevocationList(seed, time.Now().Add(-time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	thief := e.serviceClient(topics.RoleConsole)
	for _, payload := range [][]byte{forged, old, []byte("garbage")} {
		publishRetained(t, thief, e.stack.Topics().Revocations(), payload, true)
	}
	testutil.WaitFor(t, "the broker refused three lists", func() bool { return e.stack.BrokerStats().RevocationListsRefused >= 3 })
	testutil.WaitFor(t, "the workers refused three lists", func() bool {
		st, _ := e.stack.WorkerStats(0)
		return st.RevocationListsRefused >= 3
	})
	if !workers.Revoked("cam-01") {
		t.Fatal("a refused list changed the workers' list")
	}
	if err := e.tryConnect("cam-01", 3*time.Second); err == nil {
		t.Fatal("a refused list let the revoked device in")
	}
	// An admin may not publish there: the broker refuses it (and ends its connection).
	denied := e.stack.BrokerStats().ACLDenied
	adm.Publish(e.stack.Topics().Revocations(), 1, false, forged).WaitTimeout(10 * time.Second)
	testutil.WaitFor(t, "the broker refused the admin's publish", func() bool { return e.stack.BrokerStats().ACLDenied > denied })

	a.json(http.MethodPost, "/api/devices/cam-01/restore", nil, http.StatusOK, &dev)
	testutil.WaitFor(t, "the workers applied the restore", func() bool { return !workers.Revoked("cam-01") })
	if err := e.tryConnect("cam-01", 30*time.Second); err != nil {
		t.Fatalf("restored device: %v", err)
	}
}

// TestFlagsObjectsWrittenAfterRevocation (issue 12 point 3): objects a device wrote
// after its revocation (by OSS's clock: the object's Last-Modified), announced by an
// event or found by the reconciler, are indexed as rejected with reason "revoked";
// earlier ones stay verified. The OSS clock runs 10 s ahead after the first uploads and
// the console's revocation is at +5 s, so the order is certain.
func TestFlagsObjectsWrittenAfterRevocation(t *testing.T) {
	t.Parallel()
	var ossAhead atomic.Int64
	e := newEnv(t, envOptions{stack: inproc.Options{Now: func() time.Time { return time.Now().Add(time.Duration(ossAhead.Load())) }}})
	bg := context.Background()
	admin := func(key string) {
		if err := e.bucket.PutObject(key, strings.NewReader("object without an event")); err != nil {
			t.Fatal(err)
		}
	}
	before := e.upload("cam-01", "before.mp4", []byte("clip before"), time.Now())
	beforeQuiet := e.stack.Prefix() + "cam-01/2026/12/02/quiet-before.mp4"
	admin(beforeQuiet)
	e.waitIndexed(before.Key)

	e.offset.Store(int64(5 * time.Second))
	if err := e.console.SetRevoked(bg, "cam-01", true); err != nil {
		t.Fatal(err)
	}
	ossAhead.Store(int64(10 * time.Second))
	// The device is not cut off here (the console's list reaches no broker in this
	// test), as with credentials obtained before the revocation and no bucket policy.
	after := e.upload("cam-01", "after.mp4", []byte("clip after"), time.Now())
	afterQuiet := e.stack.Prefix() + "cam-01/2026/12/02/quiet-after.mp4"
	admin(afterQuiet)
	other := e.upload("cam-02", "other.mp4", []byte("another device"), time.Now())

	var c *Clip
	testutil.WaitFor(t, "the event of the object written after the revocation", func() bool {
		var err error
		c, err = e.db.Clip(bg, after.Key)
		return err == nil
	})
	if c.Verified || c.Reason != string(events.ReasonRevoked) {
		t.Fatalf("object written after the revocation: verified %v, reason %q", c.Verified, c.Reason)
	}
	if c := e.waitIndexed(other.Key); !c.Verified {
		t.Fatalf("another device's object: %+v", c)
	}
	if c, err := e.db.Clip(bg, before.Key); err != nil || !c.Verified {
		t.Fatalf("object written before the revocation: %+v, %v", c, err)
	}
	if _, err := e.console.Reconcile(bg); err != nil {
		t.Fatal(err)
	}
	if c, err := e.db.Clip(bg, afterQuiet); err != nil || c.Verified || c.Reason != string(events.ReasonRevoked) || !c.Reconciled {
		t.Fatalf("reconciled object written after the revocation: %+v, %v", c, err)
	}
	if c, err := e.db.Clip(bg, beforeQuiet); err != nil || !c.Verified {
		t.Fatalf("reconciled object written before the revocation: %+v, %v", c, err)
	}
	if st := e.console.Stats(); st.Consumer.Rejected[events.ReasonRevoked] < 1 {
		t.Fatalf("consumer stats: %+v", st.Consumer)
	}
}
