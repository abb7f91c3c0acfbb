package localcloud

import (
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash/crc64"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	"github.com/clipgate/clipgate/internal/testutil"
)

// TestSDKObjectLifecycle drives put, get, ranges, metadata, existence, forbid-overwrite and
// delete through aliyun-oss-go-sdk with each signature version.
func TestSDKObjectLifecycle(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	for _, av := range authVersions {
		t.Run(av.name, func(t *testing.T) {
			t.Parallel()
			b := e.admin(av.v)
			key := "cams/cam-1/2024/01/02 clip+ü&%2F=?.mp4." + av.name
			data := randomBytes(t, 300_000)
			if err := b.PutObject(key, bytes.NewReader(data), oss.ContentType("video/mp4"), oss.Meta("Camera", "cam-1"), oss.ContentMD5(md5B64(data))); err != nil {
				t.Fatal(err)
			}
			mustEqualBytes(t, getAll(t, b, key), data)

			h, err := b.GetObjectDetailedMeta(key)
			if err != nil {
				t.Fatal(err)
			}
			sum := md5.Sum(data)
			checks := map[string]string{
				"Content-Type":         "video/mp4",
				"Content-Length":       strconv.Itoa(len(data)),
				"ETag":                 `"` + strings.ToUpper(hex.EncodeToString(sum[:])) + `"`,
				"X-Oss-Hash-Crc64ecma": testutil.CRC64(data),
				"X-Oss-Object-Type":    "Normal",
				"X-Oss-Meta-Camera":    "cam-1",
			}
			for k, want := range checks {
				if got := h.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			if h.Get("X-Oss-Request-Id") == "" {
				t.Error("no x-oss-request-id")
			}
			if lm, err := http.ParseTime(h.Get("Last-Modified")); err != nil || time.Since(lm).Abs() > time.Minute {
				t.Errorf("Last-Modified %q: %v", h.Get("Last-Modified"), err)
			}

			m, err := b.GetObjectMeta(key)
			if err != nil {
				t.Fatal(err)
			}
			if m.Get("Content-Length") != strconv.Itoa(len(data)) || m.Get("ETag") != checks["ETag"] {
				t.Errorf("GetObjectMeta headers %v", m)
			}

			// Ranges: closed, open-ended, suffix; malformed ranges and, without
			// x-oss-range-behavior: standard, ranges outside the object are ignored (whole
			// object; TestRangeBehavior has the details).
			mustEqualBytes(t, getAll(t, b, key, oss.Range(10, 19)), data[10:20])
			mustEqualBytes(t, getAll(t, b, key, oss.NormalizedRange("299990-")), data[299990:])
			mustEqualBytes(t, getAll(t, b, key, oss.NormalizedRange("-7")), data[len(data)-7:])
			mustEqualBytes(t, getAll(t, b, key, oss.NormalizedRange("299990-999999999")), data)
			mustEqualBytes(t, getAll(t, b, key, oss.NormalizedRange("299990-999999999"), oss.RangeBehavior("standard")), data[299990:])
			mustEqualBytes(t, getAll(t, b, key, oss.NormalizedRange("20-10")), data)
			var rh http.Header
			_ = getAll(t, b, key, oss.Range(0, 0), oss.GetResponseHeader(&rh))
			if got := rh.Get("Content-Range"); got != "bytes 0-0/300000" {
				t.Errorf("Content-Range %q", got)
			}
			mustEqualBytes(t, getAll(t, b, key, oss.NormalizedRange("300000-")), data)
			_, err = b.GetObject(key, oss.NormalizedRange("300000-"), oss.RangeBehavior("standard"))
			wantOSSCode(t, err, "InvalidRange")

			ok, err := b.IsObjectExist(key)
			if err != nil || !ok {
				t.Fatalf("IsObjectExist = %v, %v", ok, err)
			}
			ok, err = b.IsObjectExist(key + ".absent")
			if err != nil || ok {
				t.Fatalf("IsObjectExist(absent) = %v, %v", ok, err)
			}

			err = b.PutObject(key, bytes.NewReader([]byte("x")), oss.ForbidOverWrite(true))
			wantOSSCode(t, err, "FileAlreadyExists")
			mustEqualBytes(t, getAll(t, b, key), data) // untouched

			// Overwrite, then delete; delete is idempotent.
			if err := b.PutObject(key, strings.NewReader("v2")); err != nil {
				t.Fatal(err)
			}
			mustEqualBytes(t, getAll(t, b, key), []byte("v2"))
			if h, _ := b.GetObjectDetailedMeta(key); h.Get("Content-Type") != "application/octet-stream" && !strings.HasPrefix(h.Get("Content-Type"), "video/") {
				t.Errorf("default Content-Type %q", h.Get("Content-Type"))
			}
			if err := b.DeleteObject(key); err != nil {
				t.Fatal(err)
			}
			_, err = b.GetObject(key)
			wantOSSCode(t, err, "NoSuchKey")
			_, err = b.GetObjectDetailedMeta(key)
			wantOSSCode(t, err, "NoSuchKey") // HEAD: the code travels in x-oss-err
			if err := b.DeleteObject(key); err != nil {
				t.Fatalf("second delete: %v", err)
			}

			// An empty object.
			if err := b.PutObject(key+".empty", bytes.NewReader(nil)); err != nil {
				t.Fatal(err)
			}
			if got := getAll(t, b, key+".empty"); len(got) != 0 {
				t.Fatalf("empty object has %d bytes", len(got))
			}
			_, err = b.GetObject(key+".empty", oss.Range(0, 1), oss.RangeBehavior("standard"))
			wantOSSCode(t, err, "InvalidRange")
		})
	}
}

func md5B64(b []byte) string {
	s := md5.Sum(b)
	return base64.StdEncoding.EncodeToString(s[:])
}

func TestSDKPutIntegrityHeaders(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	b := e.admin(oss.AuthV4)
	err := b.PutObject("bad-md5", strings.NewReader("hello"), oss.ContentMD5(md5B64([]byte("other"))))
	wantOSSCode(t, err, "InvalidDigest")
	err = b.PutObject("bad-md5", strings.NewReader("hello"), oss.ContentMD5("not base64!"))
	wantOSSCode(t, err, "InvalidDigest")
	err = b.PutObject("bad-crc", strings.NewReader("hello"), oss.SetHeader("x-oss-hash-crc64ecma", "12345"))
	wantOSSCode(t, err, "InvalidDigest")
	if err := b.PutObject("good-crc", strings.NewReader("hello"), oss.SetHeader("x-oss-hash-crc64ecma", testutil.CRC64([]byte("hello")))); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"bad-md5", "bad-crc"} {
		if ok, err := b.IsObjectExist(k); err != nil || ok {
			t.Fatalf("%s exists after a failed put: %v %v", k, ok, err)
		}
	}
}

