package localcloud

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	sdkerrors "github.com/aliyun/alibaba-cloud-sdk-go/sdk/errors"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/requests"
	"github.com/aliyun/alibaba-cloud-sdk-go/services/sts"
	"github.com/clipgate/clipgate/internal/testutil"
	"github.com/google/uuid"
	"github.com/rs/zerolog"
)

// testClock is a settable clock that runs with real time, so the SDK's own timestamps
// stay inside the window while tests can move the server forward.
type testClock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

type stsFixture struct {
	endpoint string // host:port
	auth     *Authority
	cfg      Config
	clock    *testClock
	logs     *testutil.SyncBuffer
}

// startSTS serves the STS handler alone on a loopback port.
func startSTS(t *testing.T, mutate func(*Config)) *stsFixture {
	t.Helper()
	f := &stsFixture{clock: &testClock{}, logs: &testutil.SyncBuffer{}}
	cfg := testConfig(t)
	cfg.Now = f.clock.Now
	cfg.Logger = zerolog.New(f.logs)
	if mutate != nil {
		mutate(&cfg)
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	f.cfg = cfg
	if f.auth, err = NewAuthority(&cfg); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: newSTS(&cfg, f.auth), ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	f.endpoint = ln.Addr().String()
	return f
}

func (f *stsFixture) secret(t *testing.T, id string) string {
	t.Helper()
	for _, k := range f.cfg.Keys {
		if k.ID == id {
			return k.Secret
		}
	}
	t.Fatalf("no key %q", id)
	return ""
}

var sdkClientMu sync.Mutex

// recorder remembers the last request the SDK sent, so a test can replay it verbatim.
type recorder struct {
	base   *http.Transport
	mu     sync.Mutex
	method string
	url    string
	header http.Header
	body   []byte
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		_ = req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	r.mu.Lock()
	r.method, r.url, r.header, r.body = req.Method, req.URL.String(), req.Header.Clone(), body
	r.mu.Unlock()
	return r.base.RoundTrip(req)
}

func (r *recorder) replay(t *testing.T) *http.Response {
	t.Helper()
	r.mu.Lock()
	req, err := http.NewRequest(r.method, r.url, bytes.NewReader(r.body))
	if err == nil {
		req.Header = r.header.Clone()
	}
	r.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := r.base.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func (f *stsFixture) client(t *testing.T, ak, sk string) (*sts.Client, *recorder) {
	t.Helper()
	// NewClientWithAccessKey lazily fills a package-level endpoint map without a lock (an SDK
	// race), so clients are created one at a time.
	sdkClientMu.Lock()
	c, err := sts.NewClientWithAccessKey("cn-hangzhou", ak, sk)
	sdkClientMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{base: &http.Transport{Proxy: nil}}
	c.SetTransport(rec)
	t.Cleanup(func() { rec.base.CloseIdleConnections(); c.Shutdown() })
	return c, rec
}

func (f *stsFixture) assume(c *sts.Client, arn, session, pol, dur string) (*sts.AssumeRoleResponse, error) {
	req := sts.CreateAssumeRoleRequest()
	req.Scheme = "http"
	req.Domain = f.endpoint
	req.RoleArn = arn
	req.RoleSessionName = session
	req.Policy = pol
	if dur != "" {
		req.DurationSeconds = requests.Integer(dur)
	}
	return c.AssumeRole(req)
}

func wantSDKCode(t *testing.T, err error, status int, code string) *sdkerrors.ServerError {
	t.Helper()
	var se *sdkerrors.ServerError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v (%T), want server error %s", err, err, code)
	}
	if se.ErrorCode() != code || se.HttpStatus() != status {
		t.Fatalf("error %d %s (%s), want %d %s", se.HttpStatus(), se.ErrorCode(), se.Message(), status, code)
	}
	if _, err := uuid.Parse(se.RequestId()); err != nil {
		t.Errorf("RequestId %q is not a UUID", se.RequestId())
	}
	return se
}

func TestSTSAssumeRoleWithSDK(t *testing.T) {
	t.Parallel()
	f := startSTS(t, nil)
	c, _ := f.client(t, "LTAIworker", f.secret(t, "LTAIworker"))
	// Spaces, '*' and '~' exercise every special case of the RPC percent-encoding.
	pol := `{"Version": "1", "Statement": [{"Effect": "Allow", "Action": ["oss:PutObject"], "Resource": ["acs:oss:*:*:clips/cam-1/~x*"]}]}`
	before := f.clock.Now().UTC().Truncate(time.Second)
	resp, err := f.assume(c, uploaderARN, "cam-1", pol, "900")
	if err != nil {
		t.Fatal(err)
	}
	after := f.clock.Now().UTC()
	if _, err := uuid.Parse(resp.RequestId); err != nil {
		t.Errorf("RequestId %q: %v", resp.RequestId, err)
	}
	if resp.AssumedRoleUser.Arn != uploaderARN+"/cam-1" {
		t.Errorf("Arn = %q", resp.AssumedRoleUser.Arn)
	}
	if !regexp.MustCompile(`^[1-9][0-9]{18}:cam-1$`).MatchString(resp.AssumedRoleUser.AssumedRoleId) {
		t.Errorf("AssumedRoleId = %q", resp.AssumedRoleUser.AssumedRoleId)
	}
	cr := resp.Credentials
	exp, err := time.Parse("2006-01-02T15:04:05Z", cr.Expiration)
	if err != nil {
		t.Fatalf("Expiration %q: %v", cr.Expiration, err)
	}
	if exp.Before(before.Add(900*time.Second)) || exp.After(after.Add(900*time.Second)) {
		t.Errorf("Expiration %v not 900 s after the call (%v..%v)", exp, before, after)
	}
	if !strings.HasPrefix(cr.AccessKeyId, "STS.") || cr.AccessKeySecret == "" || cr.SecurityToken == "" {
		t.Fatalf("credentials = %+v", cr)
	}
	p, err := f.auth.Resolve(cr.AccessKeyId, cr.SecurityToken, f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if p.Secret != cr.AccessKeySecret || p.Role != "Uploader" || p.SessionName != "cam-1" || len(p.Policies) != 2 {
		t.Errorf("principal = %+v", p)
	}
	// The token expires with the settable clock.
	f.clock.Advance(901 * time.Second)
	_, err = f.auth.Resolve(cr.AccessKeyId, cr.SecurityToken, f.clock.Now())
	wantCode(t, err, 403, "SecurityTokenExpired", "0002-00000007")
	// A tampered token is refused.
	_, err = f.auth.Resolve(cr.AccessKeyId, tamper(cr.SecurityToken), f.clock.Now())
	wantCode(t, err, 403, "InvalidSecurityToken", "0002-00000006")

	// Without a DurationSeconds the credentials last an hour.
	f.clock.Advance(-901 * time.Second)
	resp, err = f.assume(c, uploaderARN, "cam-2", "", "")
	if err != nil {
		t.Fatal(err)
	}
	exp, _ = time.Parse("2006-01-02T15:04:05Z", resp.Credentials.Expiration)
	if d := exp.Sub(f.clock.Now()); d < 59*time.Minute || d > time.Hour {
		t.Errorf("default lifetime %v, want 1h", d)
	}
}

func TestSTSErrorsWithSDK(t *testing.T) {
	t.Parallel()
	f := startSTS(t, nil)
	worker, _ := f.client(t, "LTAIworker", f.secret(t, "LTAIworker"))

	wrong, _ := f.client(t, "LTAIworker", f.secret(t, "LTAIworker")+"x")
	_, err := f.assume(wrong, uploaderARN, "cam-1", "", "")
	se := wantSDKCode(t, err, 400, "SignatureDoesNotMatch")
	// The SDK compares our string to sign with its own: equal means only the secret is wrong.
	if !strings.Contains(se.Recommend(), "InvalidAccessKeySecret") {
		t.Errorf("string to sign differs from the SDK's: %s", se.Recommend())
	}

	unknown, _ := f.client(t, "LTAInobody", "whatever-secret")
	_, err = f.assume(unknown, uploaderARN, "cam-1", "", "")
	wantSDKCode(t, err, 404, "InvalidAccessKeyId.NotFound")

	noAssume, _ := f.client(t, "LTAInoassume", f.secret(t, "LTAInoassume"))
	_, err = f.assume(noAssume, uploaderARN, "cam-1", "", "")
	wantSDKCode(t, err, 403, "NoPermission")

	longPol := `{"Version":"1","Statement":[{"Effect":"Allow","Action":["oss:PutObject"],"Resource":["acs:oss:*:*:clips/` +
		strings.Repeat("a", 1900) + `/*"]}]}`
	longPol += strings.Repeat(" ", 2049-len(longPol))

	cases := []struct {
		name, arn, session, pol, dur string
		status                       int
		code                         string
	}{
		{"unknown role", "acs:ram::1000000000000000:role/nobody", "cam-1", "", "", 404, "EntityNotExist.Role"},
		{"malformed arn", "role/uploader", "cam-1", "", "", 400, "InvalidParameter.RoleArn"},
		{"missing arn", "", "cam-1", "", "", 400, "MissingParameter.RoleArn"},
		{"duration 899", uploaderARN, "cam-1", "", "899", 400, "InvalidParameter.DurationSeconds"},
		{"duration max+1", uploaderARN, "cam-1", "", strconv.Itoa(2*3600 + 1), 400, "InvalidParameter.DurationSeconds"},
		{"duration not a number", uploaderARN, "cam-1", "", "1h", 400, "InvalidParameter.DurationSeconds"},
		{"policy 2049 chars", uploaderARN, "cam-1", longPol, "", 400, "InvalidParameter.PolicySize"},
		{"policy grammar", uploaderARN, "cam-1", `{"Version":"1","Statement":[{"Effect":"Allow","Action":"oss:PutObject"`, "", 400, "InvalidParameter.PolicyGrammar"},
		{"session name char", uploaderARN, "cam 1", "", "", 400, "InvalidParameter.RoleSessionName"},
		{"session name short", uploaderARN, "c", "", "", 400, "InvalidParameter.RoleSessionName"},
		{"session name long", uploaderARN, strings.Repeat("s", 65), "", "", 400, "InvalidParameter.RoleSessionName"},
	}
	for _, c := range cases {
		_, err := f.assume(worker, c.arn, c.session, c.pol, c.dur)
		var se *sdkerrors.ServerError
		if !errors.As(err, &se) || se.ErrorCode() != c.code || se.HttpStatus() != c.status {
			t.Errorf("%s: err = %v, want %d %s", c.name, err, c.status, c.code)
		}
	}
	// The PolicySize message states the limit as it is applied: at most 2048 characters.
	_, err = f.assume(worker, uploaderARN, "cam-1", longPol, "")
	if se := wantSDKCode(t, err, 400, "InvalidParameter.PolicySize"); !strings.Contains(se.Message(), "at most 2048 characters") {
		t.Errorf("PolicySize message %q", se.Message())
	}
	// The longest legal policy and the longest legal duration pass, also in multi-byte
	// characters (the limit counts characters, not bytes).
	if _, err := f.assume(worker, uploaderARN, "cam-1", strings.Replace(longPol[:2048], strings.Repeat("a", 1900), strings.Repeat("é", 1900), 1), ""); err != nil {
		t.Errorf("2048 characters in more bytes: %v", err)
	}
	if _, err := f.assume(worker, uploaderARN, "cam-1", longPol[:2048], "7200"); err != nil {
		t.Errorf("2048-character policy, 7200 s: %v", err)
	}
}

func TestSTSReplayedNonce(t *testing.T) {
	t.Parallel()
	f := startSTS(t, nil)
	c, rec := f.client(t, "LTAIworker", f.secret(t, "LTAIworker"))
	if _, err := f.assume(c, uploaderARN, "cam-1", "", ""); err != nil {
		t.Fatal(err)
	}
	resp := rec.replay(t)
	code, status := decodeSTSError(t, resp)
	if status != 400 || code != "SignatureNonceUsed" {
		t.Fatalf("replay: %d %s, want 400 SignatureNonceUsed", status, code)
	}
	// Once the timestamp window has passed, the timestamp refuses the replay.
	f.clock.Advance(16 * time.Minute)
	code, status = decodeSTSError(t, rec.replay(t))
	if status != 400 || code != "InvalidTimeStamp.Expired" {
		t.Fatalf("late replay: %d %s, want 400 InvalidTimeStamp.Expired", status, code)
	}
	// A fresh request still works after the clock moved (the SDK signs with real time, so
	// move the server back first).
	f.clock.Advance(-16 * time.Minute)
	if _, err := f.assume(c, uploaderARN, "cam-1", "", ""); err != nil {
		t.Fatal(err)
	}
}

func TestSTSThrottling(t *testing.T) {
	t.Parallel()
	// One call per 1000 s: the second call in a test run is always over the limit.
	f := startSTS(t, func(c *Config) { c.STSRate = 0.001 })
	c, _ := f.client(t, "LTAIworker", f.secret(t, "LTAIworker"))
	if _, err := f.assume(c, uploaderARN, "cam-1", "", ""); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		_, err := f.assume(c, uploaderARN, "cam-1", "", "")
		wantSDKCode(t, err, 400, "Throttling.User")
	}
	// Bad signatures are refused before they can use up the budget of the real caller.
	wrong, _ := f.client(t, "LTAIworker", "not-the-secret")
	_, err := f.assume(wrong, uploaderARN, "cam-1", "", "")
	wantSDKCode(t, err, 400, "SignatureDoesNotMatch")
}

// decodeSTSError checks the error body shape and returns its code and the HTTP status.
func decodeSTSError(t *testing.T, resp *http.Response) (string, int) {
	t.Helper()
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q", ct)
	}
	var m map[string]string
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	for _, k := range []string{"RequestId", "HostId", "Code", "Message", "Recommend"} {
		if m[k] == "" {
			t.Errorf("error body lacks %s: %s", k, body)
		}
	}
	if len(m) != 5 {
		t.Errorf("error body has extra fields: %s", body)
	}
	if resp.Header.Get("x-acs-request-id") != m["RequestId"] {
		t.Errorf("x-acs-request-id %q != RequestId %q", resp.Header.Get("x-acs-request-id"), m["RequestId"])
	}
	return m["Code"], resp.StatusCode
}

