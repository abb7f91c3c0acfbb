package localcloud

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	osv2 "github.com/aliyun/alibabacloud-oss-go-sdk-v2/oss"
	"github.com/aliyun/aliyun-oss-go-sdk/oss"
)

// wantSvcErr checks that err is an OSS service error (from either Go SDK) with the given HTTP
// status, code and EC; the v2 SDK also exposes the headers, where x-oss-ec must repeat the EC.
func wantSvcErr(t *testing.T, err error, status int, code, ec string) {
	t.Helper()
	var se3 oss.ServiceError
	var se2 *osv2.ServiceError
	switch {
	case err == nil:
		t.Fatalf("want %d %s, got success", status, code)
	case errors.As(err, &se3):
		if se3.StatusCode != status || se3.Code != code || se3.Ec != ec {
			t.Fatalf("want %d %s EC %s, got %d %s EC %s (%s)", status, code, ec, se3.StatusCode, se3.Code, se3.Ec, se3.Message)
		}
	case errors.As(err, &se2):
		if se2.StatusCode != status || se2.Code != code || se2.EC != ec {
			t.Fatalf("want %d %s EC %s, got %d %s EC %s (%s)", status, code, ec, se2.StatusCode, se2.Code, se2.EC, se2.Message)
		}
		if got := se2.Headers.Get("x-oss-ec"); got != ec {
			t.Fatalf("x-oss-ec header %q, want %q", got, ec)
		}
	default:
		t.Fatalf("want %d %s, got %v", status, code, err)
	}
}

// TestForbidOverwriteSDKv3 checks x-oss-forbid-overwrite on PutObject, InitiateMultipartUpload
// and CompleteMultipartUpload through aliyun-oss-go-sdk: "true" refuses an existing key with
// 409 FileAlreadyExists and leaves the object alone, "false" and no header overwrite, any
// other value is 400 InvalidArgument.
func TestForbidOverwriteSDKv3(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	for _, av := range []struct {
		name string
		v    oss.AuthVersionType
	}{{"V1", oss.AuthV1}, {"V4", oss.AuthV4}} {
		t.Run(av.name, func(t *testing.T) {
			t.Parallel()
			b := e.admin(av.v)
			key := "cams/cam-1/forbid/" + av.name + " ü.mp4"
			// An absent key is written.
			if err := b.PutObject(key, strings.NewReader("first"), oss.ForbidOverWrite(true)); err != nil {
				t.Fatal(err)
			}
			err := b.PutObject(key, strings.NewReader("second"), oss.ForbidOverWrite(true))
			wantSvcErr(t, err, http.StatusConflict, "FileAlreadyExists", "0026-00000002")
			mustEqualBytes(t, getAll(t, b, key), []byte("first"))

			for _, bad := range []string{"abc", "1", "yes"} {
				err = b.PutObject(key, strings.NewReader("bad"), oss.SetHeader("x-oss-forbid-overwrite", bad))
				wantSvcErr(t, err, http.StatusBadRequest, "InvalidArgument", "0017-00000279")
			}
			mustEqualBytes(t, getAll(t, b, key), []byte("first"))

			if err := b.PutObject(key, strings.NewReader("third"), oss.ForbidOverWrite(false)); err != nil {
				t.Fatalf("forbid-overwrite false: %v", err)
			}
			mustEqualBytes(t, getAll(t, b, key), []byte("third"))
			if err := b.PutObject(key, strings.NewReader("fourth"), oss.SetHeader("x-oss-forbid-overwrite", "TRUE")); err == nil {
				t.Fatal("TRUE did not forbid")
			}
			if err := b.PutObject(key, strings.NewReader("fourth")); err != nil {
				t.Fatalf("no header: %v", err)
			}
			mustEqualBytes(t, getAll(t, b, key), []byte("fourth"))

			// Multipart: refused at initiate, and at complete when the key appeared meanwhile.
			_, err = b.InitiateMultipartUpload(key, oss.ForbidOverWrite(true))
			wantSvcErr(t, err, http.StatusConflict, "FileAlreadyExists", "0026-00000002")
			_, err = b.InitiateMultipartUpload(key, oss.SetHeader("x-oss-forbid-overwrite", "nope"))
			wantSvcErr(t, err, http.StatusBadRequest, "InvalidArgument", "0017-00000279")
			mkey := key + ".multipart"
			imur, err := b.InitiateMultipartUpload(mkey, oss.ForbidOverWrite(true))
			if err != nil {
				t.Fatal(err)
			}
			part, err := b.UploadPart(imur, strings.NewReader("multipart"), 9, 1)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.PutObject(mkey, strings.NewReader("raced")); err != nil {
				t.Fatal(err)
			}
			_, err = b.CompleteMultipartUpload(imur, []oss.UploadPart{part}, oss.ForbidOverWrite(true))
			wantSvcErr(t, err, http.StatusConflict, "FileAlreadyExists", "0042-00000214")
			_, err = b.CompleteMultipartUpload(imur, []oss.UploadPart{part}, oss.SetHeader("x-oss-forbid-overwrite", "maybe"))
			wantSvcErr(t, err, http.StatusBadRequest, "InvalidArgument", "0017-00000279")
			mustEqualBytes(t, getAll(t, b, mkey), []byte("raced"))
			// The upload survives the refusal: its parts are listed and it completes without the header.
			lp, err := b.ListUploadedParts(imur)
			if err != nil || len(lp.UploadedParts) != 1 {
				t.Fatalf("ListParts after refused complete: %v %+v", err, lp)
			}
			if _, err := b.CompleteMultipartUpload(imur, []oss.UploadPart{part}, oss.ForbidOverWrite(false)); err != nil {
				t.Fatal(err)
			}
			mustEqualBytes(t, getAll(t, b, mkey), []byte("multipart"))
		})
	}
}