func TestSDKAppend(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	for _, av := range authVersions {
		t.Run(av.name, func(t *testing.T) {
			t.Parallel()
			b := e.admin(av.v)
			key := "cams/cam-1/append " + av.name
			var all []byte
			var pos int64
			var crc uint64
			for i, n := range []int{1000, 0, 70_000, 3} {
				chunk := randomBytes(t, n)
				res, err := b.DoAppendObject(&oss.AppendObjectRequest{ObjectKey: key, Reader: bytes.NewReader(chunk), Position: pos},
					[]oss.Option{oss.InitCRC(crc), oss.ContentType("text/plain"), oss.Meta("Seq", strconv.Itoa(i))})
				if err != nil {
					t.Fatalf("append %d: %v", i, err)
				}
				all = append(all, chunk...)
				if res.NextPosition != int64(len(all)) {
					t.Fatalf("next position %d, want %d", res.NextPosition, len(all))
				}
				pos, crc = res.NextPosition, res.CRC
			}
			if strconv.FormatUint(crc, 10) != testutil.CRC64(all) {
				t.Fatal("CRC after appends differs")
			}
			mustEqualBytes(t, getAll(t, b, key), all)
			h, err := b.GetObjectDetailedMeta(key)
			if err != nil {
				t.Fatal(err)
			}
			sum := md5.Sum(all)
			if h.Get("X-Oss-Object-Type") != "Appendable" || h.Get("X-Oss-Next-Append-Position") != strconv.Itoa(len(all)) ||
				h.Get("ETag") == `"`+strings.ToUpper(hex.EncodeToString(sum[:]))+`"` || h.Get("Content-Type") != "text/plain" ||
				h.Get("X-Oss-Meta-Seq") != "0" {
				t.Errorf("appendable headers: %v", h)
			}

			_, err = b.AppendObject(key, strings.NewReader("x"), 5)
			wantOSSCode(t, err, "PositionNotEqualToLength")
			_, err = b.AppendObject(key+".new", strings.NewReader("x"), 1)
			wantOSSCode(t, err, "PositionNotEqualToLength")

			if err := b.PutObject(key+".normal", strings.NewReader("n")); err != nil {
				t.Fatal(err)
			}
			_, err = b.AppendObject(key+".normal", strings.NewReader("x"), 1)
			wantOSSCode(t, err, "ObjectNotAppendable")
			// PutObject replaces an appendable object with a normal one.
			if err := b.PutObject(key, strings.NewReader("replaced")); err != nil {
				t.Fatal(err)
			}
			_, err = b.AppendObject(key, strings.NewReader("x"), 8)
			wantOSSCode(t, err, "ObjectNotAppendable")
		})
	}
}

