package localcloud

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
)

type errorDoc struct {
	Code, Message, RequestId, HostId, EC, RecommendDoc, StringToSign string
}

// rawDo sends a request without an SDK and returns the status, the parsed error document
// (checked for form) and the body.
func rawDo(t *testing.T, e *ossEnv, method, target string, hdr http.Header, body io.Reader) (int, *errorDoc, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, e.endpoint+target, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	client := &http.Client{}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.Header.Get("x-oss-request-id") == "" {
		t.Errorf("%s %s: no x-oss-request-id", method, truncate(target, 100))
	}
	if resp.StatusCode < 400 {
		return resp.StatusCode, nil, b
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/xml" {
		t.Errorf("%s %s: error Content-Type %q", method, truncate(target, 100), ct)
	}
	raw := b
	if method == http.MethodHead {
		if len(b) != 0 {
			t.Errorf("HEAD error with a body")
		}
		raw, _ = base64.StdEncoding.DecodeString(resp.Header.Get("x-oss-err"))
	}
	var doc errorDoc
	if err := xml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("%s %s: error body is not OSS error XML: %v: %q", method, truncate(target, 100), err, truncate(string(raw), 200))
	}
	if doc.Code == "" || doc.Message == "" || doc.RequestId != resp.Header.Get("x-oss-request-id") {
		t.Errorf("%s %s: incomplete error document %+v", method, truncate(target, 100), doc)
	}
	// Every error has an EC, repeated in x-oss-ec; a documented one comes with RecommendDoc.
	if doc.EC == "" || resp.Header.Get("x-oss-ec") != doc.EC || (doc.EC != ecUnknown) != (doc.RecommendDoc == recommendDoc(doc.EC)) {
		t.Errorf("%s %s: EC %q, x-oss-ec %q, RecommendDoc %q", method, truncate(target, 100), doc.EC, resp.Header.Get("x-oss-ec"), doc.RecommendDoc)
	}
	return resp.StatusCode, &doc, b
}

func wantRaw(t *testing.T, e *ossEnv, method, target string, hdr http.Header, body io.Reader, status int, code string) *errorDoc {
	t.Helper()
	got, doc, b := rawDo(t, e, method, target, hdr, body)
	if got != status || doc == nil || doc.Code != code {
		t.Fatalf("%s %s: got %d %+v %q, want %d %s", method, truncate(target, 100), got, doc, truncate(string(b), 200), status, code)
	}
	return doc
}

