package localcloud

import (
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	osv2 "github.com/aliyun/alibabacloud-oss-go-sdk-v2/oss"
	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	"github.com/clipgate/clipgate/internal/testutil"
)

// headOf returns the HEAD headers of key.
func headOf(t *testing.T, b *oss.Bucket, key string) http.Header {
	t.Helper()
	h, err := b.GetObjectDetailedMeta(key)
	if err != nil {
		t.Fatalf("HEAD %q: %v", key, err)
	}
	return h
}

// multipartObject uploads data as a two-part object.
func multipartObject(t *testing.T, b *oss.Bucket, key string, data []byte) {
	t.Helper()
	imur, err := b.InitiateMultipartUpload(key, oss.ContentType("video/mp4"))
	if err != nil {
		t.Fatal(err)
	}
	var parts []oss.UploadPart
	for i, chunk := range [][]byte{data[:minPartSize], data[minPartSize:]} {
		p, err := b.UploadPart(imur, bytes.NewReader(chunk), int64(len(chunk)), i+1)
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, p)
	}
	if _, err := b.CompleteMultipartUpload(imur, parts); err != nil {
		t.Fatal(err)
	}
}

// TestCopyObjectSDKv3 copies through aliyun-oss-go-sdk: within a bucket and across buckets,
// Normal and Multipart sources, COPY and REPLACE metadata, conditions, forbid-overwrite, and
// the copies survive a restart and the source's removal.
func TestCopyObjectSDKv3(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	for _, av := range []struct {
		name string
		v    oss.AuthVersionType
	}{{"V1", oss.AuthV1}, {"V4", oss.AuthV4}} {
		b := e.admin(av.v)
		dir := "cams/cam-1/" + av.name + "/"
		src := dir + "门口 camera #1+&%2F.mp4"
		data := randomBytes(t, 150_000)
		if err := b.PutObject(src, bytes.NewReader(data), oss.ContentType("video/mp4"), oss.Meta("Camera", "cam-1"), oss.CacheControl("no-cache")); err != nil {
			t.Fatal(err)
		}
		srcHead := headOf(t, b, src)

		// COPY (the default): data, ETag, CRC, type and metadata come from the source; the
		// request's own metadata is ignored.
		dst := dir + "copy ü+.mp4"
		res, err := b.CopyObject(src, dst, oss.Meta("Camera", "ignored"))
		if err != nil {
			t.Fatal(err)
		}
		if res.ETag != srcHead.Get("ETag") || time.Since(res.LastModified).Abs() > time.Minute {
			t.Errorf("%s: CopyObjectResult %+v, source ETag %s", av.name, res, srcHead.Get("ETag"))
		}
		mustEqualBytes(t, getAll(t, b, dst), data)
		h := headOf(t, b, dst)
		for _, k := range []string{"ETag", "X-Oss-Hash-Crc64ecma", "Content-Type", "X-Oss-Meta-Camera", "Cache-Control", "X-Oss-Object-Type", "Content-Length"} {
			if h.Get(k) != srcHead.Get(k) {
				t.Errorf("%s: copy %s = %q, source %q", av.name, k, h.Get(k), srcHead.Get(k))
			}
		}

		// REPLACE: the request's metadata and Content-Type.
		rdst := dir + "replaced.mp4"
		if _, err := b.CopyObject(src, rdst, oss.MetadataDirective(oss.MetaReplace), oss.ContentType("text/plain"), oss.Meta("Camera", "cam-2")); err != nil {
			t.Fatal(err)
		}
		h = headOf(t, b, rdst)
		if h.Get("Content-Type") != "text/plain" || h.Get("X-Oss-Meta-Camera") != "cam-2" || h.Get("Cache-Control") != "" || h.Get("ETag") != srcHead.Get("ETag") {
			t.Errorf("%s: REPLACE copy headers %v", av.name, h)
		}
		if hs := headOf(t, b, src); hs.Get("X-Oss-Meta-Camera") != "cam-1" {
			t.Errorf("%s: source metadata changed: %v", av.name, hs)
		}
		_, err = b.CopyObject(src, rdst, oss.MetadataDirective("MOVE"))
		wantSvcErr(t, err, http.StatusBadRequest, "InvalidArgument", ecUnknown)

		// Across buckets, in both directions.
		if _, err := b.CopyObjectTo("other-bucket", dst, src); err != nil {
			t.Fatal(err)
		}
		ob := e.admin(av.v)
		ob.BucketName = "other-bucket"
		mustEqualBytes(t, getAll(t, ob, dst), data)
		if _, err := b.CopyObjectFrom("other-bucket", dst, dir+"back.mp4"); err != nil {
			t.Fatal(err)
		}
		mustEqualBytes(t, getAll(t, b, dir+"back.mp4"), data)

		// Conditions on the source.
		_, err = b.CopyObject(src, dir+"cond.mp4", oss.CopySourceIfMatch(`"0123"`))
		wantSvcErr(t, err, http.StatusPreconditionFailed, "PreconditionFailed", ecUnknown)
		_, err = b.CopyObject(src, dir+"cond.mp4", oss.CopySourceIfNoneMatch(srcHead.Get("ETag")))
		// The v3 SDK reports a 304 as a plain error naming the status.
		if err == nil || !strings.Contains(err.Error(), "304 Not Modified") {
			t.Errorf("%s: if-none-match on the same ETag: %v", av.name, err)
		}
		if _, err := b.CopyObject(src, dir+"cond.mp4", oss.CopySourceIfMatch(srcHead.Get("ETag"))); err != nil {
			t.Errorf("%s: if-match on the ETag: %v", av.name, err)
		}
		if ok, _ := b.IsObjectExist(dir + "cond.mp4"); !ok {
			t.Errorf("%s: the conditional copy did not happen", av.name)
		}

		// forbid-overwrite.
		if err := b.PutObject(dir+"taken.mp4", strings.NewReader("taken")); err != nil {
			t.Fatal(err)
		}
		_, err = b.CopyObject(src, dir+"taken.mp4", oss.ForbidOverWrite(true))
		wantSvcErr(t, err, http.StatusConflict, "FileAlreadyExists", "0026-00000002")
		mustEqualBytes(t, getAll(t, b, dir+"taken.mp4"), []byte("taken"))
		if _, err := b.CopyObject(src, dir+"taken.mp4", oss.ForbidOverWrite(false)); err != nil {
			t.Fatal(err)
		}
		mustEqualBytes(t, getAll(t, b, dir+"taken.mp4"), data)

		// A copy onto itself keeps the data.
		if _, err := b.CopyObject(src, src); err != nil {
			t.Fatal(err)
		}
		mustEqualBytes(t, getAll(t, b, src), data)

		// Missing source, missing bucket, appendable source.
		_, err = b.CopyObject(dir+"absent.mp4", dir+"x.mp4")
		wantSvcErr(t, err, http.StatusNotFound, "NoSuchKey", "0026-00000001")
		_, err = b.CopyObjectFrom("no-such-bucket", "k", dir+"x.mp4")
		wantSvcErr(t, err, http.StatusNotFound, "NoSuchBucket", "0015-00000101")
		if _, err := b.AppendObject(dir+"log", strings.NewReader("abc"), 0); err != nil {
			t.Fatal(err)
		}
		_, err = b.CopyObject(dir+"log", dir+"log.copy")
		wantSvcErr(t, err, http.StatusBadRequest, "InvalidRequest", ecUnknown)
		if ok, _ := b.IsObjectExist(dir + "x.mp4"); ok {
			t.Errorf("%s: a failed copy left an object", av.name)
		}
	}

	// A Multipart source: the copy keeps its ETag and type and outlives the source.
	b := e.admin(oss.AuthV4)
	mp := randomBytes(t, minPartSize+5000)
	multipartObject(t, b, "mp/src.mp4", mp)
	srcHead := headOf(t, b, "mp/src.mp4")
	if _, err := b.CopyObject("mp/src.mp4", "mp/copy.mp4"); err != nil {
		t.Fatal(err)
	}
	h := headOf(t, b, "mp/copy.mp4")
	if h.Get("ETag") != srcHead.Get("ETag") || !strings.HasSuffix(h.Get("ETag"), `-2"`) || h.Get("X-Oss-Object-Type") != "Multipart" ||
		h.Get("X-Oss-Hash-Crc64ecma") != testutil.CRC64(mp) {
		t.Errorf("multipart copy headers %v", h)
	}
	if err := b.PutObject("mp/src.mp4", strings.NewReader("replaced")); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteObject("mp/src.mp4"); err != nil {
		t.Fatal(err)
	}
	e.restart()
	b = e.admin(oss.AuthV4)
	mustEqualBytes(t, getAll(t, b, "mp/copy.mp4"), mp)
	if err := b.GetObjectToFile("mp/copy.mp4", t.TempDir()+"/f"); err != nil { // CRC checked by the SDK
		t.Fatal(err)
	}
	mustEqualBytes(t, getAll(t, b, "cams/cam-1/V4/copy ü+.mp4"), getAll(t, b, "cams/cam-1/V4/门口 camera #1+&%2F.mp4"))
}

