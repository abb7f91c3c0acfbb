package localcloud

import (
	"crypto/md5"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	osv2 "github.com/aliyun/alibabacloud-oss-go-sdk-v2/oss"
	"github.com/aliyun/aliyun-oss-go-sdk/oss"
)

// TestContentMD5Mismatch: every request whose body fails its Content-MD5 is 400 InvalidDigest
// with OSS's message (not S3's BadDigest), and nothing is stored.
func TestContentMD5Mismatch(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	b := e.admin(oss.AuthV1)
	wrong := oss.ContentMD5(md5B64([]byte("something else")))
	check := func(what string, err error) {
		t.Helper()
		var se oss.ServiceError
		if !errors.As(err, &se) || se.StatusCode != http.StatusBadRequest || se.Code != "InvalidDigest" || se.Message != "The Content-MD5 you specified was invalid." {
			t.Errorf("%s: %v", what, err)
		}
	}
	check("PutObject", b.PutObject("k", strings.NewReader("hello"), wrong))
	_, err := b.AppendObject("log", strings.NewReader("hello"), 0, wrong)
	check("AppendObject", err)
	imur, err := b.InitiateMultipartUpload("mp")
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.UploadPart(imur, strings.NewReader("part"), 4, 1, wrong)
	check("UploadPart", err)
	for _, k := range []string{"k", "log"} {
		if ok, _ := b.IsObjectExist(k); ok {
			t.Errorf("%s stored despite its digest", k)
		}
	}
	if lp, err := b.ListUploadedParts(imur); err != nil || len(lp.UploadedParts) != 0 {
		t.Errorf("part stored despite its digest: %+v %v", lp, err)
	}

	c := e.adminV2(osv2.SignatureVersionV4)
	_, err = c.PutObject(bg, &osv2.PutObjectRequest{Bucket: osv2.Ptr(testBucket), Key: osv2.Ptr("k2"), Body: strings.NewReader("hello"),
		ContentMD5: osv2.Ptr(md5B64([]byte("hello!")))})
	wantSvcErr(t, err, http.StatusBadRequest, "InvalidDigest", ecUnknown)
}

// TestKeyTokenMismatch: a genuine security token sent with another temporary key is 403
// AccessKeyIdAndSecurityTokenNotMatch (EC 0002-00000004), through both SDKs.
func TestKeyTokenMismatch(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	a := e.assumeRole("", time.Hour)
	b := e.assumeRole("", time.Hour)
	err := e.stsClient(&TempCredentials{AccessKeyID: a.AccessKeyID, AccessKeySecret: a.AccessKeySecret, SecurityToken: b.SecurityToken}, oss.AuthV4).
		PutObject("k", strings.NewReader("x"))
	wantSvcErr(t, err, http.StatusForbidden, "AccessKeyIdAndSecurityTokenNotMatch", "0002-00000004")
	_, err = e.clientV2(b.AccessKeyID, b.AccessKeySecret, a.SecurityToken).GetObject(bg, &osv2.GetObjectRequest{Bucket: osv2.Ptr(testBucket), Key: osv2.Ptr("k")})
	wantSvcErr(t, err, http.StatusForbidden, "AccessKeyIdAndSecurityTokenNotMatch", "0002-00000004")
}

// TestAppendableETag: an appendable object's ETag is not the MD5 of its content (only simple
// uploads have MD5 ETags on OSS); it changes with each append, is the same in the append
// response, HEAD and listings, and survives a restart.
func TestAppendableETag(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	b := e.admin(oss.AuthV4)
	var h http.Header
	if _, err := b.AppendObject("log", strings.NewReader("first"), 0, oss.GetResponseHeader(&h)); err != nil {
		t.Fatal(err)
	}
	first := h.Get("ETag")
	if _, err := b.AppendObject("log", strings.NewReader(" second"), 5, oss.GetResponseHeader(&h)); err != nil {
		t.Fatal(err)
	}
	second := h.Get("ETag")
	sum := md5.Sum([]byte("first second"))
	md5ETag := quoteETag(upperHex(sum[:]))
	if first == second || second == md5ETag || len(second) != 34 || strings.ToUpper(second) != second {
		t.Fatalf("appendable ETags %s then %s (content MD5 %s)", first, second, md5ETag)
	}
	if got := headOf(t, b, "log").Get("ETag"); got != second {
		t.Errorf("HEAD ETag %s, append answered %s", got, second)
	}
	ls, err := b.ListObjectsV2(oss.Prefix("log"))
	if err != nil || len(ls.Objects) != 1 || ls.Objects[0].ETag != second {
		t.Errorf("listed ETag: %+v %v", ls.Objects, err)
	}
	// A simple upload of the same bytes has the MD5 ETag.
	if err := b.PutObject("simple", strings.NewReader("first second")); err != nil {
		t.Fatal(err)
	}
	if got := headOf(t, b, "simple").Get("ETag"); got != md5ETag {
		t.Errorf("simple upload ETag %s, want %s", got, md5ETag)
	}
	e.restart()
	b = e.admin(oss.AuthV4)
	if got := headOf(t, b, "log").Get("ETag"); got != second {
		t.Errorf("after restart ETag %s, want %s", got, second)
	}
	r, err := e.adminV2(osv2.SignatureVersionV4).AppendObject(bg, &osv2.AppendObjectRequest{Bucket: osv2.Ptr(testBucket), Key: osv2.Ptr("log"),
		Position: osv2.Ptr(int64(12)), Body: strings.NewReader("!")})
	if err != nil {
		t.Fatal(err)
	}
	if etag := r.Headers.Get("ETag"); etag == second || etag == "" {
		t.Errorf("ETag after a third append: %q", etag)
	}
}