func TestGarbageAuthorization(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	date := time.Now().UTC().Format(http.TimeFormat)
	day := time.Now().UTC().Format("20060102")
	h := func(auth string) http.Header {
		return http.Header{"Authorization": {auth}, "Date": {date}}
	}
	for _, auth := range []string{
		"OSS", "OSS ", "OSS " + e.ak, "OSS :sig", "OSS " + e.ak + ":", "Bearer abc", "oss " + e.ak + ":x",
		"OSS2 AccessKeyId:" + e.ak, "OSS2 AccessKeyId:a,Signature:b,Bogus:c", "OSS2 AccessKeyId:a,AccessKeyId:b,Signature:c",
		"OSS4-HMAC-SHA256 Credential=" + e.ak, "OSS4-HMAC-SHA256 Signature=abc",
		"OSS4-HMAC-SHA256 Credential=" + e.ak + "/" + day + "/cn-hangzhou/s3/aliyun_v4_request,Signature=ab",
		"OSS4-HMAC-SHA256 Credential=" + e.ak + "/notaday/cn-hangzhou/oss/aliyun_v4_request,Signature=ab",
		"OSS4-HMAC-SHA256 Credential=" + e.ak + "/" + day + "/cn-beijing/oss/aliyun_v4_request,Signature=ab",
		"OSS4-HMAC-SHA256 Credential=/" + day + "/cn-hangzhou/oss/aliyun_v4_request,Signature=ab",
		"OSS4-HMAC-SHA256 " + strings.Repeat("Credential=x,", 1000),
	} {
		wantRaw(t, e, http.MethodGet, "/clips/key", h(auth), nil, http.StatusBadRequest, "InvalidArgument")
	}
	// Well-formed but wrong.
	wantRaw(t, e, http.MethodGet, "/clips/key", h("OSS LTAInobody:c2lnbmF0dXJl"), nil, http.StatusForbidden, "InvalidAccessKeyId")
	doc := wantRaw(t, e, http.MethodGet, "/clips/key", h("OSS "+e.ak+":c2lnbmF0dXJl"), nil, http.StatusForbidden, "SignatureDoesNotMatch")
	if doc.StringToSign != "GET\n\n\n"+date+"\n/clips/key" {
		t.Errorf("StringToSign %q", doc.StringToSign)
	}
	wantRaw(t, e, http.MethodGet, "/clips/key", h("OSS4-HMAC-SHA256 Credential="+e.ak+"/"+day+"/cn-hangzhou/oss/aliyun_v4_request,Signature=00"),
		nil, http.StatusForbidden, "SignatureDoesNotMatch")
	wantRaw(t, e, http.MethodGet, "/clips/key", h("OSS4-HMAC-SHA256 Credential="+e.ak+"/20200101/cn-hangzhou/oss/aliyun_v4_request,Signature=00"),
		nil, http.StatusBadRequest, "InvalidArgument")
	// Dates: missing, garbage, skewed.
	wantRaw(t, e, http.MethodGet, "/clips/key", http.Header{"Authorization": {"OSS " + e.ak + ":x"}}, nil, http.StatusForbidden, "AccessDenied")
	wantRaw(t, e, http.MethodGet, "/clips/key", http.Header{"Authorization": {"OSS " + e.ak + ":x"}, "Date": {"yesterday"}}, nil, http.StatusForbidden, "AccessDenied")
	wantRaw(t, e, http.MethodGet, "/clips/key", http.Header{"Authorization": {"OSS " + e.ak + ":x"}, "Date": {time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)}},
		nil, http.StatusForbidden, "RequestTimeTooSkewed")
	wantRaw(t, e, http.MethodGet, "/clips/key", http.Header{"Authorization": {"OSS " + e.ak + ":x"}, "X-Oss-Date": {"20000101T000000Z"}},
		nil, http.StatusForbidden, "RequestTimeTooSkewed")
	// Anonymous requests, and HEAD errors carried in x-oss-err.
	wantRaw(t, e, http.MethodGet, "/clips/key", nil, nil, http.StatusForbidden, "AccessDenied")
	wantRaw(t, e, http.MethodHead, "/clips/key", nil, nil, http.StatusForbidden, "AccessDenied")
	wantRaw(t, e, http.MethodPut, "/clips/key", nil, strings.NewReader("x"), http.StatusForbidden, "AccessDenied")
	wantRaw(t, e, http.MethodGet, "/", nil, nil, http.StatusForbidden, "AccessDenied")
	// Header and query signatures at once.
	wantRaw(t, e, http.MethodGet, "/clips/key?OSSAccessKeyId=a&Expires=1&Signature=b", h("OSS a:b"), nil, http.StatusBadRequest, "InvalidArgument")
	// Malformed signed URLs.
	future := fmt.Sprint(time.Now().Add(time.Hour).Unix())
	for _, q := range []string{
		"OSSAccessKeyId=" + e.ak, "OSSAccessKeyId=" + e.ak + "&Signature=x", "OSSAccessKeyId=" + e.ak + "&Signature=x&Expires=soon",
		"x-oss-signature-version=OSS4-HMAC-SHA256&x-oss-credential=a", "x-oss-signature-version=OSS2&x-oss-signature=a",
	} {
		wantRaw(t, e, http.MethodGet, "/clips/key?"+q, nil, nil, http.StatusForbidden, "AccessDenied")
	}
	wantRaw(t, e, http.MethodGet, "/clips/key?OSSAccessKeyId="+e.ak+"&Signature=x&Expires=1", nil, nil, http.StatusForbidden, "AccessDenied")
	wantRaw(t, e, http.MethodGet, "/clips/key?OSSAccessKeyId="+e.ak+"&Signature=x&Expires="+future, nil, nil, http.StatusForbidden, "SignatureDoesNotMatch")
	wantRaw(t, e, http.MethodGet, "/clips/key?x-oss-signature-version=HMAC-MD5", nil, nil, http.StatusBadRequest, "InvalidArgument")
	v4 := "x-oss-signature-version=OSS4-HMAC-SHA256&x-oss-credential=" + e.ak + "%2F" + day + "%2Fcn-hangzhou%2Foss%2Faliyun_v4_request&x-oss-signature=00&x-oss-date="
	now := time.Now().UTC().Format("20060102T150405Z")
	wantRaw(t, e, http.MethodGet, "/clips/key?"+v4+now+"&x-oss-expires=0", nil, nil, http.StatusBadRequest, "InvalidArgument")
	wantRaw(t, e, http.MethodGet, "/clips/key?"+v4+now+"&x-oss-expires=604801", nil, nil, http.StatusBadRequest, "InvalidArgument")
	wantRaw(t, e, http.MethodGet, "/clips/key?"+v4+"garbage&x-oss-expires=60", nil, nil, http.StatusBadRequest, "InvalidArgument")
	wantRaw(t, e, http.MethodGet, "/clips/key?"+v4+now+"&x-oss-expires=60", nil, nil, http.StatusForbidden, "SignatureDoesNotMatch")
}