// signed returns RPC parameters for AssumeRole signed with secret, as the SDK would send
// them; edit may change them before signing.
func signed(id, secret, method string, now time.Time, edit func(url.Values)) url.Values {
	v := url.Values{
		"Action": {"AssumeRole"}, "Version": {stsVersion}, "Format": {"JSON"},
		"Timestamp": {now.UTC().Format("2006-01-02T15:04:05Z")}, "SignatureMethod": {"HMAC-SHA1"},
		"SignatureVersion": {"1.0"}, "SignatureType": {""}, "SignatureNonce": {uuid.NewString()},
		"AccessKeyId": {id}, "RegionId": {"cn-hangzhou"},
		"RoleArn": {uploaderARN}, "RoleSessionName": {"cam-1"},
	}
	if edit != nil {
		edit(v)
	}
	params := map[string]string{}
	for k := range v {
		params[k] = v.Get(k)
	}
	v.Set("Signature", rpcSignature(secret, rpcStringToSign(method, params)))
	return v
}

func TestSTSHandWrittenRequests(t *testing.T) {
	t.Parallel()
	f := startSTS(t, nil)
	secret := f.secret(t, "LTAIworker")
	base := "http://" + f.endpoint + "/"
	hc := &http.Client{Transport: &http.Transport{Proxy: nil}}
	t.Cleanup(hc.CloseIdleConnections)
	now := f.clock.Now()

	post := func(path, query, body string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, "http://"+f.endpoint+path+query, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	form := func(edit func(url.Values)) string { return signed("LTAIworker", secret, "POST", now, edit).Encode() }

	type tc struct {
		name   string
		do     func() *http.Response
		status int
		code   string
	}
	cases := []tc{
		{"PUT", func() *http.Response {
			req, _ := http.NewRequest(http.MethodPut, base, strings.NewReader(form(nil)))
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			return resp
		}, 405, "UnsupportedHTTPMethod"},
		{"other path", func() *http.Response { return post("/x", "", form(nil)) }, 404, "InvalidAction.NotFound"},
		{"no parameters", func() *http.Response { return post("/", "", "") }, 400, "MissingParameter"},
		{"no signature", func() *http.Response {
			v, _ := url.ParseQuery(form(nil))
			v.Del("Signature")
			return post("/", "", v.Encode())
		}, 400, "MissingParameter"},
		{"bad version", func() *http.Response {
			return post("/", "", form(func(v url.Values) { v.Set("Version", "2014-01-01") }))
		}, 400, "InvalidVersion"},
		{"other action", func() *http.Response {
			return post("/", "", form(func(v url.Values) { v.Set("Action", "GetFederationToken") }))
		}, 404, "InvalidAction.NotFound"},
		{"xml", func() *http.Response { return post("/", "", form(func(v url.Values) { v.Set("Format", "XML") })) }, 400, "InvalidParameter.Format"},
		{"sha256", func() *http.Response {
			return post("/", "", form(func(v url.Values) { v.Set("SignatureMethod", "HMAC-SHA256") }))
		}, 400, "InvalidParameter.SignatureMethod"},
		{"signature version", func() *http.Response {
			return post("/", "", form(func(v url.Values) { v.Set("SignatureVersion", "2.0") }))
		}, 400, "InvalidParameter.SignatureVersion"},
		{"bearer token", func() *http.Response {
			return post("/", "", form(func(v url.Values) { v.Set("SignatureType", "BEARERTOKEN") }))
		}, 400, "InvalidParameter.SignatureType"},
		{"timestamp garbage", func() *http.Response {
			return post("/", "", form(func(v url.Values) { v.Set("Timestamp", "yesterday") }))
		}, 400, "InvalidTimeStamp.Format"},
		{"timestamp with offset", func() *http.Response {
			return post("/", "", form(func(v url.Values) { v.Set("Timestamp", now.Format("2006-01-02T15:04:05+08:00")) }))
		}, 400, "InvalidTimeStamp.Format"},
		{"timestamp 16 min old", func() *http.Response {
			return post("/", "", form(func(v url.Values) {
				v.Set("Timestamp", now.Add(-16*time.Minute).UTC().Format("2006-01-02T15:04:05Z"))
			}))
		}, 400, "InvalidTimeStamp.Expired"},
		{"timestamp 16 min ahead", func() *http.Response {
			return post("/", "", form(func(v url.Values) {
				v.Set("Timestamp", now.Add(16*time.Minute).UTC().Format("2006-01-02T15:04:05Z"))
			}))
		}, 400, "InvalidTimeStamp.Expired"},
		{"signature tampered", func() *http.Response {
			v, _ := url.ParseQuery(form(nil))
			v.Set("RoleSessionName", "cam-2")
			return post("/", "", v.Encode())
		}, 400, "SignatureDoesNotMatch"},
		{"signed as GET, sent as POST", func() *http.Response {
			return post("/", "", signed("LTAIworker", secret, "GET", now, nil).Encode())
		}, 400, "SignatureDoesNotMatch"},
		{"garbage security token", func() *http.Response {
			return post("/", "", form(func(v url.Values) { v.Set("SecurityToken", "x") }))
		}, 400, "InvalidSecurityToken.Malformed"},
		{"duplicate parameter", func() *http.Response {
			return post("/", "?RoleSessionName=cam-9", form(nil))
		}, 400, "InvalidParameter"},
		{"bad escape", func() *http.Response { return post("/", "", form(nil)+"&x=%zz") }, 400, "InvalidParameter"},
		{"huge body", func() *http.Response {
			return post("/", "", form(nil)+"&Pad="+strings.Repeat("p", stsMaxBody))
		}, 413, "InvalidParameter"},
		{"duration zero", func() *http.Response {
			return post("/", "", form(func(v url.Values) { v.Set("DurationSeconds", "0") }))
		}, 400, "InvalidParameter.DurationSeconds"},
		{"duration huge", func() *http.Response {
			return post("/", "", form(func(v url.Values) { v.Set("DurationSeconds", "99999999999999999999") }))
		}, 400, "InvalidParameter.DurationSeconds"},
		{"external id", func() *http.Response {
			return post("/", "", form(func(v url.Values) { v.Set("ExternalId", "x") }))
		}, 400, "InvalidParameter.ExternalId"},
		{"user key not found", func() *http.Response {
			return post("/", "", signed("LTAInobody", secret, "POST", now, nil).Encode())
		}, 404, "InvalidAccessKeyId.NotFound"},
	}
	for _, c := range cases {
		code, status := decodeSTSError(t, c.do())
		if status != c.status || code != c.code {
			t.Errorf("%s: %d %s, want %d %s", c.name, status, code, c.status, c.code)
		}
	}

	// Accepted shapes: parameters in the query, milliseconds in the timestamp, GET.
	ok := []func() *http.Response{
		func() *http.Response { return post("/", "?"+form(nil), "") },
		func() *http.Response {
			return post("/", "", form(func(v url.Values) { v.Set("Timestamp", now.UTC().Format("2006-01-02T15:04:05.000Z")) }))
		},
		func() *http.Response {
			resp, err := hc.Get(base + "?" + signed("LTAIworker", secret, "GET", now, nil).Encode())
			if err != nil {
				t.Fatal(err)
			}
			return resp
		},
		func() *http.Response {
			return post("/", "", form(func(v url.Values) { v.Set("ExternalId", "abc=,.@:/-_+") }))
		},
	}
	for i, do := range ok {
		resp := do()
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("accepted shape %d: %d %s", i, resp.StatusCode, body)
			continue
		}
		var r stsAssumeRoleResponse
		if err := json.Unmarshal(body, &r); err != nil || r.Credentials.SecurityToken == "" {
			t.Errorf("accepted shape %d: body %s: %v", i, body, err)
		}
	}
}

