package localcloud

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	osv2 "github.com/aliyun/alibabacloud-oss-go-sdk-v2/oss"
	"github.com/clipgate/clipgate/internal/testutil"
)

var v2Versions = []struct {
	name string
	v    osv2.SignatureVersionType
}{{"V4", osv2.SignatureVersionV4}, {"V1", osv2.SignatureVersionV1}}

func (e *ossEnv) adminV2(v osv2.SignatureVersionType) *osv2.Client {
	return e.clientV2(e.ak, e.sk, "", func(c *osv2.Config) { c.WithSignatureVersion(v) })
}

// TestSDKv2Objects drives the object operations through alibabacloud-oss-go-sdk-v2.
func TestSDKv2Objects(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	for _, sv := range v2Versions {
		t.Run(sv.name, func(t *testing.T) {
			t.Parallel()
			c := e.adminV2(sv.v)
			bk := osv2.Ptr(testBucket)
			key := "cams/cam-1/v2 " + sv.name + "/ü+&=.bin"
			data := randomBytes(t, 200_000)
			put, err := c.PutObject(bg, &osv2.PutObjectRequest{Bucket: bk, Key: osv2.Ptr(key), Body: bytes.NewReader(data),
				ContentType: osv2.Ptr("video/mp4"), Metadata: map[string]string{"camera": "cam-1"}, CacheControl: osv2.Ptr("no-cache")})
			if err != nil {
				t.Fatal(err)
			}
			sum := md5.Sum(data)
			etag := `"` + strings.ToUpper(hex.EncodeToString(sum[:])) + `"`
			if osv2.ToString(put.ETag) != etag || osv2.ToString(put.HashCRC64) != testutil.CRC64(data) {
				t.Fatalf("put result ETag %s CRC %s", osv2.ToString(put.ETag), osv2.ToString(put.HashCRC64))
			}

			g, err := c.GetObject(bg, &osv2.GetObjectRequest{Bucket: bk, Key: osv2.Ptr(key)})
			if err != nil {
				t.Fatal(err)
			}
			mustEqualBytes(t, readAllClose(t, g.Body), data)
			if g.Metadata["Camera"] != "cam-1" && g.Metadata["camera"] != "cam-1" {
				t.Errorf("metadata %v", g.Metadata)
			}
			g, err = c.GetObject(bg, &osv2.GetObjectRequest{Bucket: bk, Key: osv2.Ptr(key), Range: osv2.Ptr("bytes=100-199")})
			if err != nil {
				t.Fatal(err)
			}
			mustEqualBytes(t, readAllClose(t, g.Body), data[100:200])
			if osv2.ToString(g.ContentRange) != "bytes 100-199/200000" || g.StatusCode != http.StatusPartialContent {
				t.Errorf("range: %d %s", g.StatusCode, osv2.ToString(g.ContentRange))
			}

			file := filepath.Join(t.TempDir(), "out")
			if _, err := c.GetObjectToFile(bg, &osv2.GetObjectRequest{Bucket: bk, Key: osv2.Ptr(key)}, file); err != nil {
				t.Fatalf("GetObjectToFile (CRC checked): %v", err)
			}

			h, err := c.HeadObject(bg, &osv2.HeadObjectRequest{Bucket: bk, Key: osv2.Ptr(key)})
			if err != nil {
				t.Fatal(err)
			}
			if h.ContentLength != int64(len(data)) || osv2.ToString(h.ETag) != etag || osv2.ToString(h.HashCRC64) != testutil.CRC64(data) ||
				osv2.ToString(h.ObjectType) != "Normal" || osv2.ToString(h.ContentType) != "video/mp4" || h.Headers.Get("Cache-Control") != "no-cache" {
				t.Errorf("HeadObject: %+v", h)
			}
			if m, err := c.GetObjectMeta(bg, &osv2.GetObjectMetaRequest{Bucket: bk, Key: osv2.Ptr(key)}); err != nil || m.ContentLength != int64(len(data)) {
				t.Errorf("GetObjectMeta: %+v %v", m, err)
			}
			if ok, err := c.IsObjectExist(bg, testBucket, key); !ok || err != nil {
				t.Errorf("IsObjectExist: %v %v", ok, err)
			}
			if ok, err := c.IsObjectExist(bg, testBucket, key+"-absent"); ok || err != nil {
				t.Errorf("IsObjectExist absent: %v %v", ok, err)
			}

			// Conditional GET.
			_, err = c.GetObject(bg, &osv2.GetObjectRequest{Bucket: bk, Key: osv2.Ptr(key), IfMatch: osv2.Ptr(`"0000"`)})
			wantOSSCode(t, err, "PreconditionFailed")
			_, err = c.GetObject(bg, &osv2.GetObjectRequest{Bucket: bk, Key: osv2.Ptr(key), IfNoneMatch: osv2.Ptr(etag)})
			if err == nil || !strings.Contains(err.Error(), "304") {
				t.Errorf("If-None-Match: %v", err)
			}

			_, err = c.PutObject(bg, &osv2.PutObjectRequest{Bucket: bk, Key: osv2.Ptr(key), Body: strings.NewReader("x"), ForbidOverwrite: osv2.Ptr("true")})
			wantOSSCode(t, err, "FileAlreadyExists")

			if _, err := c.DeleteObject(bg, &osv2.DeleteObjectRequest{Bucket: bk, Key: osv2.Ptr(key)}); err != nil {
				t.Fatal(err)
			}
			_, err = c.GetObject(bg, &osv2.GetObjectRequest{Bucket: bk, Key: osv2.Ptr(key)})
			wantOSSCode(t, err, "NoSuchKey")
			_, err = c.HeadObject(bg, &osv2.HeadObjectRequest{Bucket: bk, Key: osv2.Ptr(key)})
			wantOSSCode(t, err, "NoSuchKey")

			// Appends, with the SDK checking the whole-object CRC.
			akey := key + ".log"
			var all []byte
			var pos int64
			crc := "0"
			for i := range 3 {
				chunk := randomBytes(t, 1000*(i+1))
				res, err := c.AppendObject(bg, &osv2.AppendObjectRequest{Bucket: bk, Key: osv2.Ptr(akey), Position: osv2.Ptr(pos),
					Body: bytes.NewReader(chunk), InitHashCRC64: osv2.Ptr(crc)})
				if err != nil {
					t.Fatalf("append %d: %v", i, err)
				}
				all = append(all, chunk...)
				pos, crc = res.NextPosition, osv2.ToString(res.HashCRC64)
			}
			if pos != int64(len(all)) || crc != testutil.CRC64(all) {
				t.Fatalf("append position %d CRC %s", pos, crc)
			}
			_, err = c.AppendObject(bg, &osv2.AppendObjectRequest{Bucket: bk, Key: osv2.Ptr(akey), Position: osv2.Ptr(int64(1)), Body: strings.NewReader("x")})
			wantOSSCode(t, err, "PositionNotEqualToLength")
			var se *osv2.ServiceError
			if errorsAs(err, &se) && se.Headers.Get("x-oss-next-append-position") != strconv.Itoa(len(all)) {
				t.Errorf("x-oss-next-append-position %q", se.Headers.Get("x-oss-next-append-position"))
			}
			// The SDK's append-only file: it stats the object, then appends at its end.
			f, err := c.AppendFile(bg, testBucket, akey)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write([]byte("tail")); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			all = append(all, "tail"...)
			g, err = c.GetObject(bg, &osv2.GetObjectRequest{Bucket: bk, Key: osv2.Ptr(akey)})
			if err != nil {
				t.Fatal(err)
			}
			mustEqualBytes(t, readAllClose(t, g.Body), all)
		})
	}
}

