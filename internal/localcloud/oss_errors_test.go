package localcloud

import (
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
	wantSvcErr(t, err, http.StatusBadRequest, "InvalidDigest", "")
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