func TestSDKAppendSurvivesRestart(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	b := e.admin(oss.AuthV1)
	if _, err := b.AppendObject("log", strings.NewReader("hello "), 0); err != nil {
		t.Fatal(err)
	}
	e.restart()
	b = e.admin(oss.AuthV1)
	next, err := b.AppendObject("log", strings.NewReader("world"), 6)
	if err != nil || next != 11 {
		t.Fatalf("append after restart: %d, %v", next, err)
	}
	mustEqualBytes(t, getAll(t, b, "log"), []byte("hello world"))
	h, _ := b.GetObjectDetailedMeta("log")
	if h.Get("ETag") != quoteETag(appendableETag(crc64.Checksum([]byte("hello world"), ecmaTable), 11)) || h.Get("X-Oss-Hash-Crc64ecma") != testutil.CRC64([]byte("hello world")) {
		t.Fatalf("headers after restart: %v", h)
	}
}

func TestSDKMultipart(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	for _, av := range authVersions {
		t.Run(av.name, func(t *testing.T) {
			t.Parallel()
			b := e.admin(av.v)
			key := "cams/cam-1/big clip " + av.name
			sizes := []int{minPartSize, minPartSize + 7, 1234}
			var all []byte
			imur, err := b.InitiateMultipartUpload(key, oss.ContentType("video/mp4"), oss.Meta("Camera", "c1"))
			if err != nil {
				t.Fatal(err)
			}
			var parts []oss.UploadPart
			var md5s []byte
			for i, n := range sizes {
				chunk := randomBytes(t, n)
				all = append(all, chunk...)
				s := md5.Sum(chunk)
				md5s = append(md5s, s[:]...)
				p, err := b.UploadPart(imur, bytes.NewReader(chunk), int64(n), i+1)
				if err != nil {
					t.Fatalf("part %d: %v", i+1, err)
				}
				parts = append(parts, p)
			}
			// Re-uploading a part replaces it.
			chunk := randomBytes(t, sizes[2])
			all = append(all[:len(all)-sizes[2]], chunk...)
			s := md5.Sum(chunk)
			copy(md5s[32:], s[:])
			if parts[2], err = b.UploadPart(imur, bytes.NewReader(chunk), int64(len(chunk)), 3); err != nil {
				t.Fatal(err)
			}

			lp, err := b.ListUploadedParts(imur)
			if err != nil {
				t.Fatal(err)
			}
			if len(lp.UploadedParts) != 3 || lp.UploadedParts[1].Size != sizes[1] || lp.UploadedParts[2].ETag != parts[2].ETag {
				t.Fatalf("ListUploadedParts: %+v", lp)
			}
			lp, err = b.ListUploadedParts(imur, oss.MaxParts(2))
			if err != nil || len(lp.UploadedParts) != 2 || !lp.IsTruncated || lp.NextPartNumberMarker != "2" {
				t.Fatalf("ListUploadedParts max 2: %+v %v", lp, err)
			}

			// Bad completions leave the upload intact. (The SDK sorts the list, so a repeated
			// part is the out-of-order case it can send; raw requests test the rest.)
			_, err = b.CompleteMultipartUpload(imur, []oss.UploadPart{parts[1], parts[0], parts[0], parts[2]})
			wantOSSCode(t, err, "InvalidPartOrder")
			_, err = b.CompleteMultipartUpload(imur, []oss.UploadPart{parts[0], {PartNumber: 2, ETag: `"00000000000000000000000000000000"`}, parts[2]})
			wantOSSCode(t, err, "InvalidPart")
			_, err = b.CompleteMultipartUpload(imur, []oss.UploadPart{parts[0], parts[1], {PartNumber: 4, ETag: parts[2].ETag}})
			wantOSSCode(t, err, "InvalidPart")
			_, err = b.CompleteMultipartUpload(imur, []oss.UploadPart{parts[2], {PartNumber: 4, ETag: parts[2].ETag}})
			wantOSSCode(t, err, "InvalidPart")

			var rh http.Header
			res, err := b.CompleteMultipartUpload(imur, parts, oss.GetResponseHeader(&rh))
			if err != nil {
				t.Fatal(err)
			}
			ms := md5.Sum(md5s)
			wantETag := `"` + strings.ToUpper(hex.EncodeToString(ms[:])) + `-3"`
			if res.ETag != wantETag || res.Key != key || res.Bucket != testBucket {
				t.Fatalf("Complete result %+v, want ETag %s", res, wantETag)
			}
			if rh.Get("X-Oss-Hash-Crc64ecma") != testutil.CRC64(all) {
				t.Fatalf("Complete CRC %s, want %s", rh.Get("X-Oss-Hash-Crc64ecma"), testutil.CRC64(all))
			}
			mustEqualBytes(t, getAll(t, b, key), all)
			// A range across part boundaries.
			mustEqualBytes(t, getAll(t, b, key, oss.Range(minPartSize-5, minPartSize+5)), all[minPartSize-5:minPartSize+6])
			mustEqualBytes(t, getAll(t, b, key, oss.Range(2*minPartSize+6, 2*minPartSize+100)), all[2*minPartSize+6:2*minPartSize+101])
			h, err := b.GetObjectDetailedMeta(key)
			if err != nil || h.Get("X-Oss-Object-Type") != "Multipart" || h.Get("Content-Type") != "video/mp4" ||
				h.Get("X-Oss-Meta-Camera") != "c1" || h.Get("ETag") != wantETag || h.Get("X-Oss-Hash-Crc64ecma") != testutil.CRC64(all) {
				t.Fatalf("multipart headers %v, %v", h, err)
			}

			// The upload is gone once completed.
			_, err = b.ListUploadedParts(imur)
			wantOSSCode(t, err, "NoSuchUpload")
			_, err = b.UploadPart(imur, strings.NewReader("late"), 4, 4)
			wantOSSCode(t, err, "NoSuchUpload")
		})
	}
}