// TestForbidOverwriteSDKv2 checks the same through alibabacloud-oss-go-sdk-v2, including the
// x-oss-ec response header.
func TestForbidOverwriteSDKv2(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	c := e.adminV2(osv2.SignatureVersionV4)
	bk, key := osv2.Ptr(testBucket), osv2.Ptr("cams/cam-2/forbid.mp4")
	put := func(body, forbid string) error {
		req := &osv2.PutObjectRequest{Bucket: bk, Key: key, Body: strings.NewReader(body)}
		if forbid != "-" {
			req.ForbidOverwrite = osv2.Ptr(forbid)
		}
		_, err := c.PutObject(bg, req)
		return err
	}
	get := func() []byte {
		g, err := c.GetObject(bg, &osv2.GetObjectRequest{Bucket: bk, Key: key})
		if err != nil {
			t.Fatal(err)
		}
		return readAllClose(t, g.Body)
	}
	if err := put("first", "true"); err != nil {
		t.Fatal(err)
	}
	wantSvcErr(t, put("second", "true"), http.StatusConflict, "FileAlreadyExists", "0026-00000002")
	wantSvcErr(t, put("second", "on"), http.StatusBadRequest, "InvalidArgument", "0017-00000279")
	mustEqualBytes(t, get(), []byte("first"))
	if err := put("third", "false"); err != nil {
		t.Fatal(err)
	}
	mustEqualBytes(t, get(), []byte("third"))
	if err := put("fourth", "-"); err != nil {
		t.Fatal(err)
	}
	mustEqualBytes(t, get(), []byte("fourth"))

	_, err := c.InitiateMultipartUpload(bg, &osv2.InitiateMultipartUploadRequest{Bucket: bk, Key: key, ForbidOverwrite: osv2.Ptr("true")})
	wantSvcErr(t, err, http.StatusConflict, "FileAlreadyExists", "0026-00000002")
	mkey := osv2.Ptr("cams/cam-2/forbid-multipart.mp4")
	init, err := c.InitiateMultipartUpload(bg, &osv2.InitiateMultipartUploadRequest{Bucket: bk, Key: mkey})
	if err != nil {
		t.Fatal(err)
	}
	up, err := c.UploadPart(bg, &osv2.UploadPartRequest{Bucket: bk, Key: mkey, UploadId: init.UploadId, PartNumber: 1, Body: strings.NewReader("mp")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutObject(bg, &osv2.PutObjectRequest{Bucket: bk, Key: mkey, Body: strings.NewReader("raced")}); err != nil {
		t.Fatal(err)
	}
	_, err = c.CompleteMultipartUpload(bg, &osv2.CompleteMultipartUploadRequest{Bucket: bk, Key: mkey, UploadId: init.UploadId,
		ForbidOverwrite:         osv2.Ptr("true"),
		CompleteMultipartUpload: &osv2.CompleteMultipartUpload{Parts: []osv2.UploadPart{{PartNumber: 1, ETag: up.ETag}}}})
	wantSvcErr(t, err, http.StatusConflict, "FileAlreadyExists", "0042-00000214")
}

// TestForbidOverwriteRace sends concurrent PutObjects and CompleteMultipartUploads with
// x-oss-forbid-overwrite: true to one absent key: exactly one wins, every other gets
// FileAlreadyExists, and the object holds the winner's data.
func TestForbidOverwriteRace(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	b := e.admin(oss.AuthV4)
	const key = "cams/cam-3/race.mp4"
	const puts, completes = 6, 3
	type job struct {
		imur oss.InitiateMultipartUploadResult
		part oss.UploadPart
	}
	jobs := make([]job, completes)
	for i := range jobs {
		imur, err := b.InitiateMultipartUpload(key)
		if err != nil {
			t.Fatal(err)
		}
		part, err := b.UploadPart(imur, strings.NewReader(fmt.Sprintf("complete-%d", i)), int64(len(fmt.Sprintf("complete-%d", i))), 1)
		if err != nil {
			t.Fatal(err)
		}
		jobs[i] = job{imur, part}
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	wins := make(chan string, puts+completes)
	errs := make(chan error, puts+completes)
	for i := range puts {
		wg.Go(func() {
			<-start
			body := fmt.Sprintf("put-%d", i)
			if err := b.PutObject(key, strings.NewReader(body), oss.ForbidOverWrite(true)); err != nil {
				errs <- err
				return
			}
			wins <- body
		})
	}
	for i, j := range jobs {
		wg.Go(func() {
			<-start
			if _, err := b.CompleteMultipartUpload(j.imur, []oss.UploadPart{j.part}, oss.ForbidOverWrite(true)); err != nil {
				errs <- err
				return
			}
			wins <- fmt.Sprintf("complete-%d", i)
		})
	}
	close(start)
	wg.Wait()
	close(wins)
	close(errs)
	var won []string
	for w := range wins {
		won = append(won, w)
	}
	if len(won) != 1 {
		t.Fatalf("%d writers won: %v", len(won), won)
	}
	for err := range errs {
		if c := svcCode(err); c != "FileAlreadyExists" {
			t.Errorf("loser got %v", err)
		}
	}
	if got := getAll(t, b, key); !bytes.Equal(got, []byte(won[0])) {
		t.Fatalf("object holds %q, the winner wrote %q", got, won[0])
	}
}