func TestSTSLogsOneLinePerRequestWithoutSecrets(t *testing.T) {
	t.Parallel()
	f := startSTS(t, nil)
	secret := f.secret(t, "LTAIworker")
	c, _ := f.client(t, "LTAIworker", secret)
	resp, err := f.assume(c, uploaderARN, "cam-1", "", "")
	if err != nil {
		t.Fatal(err)
	}
	wrong, _ := f.client(t, "LTAIworker", secret+"x")
	if _, err := f.assume(wrong, uploaderARN, "cam-1", "", ""); err == nil {
		t.Fatal("wrong secret accepted")
	}
	logs := f.logs.String()
	lines := strings.Split(strings.TrimSpace(logs), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d log lines, want 2:\n%s", len(lines), logs)
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		for _, k := range []string{"method", "action", "status", "duration", "request_id"} {
			if _, ok := m[k]; !ok {
				t.Errorf("log line lacks %s: %s", k, l)
			}
		}
	}
	if !strings.Contains(lines[0], resp.RequestId) || !strings.Contains(lines[1], "SignatureDoesNotMatch") {
		t.Errorf("log lines do not identify the requests:\n%s", logs)
	}
	for _, s := range []string{secret, resp.Credentials.AccessKeySecret, resp.Credentials.SecurityToken} {
		if strings.Contains(logs, s) {
			t.Fatalf("a secret reached the log:\n%s", logs)
		}
	}
}