func TestSDKMultipartErrors(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	b := e.admin(oss.AuthV4)
	imur, err := b.InitiateMultipartUpload("small")
	if err != nil {
		t.Fatal(err)
	}
	p1, err := b.UploadPart(imur, strings.NewReader("tiny"), 4, 1)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := b.UploadPart(imur, strings.NewReader("end"), 3, 2)
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.CompleteMultipartUpload(imur, []oss.UploadPart{p1, p2})
	wantOSSCode(t, err, "EntityTooSmall")
	// A single small part is fine: it is the last.
	if _, err := b.CompleteMultipartUpload(imur, []oss.UploadPart{p1}); err != nil {
		t.Fatal(err)
	}
	mustEqualBytes(t, getAll(t, b, "small"), []byte("tiny"))

	imur2, err := b.InitiateMultipartUpload("aborted")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.UploadPart(imur2, strings.NewReader("x"), 1, 1); err != nil {
		t.Fatal(err)
	}
	if err := b.AbortMultipartUpload(imur2); err != nil {
		t.Fatal(err)
	}
	wantOSSCode(t, b.AbortMultipartUpload(imur2), "NoSuchUpload")
	_, err = b.ListUploadedParts(imur2)
	wantOSSCode(t, err, "NoSuchUpload")
	_, err = b.CompleteMultipartUpload(imur2, []oss.UploadPart{{PartNumber: 1, ETag: "x"}})
	wantOSSCode(t, err, "NoSuchUpload")

	// An upload ID belongs to its key.
	imur3, err := b.InitiateMultipartUpload("mine")
	if err != nil {
		t.Fatal(err)
	}
	other := imur3
	other.Key = "yours"
	_, err = b.UploadPart(other, strings.NewReader("x"), 1, 1)
	wantOSSCode(t, err, "NoSuchUpload")
	// Unknown and malformed upload IDs.
	for _, id := range []string{"0123456789ABCDEF0123456789ABCDEF", "../../meta", "x"} {
		bad := imur3
		bad.UploadID = id
		_, err = b.UploadPart(bad, strings.NewReader("x"), 1, 1)
		wantOSSCode(t, err, "NoSuchUpload")
	}
	// Part numbers outside 1..10000.
	_, err = b.UploadPart(imur3, strings.NewReader("x"), 1, 10001)
	wantOSSCode(t, err, "InvalidArgument")
	_, err = b.UploadPart(imur3, strings.NewReader("x"), 1, 0)
	wantOSSCode(t, err, "InvalidArgument")

	// forbid-overwrite at complete.
	if err := b.PutObject("taken", strings.NewReader("first")); err != nil {
		t.Fatal(err)
	}
	imur4, err := b.InitiateMultipartUpload("taken")
	if err != nil {
		t.Fatal(err)
	}
	p, err := b.UploadPart(imur4, strings.NewReader("second"), 6, 1)
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.CompleteMultipartUpload(imur4, []oss.UploadPart{p}, oss.ForbidOverWrite(true))
	wantOSSCode(t, err, "FileAlreadyExists")
	mustEqualBytes(t, getAll(t, b, "taken"), []byte("first"))
	_, err = b.InitiateMultipartUpload("taken", oss.ForbidOverWrite(true))
	wantOSSCode(t, err, "FileAlreadyExists")
}