func TestGarbageRequests(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	// Bad object names are refused before anything else.
	for _, target := range []string{"/clips//abs", "/clips/%5Cx", "/clips/%FF%FE", "/clips/" + strings.Repeat("k", 1024)} {
		wantRaw(t, e, http.MethodGet, target, nil, nil, http.StatusBadRequest, "InvalidObjectName")
	}
	wantRaw(t, e, http.MethodGet, "/nope/key", nil, nil, http.StatusNotFound, "NoSuchBucket")
	wantRaw(t, e, http.MethodGet, "//key", nil, nil, http.StatusNotFound, "NoSuchBucket")
	wantRaw(t, e, http.MethodGet, "/clips/k?a=1&a=2", nil, nil, http.StatusBadRequest, "InvalidArgument")
	wantRaw(t, e, http.MethodGet, "/clips/k?a=%zz", nil, nil, http.StatusBadRequest, "InvalidArgument")
	wantRaw(t, e, http.MethodGet, "/clips/k?x="+strings.Repeat("a", 40<<10), nil, nil, http.StatusBadRequest, "InvalidArgument")
	// A request line beyond the header limit is refused by net/http; the server lives on.
	huge, err := http.NewRequest(http.MethodGet, e.endpoint+"/clips/k?x="+strings.Repeat("a", 2<<20), nil)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{}
	defer client.CloseIdleConnections()
	if resp, err := client.Do(huge); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("2 MB query: status %d", resp.StatusCode)
		}
	}

	b := e.admin(oss.AuthV1)
	if err := b.PutObject("obj", strings.NewReader("0123456789")); err != nil {
		t.Fatal(err)
	}
	// Ranges: malformed ones are ignored; out-of-range ones are ignored, or 416 with
	// x-oss-range-behavior: standard.
	for _, r := range []string{"bytes=abc", "bytes=10-", "bytes=10-20", "bytes=-100", "items=0-1", "bytes=-", "bytes=5-1", "bytes=--1", "bytes=-0", "bytes= 1-2x", "bytes=99999999999999999999-"} {
		var rh http.Header
		got := getAll(t, b, "obj", oss.SetHeader("Range", r), oss.GetResponseHeader(&rh))
		if string(got) != "0123456789" || rh.Get("Content-Range") != "" {
			t.Errorf("Range %q: got %q, Content-Range %q", r, got, rh.Get("Content-Range"))
		}
	}
	for _, r := range []string{"bytes=10-", "bytes=10-20", "bytes=100-200", "bytes=1-2,3-4"} {
		_, err := b.GetObject("obj", oss.SetHeader("Range", r), oss.RangeBehavior("standard"))
		wantOSSCode(t, err, "InvalidRange")
	}
	if got := string(getAll(t, b, "obj", oss.SetHeader("Range", "bytes=-100"), oss.RangeBehavior("standard"))); got != "0123456789" {
		t.Errorf("suffix beyond the size: %q", got)
	}

	// Bad append positions.
	for _, pos := range []string{"abc", "-1", "", "99999999999999999999", "1.5"} {
		_, err := b.Do("POST", "log", map[string]any{"append": nil, "position": pos}, nil, strings.NewReader("x"), nil)
		wantOSSCode(t, err, "InvalidArgument")
	}
	_, err = b.Do("POST", "log", map[string]any{"append": nil}, nil, strings.NewReader("x"), nil)
	wantOSSCode(t, err, "InvalidArgument")

	// Listing parameters.
	for _, p := range []map[string]any{
		{"list-type": "2", "max-keys": "abc"}, {"list-type": "2", "max-keys": "0"}, {"list-type": "2", "max-keys": "-5"},
		{"list-type": "2", "encoding-type": "base64"}, {"list-type": "1"}, {"list-type": "2", "prefix": strings.Repeat("p", 1024)},
		{"max-keys": "1001"}, {"list-type": "2", "continuation-token": ""},
	} {
		_, err := b.Do("GET", "", p, nil, nil, nil)
		wantOSSCode(t, err, "InvalidArgument")
	}

	// Operations this server does not have, and methods OSS does not know.
	_, err = b.GetObjectACL("obj")
	wantOSSCode(t, err, "NotImplemented")
	_, err = b.Do("GET", "obj", map[string]any{"x-oss-process": "image/resize,w_10"}, nil, nil, nil)
	wantOSSCode(t, err, "NotImplemented")
	_, err = b.Do("PATCH", "obj", nil, nil, nil, nil)
	wantOSSCode(t, err, "MethodNotAllowed")
	if got := string(getAll(t, b, "obj")); got != "0123456789" {
		t.Fatalf("object changed by refused requests: %q", got)
	}
}