func TestNonceCacheBounded(t *testing.T) {
	t.Parallel()
	c := nonceCache{seen: map[string]time.Time{}, max: 3}
	now := t0
	for _, n := range []string{"a", "b", "c"} {
		if err := c.use(n, now.Add(time.Minute), now); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.use("a", now.Add(time.Minute), now); err == nil || err.Code != "SignatureNonceUsed" {
		t.Fatalf("replay: %v", err)
	}
	if err := c.use("d", now.Add(time.Minute), now); err == nil || err.Code != "ServiceUnavailable" || err.Status != 503 {
		t.Fatalf("full cache: %v", err)
	}
	// Once the entries expire they make room, and an expired nonce no longer counts.
	later := now.Add(2 * time.Minute)
	if err := c.use("d", later.Add(time.Minute), later); err != nil {
		t.Fatal(err)
	}
	if err := c.use("a", later.Add(time.Minute), later); err != nil {
		t.Fatal(err)
	}
	if len(c.seen) != 2 {
		t.Errorf("%d nonces kept, want 2", len(c.seen))
	}
}

func TestRPCEscape(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"a b":   "a%20b",
		"a*b":   "a%2Ab",
		"a~b":   "a~b",
		"a+b":   "a%2Bb",
		"a/b=c": "a%2Fb%3Dc",
		"é":     "%C3%A9",
		"-_.":   "-_.",
	}
	for in, want := range cases {
		if got := rpcEscape(in); got != want {
			t.Errorf("rpcEscape(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzSTSRequest feeds arbitrary methods, query strings and bodies to the STS handler:
// it must answer every one with a well-formed STS error (or success), never a 5xx.
func FuzzSTSRequest(f *testing.F) {
	cfg := testConfig(f)
	cfg, err := cfg.withDefaults()
	if err != nil {
		f.Fatal(err)
	}
	cfg.Logger = zerolog.Nop()
	a, err := NewAuthority(&cfg)
	if err != nil {
		f.Fatal(err)
	}
	h := newSTS(&cfg, a)
	good := signed("LTAIworker", cfg.Keys[0].Secret, "POST", time.Now(), nil).Encode()
	f.Add("POST", "", []byte(good))
	f.Add("POST", good, []byte(nil))
	f.Add("GET", "Action=AssumeRole&Version=2015-04-01", []byte(nil))
	f.Add("POST", "x=%zz", []byte("a=b&a=c"))
	f.Add("DELETE", "", []byte("{}"))
	f.Fuzz(func(t *testing.T, method, query string, body []byte) {
		r := &http.Request{
			Method: method, URL: &url.URL{Path: "/", RawQuery: query}, Host: "127.0.0.1",
			Header:        http.Header{"Content-Type": {"application/x-www-form-urlencoded"}},
			Body:          io.NopCloser(bytes.NewReader(body)),
			ContentLength: int64(len(body)),
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code >= 500 && w.Code != http.StatusServiceUnavailable {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		var m map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
			t.Fatalf("body %q: %v", w.Body, err)
		}
		if w.Code != 200 && (m["Code"] == "" || m["Code"] == nil) {
			t.Fatalf("error without Code: %s", w.Body)
		}
	})
}

// tamper returns s with its fifth-last character, a whole base64 digit of the token's MAC,
// changed to another one. (Replacing the last two characters with "AA" left a token that
// already ended so unchanged, 1 run in 4096.)
func tamper(s string) string {
	i := len(s) - 5
	c := byte('A')
	if s[i] == 'A' {
		c = 'B'
	}
	return s[:i] + string(c) + s[i+1:]
}