// TestSDKUploadFileResumesAfterRestart fails a resumable upload after some parts, restarts the
// server over the same data directory, and resumes from the SDK's checkpoint: the upload ID
// and its parts must have survived, and only the missing parts are sent again.
func TestSDKUploadFileResumesAfterRestart(t *testing.T) {
	t.Parallel()
	for _, av := range []struct {
		name string
		v    oss.AuthVersionType
	}{{"V1", oss.AuthV1}, {"V4", oss.AuthV4}} {
		t.Run(av.name, func(t *testing.T) {
			t.Parallel()
			const partSize = 100 << 10
			const failAfter = 3
			var parts atomic.Int32
			e := newOSSEnv(t)
			e.setWrap(func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.Method == http.MethodPut && r.URL.Query().Has("partNumber") && parts.Add(1) > failAfter {
						w.Header().Set("Content-Type", "application/xml")
						w.WriteHeader(http.StatusServiceUnavailable)
						fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code><Message>injected</Message></Error>`)
						return
					}
					h.ServeHTTP(w, r)
				})
			})
			dir := t.TempDir()
			src := filepath.Join(dir, "clip.mp4")
			data := randomBytes(t, 7*partSize+12345)
			if err := os.WriteFile(src, data, 0o600); err != nil {
				t.Fatal(err)
			}
			cp := filepath.Join(dir, "clip.cp")
			key := "cams/cam-1/resumable.mp4"
			err := e.admin(av.v).UploadFile(key, src, partSize, oss.Checkpoint(true, cp), oss.Routines(1))
			if err == nil {
				t.Fatal("upload succeeded despite the injected failure")
			}
			if _, err := os.Stat(cp); err != nil {
				t.Fatalf("no checkpoint after the failure: %v", err)
			}

			e.restart()
			var resumed atomic.Int32
			e.countParts(&resumed)
			if err := e.admin(av.v).UploadFile(key, src, partSize, oss.Checkpoint(true, cp), oss.Routines(2)); err != nil {
				t.Fatalf("resume: %v", err)
			}
			if got := resumed.Load(); got != 8-failAfter {
				t.Errorf("resume sent %d parts, want %d", got, 8-failAfter)
			}
			b := e.admin(av.v)
			mustEqualBytes(t, getAll(t, b, key), data)
			h, err := b.GetObjectDetailedMeta(key)
			if err != nil || h.Get("X-Oss-Hash-Crc64ecma") != testutil.CRC64(data) || h.Get("X-Oss-Object-Type") != "Multipart" ||
				!strings.HasSuffix(h.Get("ETag"), `-8"`) {
				t.Fatalf("object after resume: %v %v", h, err)
			}
			if _, err := os.Stat(cp); !os.IsNotExist(err) {
				t.Errorf("checkpoint left behind: %v", err)
			}
		})
	}
}

// countParts makes the proxy count UploadPart requests.
func (e *ossEnv) countParts(n *atomic.Int32) {
	e.setWrap(func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPut && r.URL.Query().Has("partNumber") {
				n.Add(1)
			}
			h.ServeHTTP(w, r)
		})
	})
}

