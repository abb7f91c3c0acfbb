package localcloud

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	osv2 "github.com/aliyun/alibabacloud-oss-go-sdk-v2/oss"
	"github.com/aliyun/alibabacloud-oss-go-sdk-v2/oss/credentials"
	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	"github.com/rs/zerolog"
)

const (
	testBucket = "clips"
	testRegion = "cn-hangzhou"
	// testRoleName's policy allows object and listing actions on the test bucket only.
	testRoleName = "camera-uploader"
)

// ossClock is a settable clock for Config.Now: real time plus an offset.
type ossClock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *ossClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *ossClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

// ossEnv is the local cloud (Start) on loopback ports with a generated admin key, a
// read-only key and a role. With a wrapper it is reached through a fault-injecting proxy.
type ossEnv struct {
	t        testing.TB
	cfg      Config
	srv      *Server
	auth     *Authority
	endpoint string // what clients use: the server, or the proxy in front of it
	clock    *ossClock
	clockMu  sync.Mutex // held by tests that move the clock
	ak, sk   string     // unrestricted long-term key
	roAK     string     // long-term key whose policy allows only reads of the test bucket
	roSK     string

	proxy   *http.Server
	proxyTr *http.Transport // the proxy's connections to the server
	proxyWG sync.WaitGroup
	wrapMu  sync.Mutex
	wrap    func(http.Handler) http.Handler // fault injection in the proxy

	clientsMu  sync.Mutex
	transports []*http.Transport // of every SDK client the env made (see httpClient)
}

// httpClient returns an HTTP client for an SDK client, on a transport of its own that
// restart empties: a connection kept alive to the old server would otherwise be reused
// after the restart, and a request that is not replayable (a DELETE) fails with EOF
// (TestLifecycleRefused, once in a few hundred runs).
func (e *ossEnv) httpClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	e.clientsMu.Lock()
	e.transports = append(e.transports, tr)
	e.clientsMu.Unlock()
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}
}

type envOption func(*Config)

func newOSSEnv(t testing.TB, opts ...envOption) *ossEnv {
	t.Helper()
	e := &ossEnv{t: t, clock: &ossClock{}}
	e.ak, e.sk = "LTAI"+randomHex(8, false), randomHex(15, false)
	e.roAK, e.roSK = "LTAIro"+randomHex(6, false), randomHex(15, false)
	e.cfg = Config{
		DataDir: t.TempDir(),
		Buckets: []string{testBucket, "other-bucket"},
		Keys: []AccessKey{
			{ID: e.ak, Secret: e.sk},
			{ID: e.roAK, Secret: e.roSK, Policy: `{"Version":"1","Statement":[{"Effect":"Allow","Action":["oss:GetObject","oss:ListObjects"],"Resource":["acs:oss:*:*:clips","acs:oss:*:*:clips/*"]}]}`},
		},
		Roles:  []Role{{Name: testRoleName, Policy: `{"Version":"1","Statement":[{"Effect":"Allow","Action":["oss:*"],"Resource":["acs:oss:*:*:clips","acs:oss:*:*:clips/*"]}]}`}},
		Now:    e.clock.Now,
		Logger: zerolog.New(io.Discard),
	}
	for _, o := range opts {
		o(&e.cfg)
	}
	e.start()
	t.Cleanup(e.stop)
	return e
}

