package console

import (
	"bytes"
	"context"
	"encoding/json"

	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	"github.com/rs/zerolog"
	"golang.org/x/crypto/bcrypt"

	"github.com/clipgate/clipgate/clipgatetest"
	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/internal/testutil"
	"github.com/clipgate/clipgate/topics"
)

const (
	testAdmin    = DefaultAdminName
	testPassword = "correct horse battery staple"
)

// testHash is testPassword's bcrypt hash at the minimum cost (logins stay cheap).
var testHash = func() string {
	h, err := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
	if err != nil {
		panic(err)
	}
	return string(h)
}()

// env is a console on a clipgatetest stack.
type env struct {
	t       testing.TB
	stack   *inproc.Stack
	db      *DB
	console *Console
	bucket  *oss.Bucket  // admin access
	offset  atomic.Int64 // added to the console's clock
	kits    map[string]*devicekit.Kit
	// restart starts the stack again on its addresses and keys (with brokerLater).
	restart func()
}

type envOptions struct {
	dialect Dialect
	stack   inproc.Options
	config  func(*Config)
	noStart bool // the caller starts the console
	denyOSS bool // DenyRoleARN is the stack's role
	// serviceRole is the console's account (default topics.RoleConsumer).
	serviceRole topics.Role
	// brokerLater stops the stack before the console starts (implies noStart): nothing
	// listens on its addresses (held for the test) until env.restart starts it again.
	brokerLater bool
	// db is the store to use instead of a fresh SQLite file (benchmarks seed it).
	db *DB
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	if o.dialect == "" {
		o.dialect = SQLite
	}
	e := &env{t: t, kits: map[string]*devicekit.Kit{}}
	if o.brokerLater {
		o.stack.Dir, o.noStart = t.TempDir(), true
		o.stack.MQTTAddr, o.stack.OSSAddr, o.stack.STSAddr = clipgatetest.HoldAddr(t), clipgatetest.HoldAddr(t), clipgatetest.HoldAddr(t)
	}
	e.stack = inproc.New(t, o.stack)
	if e.db = o.db; e.db == nil {
		e.db = openTestDB(t, o.dialect)
	}
	client, err := e.stack.OSSClient()
	if err != nil {
		t.Fatal(err)
	}
	if e.bucket, err = client.Bucket(e.stack.Bucket()); err != nil {
		t.Fatal(err)
	}
	if o.serviceRole == 0 {
		o.serviceRole = topics.RoleConsumer
	}
	user, pass := e.stack.ServiceAccount(o.serviceRole)
	cfg := Config{
		BrokerURL:         e.stack.BrokerURL(),
		Username:          user,
		Password:          pass,
		ClientID:          user + ":console-" + randHex(t, 4),
		Topics:            e.stack.Topics(),
		Bucket:            e.bucket,
		Prefix:            e.stack.Prefix(),
		Store:             e.db,
		Addr:              "127.0.0.1:0",
		PasswordHash:      testHash,
		BcryptCost:        bcrypt.MinCost,
		ReconcileInterval: time.Hour, // tests run passes themselves
		ReconcileMinAge:   -1,
		Now:               func() time.Time { return time.Now().Add(time.Duration(e.offset.Load())) },
		Logger:            testLogger(),
	}
	if o.denyOSS {
		cfg.DenyRoleARN = e.stack.RoleARN()
	}
	if o.config != nil {
		o.config(&cfg)
	}
	if e.console, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	if o.brokerLater {
		if err := e.stack.Close(); err != nil {
			t.Fatal(err)
		}
		e.restart = func() { e.stack = inproc.New(t, o.stack) }
	}
	t.Cleanup(func() {
		for _, k := range e.kits {
			_ = k.Close()
		}
		if err := e.console.Close(); err != nil {
			t.Errorf("console close: %v", err)
		}
	})
	if !o.noStart {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := e.console.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func testLogger() zerolog.Logger {
	if os.Getenv(inproc.LogEnv) == "1" {
		return zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: "15:04:05.000"}).With().Timestamp().Logger()
	}
	return zerolog.Nop()
}

// kit returns a connected device kit for id.
func (e *env) kit(id string) *devicekit.Kit {
	e.t.Helper()
	if k, ok := e.kits[id]; ok {
		return k
	}
	k, err := devicekit.New(e.stack.DeviceConfig(id))
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := k.Connect(ctx); err != nil {
		_ = k.Close()
		e.t.Fatal(err)
	}
	e.kits[id] = k
	return k
}

// closeKit closes the kit of id, if any.
func (e *env) closeKit(id string) {
	if k, ok := e.kits[id]; ok {
		_ = k.Close()
		delete(e.kits, id)
	}
}