func errorsAs(err error, target **osv2.ServiceError) bool {
	for err != nil {
		if se, ok := err.(*osv2.ServiceError); ok {
			*target = se
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

func TestSDKv2Multipart(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	for _, sv := range v2Versions {
		t.Run(sv.name, func(t *testing.T) {
			t.Parallel()
			c := e.adminV2(sv.v)
			bk := osv2.Ptr(testBucket)
			key := osv2.Ptr("cams/cam-1/mp " + sv.name)
			init, err := c.InitiateMultipartUpload(bg, &osv2.InitiateMultipartUploadRequest{Bucket: bk, Key: key, ContentType: osv2.Ptr("video/mp4")})
			if err != nil {
				t.Fatal(err)
			}
			var all []byte
			var parts []osv2.UploadPart
			for n := int32(1); n <= 3; n++ {
				chunk := randomBytes(t, minPartSize+int(n))
				all = append(all, chunk...)
				res, err := c.UploadPart(bg, &osv2.UploadPartRequest{Bucket: bk, Key: key, UploadId: init.UploadId, PartNumber: n, Body: bytes.NewReader(chunk)})
				if err != nil {
					t.Fatal(err)
				}
				parts = append(parts, osv2.UploadPart{PartNumber: n, ETag: res.ETag})
			}
			lp, err := c.ListParts(bg, &osv2.ListPartsRequest{Bucket: bk, Key: key, UploadId: init.UploadId})
			if err != nil || len(lp.Parts) != 3 || lp.Parts[0].Size != minPartSize+1 || lp.Parts[2].HashCRC64 == nil {
				t.Fatalf("ListParts: %+v %v", lp, err)
			}
			done, err := c.CompleteMultipartUpload(bg, &osv2.CompleteMultipartUploadRequest{Bucket: bk, Key: key, UploadId: init.UploadId,
				CompleteMultipartUpload: &osv2.CompleteMultipartUpload{Parts: parts}})
			if err != nil {
				t.Fatal(err)
			}
			if osv2.ToString(done.HashCRC64) != testutil.CRC64(all) || !strings.HasSuffix(osv2.ToString(done.ETag), `-3"`) {
				t.Fatalf("complete: %+v", done)
			}
			g, err := c.GetObject(bg, &osv2.GetObjectRequest{Bucket: bk, Key: key})
			if err != nil {
				t.Fatal(err)
			}
			mustEqualBytes(t, readAllClose(t, g.Body), all)

			// x-oss-complete-all: every uploaded part in order.
			init, err = c.InitiateMultipartUpload(bg, &osv2.InitiateMultipartUploadRequest{Bucket: bk, Key: key})
			if err != nil {
				t.Fatal(err)
			}
			for n := int32(1); n <= 2; n++ {
				if _, err := c.UploadPart(bg, &osv2.UploadPartRequest{Bucket: bk, Key: key, UploadId: init.UploadId, PartNumber: n,
					Body: bytes.NewReader(all[:minPartSize])}); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := c.CompleteMultipartUpload(bg, &osv2.CompleteMultipartUploadRequest{Bucket: bk, Key: key, UploadId: init.UploadId,
				CompleteAll: osv2.Ptr("yes")}); err != nil {
				t.Fatal(err)
			}
			g, err = c.GetObject(bg, &osv2.GetObjectRequest{Bucket: bk, Key: key})
			if err != nil {
				t.Fatal(err)
			}
			mustEqualBytes(t, readAllClose(t, g.Body), append(slices.Clone(all[:minPartSize]), all[:minPartSize]...))

			init, err = c.InitiateMultipartUpload(bg, &osv2.InitiateMultipartUploadRequest{Bucket: bk, Key: key})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.AbortMultipartUpload(bg, &osv2.AbortMultipartUploadRequest{Bucket: bk, Key: key, UploadId: init.UploadId}); err != nil {
				t.Fatal(err)
			}
			_, err = c.ListParts(bg, &osv2.ListPartsRequest{Bucket: bk, Key: key, UploadId: init.UploadId})
			wantOSSCode(t, err, "NoSuchUpload")
		})
	}
}

// TestSDKv2UploaderResumesAfterRestart: the v2 uploader with a checkpoint resumes through
// ListParts (part sizes and CRCs) after the server failed mid-upload and restarted.
func TestSDKv2UploaderResumesAfterRestart(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	const partSize = 100 << 10
	var parts atomic.Int32
	e.setWrap(func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPut && r.URL.Query().Has("partNumber") && parts.Add(1) > 2 {
				w.Header().Set("Content-Type", "application/xml")
				w.WriteHeader(http.StatusInternalServerError)
				fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code><Message>injected</Message></Error>`)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	dir := t.TempDir()
	src := filepath.Join(dir, "clip")
	data := randomBytes(t, 5*partSize+77)
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	opts := func(o *osv2.UploaderOptions) {
		o.PartSize, o.ParallelNum, o.EnableCheckpoint, o.CheckpointDir, o.LeavePartsOnError = partSize, 1, true, dir, true
	}
	c := e.adminV2(osv2.SignatureVersionV4)
	req := &osv2.PutObjectRequest{Bucket: osv2.Ptr(testBucket), Key: osv2.Ptr("cams/cam-1/v2-resumable")}
	if _, err := c.NewUploader(opts).UploadFile(bg, req, src); err == nil {
		t.Fatal("upload succeeded despite the injected failure")
	}
	e.restart()
	var resumed atomic.Int32
	e.countParts(&resumed)
	res, err := e.adminV2(osv2.SignatureVersionV4).NewUploader(opts).UploadFile(bg, req, src)
	if err != nil {
		t.Fatalf("resume: %v", err)
	}
	if got := resumed.Load(); got != 4 {
		t.Errorf("resume sent %d parts, want 4 (2 of 6 were kept)", got)
	}
	if osv2.ToString(res.HashCRC64) != testutil.CRC64(data) {
		t.Errorf("CRC %s, want %s", osv2.ToString(res.HashCRC64), testutil.CRC64(data))
	}
	g, err := c.GetObject(bg, &osv2.GetObjectRequest{Bucket: req.Bucket, Key: req.Key})
	if err != nil {
		t.Fatal(err)
	}
	mustEqualBytes(t, readAllClose(t, g.Body), data)
}

func TestSDKv2ListAndErrors(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	c := e.adminV2(osv2.SignatureVersionV4)
	var keys []string
	for i := range 25 {
		k := fmt.Sprintf("list/%02d/%s", i%5, strings.Repeat("é", i%3)+strconv.Itoa(i))
		keys = append(keys, k)
		if _, err := c.PutObject(bg, &osv2.PutObjectRequest{Bucket: osv2.Ptr(testBucket), Key: osv2.Ptr(k), Body: strings.NewReader(k)}); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(keys)
	p := c.NewListObjectsV2Paginator(&osv2.ListObjectsV2Request{Bucket: osv2.Ptr(testBucket), Prefix: osv2.Ptr("list/"), MaxKeys: 7})
	var got []string
	pages := 0
	for p.HasNext() {
		page, err := p.NextPage(bg)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if page.KeyCount != len(page.Contents) {
			t.Errorf("KeyCount %d with %d contents", page.KeyCount, len(page.Contents))
		}
		for _, o := range page.Contents {
			got = append(got, osv2.ToString(o.Key))
		}
	}
	if !slices.Equal(got, keys) || pages != 4 {
		t.Fatalf("paginated %d pages: %q", pages, got)
	}
	res, err := c.ListObjectsV2(bg, &osv2.ListObjectsV2Request{Bucket: osv2.Ptr(testBucket), Prefix: osv2.Ptr("list/"), Delimiter: osv2.Ptr("/")})
	if err != nil || len(res.CommonPrefixes) != 5 || len(res.Contents) != 0 || osv2.ToString(res.CommonPrefixes[4].Prefix) != "list/04/" {
		t.Fatalf("delimiter listing: %+v %v", res, err)
	}

	// max-keys defaults to 100.
	for i := range 101 {
		if _, err := c.PutObject(bg, &osv2.PutObjectRequest{Bucket: osv2.Ptr(testBucket), Key: osv2.Ptr(fmt.Sprintf("many/%03d", i)), Body: strings.NewReader("")}); err != nil {
			t.Fatal(err)
		}
	}
	res, err = c.ListObjectsV2(bg, &osv2.ListObjectsV2Request{Bucket: osv2.Ptr(testBucket), Prefix: osv2.Ptr("many/")})
	if err != nil || len(res.Contents) != 100 || !res.IsTruncated || res.MaxKeys != 100 || res.KeyCount != 100 || res.NextContinuationToken == nil {
		t.Fatalf("default page: %d keys, truncated %v, max %d, %v", len(res.Contents), res.IsTruncated, res.MaxKeys, err)
	}
	res, err = c.ListObjectsV2(bg, &osv2.ListObjectsV2Request{Bucket: osv2.Ptr(testBucket), Prefix: osv2.Ptr("many/"), ContinuationToken: res.NextContinuationToken})
	if err != nil || len(res.Contents) != 1 || res.IsTruncated || osv2.ToString(res.Contents[0].Key) != "many/100" {
		t.Fatalf("second page: %+v %v", res, err)
	}

	bad := e.clientV2(e.ak, e.sk+"x", "")
	_, err = bad.PutObject(bg, &osv2.PutObjectRequest{Bucket: osv2.Ptr(testBucket), Key: osv2.Ptr("k"), Body: strings.NewReader("x")})
	wantOSSCode(t, err, "SignatureDoesNotMatch")
	wrongRegion := e.clientV2(e.ak, e.sk, "", func(c *osv2.Config) { c.WithRegion("cn-shanghai") })
	_, err = wrongRegion.PutObject(bg, &osv2.PutObjectRequest{Bucket: osv2.Ptr(testBucket), Key: osv2.Ptr("k"), Body: strings.NewReader("x")})
	wantOSSCode(t, err, "InvalidArgument")
	_, err = c.PutObject(bg, &osv2.PutObjectRequest{Bucket: osv2.Ptr("nope-bucket"), Key: osv2.Ptr("k"), Body: strings.NewReader("x")})
	wantOSSCode(t, err, "NoSuchBucket")
	unknown := e.clientV2("LTAInobody", e.sk, "")
	_, err = unknown.GetObject(bg, &osv2.GetObjectRequest{Bucket: osv2.Ptr(testBucket), Key: osv2.Ptr(keys[0])})
	wantOSSCode(t, err, "InvalidAccessKeyId")
}

// TestSDKv2Presign uses the v2 SDK's presigned URLs (V4 and V1) with a plain HTTP client,
// as a browser or curl would.
func TestSDKv2Presign(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	for _, sv := range v2Versions {
		t.Run(sv.name, func(t *testing.T) {
			c := e.adminV2(sv.v)
			key := osv2.Ptr("presigned/" + sv.name + "/a b.bin")
			data := randomBytes(t, 4096)
			put, err := c.Presign(bg, &osv2.PutObjectRequest{Bucket: osv2.Ptr(testBucket), Key: key, ContentType: osv2.Ptr("application/x-clip")},
				func(o *osv2.PresignOptions) { o.Expires = time.Minute })
			if err != nil {
				t.Fatal(err)
			}
			if code, body := doPresigned(t, http.MethodPut, put, data); code != http.StatusOK {
				t.Fatalf("presigned PUT: %d %s", code, body)
			}
			get, err := c.Presign(bg, &osv2.GetObjectRequest{Bucket: osv2.Ptr(testBucket), Key: key}, func(o *osv2.PresignOptions) { o.Expires = 30 * time.Second })
			if err != nil {
				t.Fatal(err)
			}
			code, body := doPresigned(t, http.MethodGet, get, nil)
			if code != http.StatusOK {
				t.Fatalf("presigned GET: %d %s", code, body)
			}
			mustEqualBytes(t, body, data)

			e.clockMu.Lock()
			e.clock.Advance(2 * time.Minute)
			code, body = doPresigned(t, http.MethodGet, get, nil)
			e.clock.Advance(-2 * time.Minute)
			e.clockMu.Unlock()
			if code != http.StatusForbidden || !bytes.Contains(body, []byte("<Code>AccessDenied</Code>")) || !bytes.Contains(body, []byte("expired")) {
				t.Fatalf("expired presigned GET: %d %s", code, body)
			}
		})
	}
}

func doPresigned(t *testing.T, method string, p *osv2.PresignResult, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, p.URL, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range p.SignedHeaders {
		req.Header.Set(k, v)
	}
	client := &http.Client{}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}