func TestSDKListObjectsV2(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	b := e.admin(oss.AuthV4)
	keys := []string{"a/1", "a/2", "a/b/3", "a/b/4", "b/1", "c", "d e/f", "ü/1", "z+1", "z%2"}
	for _, k := range keys {
		if err := b.PutObject(k, strings.NewReader(k)); err != nil {
			t.Fatal(err)
		}
	}
	for _, av := range authVersions {
		b := e.admin(av.v)
		res, err := b.ListObjectsV2(oss.Delimiter("/"))
		if err != nil {
			t.Fatal(av.name, err)
		}
		if got := objectKeys(res.Objects); !slices.Equal(got, []string{"c", "z%2", "z+1"}) {
			t.Errorf("%s: objects %q", av.name, got)
		}
		if !slices.Equal(res.CommonPrefixes, []string{"a/", "b/", "d e/", "ü/"}) || res.IsTruncated {
			t.Errorf("%s: prefixes %q truncated %v", av.name, res.CommonPrefixes, res.IsTruncated)
		}
		if res.Objects[0].Size != 1 || res.Objects[0].Type != "Normal" || res.Objects[0].ETag == "" || res.Objects[0].LastModified.IsZero() {
			t.Errorf("%s: object properties %+v", av.name, res.Objects[0])
		}

		res, err = b.ListObjectsV2(oss.Prefix("a/"), oss.Delimiter("/"))
		if err != nil || !slices.Equal(objectKeys(res.Objects), []string{"a/1", "a/2"}) || !slices.Equal(res.CommonPrefixes, []string{"a/b/"}) {
			t.Errorf("%s: prefix a/: %v %q %v", av.name, objectKeys(res.Objects), res.CommonPrefixes, err)
		}
		res, err = b.ListObjectsV2(oss.StartAfter("a/b/3"))
		if err != nil || !slices.Equal(objectKeys(res.Objects), []string{"a/b/4", "b/1", "c", "d e/f", "z%2", "z+1", "ü/1"}) {
			t.Errorf("%s: start-after: %q %v", av.name, objectKeys(res.Objects), err)
		}

		// Pages of 3 with and without a delimiter cover everything exactly once.
		for _, delim := range []string{"", "/"} {
			var got []string
			token := ""
			for i := 0; ; i++ {
				opts := []oss.Option{oss.MaxKeys(3), oss.Delimiter(delim)}
				if token != "" {
					opts = append(opts, oss.ContinuationToken(token))
				}
				res, err := b.ListObjectsV2(opts...)
				if err != nil {
					t.Fatal(av.name, err)
				}
				if res.MaxKeys != 3 || len(res.Objects)+len(res.CommonPrefixes) > 3 {
					t.Fatalf("%s: page %d too big", av.name, i)
				}
				got = append(got, objectKeys(res.Objects)...)
				got = append(got, res.CommonPrefixes...)
				if !res.IsTruncated {
					break
				}
				token = res.NextContinuationToken
			}
			slices.Sort(got)
			want := keys
			if delim == "/" {
				want = []string{"a/", "b/", "c", "d e/", "z%2", "z+1", "ü/"}
			}
			want = slices.Sorted(slices.Values(want))
			if !slices.Equal(got, want) {
				t.Errorf("%s: delimiter %q pages: %q, want %q", av.name, delim, got, want)
			}
		}
	}

	_, err := b.ListObjectsV2(oss.MaxKeys(1001))
	wantOSSCode(t, err, "InvalidArgument")
	lb, err := b.Client.ListBuckets()
	if err != nil || len(lb.Buckets) != 2 || lb.Buckets[0].Name != testBucket || lb.Buckets[1].Name != "other-bucket" {
		t.Errorf("ListBuckets: %+v %v", lb, err)
	}
	_, err = b.ListObjectsV2(oss.ContinuationToken("!!not a token"))
	wantOSSCode(t, err, "InvalidArgument")

	// The v1 listing with markers.
	var got []string
	marker := ""
	for {
		res, err := b.ListObjects(oss.MaxKeys(4), oss.Marker(marker))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, objectKeys2(res.Objects)...)
		if !res.IsTruncated {
			break
		}
		marker = res.NextMarker
	}
	if !slices.Equal(got, slices.Sorted(slices.Values(keys))) {
		t.Errorf("ListObjects pages: %q", got)
	}
}