// TestCopyObjectSDKv2 copies through alibabacloud-oss-go-sdk-v2 and sends malformed sources.
func TestCopyObjectSDKv2(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	c := e.adminV2(osv2.SignatureVersionV4)
	data := randomBytes(t, 70_000)
	if _, err := c.PutObject(bg, &osv2.PutObjectRequest{Bucket: osv2.Ptr("other-bucket"), Key: osv2.Ptr("a/b c+d.bin"), Body: bytes.NewReader(data)}); err != nil {
		t.Fatal(err)
	}
	res, err := c.CopyObject(bg, &osv2.CopyObjectRequest{Bucket: osv2.Ptr(testBucket), Key: osv2.Ptr("x/y.bin"),
		SourceBucket: osv2.Ptr("other-bucket"), SourceKey: osv2.Ptr("a/b c+d.bin")})
	if err != nil {
		t.Fatal(err)
	}
	sum := md5.Sum(data)
	if osv2.ToString(res.ETag) != quoteETag(upperHex(sum[:])) || osv2.ToString(res.HashCRC64) != testutil.CRC64(data) || res.StatusCode != http.StatusOK {
		t.Errorf("CopyObjectResult ETag %s CRC %s", osv2.ToString(res.ETag), osv2.ToString(res.HashCRC64))
	}
	g, err := c.GetObject(bg, &osv2.GetObjectRequest{Bucket: osv2.Ptr(testBucket), Key: osv2.Ptr("x/y.bin")})
	if err != nil {
		t.Fatal(err)
	}
	mustEqualBytes(t, readAllClose(t, g.Body), data)
	_, err = c.CopyObject(bg, &osv2.CopyObjectRequest{Bucket: osv2.Ptr(testBucket), Key: osv2.Ptr("x/y.bin"),
		SourceBucket: osv2.Ptr("other-bucket"), SourceKey: osv2.Ptr("a/b c+d.bin"), ForbidOverwrite: osv2.Ptr("true")})
	wantSvcErr(t, err, http.StatusConflict, "FileAlreadyExists", "0026-00000002")

	put := func(source string) error {
		_, err := c.InvokeOperation(bg, &osv2.OperationInput{OpName: "CopyObject", Method: "PUT", Bucket: osv2.Ptr(testBucket),
			Key: osv2.Ptr("x/z.bin"), Headers: map[string]string{"x-oss-copy-source": source}})
		return err
	}
	for _, bad := range []string{"/", "/other-bucket", "/other-bucket/", "nobucketslash", "/other-bucket/a%zz", "/other-bucket/a?acl", "/other-bucket/a?versionId=1&x=2"} {
		wantSvcErr(t, put(bad), http.StatusBadRequest, "InvalidArgument", ecUnknown)
	}
	wantSvcErr(t, put("/other-bucket/a%2Fb%20c%2Bd.bin?versionId=CAEQ"), http.StatusNotFound, "NoSuchVersion", ecUnknown)
	if err := put("/other-bucket/a%2Fb%20c%2Bd.bin?versionId=null"); err != nil {
		t.Errorf("versionId=null: %v", err)
	}
	wantSvcErr(t, put("/other-bucket/%2Fslash"), http.StatusBadRequest, "InvalidObjectName", ecUnknown)
	// UploadPartCopy is not implemented and says so.
	_, err = c.InvokeOperation(bg, &osv2.OperationInput{OpName: "UploadPartCopy", Method: "PUT", Bucket: osv2.Ptr(testBucket),
		Key: osv2.Ptr("x/z.bin"), Headers: map[string]string{"x-oss-copy-source": "/clips/x/y.bin"},
		Parameters: map[string]string{"partNumber": "1", "uploadId": "0123456789ABCDEF0123456789ABCDEF"}})
	wantSvcErr(t, err, http.StatusNotImplemented, "NotImplemented", ecUnknown)
}

