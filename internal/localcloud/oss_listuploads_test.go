package localcloud

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	osv2 "github.com/aliyun/alibabacloud-oss-go-sdk-v2/oss"
	"github.com/aliyun/aliyun-oss-go-sdk/oss"
)

type uploadRef struct{ key, id string }

// startUploads initiates one multipart upload per key (keys may repeat) and returns them in
// the order ListMultipartUploads must list them: by key, then by upload ID.
func startUploads(t *testing.T, b *oss.Bucket, keys ...string) []uploadRef {
	t.Helper()
	var refs []uploadRef
	for _, k := range keys {
		imur, err := b.InitiateMultipartUpload(k)
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, uploadRef{k, imur.UploadID})
	}
	slices.SortFunc(refs, func(x, y uploadRef) int {
		if c := strings.Compare(x.key, y.key); c != 0 {
			return c
		}
		return strings.Compare(x.id, y.id)
	})
	return refs
}

func refsOf(us []oss.UncompletedUpload) []uploadRef {
	var out []uploadRef
	for _, u := range us {
		out = append(out, uploadRef{u.Key, u.UploadID})
	}
	return out
}

// TestListMultipartUploadsSDKv3 lists uploads in progress through aliyun-oss-go-sdk (which
// always asks for encoding-type=url): order, prefix, delimiter, pagination by key-marker and
// upload-id-marker, completed and aborted uploads left out, bad max-uploads refused.
func TestListMultipartUploadsSDKv3(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	b := e.admin(oss.AuthV4)
	before := e.clock.Now().Truncate(time.Second)
	want := startUploads(t, b,
		"cams/a/1.mp4", "cams/a/1.mp4", "cams/a/1.mp4", "cams/a/2.mp4", "cams/b/1.mp4",
		"cams/c/门口 camera #1&%+.mp4", "cams/c/ctl\x01.mp4", "other/x.mp4", "cams/done.mp4", "cams/aborted.mp4")
	// A completed and an aborted upload are no longer listed.
	for _, r := range want {
		imur := oss.InitiateMultipartUploadResult{Bucket: testBucket, Key: r.key, UploadID: r.id}
		switch r.key {
		case "cams/done.mp4":
			p, err := b.UploadPart(imur, strings.NewReader("x"), 1, 1)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := b.CompleteMultipartUpload(imur, []oss.UploadPart{p}); err != nil {
				t.Fatal(err)
			}
		case "cams/aborted.mp4":
			if err := b.AbortMultipartUpload(imur); err != nil {
				t.Fatal(err)
			}
		}
	}
	want = slices.DeleteFunc(want, func(r uploadRef) bool { return r.key == "cams/done.mp4" || r.key == "cams/aborted.mp4" })

	res, err := b.ListMultipartUploads()
	if err != nil {
		t.Fatal(err)
	}
	if got := refsOf(res.Uploads); !slices.Equal(got, want) {
		t.Fatalf("uploads\n got %v\nwant %v", got, want)
	}
	last := want[len(want)-1]
	if res.IsTruncated || res.MaxUploads != 1000 || res.Bucket != testBucket || res.NextKeyMarker != last.key || res.NextUploadIDMarker != last.id {
		t.Errorf("result %+v", res)
	}
	for _, u := range res.Uploads {
		if u.Initiated.Before(before) || u.Initiated.After(e.clock.Now().Add(time.Second)) {
			t.Errorf("Initiated %v", u.Initiated)
		}
	}

	// Prefix and delimiter.
	res, err = b.ListMultipartUploads(oss.Prefix("cams/"), oss.Delimiter("/"))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Uploads) != 0 || !slices.Equal(res.CommonPrefixes, []string{"cams/a/", "cams/b/", "cams/c/"}) || res.Prefix != "cams/" || res.Delimiter != "/" {
		t.Fatalf("prefix+delimiter: %+v", res)
	}
	res, err = b.ListMultipartUploads(oss.Prefix("cams/c/"))
	if err != nil {
		t.Fatal(err)
	}
	if got := refsOf(res.Uploads); !slices.Equal(got, want[5:7]) {
		t.Fatalf("prefix cams/c/: %v, want %v", got, want[5:7])
	}

	// Page by one: every upload once, in order, by (NextKeyMarker, NextUploadIdMarker).
	var paged []uploadRef
	km, im := "", ""
	for range 20 {
		res, err = b.ListMultipartUploads(oss.MaxUploads(1), oss.KeyMarker(km), oss.UploadIDMarker(im))
		if err != nil {
			t.Fatal(err)
		}
		paged = append(paged, refsOf(res.Uploads)...)
		if !res.IsTruncated {
			break
		}
		km, im = res.NextKeyMarker, res.NextUploadIDMarker
	}
	if !slices.Equal(paged, want) {
		t.Fatalf("paged\n got %v\nwant %v", paged, want)
	}
	// key-marker alone skips every upload of that key; upload-id-marker alone is ignored.
	res, err = b.ListMultipartUploads(oss.KeyMarker("cams/a/1.mp4"))
	if err != nil {
		t.Fatal(err)
	}
	if got := refsOf(res.Uploads); !slices.Equal(got, want[3:]) {
		t.Fatalf("key-marker: %v", got)
	}
	res, err = b.ListMultipartUploads(oss.UploadIDMarker(want[1].id))
	if err != nil {
		t.Fatal(err)
	}
	if got := refsOf(res.Uploads); !slices.Equal(got, want) {
		t.Fatalf("upload-id-marker without key-marker: %v", got)
	}
	// Paging with a delimiter: common prefixes count as entries and are not repeated.
	var entries []string
	km = ""
	for range 20 {
		res, err = b.ListMultipartUploads(oss.MaxUploads(2), oss.Delimiter("/"), oss.Prefix("cams/"), oss.KeyMarker(km))
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, res.CommonPrefixes...)
		if !res.IsTruncated {
			break
		}
		km = res.NextKeyMarker
	}
	if !slices.Equal(entries, []string{"cams/a/", "cams/b/", "cams/c/"}) {
		t.Fatalf("paged prefixes %v", entries)
	}

	for _, bad := range []string{"0", "1001", "-1", "x"} {
		_, err = b.ListMultipartUploads(oss.AddParam("max-uploads", bad))
		wantSvcErr(t, err, http.StatusBadRequest, "InvalidArgument", ecUnknown)
	}
}

