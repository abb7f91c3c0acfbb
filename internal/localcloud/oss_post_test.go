package localcloud

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	"github.com/clipgate/clipgate/internal/testutil"
)

// No official Go SDK builds PostObject forms, so these tests build them as a browser does
// and sign them as Alibaba documents: V1 Signature = base64(HMAC-SHA1(secret,
// base64(policy))); V4 x-oss-signature = hex(HMAC-SHA256(signing key, base64(policy)))
// with the signing key of V4 header signatures.

type formField struct{ name, value string }

// postForm posts a multipart form (fields in order, then the file unless file is nil) to
// the bucket and returns the response.
func (e *ossEnv) postForm(t *testing.T, fields []formField, fileName string, file []byte, edit func(*http.Request)) *http.Response {
	t.Helper()
	var body bytes.Buffer
	w := multipart.NewWriter(&body)
	for _, f := range fields {
		if err := w.WriteField(f.name, f.value); err != nil {
			t.Fatal(err)
		}
	}
	if file != nil {
		fw, err := w.CreateFormFile("file", fileName)
		if err != nil {
			t.Fatal(err)
		}
		fw.Write(file)
		w.WriteField("submit", "Upload to OSS") // fields after the file are ignored
	}
	w.Close()
	req, err := http.NewRequest(http.MethodPost, e.endpoint+"/"+testBucket+"/", &body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", w.FormDataContentType())
	if edit != nil {
		edit(req)
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

type postError struct {
	Code, Message, EC string
}

// wantPostError checks a response's status, code and EC (body and x-oss-ec header).
func wantPostError(t *testing.T, resp *http.Response, status int, code, ec string) postError {
	t.Helper()
	body, _ := io.ReadAll(resp.Body)
	var e postError
	if err := xml.Unmarshal(body, &e); err != nil && resp.StatusCode >= 300 {
		t.Fatalf("error body %q: %v", body, err)
	}
	if resp.StatusCode != status || e.Code != code || e.EC != ec {
		t.Fatalf("got %d %s EC %q (%s), want %d %s EC %q", resp.StatusCode, e.Code, e.EC, e.Message, status, code, ec)
	}
	if ec != "" && resp.Header.Get("x-oss-ec") != ec {
		t.Fatalf("x-oss-ec %q, want %q", resp.Header.Get("x-oss-ec"), ec)
	}
	return e
}

func encodePolicy(t *testing.T, expiration time.Time, conditions ...any) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{"expiration": expiration.UTC().Format("2006-01-02T15:04:05.000Z"), "conditions": conditions})
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func signV1(secret, policyB64 string) string {
	m := hmac.New(sha1.New, []byte(secret))
	m.Write([]byte(policyB64))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func signV4(secret, day, region, policyB64 string) string {
	mac := func(key []byte, msg string) []byte {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(msg))
		return m.Sum(nil)
	}
	k := mac([]byte("aliyun_v4"+secret), day)
	k = mac(k, region)
	k = mac(k, "oss")
	k = mac(k, "aliyun_v4_request")
	return hex.EncodeToString(mac(k, policyB64))
}

// v1Fields returns the signature fields of a V1 form.
func v1Fields(ak, sk, policyB64 string) []formField {
	return []formField{{"OSSAccessKeyId", ak}, {"policy", policyB64}, {"Signature", signV1(sk, policyB64)}}
}

// v4Fields returns the signature fields of a V4 form signed at now.
func v4Fields(ak, sk, token, policyB64 string, now time.Time) []formField {
	day := now.UTC().Format("20060102")
	f := []formField{
		{"x-oss-signature-version", "OSS4-HMAC-SHA256"},
		{"x-oss-credential", ak + "/" + day + "/" + testRegion + "/oss/aliyun_v4_request"},
		{"x-oss-date", now.UTC().Format("20060102T150405Z")},
		{"policy", policyB64},
		{"x-oss-signature", signV4(sk, day, testRegion, policyB64)},
	}
	if token != "" {
		f = append(f, formField{"x-oss-security-token", token})
	}
	return f
}

// TestPostObjectV1 (issue 10 point 9): a V1-signed form upload with a policy whose
// conditions hold stores the object with its metadata; answers follow
// success_action_status. Before, PostObject answered 403 "because of bucket acl".
func TestPostObjectV1(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	now := e.clock.Now()
	pol := encodePolicy(t, now.Add(time.Hour),
		map[string]string{"bucket": testBucket},
		[]any{"starts-with", "$key", "uploads/"},
		[]any{"content-length-range", 1, 100},
		[]any{"eq", "$success_action_status", "201"},
		[]any{"in", "$Content-Type", []string{"video/mp4", "text/plain"}},
		[]any{"not-in", "$cache-control", []string{"no-cache"}},
	)
	data := []byte("hello clip")
	fields := append([]formField{
		{"key", "uploads/${filename}"},
		{"success_action_status", "201"},
		{"Content-Type", "video/mp4"},
		{"Content-Disposition", "attachment; filename=clip.mp4"},
		{"x-oss-meta-camera", "cam-1"},
	}, v1Fields(e.ak, e.sk, pol)...)
	resp := e.postForm(t, fields, "clip.mp4", data, nil)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PostObject: %d %s", resp.StatusCode, body)
	}
	var pr struct {
		Bucket, Location, Key, ETag string
	}
	if err := xml.Unmarshal(body, &pr); err != nil {
		t.Fatal(err)
	}
	sum := md5.Sum(data)
	etag := `"` + strings.ToUpper(hex.EncodeToString(sum[:])) + `"`
	if pr.Bucket != testBucket || pr.Key != "uploads/clip.mp4" || pr.ETag != etag || !strings.HasSuffix(pr.Location, "/clips/uploads/clip.mp4") ||
		resp.Header.Get("ETag") != etag || resp.Header.Get("x-oss-hash-crc64ecma") != testutil.CRC64(data) {
		t.Fatalf("PostResponse %+v, headers %v", pr, resp.Header)
	}
	// The official SDK reads it back, CRC-64 checked, with the form's metadata.
	admin := e.admin(oss.AuthV4)
	mustEqualBytes(t, getAll(t, admin, "uploads/clip.mp4"), data)
	h, err := admin.GetObjectDetailedMeta("uploads/clip.mp4")
	if err != nil {
		t.Fatal(err)
	}
	if h.Get("Content-Type") != "video/mp4" || h.Get("x-oss-meta-camera") != "cam-1" || h.Get("Content-Disposition") != "attachment; filename=clip.mp4" || h.Get("ETag") != etag {
		t.Fatalf("stored headers %v", h)
	}

	// success_action_status 200 and the default (204); a redirect is a 303 to the URL
	// with the bucket, key and ETag.
	for _, c := range []struct {
		extra  []formField
		status int
	}{{[]formField{{"success_action_status", "200"}}, 200}, {nil, 204}, {[]formField{{"success_action_status", "302"}}, 204}} {
		p := encodePolicy(t, now.Add(time.Hour), []any{"starts-with", "$key", "uploads/"})
		resp := e.postForm(t, append(append([]formField{{"key", "uploads/s"}}, c.extra...), v1Fields(e.ak, e.sk, p)...), "s", []byte("x"), nil)
		if b, _ := io.ReadAll(resp.Body); resp.StatusCode != c.status || len(b) != 0 {
			t.Fatalf("%v: %d %q, want %d", c.extra, resp.StatusCode, b, c.status)
		}
	}
	p := encodePolicy(t, now.Add(time.Hour), []any{"starts-with", "$key", "uploads/"})
	// Virtual-hosted style, as a browser posts to https://BUCKET.ENDPOINT/: the Location
	// follows it.
	resp = e.postForm(t, append([]formField{{"key", "uploads/vh"}, {"success_action_status", "201"}}, v1Fields(e.ak, e.sk, p)...), "vh", []byte("x"), func(r *http.Request) {
		r.Host = testBucket + "." + DefaultEndpointDomain + ":" + r.URL.Port()
		r.URL.Path = "/"
	})
	body, _ = io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated || !strings.Contains(string(body), "<Location>http://"+testBucket+"."+DefaultEndpointDomain+":") ||
		!strings.Contains(string(body), "/uploads/vh</Location>") {
		t.Fatalf("virtual-hosted form: %d %s", resp.StatusCode, body)
	}
	resp = e.postForm(t, append([]formField{{"key", "uploads/r"}, {"success_action_redirect", "https://example.com/done?x=1"}}, v1Fields(e.ak, e.sk, p)...), "r", []byte("x"), nil)
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || err != nil || loc.Host != "example.com" || loc.Query().Get("key") != "uploads/r" ||
		loc.Query().Get("bucket") != testBucket || loc.Query().Get("x") != "1" || loc.Query().Get("etag") == "" {
		t.Fatalf("redirect: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// TestPostObjectV4WithSTS: a V4-signed form with STS credentials scoped to one device's
// prefix; RAM still decides what the key may be, and a bucket policy Deny stops it.
func TestPostObjectV4WithSTS(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	cr := e.assumeRole(devicePolicy(t, "w"), time.Hour)
	now := e.clock.Now()
	post := func(key string) *http.Response {
		pol := encodePolicy(t, now.Add(10*time.Minute),
			map[string]string{"x-oss-signature-version": "OSS4-HMAC-SHA256"},
			map[string]string{"x-oss-security-token": cr.SecurityToken},
			[]any{"starts-with", "$key", "cams/"})
		return e.postForm(t, append([]formField{{"key", key}}, v4Fields(cr.AccessKeyID, cr.AccessKeySecret, cr.SecurityToken, pol, now)...), "f", []byte("v4 data"), nil)
	}
	if resp := post("cams/cam-1/v4.mp4"); resp.StatusCode != http.StatusNoContent {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("V4 form with STS credentials: %d %s", resp.StatusCode, b)
	}
	mustEqualBytes(t, getAll(t, e.admin(oss.AuthV1), "cams/cam-1/v4.mp4"), []byte("v4 data"))
	// The form's policy allows cams/*, the session policy only cams/cam-1/*.
	wantPostError(t, post("cams/cam-2/v4.mp4"), http.StatusForbidden, "AccessDenied", "0003-00000001")

	if err := e.v3Client(e.ak, e.sk, oss.AuthV4).SetBucketPolicy(testBucket, revokePolicy("cam-1")); err != nil {
		t.Fatal(err)
	}
	wantPostError(t, post("cams/cam-1/v4-after.mp4"), http.StatusForbidden, "AccessDenied", "0003-00000101")
}

// TestPostObjectRefused: the policy's conditions, the signatures and the form itself, each
// refused with OSS's status, code and detail.
func TestPostObjectRefused(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	now := e.clock.Now()
	base := func(conds ...any) string {
		return encodePolicy(t, now.Add(time.Hour), append([]any{[]any{"content-length-range", 2, 10}, []any{"starts-with", "$key", "up/"}}, conds...)...)
	}
	v1 := func(key, pol string, extra ...formField) []formField {
		return append(append([]formField{{"key", key}}, extra...), v1Fields(e.ak, e.sk, pol)...)
	}
	data := []byte("12345")

	wantPostError(t, e.postForm(t, v1("up/big", base()), "f", bytes.Repeat([]byte("x"), 11), nil), 400, "EntityTooLarge", "0006-00000003")
	wantPostError(t, e.postForm(t, v1("up/small", base()), "f", []byte("x"), nil), 400, "EntityTooSmall", "0006-00000004")
	msg := wantPostError(t, e.postForm(t, v1("down/a", base()), "f", data, nil), 403, "AccessDenied", ecUnknown)
	if !strings.Contains(msg.Message, `Policy Condition failed: ["starts-with","$key","up/"]`) {
		t.Fatalf("message %q", msg.Message)
	}
	wantPostError(t, e.postForm(t, v1("up/a", base(map[string]string{"bucket": "other-bucket"})), "f", data, nil), 403, "AccessDenied", ecUnknown)
	wantPostError(t, e.postForm(t, v1("up/a", base([]any{"eq", "$x-oss-meta-a", "1"})), "f", data, nil), 403, "AccessDenied", ecUnknown) // field absent
	wantPostError(t, e.postForm(t, v1("up/a", base([]any{"not-in", "$content-type", []string{"text/html"}}), formField{"content-type", "text/html"}), "f", data, nil), 403, "AccessDenied", ecUnknown)
	expired := encodePolicy(t, now.Add(-time.Second), []any{"starts-with", "$key", "up/"})
	msg = wantPostError(t, e.postForm(t, v1("up/a", expired), "f", data, nil), 403, "AccessDenied", ecUnknown)
	if msg.Message != "Invalid according to Policy: Policy expired." {
		t.Fatalf("message %q", msg.Message)
	}

	// Signatures.
	bad := v1("up/a", base())
	bad[len(bad)-1].value = signV1("wrong-secret", base())
	wantPostError(t, e.postForm(t, bad, "f", data, nil), 403, "AccessDenied", ecUnknown)
	wantPostError(t, e.postForm(t, []formField{{"key", "up/a"}, {"OSSAccessKeyId", e.ak}, {"policy", base()}}, "f", data, nil), 400, "InvalidArgument", "0002-00000703")
	wantPostError(t, e.postForm(t, []formField{{"key", "up/a"}, {"OSSAccessKeyId", e.ak}, {"Signature", "x"}}, "f", data, nil), 400, "InvalidArgument", ecUnknown)
	wantPostError(t, e.postForm(t, v1Fields("LTAInobody", e.sk, base()), "f", data, nil), 400, "InvalidArgument", ecUnknown) // no key field
	wantPostError(t, e.postForm(t, append([]formField{{"key", "up/a"}}, v1Fields("LTAInobody", e.sk, base())...), "f", data, nil), 403, "InvalidAccessKeyId", ecUnknown)
	v4 := v4Fields(e.ak, e.sk, "", base(), now)
	v4[1].value = strings.Replace(v4[1].value, testRegion, "cn-shanghai", 1)
	wantPostError(t, e.postForm(t, append([]formField{{"key", "up/a"}}, v4...), "f", data, nil), 400, "InvalidArgument", "0002-00000710")
	v4 = v4Fields(e.ak, e.sk, "", base(), now.Add(-8*24*time.Hour))
	wantPostError(t, e.postForm(t, append([]formField{{"key", "up/a"}}, v4...), "f", data, nil), 403, "AccessDenied", ecUnknown)
	v4 = v4Fields(e.ak, e.sk, "", base(), now)
	v4[4].value = signV4("wrong-secret", now.UTC().Format("20060102"), testRegion, base())
	wantPostError(t, e.postForm(t, append([]formField{{"key", "up/a"}}, v4...), "f", data, nil), 403, "AccessDenied", ecUnknown)
	old, err := e.auth.AssumeRole(e.ak, e.auth.RoleARN(testRoleName), "cam-1", "", 15*time.Minute, now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	v4 = v4Fields(old.AccessKeyID, old.AccessKeySecret, old.SecurityToken, base(), now)
	wantPostError(t, e.postForm(t, append([]formField{{"key", "up/a"}}, v4...), "f", data, nil), 403, "SecurityTokenExpired", "0002-00000007")

	// Policies OSS cannot read.
	enc := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, c := range []struct{ policy, ec string }{
		{enc(`{"expiration":"2099-01-01T00:00:00.000Z","conditions":[{"key":"a","bucket":"b"}]}`), ecUnknown},
		{enc(`{"expiration":"2099-01-01T00:00:00.000Z"}`), "0006-00000207"},
		{enc(`{"conditions":[]}`), ecUnknown},
		{enc(`{"expiration":"tomorrow","conditions":[]}`), ecUnknown},
		{enc(`{"expiration":"2099-01-01T00:00:00.000Z","conditions":[["content-length-range",1,"test"]]}`), "0006-00000221"},
		{enc(`{"expiration":"2099-01-01T00:00:00.000Z","conditions":[["matches","$key","a"]]}`), ecUnknown},
		{enc(`{"expiration":"2099-01-01T00:00:00.000Z","conditions":[["eq","key","a"]]}`), ecUnknown},
		{enc(`{"expiration":"2099-01-01T00:00:00.000Z","conditions":[["in","$key","a"]]}`), ecUnknown},
		{enc(`{"expiration":`), ecUnknown},
		{"not base64!", ecUnknown},
	} {
		wantPostError(t, e.postForm(t, v1("up/a", c.policy), "f", data, nil), 400, "InvalidPolicyDocument", c.ec)
	}
	// "\$" is the documented escape for a literal "$".
	dollar := enc(`{"expiration":"2099-01-01T00:00:00.000Z","conditions":[["eq","$key","up/\$1"]]}`)
	if resp := e.postForm(t, v1("up/$1", dollar), "f", data, nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf(`policy with \$: %d`, resp.StatusCode)
	}

	// The form itself.
	wantPostError(t, e.postForm(t, v1("up/a", base()), "", nil, nil), 400, "IncorrectNumberOfFilesInPOSTRequest", ecUnknown)
	wantPostError(t, e.postForm(t, v1("up/a", base()), "f", data, func(r *http.Request) { r.Header.Set("Content-Type", "text/plain") }), 400, "MalformedPOSTRequest", ecUnknown)
	wide := encodePolicy(t, now.Add(time.Hour), []any{"starts-with", "$key", "up/"})
	wantPostError(t, e.postForm(t, v1("up/cut", wide), "f", bytes.Repeat([]byte("d"), 10000), func(r *http.Request) {
		r.Body = io.NopCloser(io.LimitReader(r.Body, 3000)) // cut inside the file
		r.ContentLength = -1
	}), 400, "MalformedPOSTRequest", ecUnknown)
	if _, err := e.admin(oss.AuthV1).GetObject("up/cut"); svcCode(err) != "NoSuchKey" {
		t.Fatalf("a cut upload was stored: %v", err)
	}
	wantPostError(t, e.postForm(t, v1("up/a", base(), formField{"x-oss-meta-big", strings.Repeat("v", maxPostFieldValues)}), "f", data, nil), 400, "FieldItemTooLong", ecUnknown)
	wantPostError(t, e.postForm(t, v1("up/a", base()), "f", data, func(r *http.Request) { r.Header.Set("Content-MD5", "1B2M2Y8AsgTpgAmY7PhCfg==") }), 400, "InvalidDigest", ecUnknown)
	// A correct Content-MD5 of the whole body is accepted.
	if resp := e.postForm(t, v1("up/md5", base()), "f", data, func(r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		sum := md5.Sum(b)
		r.Header.Set("Content-MD5", base64.StdEncoding.EncodeToString(sum[:]))
		r.Body = io.NopCloser(bytes.NewReader(b))
	}); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("correct Content-MD5: %d", resp.StatusCode)
	}
	if resp := e.postForm(t, v1("up/md5", base(), formField{"x-oss-forbid-overwrite", "true"}), "f", data, nil); resp.StatusCode != http.StatusConflict {
		t.Fatalf("forbid overwrite: %d", resp.StatusCode)
	}

	// Anonymous: refused as the bucket's ACL (private) says, unless a bucket policy
	// allows everyone.
	anon := []formField{{"key", "up/anon"}}
	e2 := wantPostError(t, e.postForm(t, anon, "f", data, nil), 403, "AccessDenied", "0003-00000001")
	if !strings.Contains(e2.Message, "because of bucket acl") {
		t.Fatalf("anonymous: %q", e2.Message)
	}
	if err := e.v3Client(e.ak, e.sk, oss.AuthV4).SetBucketPolicy(testBucket,
		`{"Version":"1","Statement":[{"Effect":"Allow","Principal":["*"],"Action":"oss:PutObject","Resource":"acs:oss:*:*:clips/up/anon"}]}`); err != nil {
		t.Fatal(err)
	}
	if resp := e.postForm(t, anon, "f", data, nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("anonymous allowed by the bucket policy: %d", resp.StatusCode)
	}
	wantPostError(t, e.postForm(t, []formField{{"key", "up/anon2"}}, "f", data, nil), 403, "AccessDenied", "0003-00000001")
}

// FuzzPostPolicy: any policy text is either refused with an OSS error or checked without
// panicking.
func FuzzPostPolicy(f *testing.F) {
	for _, s := range []string{
		`{"expiration":"2099-01-01T00:00:00.000Z","conditions":[{"bucket":"clips"},["starts-with","$key","a/"],["content-length-range",0,10],["in","$x",["a","b"]]]}`,
		`{"expiration":"2099-01-01T00:00:00Z","conditions":[["eq","$key","\$1"],["not-in","$content-type",[]]]}`,
		`{"expiration":1,"conditions":{}}`, `[]`, ``, `{"conditions":[[]]}`,
	} {
		f.Add(s)
	}
	fields := map[string]string{"key": "a/b", "x": "a", "content-type": "text/plain"}
	f.Fuzz(func(t *testing.T, text string) {
		p, err := parsePostPolicy(base64.StdEncoding.EncodeToString([]byte(text)))
		if err != nil {
			var e *Error
			if !errorAs(err, &e) || e.Status != http.StatusBadRequest {
				t.Fatalf("error %v is not a 400 OSS error", err)
			}
			return
		}
		if err := p.check(fields, testBucket, time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil {
			var e *Error
			if !errorAs(err, &e) || e.Status != http.StatusForbidden {
				t.Fatalf("check error %v is not a 403 OSS error", err)
			}
		}
	})
}

func errorAs(err error, target **Error) bool { return errors.As(err, target) }