// TestCopyObjectRAM: a copy needs oss:GetObject on the source and oss:PutObject on the target.
func TestCopyObjectRAM(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	admin := e.admin(oss.AuthV4)
	for _, k := range []string{"cams/cam-1/a.mp4", "cams/cam-2/a.mp4"} {
		if err := admin.PutObject(k, strings.NewReader(k)); err != nil {
			t.Fatal(err)
		}
	}
	pol := func(actions ...string) string {
		return `{"Version":"1","Statement":[{"Effect":"Allow","Action":["` + strings.Join(actions, `","`) + `"],"Resource":["acs:oss:*:*:clips/cams/cam-1/*"]}]}`
	}
	rw := e.stsClient(e.assumeRole(pol("oss:GetObject", "oss:PutObject"), time.Hour), oss.AuthV4)
	if _, err := rw.CopyObject("cams/cam-1/a.mp4", "cams/cam-1/b.mp4"); err != nil {
		t.Fatalf("copy inside the prefix: %v", err)
	}
	_, err := rw.CopyObject("cams/cam-2/a.mp4", "cams/cam-1/c.mp4")
	wantSvcErr(t, err, http.StatusForbidden, "AccessDenied", "0003-00000001")
	_, err = rw.CopyObject("cams/cam-1/a.mp4", "cams/cam-2/c.mp4")
	wantSvcErr(t, err, http.StatusForbidden, "AccessDenied", "0003-00000001")
	// Denied on a source that does not exist: existence is not revealed.
	_, err = rw.CopyObject("cams/cam-2/absent.mp4", "cams/cam-1/c.mp4")
	wantSvcErr(t, err, http.StatusForbidden, "AccessDenied", "0003-00000001")
	_, err = e.stsClient(e.assumeRole(pol("oss:PutObject"), time.Hour), oss.AuthV4).CopyObject("cams/cam-1/a.mp4", "cams/cam-1/d.mp4")
	wantSvcErr(t, err, http.StatusForbidden, "AccessDenied", "0003-00000001")
	_, err = e.stsClient(e.assumeRole(pol("oss:GetObject"), time.Hour), oss.AuthV4).CopyObject("cams/cam-1/a.mp4", "cams/cam-1/d.mp4")
	wantSvcErr(t, err, http.StatusForbidden, "AccessDenied", "0003-00000001")
	for _, k := range []string{"cams/cam-1/c.mp4", "cams/cam-2/c.mp4", "cams/cam-1/d.mp4"} {
		if ok, _ := admin.IsObjectExist(k); ok {
			t.Errorf("a denied copy wrote %s", k)
		}
	}
}