func objectKeys(objs []oss.ObjectProperties) []string {
	out := make([]string, len(objs))
	for i, o := range objs {
		out[i] = o.Key
	}
	return out
}

func objectKeys2(objs []oss.ObjectProperties) []string { return objectKeys(objs) }

// TestSDKSignedURLs uses bucket.SignURL for PUT and GET with each signature version, and
// checks that an expired URL is refused.
func TestSDKSignedURLs(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	for _, av := range authVersions {
		t.Run(av.name, func(t *testing.T) {
			b := e.admin(av.v)
			key := "signed/" + av.name + "/a b+c.bin"
			data := randomBytes(t, 5000)
			put, err := b.SignURL(key, oss.HTTPPut, 60, oss.ContentType("application/x-test"))
			if err != nil {
				t.Fatal(err)
			}
			if err := b.PutObjectWithURL(put, bytes.NewReader(data), oss.ContentType("application/x-test")); err != nil {
				t.Fatalf("PUT with URL: %v", err)
			}
			get, err := b.SignURL(key, oss.HTTPGet, 60)
			if err != nil {
				t.Fatal(err)
			}
			rc, err := b.GetObjectWithURL(get)
			if err != nil {
				t.Fatalf("GET with URL: %v", err)
			}
			got := readAllClose(t, rc)
			mustEqualBytes(t, got, data)

			// A different content type than signed breaks the signature.
			err = b.PutObjectWithURL(put, bytes.NewReader(data), oss.ContentType("text/plain"))
			wantOSSCode(t, err, "SignatureDoesNotMatch")
			// Tampering with the URL breaks it too.
			tampered := strings.Replace(get, "%2Fa%20b", "%2Fa%20c", 1)
			if tampered == get {
				t.Fatalf("test bug: cannot tamper with %s", get)
			}
			_, err = b.GetObjectWithURL(tampered)
			wantOSSCode(t, err, "SignatureDoesNotMatch")

			// Expiry, by the server's clock.
			short, err := b.SignURL(key, oss.HTTPGet, 30)
			if err != nil {
				t.Fatal(err)
			}
			exp := expiredEnv(t, e, func() error {
				rc, err := b.GetObjectWithURL(short)
				if err == nil {
					rc.Close()
				}
				return err
			})
			wantEC := "0002-00000069" // V1 and V2 signed URLs
			if av.v == oss.AuthV4 {
				wantEC = "0002-00000236"
			}
			wantOSSEC(t, exp, http.StatusForbidden, "AccessDenied", wantEC)
		})
	}
}

