package localcloud

import (
	"errors"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	"github.com/rs/zerolog"
)

// startServer runs Start on loopback with the test keys and roles and a "clips" bucket.
func startServer(t *testing.T, mutate func(*Config)) (*Server, Config, *testClock) {
	t.Helper()
	clock := &testClock{}
	cfg := testConfig(t)
	cfg.Buckets = []string{"clips"}
	cfg.Now = clock.Now
	cfg.Logger = zerolog.Nop()
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s, cfg, clock
}

func ossClient(t *testing.T, endpoint, ak, sk, token string) *oss.Bucket {
	t.Helper()
	opts := []oss.ClientOption{oss.Timeout(10, 60)}
	if token != "" {
		opts = append(opts, oss.SecurityToken(token))
	}
	c, err := oss.New(endpoint, ak, sk, opts...)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Bucket("clips")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func wantOSSError(t *testing.T, err error, status int, code string) {
	t.Helper()
	var se oss.ServiceError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v (%T), want OSS %s", err, err, code)
	}
	if se.StatusCode != status || se.Code != code {
		t.Fatalf("OSS error %d %s (%s), want %d %s", se.StatusCode, se.Code, se.Message, status, code)
	}
}

func TestStartEndpointsAndClose(t *testing.T) {
	t.Parallel()
	s, _, _ := startServer(t, nil)
	if !regexp.MustCompile(`^http://127\.0\.0\.1:[1-9][0-9]*$`).MatchString(s.OSSEndpoint()) {
		t.Errorf("OSSEndpoint = %q", s.OSSEndpoint())
	}
	if !regexp.MustCompile(`^127\.0\.0\.1:[1-9][0-9]*$`).MatchString(s.STSEndpoint()) {
		t.Errorf("STSEndpoint = %q", s.STSEndpoint())
	}
	if s.Authority() == nil || s.Region() != DefaultRegion || s.RoleARN("Uploader") != uploaderARN {
		t.Error("accessors")
	}
	if _, err := s.Authority().Resolve("LTAIworker", "", time.Now()); err != nil {
		t.Error(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, addr := range []string{strings.TrimPrefix(s.OSSEndpoint(), "http://"), s.STSEndpoint()} {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after Close", addr)
		}
	}
}

func TestStartErrors(t *testing.T) {
	t.Parallel()
	if _, err := Start(Config{}); err == nil {
		t.Error("no DataDir accepted")
	}
	bad := testConfig(t)
	bad.Roles[0].Policy = "{"
	if _, err := Start(bad); err == nil {
		t.Error("bad role policy accepted")
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, field := range []string{"OSS", "STS"} {
		cfg := testConfig(t)
		if field == "OSS" {
			cfg.OSSAddr = busy.Addr().String()
		} else {
			cfg.STSAddr = busy.Addr().String()
		}
		if _, err := Start(cfg); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s address in use: err = %v", field, err)
		}
	}
}

func TestLoopbackHostPort(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"0.0.0.0:80":     "127.0.0.1:80",
		"[::]:81":        "127.0.0.1:81",
		"127.0.0.2:82":   "127.0.0.2:82",
		"[::1]:83":       "[::1]:83",
		"10.1.2.3:65535": "10.1.2.3:65535",
	}
	for in, want := range cases {
		a, err := net.ResolveTCPAddr("tcp", in)
		if err != nil {
			t.Fatal(err)
		}
		if got := loopbackHostPort(a); got != want {
			t.Errorf("loopbackHostPort(%s) = %s, want %s", in, got, want)
		}
	}
}

// TestSTSCredentialsOnOSS is the whole loop through both official SDKs: AssumeRole with a
// session policy, then OSS calls with the temporary credentials, allowed and denied by
// the policies, until the token expires.
func TestSTSCredentialsOnOSS(t *testing.T) {
	t.Parallel()
	s, cfg, clock := startServer(t, nil)
	f := &stsFixture{endpoint: s.STSEndpoint(), cfg: cfg, clock: clock, auth: s.Authority()}
	c, _ := f.client(t, "LTAIworker", f.secret(t, "LTAIworker"))
	// Both SDKs sign with the real clock, which may be up to 15 minutes off the server's.
	// Issue the 900 s token 14 minutes in the server's past, so that it expires a minute
	// from now, within that allowance.
	clock.Advance(-14 * time.Minute)
	resp, err := f.assume(c, uploaderARN, "cam-1", testSessPolicy, "900")
	if err != nil {
		t.Fatal(err)
	}
	cr := resp.Credentials
	b := ossClient(t, s.OSSEndpoint(), cr.AccessKeyId, cr.AccessKeySecret, cr.SecurityToken)

	if err := b.PutObject("cam-1/2026/clip.mp4", strings.NewReader("video bytes")); err != nil {
		t.Fatalf("put in own prefix: %v", err)
	}
	// The role allows cam-2, the session policy does not.
	wantOSSError(t, b.PutObject("cam-2/clip.mp4", strings.NewReader("x")), 403, "AccessDenied")
	// The role policy allows GetObject, the session policy does not.
	_, err = b.GetObject("cam-1/2026/clip.mp4")
	wantOSSError(t, err, 403, "AccessDenied")

	// The long-term key (no policy) reads what the device wrote.
	admin := ossClient(t, s.OSSEndpoint(), "LTAIworker", f.secret(t, "LTAIworker"), "")
	rc, err := admin.GetObject("cam-1/2026/clip.mp4")
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()

	// A wrong secret, a tampered token, a token without its key.
	wrong := ossClient(t, s.OSSEndpoint(), cr.AccessKeyId, cr.AccessKeySecret+"x", cr.SecurityToken)
	wantOSSError(t, wrong.PutObject("cam-1/a", strings.NewReader("x")), 403, "SignatureDoesNotMatch")
	tampered := ossClient(t, s.OSSEndpoint(), cr.AccessKeyId, cr.AccessKeySecret, "A"+cr.SecurityToken[1:])
	wantOSSError(t, tampered.PutObject("cam-1/a", strings.NewReader("x")), 403, "InvalidSecurityToken")
	noToken := ossClient(t, s.OSSEndpoint(), cr.AccessKeyId, cr.AccessKeySecret, "")
	wantOSSError(t, noToken.PutObject("cam-1/a", strings.NewReader("x")), 403, "InvalidAccessKeyId")

	// After 900 s the token has expired.
	clock.Advance(14*time.Minute + 61*time.Second)
	wantOSSError(t, b.PutObject("cam-1/late.mp4", strings.NewReader("x")), 403, "SecurityTokenExpired")
}

// TestSTSOverServerHTTP checks that the STS server set up by Start caps what a client may
// send.
func TestSTSOverServerHTTP(t *testing.T) {
	t.Parallel()
	s, _, _ := startServer(t, nil)
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodPost, "http://"+s.STSEndpoint()+"/?"+strings.Repeat("a", stsMaxHeaderBytes*2), nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("oversized request line: status %d, want 431", resp.StatusCode)
	}
}