// TestCopyObjectWhileOverwritten copies a source that other requests keep replacing (Normal
// and Multipart versions): every copy is one whole version, with that version's ETag and CRC.
func TestCopyObjectWhileOverwritten(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	b := e.admin(oss.AuthV4)
	versions := [][]byte{randomBytes(t, 3000), randomBytes(t, minPartSize+100)}
	if err := b.PutObject("src", bytes.NewReader(versions[0])); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 6 {
			v := versions[i%2]
			if i%2 == 0 {
				if err := b.PutObject("src", bytes.NewReader(v)); err != nil {
					t.Error(err)
				}
			} else {
				multipartObject(t, b, "src", v)
			}
		}
	})
	for i := range 3 {
		wg.Go(func() {
			for j := range 6 {
				dst := fmt.Sprintf("copy-%d-%d", i, j)
				if _, err := b.CopyObject("src", dst); err != nil {
					t.Error(err)
					return
				}
				got := getAll(t, b, dst)
				if !slices.ContainsFunc(versions, func(v []byte) bool { return bytes.Equal(v, got) }) {
					t.Errorf("%s holds %d bytes matching no version", dst, len(got))
				}
				if h := headOf(t, b, dst); h.Get("X-Oss-Hash-Crc64ecma") != testutil.CRC64(got) {
					t.Errorf("%s: CRC header %s does not match its data", dst, h.Get("X-Oss-Hash-Crc64ecma"))
				}
			}
		})
	}
	wg.Wait()
}