// TestErrorEC: error documents carry EC (Alibaba's where documented, 0000-00000000
// otherwise) and RecommendDoc with a documented EC, the x-oss-ec header repeats the EC, and
// HEAD errors carry both in their headers. (rawDo checks the same for every garbage request.)
func TestErrorEC(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	c := e.adminV2(osv2.SignatureVersionV4)
	if _, err := c.PutObject(bg, &osv2.PutObjectRequest{Bucket: osv2.Ptr(testBucket), Key: osv2.Ptr("k"), Body: strings.NewReader("data")}); err != nil {
		t.Fatal(err)
	}
	bad := e.clientV2(e.ak, e.sk+"x", "")
	ro := e.clientV2(e.roAK, e.roSK, "")
	get := func(c *osv2.Client, bucket, key string, mod func(*osv2.GetObjectRequest)) error {
		req := &osv2.GetObjectRequest{Bucket: osv2.Ptr(bucket), Key: osv2.Ptr(key)}
		if mod != nil {
			mod(req)
		}
		_, err := c.GetObject(bg, req)
		return err
	}
	for _, tc := range []struct {
		name           string
		err            error
		status         int
		code, ec       string
		withRecommends bool
	}{
		{"absent key", get(c, testBucket, "absent", nil), 404, "NoSuchKey", "0026-00000001", true},
		{"absent bucket", get(c, "no-such-bucket", "k", nil), 404, "NoSuchBucket", "0015-00000101", true},
		{"wrong secret", get(bad, testBucket, "k", nil), 403, "SignatureDoesNotMatch", "0002-00000040", true},
		{"policy", func() error {
			_, err := ro.PutObject(bg, &osv2.PutObjectRequest{Bucket: osv2.Ptr(testBucket), Key: osv2.Ptr("k"), Body: strings.NewReader("x")})
			return err
		}(), 403, "AccessDenied", "0003-00000001", true},
		{"forbid-overwrite", func() error {
			_, err := c.PutObject(bg, &osv2.PutObjectRequest{Bucket: osv2.Ptr(testBucket), Key: osv2.Ptr("k"), Body: strings.NewReader("x"), ForbidOverwrite: osv2.Ptr("true")})
			return err
		}(), 409, "FileAlreadyExists", "0026-00000002", true},
		{"range", get(c, testBucket, "k", func(r *osv2.GetObjectRequest) { r.Range, r.RangeBehavior = osv2.Ptr("bytes=10-"), osv2.Ptr("standard") }),
			416, "InvalidRange", ecUnknown, false},
	} {
		wantSvcErr(t, tc.err, tc.status, tc.code, tc.ec)
		var se *osv2.ServiceError
		errors.As(tc.err, &se)
		body := string(se.Snapshot)
		if !strings.Contains(body, "<EC>"+tc.ec+"</EC>") || strings.Contains(body, "<RecommendDoc>"+recommendDoc(tc.ec)+"</RecommendDoc>") != tc.withRecommends {
			t.Errorf("%s: error body %s", tc.name, body)
		}
	}
	// HEAD: no body; the document travels base64-encoded in x-oss-err, the EC in x-oss-ec.
	_, err := c.HeadObject(bg, &osv2.HeadObjectRequest{Bucket: osv2.Ptr(testBucket), Key: osv2.Ptr("absent")})
	wantSvcErr(t, err, 404, "NoSuchKey", "0026-00000001")
	var se3 oss.ServiceError
	_, err = e.admin(oss.AuthV1).GetObjectDetailedMeta("absent")
	if !errors.As(err, &se3) || se3.Code != "NoSuchKey" || se3.Ec != "0026-00000001" {
		t.Errorf("v3 HEAD error %+v", err)
	}
}