func TestGarbageComplete(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	b := e.admin(oss.AuthV4)
	imur, err := b.InitiateMultipartUpload("mp")
	if err != nil {
		t.Fatal(err)
	}
	p1, err := b.UploadPart(imur, strings.NewReader(strings.Repeat("a", minPartSize)), minPartSize, 1)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := b.UploadPart(imur, strings.NewReader("b"), 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	complete := func(body string, opts ...oss.Option) error {
		_, err := b.Do("POST", "mp", map[string]any{"uploadId": imur.UploadID}, opts, strings.NewReader(body), nil)
		return err
	}
	part := func(n, etag string) string {
		return "<Part><PartNumber>" + n + "</PartNumber><ETag>" + etag + "</ETag></Part>"
	}
	for _, body := range []string{
		"", "<", "not xml at all", "<Other/>", "<CompleteMultipartUpload>" + part("x", p1.ETag) + "</CompleteMultipartUpload>",
		"<CompleteMultipartUpload>" + part("0", p1.ETag) + "</CompleteMultipartUpload>",
		"<CompleteMultipartUpload>" + part("10001", p1.ETag) + "</CompleteMultipartUpload>",
		"<CompleteMultipartUpload>" + part("1", "") + "</CompleteMultipartUpload>",
		"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>",
		"<CompleteMultipartUpload>" + strings.Repeat(part("1", p1.ETag), 10001) + "</CompleteMultipartUpload>",
		strings.Repeat(" ", 3<<20),
	} {
		wantOSSCode(t, complete(body), "MalformedXML")
	}
	wantOSSCode(t, complete("<CompleteMultipartUpload></CompleteMultipartUpload>"), "InvalidArgument")
	wantOSSCode(t, complete("<CompleteMultipartUpload>"+part("2", p2.ETag)+part("1", p1.ETag)+"</CompleteMultipartUpload>"), "InvalidPartOrder")
	wantOSSCode(t, complete("<CompleteMultipartUpload>"+part("1", p2.ETag)+"</CompleteMultipartUpload>"), "InvalidPart")
	good := "<CompleteMultipartUpload>" + part("1", p1.ETag) + part("2", p2.ETag) + "</CompleteMultipartUpload>"
	wantOSSCode(t, complete(good, oss.ContentMD5(md5B64([]byte("other")))), "InvalidDigest")
	wantOSSCode(t, complete(good, oss.SetHeader("x-oss-complete-all", "yes")), "InvalidArgument")
	// After all that, the upload still completes.
	if err := complete(good, oss.ContentMD5(md5B64([]byte(good)))); err != nil {
		t.Fatal(err)
	}
	if got := getAll(t, b, "mp"); len(got) != minPartSize+1 || got[minPartSize] != 'b' {
		t.Fatalf("completed object: %d bytes", len(got))
	}
}

// TestGarbageBodies sends bodies that lie about their length and oversized declarations,
// over raw TCP, and checks that nothing is stored.
func TestGarbageBodies(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	date := time.Now().UTC().Format(http.TimeFormat)
	sign := func(method, key, ct string) string {
		r, _ := http.NewRequest(method, "/", nil)
		r.Header.Set("Date", date)
		if ct != "" {
			r.Header.Set("Content-Type", ct)
		}
		return "OSS " + e.ak + ":" + hmacB64(sha1.New, e.sk, v1StringToSign(r, &sigTarget{bucket: testBucket, key: key}, date, true))
	}
	send := func(req string, body string, closeWrite bool) string {
		c, err := net.Dial("tcp", strings.TrimPrefix(e.endpoint, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, req+body); err != nil {
			t.Fatal(err)
		}
		if closeWrite {
			_ = c.(*net.TCPConn).CloseWrite()
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var doc errorDoc
		_ = xml.Unmarshal(b, &doc)
		return fmt.Sprintf("%d %s", resp.StatusCode, doc.Code)
	}
	head := func(key, length string) string {
		return "PUT /clips/" + key + " HTTP/1.1\r\nHost: x\r\nDate: " + date + "\r\nAuthorization: " + sign("PUT", key, "") +
			"\r\nContent-Length: " + length + "\r\n\r\n"
	}
	if got := send(head("short", "100"), "only ten b", true); got != "400 IncompleteBody" {
		t.Errorf("short body: %s", got)
	}
	if got := send(head("huge", fmt.Sprint(int64(6)<<30)), "", false); got != "400 EntityTooLarge" {
		t.Errorf("6 GiB declared: %s", got)
	}
	b := e.admin(oss.AuthV1)
	for _, k := range []string{"short", "huge"} {
		if ok, err := b.IsObjectExist(k); ok || err != nil {
			t.Errorf("%s stored: %v %v", k, ok, err)
		}
	}
	// Nothing but committed objects' blobs remain.
	entries, err := os.ReadDir(filepath.Join(e.cfg.DataDir, "oss", testBucket, "data"))
	if err != nil || len(entries) != 0 {
		t.Errorf("stray blobs: %v %v", entries, err)
	}
}

// TestTraversalKeys stores keys that look like paths out of the data directory and checks
// that they round-trip and that every file stays inside the bucket's directory.
func TestTraversalKeys(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	b := e.admin(oss.AuthV4)
	keys := []string{"../../../../etc/passwd", "..", "a/../../b", "./.", "..\\..\\x", "meta/../data/x", "%2e%2e/x", "\x00nul", "a\nb"}
	for _, k := range keys {
		if err := b.PutObject(k, strings.NewReader(k)); err != nil {
			t.Fatalf("%q: %v", k, err)
		}
	}
	for _, k := range keys {
		if got := string(getAll(t, b, k)); got != k {
			t.Errorf("%q read back %q", k, got)
		}
	}
	res, err := b.ListObjectsV2(oss.MaxKeys(100))
	if err != nil || len(res.Objects) != len(keys) {
		t.Fatalf("listing: %d objects, %v", len(res.Objects), err)
	}
	root := filepath.Join(e.cfg.DataDir, "oss", testBucket)
	err = filepath.WalkDir(e.cfg.DataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Dir(p) == e.cfg.DataDir {
			return err
		}
		if rel, _ := filepath.Rel(root, p); strings.HasPrefix(rel, "..") {
			t.Errorf("file outside the bucket directory: %s", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
