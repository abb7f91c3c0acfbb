package localcloud

import (
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clipgate/clipgate/internal/policyeval"
)

const (
	testRolePolicy = `{"Version":"1","Statement":[{"Effect":"Allow","Action":["oss:PutObject","oss:GetObject"],"Resource":["acs:oss:*:*:clips/*"]}]}`
	testSessPolicy = `{"Version":"1","Statement":[{"Effect":"Allow","Action":["oss:PutObject"],"Resource":["acs:oss:*:*:clips/cam-1/*"]}]}`
	assumePolicy   = `{"Version":"1","Statement":[{"Effect":"Allow","Action":["sts:AssumeRole"],"Resource":["acs:ram::*:role/uploader"]}]}`
	ossOnlyPolicy  = `{"Version":"1","Statement":[{"Effect":"Allow","Action":["oss:*"],"Resource":["*"]}]}`
)

// randomKey makes a test access key at run time (no secrets in the repository).
func randomKey(t testing.TB, id, pol string) AccessKey {
	t.Helper()
	return AccessKey{ID: id, Secret: rand.Text(), Policy: pol}
}

func testConfig(t testing.TB) Config {
	t.Helper()
	return Config{
		DataDir: t.TempDir(),
		Keys: []AccessKey{
			randomKey(t, "LTAIworker", ""),
			randomKey(t, "LTAIscoped", assumePolicy),
			randomKey(t, "LTAInoassume", ossOnlyPolicy),
		},
		Roles: []Role{
			{Name: "Uploader", Policy: testRolePolicy, MaxSessionDuration: 2 * time.Hour},
			{Name: "reader", Policy: testRolePolicy},
		},
	}
}

func newTestAuthority(t testing.TB) (*Authority, Config) {
	t.Helper()
	cfg := testConfig(t)
	a, err := NewAuthority(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a, cfg
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const uploaderARN = "acs:ram::1000000000000000:role/uploader"

func wantCode(t *testing.T, err error, status int, code, ec string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T), want *Error %s", err, err, code)
	}
	if e.Status != status || e.Code != code || e.EC != ec {
		t.Fatalf("error = %d %s EC %q (%s), want %d %s EC %q", e.Status, e.Code, e.EC, e.Message, status, code, ec)
	}
}

