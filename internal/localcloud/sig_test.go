package localcloud

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	"github.com/clipgate/clipgate/internal/testutil"
	"github.com/rs/zerolog"
)

func TestParseRange(t *testing.T) {
	t.Parallel()
	type want struct {
		start, n      int64
		partial, good bool
	}
	whole10 := want{0, 10, false, true}
	for _, c := range []struct {
		h        string
		size     int64
		def, std want // without and with x-oss-range-behavior: standard
	}{
		{"", 10, whole10, whole10},
		{"bytes=0-0", 10, want{0, 1, true, true}, want{0, 1, true, true}},
		{"bytes=2-5", 10, want{2, 4, true, true}, want{2, 4, true, true}},
		{"bytes=2-", 10, want{2, 8, true, true}, want{2, 8, true, true}},
		{"bytes=-3", 10, want{7, 3, true, true}, want{7, 3, true, true}},
		{"bytes=-10", 10, want{0, 10, true, true}, want{0, 10, true, true}},
		{"bytes=9-9", 10, want{9, 1, true, true}, want{9, 1, true, true}},
		{"bytes=1-2,4-5", 10, want{1, 2, true, true}, want{0, 0, false, false}},
		// Outside the object: ignored by default; clipped or unsatisfiable with standard.
		{"bytes=-30", 10, whole10, want{0, 10, true, true}},
		{"bytes=5-100", 10, whole10, want{5, 5, true, true}},
		{"bytes=10-", 10, whole10, want{0, 0, false, false}},
		{"bytes=10-20", 10, whole10, want{0, 0, false, false}},
		{"bytes=0-", 0, want{0, 0, false, true}, want{0, 0, false, false}},
		{"bytes=-1", 0, want{0, 0, false, true}, want{0, 0, false, false}},
		// Malformed: the whole object either way.
		{"bytes=5-2", 10, whole10, whole10},
		{"bytes=-0", 10, whole10, whole10},
		{"bytes=a-b", 10, whole10, whole10},
		{"bytes=+1-2", 10, whole10, whole10},
		{"bytes=1", 10, whole10, whole10},
		{"bits=1-2", 10, whole10, whole10},
		{"bytes=-", 10, whole10, whole10},
		{"bytes=0x1-2", 10, whole10, whole10},
		{"bytes=1234567890123456789012-", 10, whole10, whole10},
		{"bytes=a-b,1-2", 10, whole10, whole10},
	} {
		for _, std := range []bool{false, true} {
			w := c.def
			if std {
				w = c.std
			}
			start, n, partial, good := parseRange(c.h, c.size, std)
			if got := (want{start, n, partial, good}); got != w {
				t.Errorf("parseRange(%q, %d, standard=%v) = %+v, want %+v", c.h, c.size, std, got, w)
			}
		}
	}
}

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"bytes=0-1", "bytes=-5", "bytes=3-", "bytes=1-2,3-4", "x"} {
		f.Add(s, int64(10))
	}
	f.Fuzz(func(t *testing.T, h string, size int64) {
		if size < 0 {
			size = -size
		}
		start, n, partial, ok := parseRange(h, size, size%2 == 0)
		if !ok {
			return
		}
		if start < 0 || n < 0 || start+n > size || (!partial && (start != 0 || n != size)) || (partial && n == 0) {
			t.Fatalf("parseRange(%q, %d) = %d, %d, %v", h, size, start, n, partial)
		}
	})
}

// FuzzParseSig feeds arbitrary Authorization headers and queries: never a panic, and any
// result has a key and a signature.
func FuzzParseSig(f *testing.F) {
	day := "20240102"
	f.Add("OSS ak:sig", "", "Tue, 02 Jan 2024 00:00:00 GMT")
	f.Add("OSS2 AccessKeyId:ak,AdditionalHeaders:host,Signature:s", "", "Tue, 02 Jan 2024 00:00:00 GMT")
	f.Add("OSS4-HMAC-SHA256 Credential=ak/"+day+"/cn-hangzhou/oss/aliyun_v4_request,Signature=00", "", "20240102T000000Z")
	f.Add("", "OSSAccessKeyId=a&Expires=1704153600&Signature=s", "")
	f.Add("", "x-oss-signature-version=OSS4-HMAC-SHA256&x-oss-credential=a%2F20240102%2Fcn-hangzhou%2Foss%2Faliyun_v4_request&x-oss-date=20240102T000000Z&x-oss-expires=60&x-oss-signature=0", "")
	now := time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, auth, query, date string) {
		q, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		r := &http.Request{Method: "GET", Header: http.Header{}}
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		r.Header.Set("Date", date)
		r.Header.Set("X-Oss-Date", date)
		s, e := parseSig(r, q, "cn-hangzhou", now)
		if e != nil {
			if e.Code == "" || e.Status < 400 {
				t.Fatalf("bad error %+v", e)
			}
			return
		}
		if s.accessKeyID == "" || s.signature == "" {
			t.Fatalf("accepted %q %q without a key or signature: %+v", auth, query, s)
		}
		_ = s.verify(r, &sigTarget{bucket: "b", key: "k", query: q, region: "cn-hangzhou"}, "secret")
	})
}