// TestListMultipartUploadsSDKv2 lists through alibabacloud-oss-go-sdk-v2's paginator and
// checks the unencoded document through its generic operation call.
func TestListMultipartUploadsSDKv2(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	want := startUploads(t, e.admin(oss.AuthV1), "a&b <c>.mp4", "a&b <c>.mp4", "z/ü.mp4")
	c := e.adminV2(osv2.SignatureVersionV4)
	p := c.NewListMultipartUploadsPaginator(&osv2.ListMultipartUploadsRequest{Bucket: osv2.Ptr(testBucket), MaxUploads: 1})
	var got []uploadRef
	for p.HasNext() {
		page, err := p.NextPage(bg)
		if err != nil {
			t.Fatal(err)
		}
		if osv2.ToString(page.EncodingType) != "url" {
			t.Errorf("EncodingType %q", osv2.ToString(page.EncodingType))
		}
		for _, u := range page.Uploads {
			got = append(got, uploadRef{osv2.ToString(u.Key), osv2.ToString(u.UploadId)})
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("paginator\n got %v\nwant %v", got, want)
	}

	out, err := c.InvokeOperation(bg, &osv2.OperationInput{OpName: "ListMultipartUploads", Method: "GET",
		Bucket: osv2.Ptr(testBucket), Parameters: map[string]string{"uploads": "", "prefix": "a&"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if out.StatusCode != http.StatusOK || out.Headers.Get("Content-Type") != "application/xml" ||
		!strings.Contains(string(body), "<Key>a&amp;b &lt;c&gt;.mp4</Key>") || !strings.Contains(string(body), "<Prefix>a&amp;</Prefix>") ||
		strings.Contains(string(body), "EncodingType") || strings.Contains(string(body), "ü") {
		t.Fatalf("unencoded listing %d %q", out.StatusCode, body)
	}
	_, err = c.InvokeOperation(bg, &osv2.OperationInput{OpName: "ListMultipartUploads", Method: "GET",
		Bucket: osv2.Ptr(testBucket), Parameters: map[string]string{"uploads": "", "encoding-type": "base64"}})
	wantSvcErr(t, err, http.StatusBadRequest, "InvalidArgument", ecUnknown)
}

// TestListMultipartUploadsRAM: the action is oss:ListMultipartUploads on the bucket.
func TestListMultipartUploadsRAM(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	startUploads(t, e.admin(oss.AuthV4), "cams/cam-1/a.mp4")
	// The read-only key may get and list objects, not list uploads.
	_, err := e.client(e.roAK, e.roSK, oss.AuthV4).ListMultipartUploads()
	wantSvcErr(t, err, http.StatusForbidden, "AccessDenied", "0003-00000001")

	only := `{"Version":"1","Statement":[{"Effect":"Allow","Action":["oss:ListMultipartUploads"],"Resource":["acs:oss:*:*:clips"]}]}`
	res, err := e.stsClient(e.assumeRole(only, time.Hour), oss.AuthV4).ListMultipartUploads()
	if err != nil || len(res.Uploads) != 1 {
		t.Fatalf("allowed by the session policy: %+v %v", res, err)
	}
	objectsOnly := `{"Version":"1","Statement":[{"Effect":"Allow","Action":["oss:ListObjects"],"Resource":["acs:oss:*:*:clips"]}]}`
	_, err = e.stsClient(e.assumeRole(objectsOnly, time.Hour), oss.AuthV4).ListMultipartUploads()
	wantSvcErr(t, err, http.StatusForbidden, "AccessDenied", "0003-00000001")
}