func TestAssumeRoleThenResolve(t *testing.T) {
	t.Parallel()
	a, _ := newTestAuthority(t)
	for _, sess := range []string{"", testSessPolicy} {
		cr, err := a.AssumeRole("LTAIworker", "ACS:RAM::1000000000000000:ROLE/UPLOADER", "cam-1", sess, 30*time.Minute, t0.Add(123*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(cr.AccessKeyID, "STS.") || len(cr.AccessKeyID) < 20 {
			t.Errorf("AccessKeyID = %q", cr.AccessKeyID)
		}
		if !cr.Expiration.Equal(t0.Add(30*time.Minute)) || cr.Expiration.Location() != time.UTC {
			t.Errorf("Expiration = %v, want %v UTC", cr.Expiration, t0.Add(30*time.Minute))
		}
		if cr.RoleARN != uploaderARN || cr.SessionName != "cam-1" {
			t.Errorf("RoleARN, SessionName = %q, %q", cr.RoleARN, cr.SessionName)
		}
		p, err := a.Resolve(cr.AccessKeyID, cr.SecurityToken, t0.Add(29*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if !p.Temporary || p.Secret != cr.AccessKeySecret || p.Role != "Uploader" || p.SessionName != "cam-1" || !p.Expiration.Equal(cr.Expiration) {
			t.Errorf("principal = %+v", p)
		}
		want := 1
		if sess != "" {
			want = 2
		}
		if len(p.Policies) != want {
			t.Fatalf("%d policies, want %d", len(p.Policies), want)
		}
		// The role policy allows the whole bucket; with the session policy only cam-1/.
		other := &policyeval.Request{Action: "oss:PutObject", Resource: "acs:oss:*:*:clips/cam-2/x", CurrentTime: t0}
		if got := policyeval.Authorize(other, p.Policies...); got != (sess == "") {
			t.Errorf("session policy %q: put to cam-2 allowed = %v", sess, got)
		}
		own := &policyeval.Request{Action: "oss:PutObject", Resource: "acs:oss:*:*:clips/cam-1/x", CurrentTime: t0}
		if !policyeval.Authorize(own, p.Policies...) {
			t.Error("put to cam-1 denied")
		}
		// Second resolution comes from the cache and must still check expiry.
		_, err = a.Resolve(cr.AccessKeyID, cr.SecurityToken, t0.Add(30*time.Minute))
		wantCode(t, err, 403, "SecurityTokenExpired", "0002-00000007")
	}
}

func TestAssumeRoleDistinctCredentials(t *testing.T) {
	t.Parallel()
	a, _ := newTestAuthority(t)
	seen := map[string]bool{}
	for range 50 {
		cr, err := a.AssumeRole("LTAIworker", uploaderARN, "cam-1", "", 0, t0)
		if err != nil {
			t.Fatal(err)
		}
		if seen[cr.AccessKeyID] || seen[cr.AccessKeySecret] {
			t.Fatalf("repeated credential %q", cr.AccessKeyID)
		}
		seen[cr.AccessKeyID], seen[cr.AccessKeySecret] = true, true
		if !cr.Expiration.Equal(t0.Add(time.Hour)) {
			t.Fatalf("default duration: Expiration = %v", cr.Expiration)
		}
	}
}

func TestResolveLongTermKeys(t *testing.T) {
	t.Parallel()
	a, cfg := newTestAuthority(t)
	p, err := a.Resolve("LTAIworker", "", t0)
	if err != nil {
		t.Fatal(err)
	}
	if p.Temporary || p.Secret != cfg.Keys[0].Secret || len(p.Policies) != 0 {
		t.Errorf("unrestricted key: %+v", p)
	}
	p, err = a.Resolve("LTAIscoped", "", t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Policies) != 1 {
		t.Errorf("scoped key: %d policies, want 1", len(p.Policies))
	}
	for _, id := range []string{"", "nobody", "ltaiworker", "LTAIworker ", "STS."} {
		_, err := a.Resolve(id, "", t0)
		wantCode(t, err, 403, "InvalidAccessKeyId", "")
	}
	// A token makes it an STS request, where a long-term key ID is unknown.
	_, err = a.Resolve("LTAIworker", "some-token", t0)
	wantCode(t, err, 403, "InvalidAccessKeyId", "0002-00000002")
}

func TestResolveRejectsBadTokens(t *testing.T) {
	t.Parallel()
	a, _ := newTestAuthority(t)
	cr, err := a.AssumeRole("LTAIworker", uploaderARN, "cam-1", testSessPolicy, time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	other, err := a.AssumeRole("LTAIworker", uploaderARN, "cam-2", "", time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	body, mac, _ := strings.Cut(cr.SecurityToken, ".")
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	bad := map[string]string{
		"body tampered":      flip(body, len(body)/2) + "." + mac,
		"mac tampered":       body + "." + flip(mac, 3),
		"mac truncated":      body + "." + mac[:len(mac)-1],
		"mac padded":         body + "." + mac + "=",
		"no mac":             body,
		"empty body":         "." + mac,
		"garbage":            "not a token at all",
		"dots":               "...",
		"non-ascii":          "é.é",
		"long":               strings.Repeat("A", 100000) + "." + mac,
		"other body, my mac": strings.SplitN(other.SecurityToken, ".", 2)[0] + "." + mac,
	}
	for name, tok := range bad {
		_, err := a.Resolve(cr.AccessKeyID, tok, t0)
		var e *Error
		if !errors.As(err, &e) || e.Code != "InvalidSecurityToken" || e.Status != 403 || e.EC != "0002-00000006" {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	// A temporary key without its token is unknown to OSS.
	_, err = a.Resolve(cr.AccessKeyID, "", t0)
	wantCode(t, err, 403, "InvalidAccessKeyId", "")
	// A genuine token with another temporary key, or under a made-up key ID.
	_, err = a.Resolve(cr.AccessKeyID, other.SecurityToken, t0)
	wantCode(t, err, 403, "AccessKeyIdAndSecurityTokenNotMatch", "0002-00000004")
	_, err = a.Resolve("STS.madeup", cr.SecurityToken, t0)
	wantCode(t, err, 403, "AccessKeyIdAndSecurityTokenNotMatch", "0002-00000004")
	// Expiry: valid a second before, expired at the instant and after.
	if _, err := a.Resolve(cr.AccessKeyID, cr.SecurityToken, cr.Expiration.Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	for _, at := range []time.Time{cr.Expiration, cr.Expiration.Add(time.Hour)} {
		_, err = a.Resolve(cr.AccessKeyID, cr.SecurityToken, at)
		wantCode(t, err, 403, "SecurityTokenExpired", "0002-00000007")
	}
}

func TestTokensSurviveRestartButNotAnotherKey(t *testing.T) {
	t.Parallel()
	a, cfg := newTestAuthority(t)
	cr, err := a.AssumeRole("LTAIworker", uploaderARN, "cam-1", "", time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(cfg.DataDir, "sts-token.key"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("token key mode %v, want 0600", st.Mode().Perm())
	}
	again, err := NewAuthority(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	p, err := again.Resolve(cr.AccessKeyID, cr.SecurityToken, t0)
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if p.Secret != cr.AccessKeySecret {
		t.Error("derived secret changed across restart")
	}

	fresh := cfg
	fresh.DataDir = t.TempDir()
	b, err := NewAuthority(&fresh)
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Resolve(cr.AccessKeyID, cr.SecurityToken, t0)
	wantCode(t, err, 403, "InvalidSecurityToken", "0002-00000006")

	// Removing the role from the configuration invalidates its tokens.
	noRole := cfg
	noRole.Roles = cfg.Roles[1:]
	c, err := NewAuthority(&noRole)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Resolve(cr.AccessKeyID, cr.SecurityToken, t0)
	wantCode(t, err, 403, "InvalidSecurityToken", "0002-00000006")
}

func TestTokenKeyFileProblems(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	path := filepath.Join(cfg.DataDir, "sts-token.key")
	cases := map[string]struct {
		content string
		mode    os.FileMode
	}{
		"group readable": {strings.Repeat("ab", 32) + "\n", 0o640},
		"not hex":        {strings.Repeat("zz", 32), 0o600},
		"short":          {strings.Repeat("ab", 31), 0o600},
		"empty":          {"", 0o600},
	}
	for name, c := range cases {
		if err := os.WriteFile(path, []byte(c.content), c.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, c.mode); err != nil {
			t.Fatal(err)
		}
		if _, err := NewAuthority(&cfg); err == nil || !strings.Contains(err.Error(), "token key") {
			t.Errorf("%s: err = %v, want a token key error", name, err)
		}
	}
	// A valid hand-written key is used as is.
	if err := os.WriteFile(path, []byte(strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewAuthority(&cfg); err != nil {
		t.Fatal(err)
	}
	// A data dir that cannot be created.
	bad := cfg
	bad.DataDir = filepath.Join(path, "sub")
	if _, err := NewAuthority(&bad); err == nil {
		t.Error("data dir under a file accepted")
	}
}

func TestConcurrentFirstStartAgreesOnKey(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	auths := make([]*Authority, 8)
	errs := make([]error, len(auths))
	var wg sync.WaitGroup
	for i := range auths {
		wg.Go(func() { auths[i], errs[i] = NewAuthority(&cfg) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("authority %d: %v", i, err)
		}
	}
	cr, err := auths[0].AssumeRole("LTAIworker", uploaderARN, "cam-1", "", time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range auths {
		if _, err := a.Resolve(cr.AccessKeyID, cr.SecurityToken, t0); err != nil {
			t.Errorf("authority %d: %v", i, err)
		}
	}
	left, _ := filepath.Glob(filepath.Join(cfg.DataDir, "*.tmp*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestAssumeRoleErrors(t *testing.T) {
	t.Parallel()
	a, _ := newTestAuthority(t)
	tmp, err := a.AssumeRole("LTAIworker", uploaderARN, "cam-1", "", time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	long := `{"Version":"1","Statement":[{"Effect":"Allow","Action":["oss:PutObject"],"Resource":["acs:oss:*:*:clips/` +
		strings.Repeat("a", 1900) + `/*"]}]}`
	over := long + strings.Repeat(" ", 2049-len(long))
	type tc struct {
		caller, arn, session, pol string
		dur                       time.Duration
		status                    int
		code                      string
	}
	cases := map[string]tc{
		"unknown caller":       {"nobody", uploaderARN, "cam-1", "", time.Hour, 404, "InvalidAccessKeyId.NotFound"},
		"temporary caller":     {tmp.AccessKeyID, uploaderARN, "cam-1", "", time.Hour, 404, "InvalidAccessKeyId.NotFound"},
		"no permission":        {"LTAInoassume", uploaderARN, "cam-1", "", time.Hour, 403, "NoPermission"},
		"scoped to other role": {"LTAIscoped", "acs:ram::1000000000000000:role/reader", "cam-1", "", time.Hour, 403, "NoPermission"},
		"missing arn":          {"LTAIworker", "", "cam-1", "", time.Hour, 400, "MissingParameter.RoleArn"},
		"arn garbage":          {"LTAIworker", "uploader", "cam-1", "", time.Hour, 400, "InvalidParameter.RoleArn"},
		"arn user":             {"LTAIworker", "acs:ram::1000000000000000:user/uploader", "cam-1", "", time.Hour, 400, "InvalidParameter.RoleArn"},
		"arn no name":          {"LTAIworker", "acs:ram::1000000000000000:role/", "cam-1", "", time.Hour, 400, "InvalidParameter.RoleArn"},
		"arn path":             {"LTAIworker", "acs:ram::1000000000000000:role/a/b", "cam-1", "", time.Hour, 400, "InvalidParameter.RoleArn"},
		"other account":        {"LTAIworker", "acs:ram::2000000000000000:role/uploader", "cam-1", "", time.Hour, 404, "EntityNotExist.Role"},
		"unknown role":         {"LTAIworker", "acs:ram::1000000000000000:role/nobody", "cam-1", "", time.Hour, 404, "EntityNotExist.Role"},
		"session empty":        {"LTAIworker", uploaderARN, "", "", time.Hour, 400, "InvalidParameter.RoleSessionName"},
		"session short":        {"LTAIworker", uploaderARN, "c", "", time.Hour, 400, "InvalidParameter.RoleSessionName"},
		"session long":         {"LTAIworker", uploaderARN, strings.Repeat("c", 65), "", time.Hour, 400, "InvalidParameter.RoleSessionName"},
		"session char":         {"LTAIworker", uploaderARN, "cam/1", "", time.Hour, 400, "InvalidParameter.RoleSessionName"},
		"session space":        {"LTAIworker", uploaderARN, "cam 1", "", time.Hour, 400, "InvalidParameter.RoleSessionName"},
		"duration 899s":        {"LTAIworker", uploaderARN, "cam-1", "", 899 * time.Second, 400, "InvalidParameter.DurationSeconds"},
		"duration max+1s":      {"LTAIworker", uploaderARN, "cam-1", "", 2*time.Hour + time.Second, 400, "InvalidParameter.DurationSeconds"},
		"duration fraction":    {"LTAIworker", uploaderARN, "cam-1", "", 1000*time.Second + 1, 400, "InvalidParameter.DurationSeconds"},
		"duration negative":    {"LTAIworker", uploaderARN, "cam-1", "", -time.Hour, 400, "InvalidParameter.DurationSeconds"},
		"reader max is 1h":     {"LTAIworker", "acs:ram::1000000000000000:role/reader", "cam-1", "", time.Hour + time.Second, 400, "InvalidParameter.DurationSeconds"},
		"policy 2049 chars":    {"LTAIworker", uploaderARN, "cam-1", over, time.Hour, 400, "InvalidParameter.PolicySize"},
		"policy not json":      {"LTAIworker", uploaderARN, "cam-1", "{", time.Hour, 400, "InvalidParameter.PolicyGrammar"},
		"policy bad effect":    {"LTAIworker", uploaderARN, "cam-1", `{"Version":"1","Statement":[{"Effect":"Maybe","Action":"oss:*","Resource":"*"}]}`, time.Hour, 400, "InvalidParameter.PolicyGrammar"},
	}
	for name, c := range cases {
		_, err := a.AssumeRole(c.caller, c.arn, c.session, c.pol, c.dur, t0)
		var e *Error
		if !errors.As(err, &e) || e.Code != c.code || e.Status != c.status {
			t.Errorf("%s: err = %v, want %d %s", name, err, c.status, c.code)
		}
	}
	if len(over) != 2049 {
		t.Fatalf("oversized policy is %d chars", len(over))
	}
	okCases := map[string]tc{
		"scoped caller":      {caller: "LTAIscoped", arn: uploaderARN, session: "cam-1", dur: time.Hour},
		"session 2 chars":    {caller: "LTAIworker", arn: uploaderARN, session: "ab", dur: time.Hour},
		"session 64 chars":   {caller: "LTAIworker", arn: uploaderARN, session: strings.Repeat("a", 64), dur: time.Hour},
		"session all chars":  {caller: "LTAIworker", arn: uploaderARN, session: "A-z_0.9@x", dur: time.Hour},
		"duration 900s":      {caller: "LTAIworker", arn: uploaderARN, session: "cam-1", dur: 900 * time.Second},
		"duration max":       {caller: "LTAIworker", arn: uploaderARN, session: "cam-1", dur: 2 * time.Hour},
		"policy 2048 chars":  {caller: "LTAIworker", arn: uploaderARN, session: "cam-1", pol: over[:2048], dur: time.Hour},
		"mixed-case arn ok":  {caller: "LTAIworker", arn: "acs:ram::1000000000000000:role/UpLoader", session: "cam-1", dur: time.Hour},
		"upper-case arn ok":  {caller: "LTAIworker", arn: strings.ToUpper(uploaderARN), session: "cam-1", dur: time.Hour},
		"default duration 0": {caller: "LTAIworker", arn: uploaderARN, session: "cam-1"},
	}
	for name, c := range okCases {
		if _, err := a.AssumeRole(c.caller, c.arn, c.session, c.pol, c.dur, t0); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestNewAuthorityRejectsBadConfig(t *testing.T) {
	t.Parallel()
	good := testConfig(t)
	cases := map[string]func(c *Config){
		"nil data dir":          func(c *Config) { c.DataDir = "" },
		"empty key id":          func(c *Config) { c.Keys[0].ID = "" },
		"reserved prefix":       func(c *Config) { c.Keys[0].ID = "STS.mine" },
		"key id with colon":     func(c *Config) { c.Keys[0].ID = "a:b" },
		"key id with space":     func(c *Config) { c.Keys[0].ID = "a b" },
		"short secret":          func(c *Config) { c.Keys[0].Secret = "short" },
		"secret with space":     func(c *Config) { c.Keys[0].Secret = "has a space in it" },
		"duplicate key":         func(c *Config) { c.Keys[1].ID = c.Keys[0].ID },
		"bad key policy":        func(c *Config) { c.Keys[0].Policy = "{" },
		"role without policy":   func(c *Config) { c.Roles[0].Policy = " " },
		"bad role policy":       func(c *Config) { c.Roles[0].Policy = `{"Version":"1","Statement":[{"Effect":"Nope"}]}` },
		"duplicate role":        func(c *Config) { c.Roles[1].Name = "UPLOADER" },
		"empty role name":       func(c *Config) { c.Roles[0].Name = "" },
		"role name with slash":  func(c *Config) { c.Roles[0].Name = "a/b" },
		"role max too long":     func(c *Config) { c.Roles[0].MaxSessionDuration = 13 * time.Hour },
		"role max too short":    func(c *Config) { c.Roles[0].MaxSessionDuration = 30 * time.Minute },
		"role name 65 chars":    func(c *Config) { c.Roles[0].Name = strings.Repeat("r", 65) },
		"negative rate":         func(c *Config) { c.STSRate = -1 },
		"key id too long (129)": func(c *Config) { c.Keys[0].ID = strings.Repeat("k", 129) },
	}
	for name, mutate := range cases {
		c := good
		c.Keys = append([]AccessKey(nil), good.Keys...)
		c.Roles = append([]Role(nil), good.Roles...)
		mutate(&c)
		if _, err := NewAuthority(&c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := NewAuthority(nil); err == nil {
		t.Error("nil config accepted")
	}
	if _, err := NewAuthority(&good); err != nil {
		t.Fatalf("good config: %v", err)
	}
}

func TestConcurrentResolve(t *testing.T) {
	t.Parallel()
	a, _ := newTestAuthority(t)
	var creds []*TempCredentials
	for i := range 20 {
		cr, err := a.AssumeRole("LTAIworker", uploaderARN, fmt.Sprintf("cam-%d", i), testSessPolicy, time.Hour, t0)
		if err != nil {
			t.Fatal(err)
		}
		creds = append(creds, cr)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for range 50 {
				for _, cr := range creds {
					if _, err := a.Resolve(cr.AccessKeyID, cr.SecurityToken, t0); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestBase58(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"":                 "",
		"hello world":      "StV1DL6CwTryKyV",
		"\x00\x00\x01":     "112",
		"\x00":             "1",
		"\xff\xff\xff\xff": "7YXq9G",
	}
	for in, want := range cases {
		if got := base58([]byte(in)); got != want {
			t.Errorf("base58(%q) = %q, want %q", in, got, want)
		}
	}
	s := base58([]byte(rand.Text() + rand.Text()))
	for i := 0; i < len(s); i++ {
		if !strings.ContainsRune(base58Alphabet, rune(s[i])) {
			t.Fatalf("base58 output %q has %q", s, s[i])
		}
	}
}

// FuzzResolve checks that no token or key ID, however malformed, panics or resolves,
// except a genuine one.
func FuzzResolve(f *testing.F) {
	cfg := testConfig(f)
	a, err := NewAuthority(&cfg)
	if err != nil {
		f.Fatal(err)
	}
	cr, err := a.AssumeRole("LTAIworker", uploaderARN, "cam-1", testSessPolicy, time.Hour, t0)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(cr.AccessKeyID, cr.SecurityToken)
	f.Add(cr.AccessKeyID, cr.SecurityToken+"x")
	f.Add("LTAIworker", "")
	f.Add("STS.", ".")
	f.Fuzz(func(t *testing.T, id, token string) {
		p, err := a.Resolve(id, token, t0)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Status != 403 {
				t.Fatalf("error %v is not a 403 *Error", err)
			}
			return
		}
		genuine := id == cr.AccessKeyID && token == cr.SecurityToken
		if !genuine && !(token == "" && (id == "LTAIworker" || id == "LTAIscoped" || id == "LTAInoassume")) {
			t.Fatalf("resolved %q with token %q: %+v", id, token, p)
		}
	})
}

func TestTokenHasOneSpelling(t *testing.T) {
	t.Parallel()
	a, _ := newTestAuthority(t)
	cr, err := a.AssumeRole("LTAIworker", uploaderARN, "cam-1", "", time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	// The last base64 character of the MAC carries 4 data bits and 2 unused bits; changing
	// only the unused bits must not give a second valid spelling.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	tok := cr.SecurityToken
	last := strings.IndexByte(alphabet, tok[len(tok)-1])
	for low := range 4 {
		v := last&^3 | low
		if v == last {
			continue
		}
		alt := tok[:len(tok)-1] + string(alphabet[v])
		if _, err := a.Resolve(cr.AccessKeyID, alt, t0); err == nil {
			t.Fatalf("token with changed padding bits %q accepted", alt[len(alt)-4:])
		}
	}
}

// TestBase58MatchesBigInt checks the digit-array encoder against the textbook math/big
// conversion on random inputs of every length a key or secret uses, leading zeros included.
func TestBase58MatchesBigInt(t *testing.T) {
	t.Parallel()
	ref := func(b []byte) string {
		x := new(big.Int).SetBytes(b)
		var out []byte
		for m := new(big.Int); x.Sign() > 0; {
			x.DivMod(x, big.NewInt(58), m)
			out = append([]byte{base58Alphabet[m.Int64()]}, out...)
		}
		for i := 0; i < len(b) && b[i] == 0; i++ {
			out = append([]byte{'1'}, out...)
		}
		return string(out)
	}
	for n := 0; n <= 80; n++ {
		for range 20 {
			b := make([]byte, n)
			_, _ = rand.Read(b)
			if n > 2 && b[0]%4 == 0 {
				b[0], b[1] = 0, 0 // leading zeros
			}
			if got, want := base58(b), ref(b); got != want {
				t.Fatalf("base58(%x) = %q, want %q", b, got, want)
			}
		}
	}
}
