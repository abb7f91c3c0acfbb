package tokenworker

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/localcloud"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/internal/testutil"
	"github.com/clipgate/clipgate/topics"
)

const (
	testBucket  = "clips-bucket"
	testPrefix  = "clips/"
	testRole    = "device-uploader"
	testKeyID   = "LTAIworkerTestKey01"
	testRegion  = "cn-hangzhou"
	rolePolicy  = `{"Version":"1","Statement":[{"Effect":"Allow","Action":["oss:*"],"Resource":["acs:oss:*:*:clips-bucket","acs:oss:*:*:clips-bucket/*"]}]}`
	testAccount = localcloud.DefaultAccountID
)

// cloud is a running localcloud with a gate in front of its STS endpoint.
type cloud struct {
	srv    *localcloud.Server
	cfg    localcloud.Config
	secret string
	gate   *gate
	auth   *localcloud.Authority
}

// startCloud starts localcloud in a temporary directory with one role and one key, and a
// gate proxy in front of its STS side. cfgFn may adjust the localcloud config.
func startCloud(t testing.TB, cfgFn func(*localcloud.Config)) *cloud {
	t.Helper()
	secret := testutil.RandomText(t, 30)
	cfg := localcloud.Config{
		DataDir: t.TempDir(),
		Keys:    []localcloud.AccessKey{{ID: testKeyID, Secret: secret}},
		Roles:   []localcloud.Role{{Name: testRole, Policy: rolePolicy}},
		Buckets: []string{testBucket},
		Logger:  zerolog.Nop(),
	}
	if cfgFn != nil {
		cfgFn(&cfg)
	}
	srv, err := localcloud.Start(cfg)
	if err != nil {
		t.Fatalf("localcloud.Start: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	auth, err := localcloud.NewAuthority(&cfg)
	if err != nil {
		t.Fatalf("NewAuthority: %v", err)
	}
	g := newGate(t, "http://"+srv.STSEndpoint())
	return &cloud{srv: srv, cfg: cfg, secret: secret, gate: g, auth: auth}
}

// gate is a reverse proxy in front of STS that counts requests and can hold them until
// released, so that tests make STS slow deterministically.
type gate struct {
	srv     *httptest.Server
	calls   atomic.Int64
	mu      sync.Mutex
	hold    chan struct{} // non-nil: requests wait until it is closed
	entered chan struct{} // a request arrived (buffered)
}

func newGate(t testing.TB, target string) *gate {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{entered: make(chan struct{}, 64)}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{Proxy: nil}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.calls.Add(1)
		g.mu.Lock()
		hold := g.hold
		g.mu.Unlock()
		g.entered <- struct{}{}
		if hold != nil {
			select {
			case <-hold:
			case <-r.Context().Done():
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(g.srv.Close)
	return g
}

// endpoint is the gate's host:port.
func (g *gate) endpoint() string { return g.srv.Listener.Addr().String() }

// close holds every later request until the returned release is called.
func (g *gate) close() (release func()) {
	ch := make(chan struct{})
	g.mu.Lock()
	g.hold = ch
	g.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			g.hold = nil
			g.mu.Unlock()
			close(ch)
		})
	}
}

// baseConfig is a worker config against c (through its gate).
func (c *cloud) config(fleet *identity.Keyring) Config {
	return Config{
		FleetKeys: fleet,
		STS: STSConfig{
			Endpoint:        c.gate.endpoint(),
			Scheme:          "http",
			Region:          testRegion,
			AccessKeyID:     testKeyID,
			AccessKeySecret: c.secret,
			RoleARN:         "acs:ram::" + testAccount + ":role/" + testRole,
			Timeout:         30 * time.Second,
		},
		OSS:    protocol.OSSInfo{Endpoint: c.srv.OSSEndpoint(), Region: testRegion, Bucket: testBucket, Prefix: testPrefix},
		Logger: zerolog.Nop(),
	}
}

func newFleetKey(t testing.TB) *identity.Keyring {
	t.Helper()
	k, err := identity.NewFleetKeyring()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newWorker(t testing.TB, cfg Config) *Worker {
	t.Helper()
	w, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return w
}

// request is a device-side auth request under construction.
type request struct {
	protocol.AuthRequest
	key []byte // signing key
}

var reqSeq atomic.Int64

// newRequest returns a request from device, signed with the device key of fleet, stamped ts.
func newRequest(t testing.TB, fleet *identity.Keyring, device, mode string, ts time.Time) *request {
	t.Helper()
	nonce := make([]byte, protocol.NonceSize)
	if _, err := rand.Read(nonce); err != nil {
		t.Fatal(err)
	}
	r := &request{
		AuthRequest: protocol.AuthRequest{
			V:      protocol.Version,
			ID:     "req-" + testutil.RandomText(t, 8) + "-" + itoa(reqSeq.Add(1)),
			Device: device,
			TS:     ts.UTC().Format(time.RFC3339Nano),
			Nonce:  base64.RawURLEncoding.EncodeToString(nonce),
			Mode:   clipgate.Mode(mode),
		},
	}
	if fleet != nil { // nil: the caller makes a certificate request
		r.KID, r.key = fleet.CurrentID(), requestKey(t, fleet, device)
		r.sign()
	}
	return r
}

// requestKey is the request key of device under fleet's current key.
func requestKey(t testing.TB, fleet *identity.Keyring, device string) []byte {
	t.Helper()
	k, err := identity.NewDeviceKey(fleet, device)
	if err != nil {
		t.Fatal(err)
	}
	return k.Request
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func (r *request) sign() { r.Sig = identity.Sign(r.key, r.SigningString()) }

func (r *request) payload(t testing.TB) []byte {
	t.Helper()
	b, err := json.Marshal(&r.AuthRequest)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (r *request) topic() string { return topics.Default().AuthRequest(r.Device) }

// decodeReply strictly decodes a reply and checks the fields every reply must have.
func decodeReply(t testing.TB, wantID string, b []byte) *protocol.AuthReply {
	t.Helper()
	rep, err := protocol.DecodeAuthReply(b)
	if err != nil {
		t.Fatalf("reply does not decode: %v\n%s", err, b)
	}
	if rep.ID != wantID {
		t.Fatalf("reply ID %q, want %q", rep.ID, wantID)
	}
	if rep.ServerTime.IsZero() {
		t.Fatalf("reply has no serverTime: %s", b)
	}
	return rep
}

// wantError checks that b is a failed reply with code.
func wantError(t testing.TB, wantID string, b []byte, code protocol.Code) *protocol.AuthReply {
	t.Helper()
	rep := decodeReply(t, wantID, b)
	if rep.OK || rep.Error == nil {
		t.Fatalf("reply is not an error: %s", b)
	}
	if rep.Error.Code != code {
		t.Fatalf("reply code %q (%s), want %q", rep.Error.Code, rep.Error.Message, code)
	}
	if rep.Error.Message == "" {
		t.Fatalf("error reply without a message: %s", b)
	}
	return rep
}

// openCredentials returns the credentials of a successful reply, opening sealed ones.
func openCredentials(t testing.TB, r *request, rep *protocol.AuthReply) *protocol.Credentials {
	t.Helper()
	if !rep.OK {
		t.Fatalf("reply is not OK: %+v", rep.Error)
	}
	if rep.Credentials != nil {
		return rep.Credentials
	}
	sealed, err := base64.RawURLEncoding.DecodeString(rep.Sealed)
	if err != nil {
		t.Fatalf("sealed is not base64url: %v", err)
	}
	nonce, err := base64.RawURLEncoding.DecodeString(r.Nonce)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := identity.Open(r.key, nonce, sealed, ReplyAAD(r.Device, r.ID))
	if err != nil {
		t.Fatalf("cannot open sealed credentials: %v", err)
	}
	var cr protocol.Credentials
	if err := json.Unmarshal(plain, &cr); err != nil {
		t.Fatalf("sealed plaintext is not credentials JSON: %v", err)
	}
	if err := protocol.ValidateCredentials(&cr); err != nil {
		t.Fatalf("sealed credentials incomplete: %v", err)
	}
	return &cr
}