// start starts the local cloud over the data directory (on the previous OSS port when
// restarting).
func (e *ossEnv) start() {
	e.t.Helper()
	srv, err := Start(e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.srv, e.auth = srv, srv.Authority()
	e.cfg.OSSAddr = strings.TrimPrefix(srv.OSSEndpoint(), "http://")
	if e.proxy == nil {
		e.endpoint = srv.OSSEndpoint()
	}
}

// stop stops the server (and the proxy, when the test ends).
func (e *ossEnv) stop() {
	if e.srv != nil {
		if err := e.srv.Close(); err != nil {
			e.t.Error(err)
		}
		e.srv = nil
	}
}

// restart stops the server and starts a new one over the same data directory and port.
func (e *ossEnv) restart() {
	e.t.Helper()
	e.stop()
	if e.proxyTr != nil {
		e.proxyTr.CloseIdleConnections() // they went to the old server
	}
	e.clientsMu.Lock()
	for _, tr := range e.transports {
		tr.CloseIdleConnections() // so do these
	}
	e.clientsMu.Unlock()
	e.start()
}

// setWrap routes clients through a proxy whose handler is wrap(forward to the server); nil
// forwards unchanged.
func (e *ossEnv) setWrap(wrap func(http.Handler) http.Handler) {
	e.t.Helper()
	e.wrapMu.Lock()
	e.wrap = wrap
	e.wrapMu.Unlock()
	if e.proxy != nil {
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	target, _ := url.Parse(e.srv.OSSEndpoint())
	e.proxyTr = &http.Transport{}
	rp := &httputil.ReverseProxy{
		Transport:     e.proxyTr,
		Rewrite:       func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.Out.Host = pr.In.Host },
		FlushInterval: -1,
		ErrorLog:      log.New(io.Discard, "", 0),
	}
	e.proxy = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.wrapMu.Lock()
		wrap := e.wrap
		e.wrapMu.Unlock()
		var h http.Handler = rp
		if wrap != nil {
			h = wrap(h)
		}
		h.ServeHTTP(w, r)
	}), ReadHeaderTimeout: 10 * time.Second}
	e.endpoint = "http://" + ln.Addr().String()
	e.proxyWG.Add(1)
	go func() {
		defer e.proxyWG.Done()
		_ = e.proxy.Serve(ln)
	}()
	e.t.Cleanup(func() {
		_ = e.proxy.Close()
		e.proxyWG.Wait()
		e.proxyTr.CloseIdleConnections()
	})
}

// client returns an aliyun-oss-go-sdk v3 bucket handle for the given key and signature version.
func (e *ossEnv) client(ak, sk string, v oss.AuthVersionType, opts ...oss.ClientOption) *oss.Bucket {
	e.t.Helper()
	opts = append([]oss.ClientOption{oss.AuthVersion(v), oss.Region(testRegion), oss.HTTPClient(e.httpClient())}, opts...)
	c, err := oss.New(e.endpoint, ak, sk, opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	b, err := c.Bucket(testBucket)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

func (e *ossEnv) admin(v oss.AuthVersionType) *oss.Bucket { return e.client(e.ak, e.sk, v) }

// clientV2 returns an alibabacloud-oss-go-sdk-v2 client (V4 signatures by default).
func (e *ossEnv) clientV2(ak, sk, token string, opts ...func(*osv2.Config)) *osv2.Client {
	cfg := osv2.LoadDefaultConfig().
		WithCredentialsProvider(credentials.NewStaticCredentialsProvider(ak, sk, token)).
		WithRegion(testRegion).
		WithEndpoint(e.endpoint).
		WithUsePathStyle(true).
		WithRetryMaxAttempts(1).
		WithHttpClient(e.httpClient())
	for _, o := range opts {
		o(cfg)
	}
	return osv2.NewClient(cfg)
}

// assumeRole issues temporary credentials for the test role with a session policy.
func (e *ossEnv) assumeRole(sessionPolicy string, d time.Duration) *TempCredentials {
	e.t.Helper()
	c, err := e.auth.AssumeRole(e.ak, e.auth.RoleARN(testRoleName), "cam-1", sessionPolicy, d, e.clock.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

var authVersions = []struct {
	name string
	v    oss.AuthVersionType
}{{"V1", oss.AuthV1}, {"V2", oss.AuthV2}, {"V4", oss.AuthV4}}

// svcCode returns the OSS error code of a v3 SDK error, or "" when err is not a ServiceError.
func svcCode(err error) string {
	var se oss.ServiceError
	if errors.As(err, &se) {
		return se.Code
	}
	return ""
}

// v2Code returns the OSS error code of a v2 SDK error.
func v2Code(err error) string {
	var se *osv2.ServiceError
	if errors.As(err, &se) {
		return se.Code
	}
	return ""
}

func wantOSSCode(t *testing.T, err error, code string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want error %s, got success", code)
	}
	if got := svcCode(err); got != code {
		if got2 := v2Code(err); got2 != code {
			t.Fatalf("want error code %s, got %v", code, err)
		}
	}
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func getAll(t *testing.T, b *oss.Bucket, key string, opts ...oss.Option) []byte {
	t.Helper()
	rc, err := b.GetObject(key, opts...)
	if err != nil {
		t.Fatalf("GetObject %q: %v", key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("GetObject %q: read: %v", key, err)
	}
	return data
}

func mustEqualBytes(t *testing.T, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("content differs: got %d bytes, want %d bytes", len(got), len(want))
	}
}

var bg = context.Background()

func readAllClose(t *testing.T, rc io.ReadCloser) []byte {
	t.Helper()
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