// tryConnect connects a new kit for id (closed again) and returns the error.
func (e *env) tryConnect(id string, timeout time.Duration) error {
	e.t.Helper()
	k, err := devicekit.New(e.stack.DeviceConfig(id))
	if err != nil {
		e.t.Fatal(err)
	}
	defer k.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return k.Connect(ctx)
}

// upload uploads data as a video/mp4 clip of device id and returns the event.
func (e *env) upload(id, name string, data []byte, recorded time.Time) *protocol.UploadEvent {
	e.t.Helper()
	return e.uploadAs(id, name, "video/mp4", data, recorded)
}

// uploadAs uploads data as a clip of device id with the given content type.
func (e *env) uploadAs(id, name, contentType string, data []byte, recorded time.Time) *protocol.UploadEvent {
	e.t.Helper()
	path := filepath.Join(e.t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ev, err := e.kit(id).Upload(ctx, devicekit.Clip{Path: path, Name: name, ContentType: contentType, RecordedAt: recorded})
	if err != nil {
		e.t.Fatal(err)
	}
	return ev
}

// waitIndexed waits until key is in the index.
func (e *env) waitIndexed(key string) *Clip {
	e.t.Helper()
	var c *Clip
	testutil.WaitFor(e.t, "clip "+key+" indexed", func() bool {
		var err error
		c, err = e.db.Clip(context.Background(), key)
		return err == nil
	})
	return c
}

// api is a JSON API client with a cookie jar.
type api struct {
	t    testing.TB
	base string
	hc   *http.Client
	csrf string
	// bearer, when set, is sent as an API token.
	bearer string
}

func (e *env) api() *api {
	jar, err := cookiejar.New(nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return &api{t: e.t, base: e.console.URL(), hc: &http.Client{Jar: jar, Timeout: time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// do sends a request; body is JSON-encoded unless it is a string or []byte. It returns
// the status and the body.
func (a *api) do(method, path string, body any, header ...string) (int, []byte) {
	a.t.Helper()
	var r io.Reader
	ctype := "application/json"
	switch b := body.(type) {
	case nil:
	case string:
		r, ctype = strings.NewReader(b), "application/x-www-form-urlencoded"
	case []byte:
		r = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			a.t.Fatal(err)
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, a.base+path, r)
	if err != nil {
		a.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", ctype)
	}
	if a.csrf != "" && method != http.MethodGet {
		req.Header.Set(csrfHeader, a.csrf)
	}
	if a.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+a.bearer)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i])
		} else {
			req.Header.Set(header[i], header[i+1])
		}
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatal(err)
	}
	return resp.StatusCode, out
}

// json sends a request, checks the status and decodes the answer into v (if not nil).
func (a *api) json(method, path string, body any, want int, v any) {
	a.t.Helper()
	status, out := a.do(method, path, body)
	if status != want {
		a.t.Fatalf("%s %s: status %d, want %d: %s", method, path, status, want, out)
	}
	if v != nil {
		reflect.ValueOf(v).Elem().SetZero() // no leftovers from an earlier answer
		if err := json.Unmarshal(out, v); err != nil {
			a.t.Fatalf("%s %s: %v: %s", method, path, err, out)
		}
	}
}

// errorCode returns the code of an API error body.
func errorCode(t testing.TB, body []byte) string {
	t.Helper()
	var e apiErrorBody
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Code == "" {
		t.Fatalf("not an API error: %s", body)
	}
	return e.Error.Code
}

// login logs the client in through the API.
func (a *api) login() {
	a.t.Helper()
	var s sessionInfo
	a.json(http.MethodGet, "/api/session", nil, http.StatusOK, &s)
	if s.Authenticated || s.CSRF == "" {
		a.t.Fatalf("session before login: %+v", s)
	}
	a.csrf = s.CSRF
	a.json(http.MethodPost, "/api/login", map[string]string{"name": testAdmin, "password": testPassword}, http.StatusOK, &s)
	if !s.Authenticated || s.CSRF == "" || s.CSRF == a.csrf {
		a.t.Fatalf("session after login: %+v", s)
	}
	a.csrf = s.CSRF
}

// otherToken returns a token of the same length and alphabet as tok that always differs
// from it (its first character replaced by another).
func otherToken(tok string) string {
	if tok == "" {
		return "x"
	}
	c := byte('x')
	if tok[0] == c {
		c = 'y'
	}
	return string(c) + tok[1:]
}

func clipData(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// testBucket is an OSS client for bucket "clips" at an address where nothing listens,
// for tests that never reach OSS.
func testBucket(t testing.TB) *oss.Bucket {
	t.Helper()
	client, err := oss.New("http://127.0.0.1:1", "test-key-id", "test-key-secret", oss.AuthVersion(oss.AuthV4),
		oss.Region("cn-hangzhou"), oss.ForcePathStyle(true))
	if err != nil {
		t.Fatal(err)
	}
	b, err := client.Bucket("clips")
	if err != nil {
		t.Fatal(err)
	}
	return b
}