// expiredEnv runs f with the server's clock two minutes ahead (well within the skew window
// for header-signed requests, beyond a 30-second signed URL).
func expiredEnv(t *testing.T, e *ossEnv, f func() error) error {
	t.Helper()
	e.clockMu.Lock()
	defer e.clockMu.Unlock()
	e.clock.Advance(2 * time.Minute)
	defer e.clock.Advance(-2 * time.Minute)
	return f()
}

func TestSDKAuthFailures(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	if err := e.admin(oss.AuthV1).PutObject("exists", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	for _, av := range authVersions {
		t.Run(av.name, func(t *testing.T) {
			wrong := e.client(e.ak, e.sk+"x", av.v)
			_, err := wrong.GetObject("exists")
			wantOSSCode(t, err, "SignatureDoesNotMatch")
			wantOSSCode(t, wrong.PutObject("k", strings.NewReader("x")), "SignatureDoesNotMatch")

			unknown := e.client("LTAIunknown", e.sk, av.v)
			wantOSSCode(t, unknown.PutObject("k", strings.NewReader("x")), "InvalidAccessKeyId")

			c, err := oss.New(e.endpoint, e.ak, e.sk, oss.AuthVersion(av.v), oss.Region(testRegion))
			if err != nil {
				t.Fatal(err)
			}
			nb, _ := c.Bucket("no-such-bucket")
			wantOSSCode(t, nb.PutObject("k", strings.NewReader("x")), "NoSuchBucket")

			ro := e.client(e.roAK, e.roSK, av.v)
			wantOSSCode(t, ro.PutObject("k", strings.NewReader("x")), "AccessDenied")
			wantOSSCode(t, ro.DeleteObject("exists"), "AccessDenied")
			mustEqualBytes(t, getAll(t, ro, "exists"), []byte("x"))
			if _, err := ro.ListObjectsV2(); err != nil {
				t.Fatalf("read-only listing: %v", err)
			}
			// The read-only key's policy names only this bucket.
			roc, _ := oss.New(e.endpoint, e.roAK, e.roSK, oss.AuthVersion(av.v), oss.Region(testRegion))
			rob, _ := roc.Bucket("other-bucket")
			_, err = rob.ListObjectsV2()
			wantOSSCode(t, err, "AccessDenied")
		})
	}

	// V4: the credential scope must name this server's region.
	wrongRegion := e.client(e.ak, e.sk, oss.AuthV4, oss.Region("cn-beijing"))
	wantOSSCode(t, wrongRegion.PutObject("k", strings.NewReader("x")), "InvalidArgument")

	// Skew: the server's clock 20 minutes ahead of the client's.
	e.clockMu.Lock()
	e.clock.Advance(20 * time.Minute)
	for _, av := range authVersions {
		wantOSSCode(t, e.admin(av.v).PutObject("k", strings.NewReader("x")), "RequestTimeTooSkewed")
	}
	e.clock.Advance(-20 * time.Minute)
	e.clockMu.Unlock()
}