// TestDeleteMultipleObjects deletes in bulk through both Go SDKs: verbose and quiet, keys
// URL-encoded in the response, absent keys reported deleted, garbage refused.
func TestDeleteMultipleObjects(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	b := e.admin(oss.AuthV1)
	keys := []string{"d/a.mp4", "d/门口 camera #1&<>.mp4", "d/ctl\x01.mp4", "d/p+q%2F.mp4"}
	for _, k := range keys {
		if err := b.PutObject(k, strings.NewReader(k)); err != nil {
			t.Fatal(err)
		}
	}
	res, err := b.DeleteObjects(append(slices.Clone(keys), "d/absent.mp4"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.DeletedObjects, append(slices.Clone(keys), "d/absent.mp4")) {
		t.Fatalf("deleted %q", res.DeletedObjects)
	}
	for _, k := range keys {
		if ok, _ := b.IsObjectExist(k); ok {
			t.Errorf("%q still exists", k)
		}
	}
	// Quiet mode answers no Deleted entries.
	for _, k := range keys {
		if err := b.PutObject(k, strings.NewReader(k)); err != nil {
			t.Fatal(err)
		}
	}
	c := e.adminV2(osv2.SignatureVersionV4)
	var objs []osv2.DeleteObject
	for _, k := range keys[:2] {
		objs = append(objs, osv2.DeleteObject{Key: osv2.Ptr(k)})
	}
	qr, err := c.DeleteMultipleObjects(bg, &osv2.DeleteMultipleObjectsRequest{Bucket: osv2.Ptr(testBucket), Objects: objs, Quiet: true})
	if err != nil || len(qr.DeletedObjects) != 0 || qr.StatusCode != http.StatusOK {
		t.Fatalf("quiet: %+v %v", qr, err)
	}
	vr, err := c.DeleteMultipleObjects(bg, &osv2.DeleteMultipleObjectsRequest{Bucket: osv2.Ptr(testBucket),
		Objects: []osv2.DeleteObject{{Key: osv2.Ptr(keys[2])}, {Key: osv2.Ptr(keys[3])}}})
	if err != nil || len(vr.DeletedObjects) != 2 || osv2.ToString(vr.DeletedObjects[0].Key) != keys[2] || osv2.ToString(vr.DeletedObjects[1].Key) != keys[3] {
		t.Fatalf("v2 verbose: %+v %v", vr, err)
	}
	ls, err := b.ListObjectsV2(oss.Prefix("d/"))
	if err != nil || len(ls.Objects) != 0 {
		t.Fatalf("left after deletes: %+v %v", ls.Objects, err)
	}

	post := func(body string, hdr map[string]string) error {
		h := map[string]string{"Content-Type": "application/xml"}
		if hdr == nil {
			sum := md5.Sum([]byte(body))
			h["Content-MD5"] = base64.StdEncoding.EncodeToString(sum[:])
		}
		for k, v := range hdr {
			h[k] = v
		}
		_, err := c.InvokeOperation(bg, &osv2.OperationInput{OpName: "DeleteMultipleObjects", Method: "POST", Bucket: osv2.Ptr(testBucket),
			Parameters: map[string]string{"delete": ""}, Headers: h, Body: strings.NewReader(body)})
		return err
	}
	if err := b.PutObject("d/keep.mp4", strings.NewReader("keep")); err != nil {
		t.Fatal(err)
	}
	one := "<Delete><Object><Key>d/keep.mp4</Key></Object></Delete>"
	wantSvcErr(t, post(one, map[string]string{}), http.StatusBadRequest, "MissingArgument", "0016-00000606")
	wantSvcErr(t, post(one, map[string]string{"Content-MD5": md5B64([]byte("other"))}), http.StatusBadRequest, "InvalidDigest", ecUnknown)
	wantSvcErr(t, post("<Remove><Object><Key>d/keep.mp4</Key></Object></Remove>", nil), http.StatusBadRequest, "MalformedXML", "0016-00000608")
	wantSvcErr(t, post("<Delete><Object><Key>d/keep.mp4</Key>", nil), http.StatusBadRequest, "MalformedXML", "0016-00000608")
	wantSvcErr(t, post("<Delete></Delete>", nil), http.StatusBadRequest, "MalformedXML", "0016-00000608")
	wantSvcErr(t, post("<Delete><Quiet>maybe</Quiet><Object><Key>d/keep.mp4</Key></Object></Delete>", nil), http.StatusBadRequest, "MalformedXML", "0016-00000608")
	wantSvcErr(t, post("<Delete><Object><Key>d/keep.mp4</Key></Object><Object></Object></Delete>", nil), http.StatusBadRequest, "MalformedXML", "0016-00000613")
	wantSvcErr(t, post("<Delete><Object><Key>/abs</Key></Object></Delete>", nil), http.StatusBadRequest, "InvalidObjectName", ecUnknown)
	wantSvcErr(t, post("<Delete><Object><Key>d/keep.mp4</Key><VersionId>CAEQ</VersionId></Object></Delete>", nil), http.StatusNotFound, "NoSuchVersion", ecUnknown)
	wantSvcErr(t, post("<Delete>"+strings.Repeat("<Object><Key>d/keep.mp4</Key></Object>", 1001)+"</Delete>", nil), http.StatusBadRequest, "MalformedXML", "0016-00000608")
	if ok, _ := b.IsObjectExist("d/keep.mp4"); !ok {
		t.Fatal("a refused delete removed an object")
	}
	if err := post("<Delete>"+strings.Repeat("<Object><Key>d/keep.mp4</Key></Object>", 1000)+"</Delete>", nil); err != nil {
		t.Fatalf("1000 keys: %v", err)
	}
	if ok, _ := b.IsObjectExist("d/keep.mp4"); ok {
		t.Fatal("not deleted")
	}
}

// TestDeleteMultipleObjectsRAM: every key needs oss:DeleteObject; one denied key refuses
// the whole request and nothing is deleted.
func TestDeleteMultipleObjectsRAM(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	admin := e.admin(oss.AuthV4)
	for _, k := range []string{"cams/cam-1/a.mp4", "cams/cam-2/a.mp4"} {
		if err := admin.PutObject(k, strings.NewReader(k)); err != nil {
			t.Fatal(err)
		}
	}
	dev := e.stsClient(e.assumeRole(`{"Version":"1","Statement":[{"Effect":"Allow","Action":["oss:DeleteObject"],"Resource":["acs:oss:*:*:clips/cams/cam-1/*"]}]}`, time.Hour), oss.AuthV4)
	_, err := dev.DeleteObjects([]string{"cams/cam-1/a.mp4", "cams/cam-2/a.mp4"})
	wantSvcErr(t, err, http.StatusForbidden, "AccessDenied", "0003-00000001")
	for _, k := range []string{"cams/cam-1/a.mp4", "cams/cam-2/a.mp4"} {
		if ok, _ := admin.IsObjectExist(k); !ok {
			t.Errorf("%s deleted by a refused request", k)
		}
	}
	if _, err := dev.DeleteObjects([]string{"cams/cam-1/a.mp4"}); err != nil {
		t.Fatal(err)
	}
	if ok, _ := admin.IsObjectExist("cams/cam-1/a.mp4"); ok {
		t.Error("allowed delete did not happen")
	}
	_, err = e.client(e.roAK, e.roSK, oss.AuthV4).DeleteObjects([]string{"cams/cam-2/a.mp4"})
	wantSvcErr(t, err, http.StatusForbidden, "AccessDenied", "0003-00000001")
}

// TestControlRefs checks the rewriting of control-character references in Delete documents,
// including bodies that already use the private-use code points it borrows, and garbage.
func TestControlRefs(t *testing.T) {
	t.Parallel()
	decode := func(body string) (string, bool) {
		out, restore, ok := controlRefs([]byte(body))
		if !ok {
			return "", false
		}
		var doc struct {
			Key string `xml:"Key"`
		}
		if err := xml.Unmarshal(out, &doc); err != nil {
			return "err:" + err.Error(), true
		}
		return restore(doc.Key), true
	}
	for _, c := range []struct{ body, want string }{
		{"<D><Key>a&#x01;b&#2;c&#x1F;</Key></D>", "a\x01b\x02c\x1f"},
		{"<D><Key>tab&#x09;nl&#10;amp&amp;&#x41;</Key></D>", "tab\tnl\namp&A"},
		{"<D><Key>\U000F0001&#x01;</Key></D>", "\U000F0001\x01"},                    // first range taken literally
		{"<D><Key>&#983041;&#x01;&#x100001;</Key></D>", "\U000F0001\x01\U00100001"}, // two ranges taken by references
		{"<D><Key>&#xZZ;&#;&#x01</Key></D>", "err:"},                                // garbage references stay garbage
		{"<D><Key>" + strings.Repeat("&#", 1000) + "</Key></D>", "err:"},
	} {
		got, ok := decode(c.body)
		if !ok || (c.want == "err:" && !strings.HasPrefix(got, "err:")) || (c.want != "err:" && got != c.want) {
			t.Errorf("%q: got %q %v, want %q", c.body, got, ok, c.want)
		}
	}
	if _, _, ok := controlRefs([]byte("<D><Key>\U000F0001\U00100001\uE001&#x01;</Key></D>")); ok {
		t.Error("a body using every range was accepted")
	}
}