func TestEscapes(t *testing.T) {
	t.Parallel()
	if got := escapeV4Path("a b/c+d~é%"); got != "a%20b/c%2Bd~%C3%A9%25" {
		t.Errorf("escapeV4Path = %q", got)
	}
	if got := queryEscape("a b+c/d~"); got != "a%20b%2Bc%2Fd~" {
		t.Errorf("queryEscape = %q", got)
	}
	q := url.Values{"b": {"x y"}, "a": {""}, "x-oss-signature": {"s"}, "c+": {"1"}}
	if got := canonicalQuery(q, true); got != "a&b=x%20y&c%2B=1" {
		t.Errorf("canonicalQuery presigned = %q", got)
	}
	if got := canonicalQuery(q, false); got != "a&b=x%20y&c%2B=1&x-oss-signature=s" {
		t.Errorf("canonicalQuery = %q", got)
	}
}

func TestValidObjectName(t *testing.T) {
	t.Parallel()
	for _, k := range []string{"a", "a/b", "..", "ü", strings.Repeat("k", 1023), "a\\b", " "} {
		if err := validObjectName(k); err != nil {
			t.Errorf("%q refused: %v", k, err)
		}
	}
	for _, k := range []string{"", "/a", "\\a", strings.Repeat("k", 1024), "\xff"} {
		if err := validObjectName(k); err == nil || err.Code != "InvalidObjectName" {
			t.Errorf("%q accepted", k)
		}
	}
}

// TestPolicyConditionsOnOSS checks that the request context reaches policy evaluation:
// the source IP (127.0.0.1), transport security (plain HTTP) and the server's clock.
func TestPolicyConditionsOnOSS(t *testing.T) {
	t.Parallel()
	stmt := func(cond string) string {
		return `{"Version":"1","Statement":[{"Effect":"Allow","Action":"oss:*","Resource":"acs:oss:*:*:clips/*","Condition":` + cond + `}]}`
	}
	e := newOSSEnv(t)
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	for _, c := range []struct {
		cond  string
		allow bool
	}{
		{`{"IpAddress":{"acs:SourceIp":"127.0.0.1/32"}}`, true},
		{`{"IpAddress":{"acs:SourceIp":"10.0.0.0/8"}}`, false},
		{`{"NotIpAddress":{"acs:SourceIp":"127.0.0.0/8"}}`, false},
		{`{"Bool":{"acs:SecureTransport":"false"}}`, true},
		{`{"Bool":{"acs:SecureTransport":"true"}}`, false},
		{`{"DateLessThan":{"acs:CurrentTime":"` + future + `"}}`, true},
		{`{"DateGreaterThan":{"acs:CurrentTime":"` + future + `"}}`, false},
	} {
		creds := e.assumeRole(stmt(c.cond), time.Hour)
		err := e.stsClient(creds, oss.AuthV4).PutObject("cams/x", strings.NewReader("x"))
		if c.allow && err != nil {
			t.Errorf("%s: %v", c.cond, err)
		}
		if !c.allow {
			wantOSSCode(t, err, "AccessDenied")
		}
	}
	// The server's clock, not the client's, decides acs:CurrentTime.
	creds := e.assumeRole(stmt(`{"DateLessThan":{"acs:CurrentTime":"`+time.Now().Add(5*time.Minute).UTC().Format(time.RFC3339)+`"}}`), time.Hour)
	e.clockMu.Lock()
	e.clock.Advance(10 * time.Minute)
	err := e.stsClient(creds, oss.AuthV4).PutObject("cams/x", strings.NewReader("x"))
	e.clock.Advance(-10 * time.Minute)
	e.clockMu.Unlock()
	wantOSSCode(t, err, "AccessDenied")
}

// TestRequestLog checks the one log line per request.
func TestRequestLog(t *testing.T) {
	t.Parallel()
	var buf testutil.SyncBuffer
	e := newOSSEnv(t, func(c *Config) { c.Logger = zerolog.New(&buf) })
	b := e.admin(oss.AuthV1)
	var rh http.Header
	if err := b.PutObject("logged/key", strings.NewReader("12345"), oss.GetResponseHeader(&rh)); err != nil {
		t.Fatal(err)
	}
	_, err := b.GetObject("logged/absent")
	wantOSSCode(t, err, "NoSuchKey")

	var lines []map[string]any
	for l := range strings.SplitSeq(buf.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["message"] == "oss request" {
			lines = append(lines, m)
		}
	}
	if len(lines) != 2 {
		t.Fatalf("%d request lines: %s", len(lines), buf.String())
	}
	put, get := lines[0], lines[1]
	if put["level"] != "info" || put["method"] != "PUT" || put["op"] != "PutObject" || put["bucket"] != testBucket ||
		put["key"] != "logged/key" || put["status"] != float64(200) || put["bytesIn"] != float64(5) ||
		put["requestId"] != rh.Get("X-Oss-Request-Id") || put["duration"] == nil {
		t.Errorf("PUT line %v", put)
	}
	if get["status"] != float64(404) || get["code"] != "NoSuchKey" || get["op"] != "GetObject" {
		t.Errorf("GET line %v", get)
	}
}
