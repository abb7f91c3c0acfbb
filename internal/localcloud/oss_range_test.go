package localcloud

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	osv2 "github.com/aliyun/alibabacloud-oss-go-sdk-v2/oss"
	"github.com/aliyun/aliyun-oss-go-sdk/oss"
)

// TestRangeBehavior checks GetObject's Range handling on a 1000-byte object with and without
// x-oss-range-behavior: standard, through alibabacloud-oss-go-sdk-v2 (status, Content-Range,
// body) and aliyun-oss-go-sdk. Without the header OSS ignores any range not wholly inside
// the object (200, whole object); with it, ends and suffixes are clipped and a start past
// the end is 416 InvalidRange.
func TestRangeBehavior(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	data := randomBytes(t, 1000)
	b := e.admin(oss.AuthV4)
	if err := b.PutObject("r", strings.NewReader(string(data))); err != nil {
		t.Fatal(err)
	}
	if err := b.PutObject("empty", strings.NewReader("")); err != nil {
		t.Fatal(err)
	}
	type want struct {
		status   int // 200, 206 or 416
		from, to int // body data[from:to] for 200/206
	}
	whole := want{http.StatusOK, 0, 1000}
	for _, c := range []struct {
		rng               string
		def, withStandard want
	}{
		{"bytes=0-499", want{206, 0, 500}, want{206, 0, 500}},
		{"bytes=500-999", want{206, 500, 1000}, want{206, 500, 1000}},
		{"bytes=-500", want{206, 500, 1000}, want{206, 500, 1000}},
		{"bytes=500-", want{206, 500, 1000}, want{206, 500, 1000}},
		{"bytes=0-", want{206, 0, 1000}, want{206, 0, 1000}},
		{"bytes=-1000", want{206, 0, 1000}, want{206, 0, 1000}},
		{"bytes=0-1000", whole, want{206, 0, 1000}},
		{"bytes=500-2000", whole, want{206, 500, 1000}},
		{"bytes=1000-2000", whole, want{416, 0, 0}},
		{"bytes=1000-", whole, want{416, 0, 0}},
		{"bytes=-2000", whole, want{206, 0, 1000}},
		{"bytes=0-499,500-999", want{206, 0, 500}, want{416, 0, 0}},
		{"byte=0-499", whole, whole},
		{"bytes=500-100", whole, whole},
		{"bytes=-0", whole, whole},
		{"bytes=abc", whole, whole},
	} {
		for _, std := range []bool{false, true} {
			w := c.def
			req := &osv2.GetObjectRequest{Bucket: osv2.Ptr(testBucket), Key: osv2.Ptr("r"), Range: osv2.Ptr(c.rng)}
			if std {
				w = c.withStandard
				req.RangeBehavior = osv2.Ptr("standard")
			}
			g, err := e.adminV2(osv2.SignatureVersionV4).GetObject(bg, req)
			if w.status == http.StatusRequestedRangeNotSatisfiable {
				wantSvcErr(t, err, w.status, "InvalidRange", ecUnknown)
				continue
			}
			if err != nil {
				t.Fatalf("%q standard=%v: %v", c.rng, std, err)
			}
			body := readAllClose(t, g.Body)
			cr := osv2.ToString(g.ContentRange)
			if g.StatusCode != w.status || string(body) != string(data[w.from:w.to]) ||
				(w.status == 206) != (cr != "") || (w.status == 206 && cr != "bytes "+itoa(w.from)+"-"+itoa(w.to-1)+"/1000") {
				t.Errorf("%q standard=%v: status %d, %d bytes, Content-Range %q; want %+v", c.rng, std, g.StatusCode, len(body), cr, w)
			}
		}
	}

	// The same through the v3 SDK, which has no status in its result: the Content-Range header.
	var rh http.Header
	mustEqualBytes(t, getAll(t, b, "r", oss.NormalizedRange("500-2000"), oss.GetResponseHeader(&rh)), data)
	if rh.Get("Content-Range") != "" {
		t.Errorf("default, end past the object: Content-Range %q", rh.Get("Content-Range"))
	}
	mustEqualBytes(t, getAll(t, b, "r", oss.NormalizedRange("500-2000"), oss.RangeBehavior("standard"), oss.GetResponseHeader(&rh)), data[500:])
	if rh.Get("Content-Range") != "bytes 500-999/1000" {
		t.Errorf("standard, end past the object: Content-Range %q", rh.Get("Content-Range"))
	}
	_, err := b.GetObject("r", oss.NormalizedRange("1000-"), oss.RangeBehavior("standard"))
	wantSvcErr(t, err, http.StatusRequestedRangeNotSatisfiable, "InvalidRange", ecUnknown)

	// An empty object: every range is outside it.
	if got := getAll(t, b, "empty", oss.Range(0, 1)); len(got) != 0 {
		t.Errorf("empty object, default: %d bytes", len(got))
	}
	_, err = b.GetObject("empty", oss.Range(0, 1), oss.RangeBehavior("standard"))
	wantSvcErr(t, err, http.StatusRequestedRangeNotSatisfiable, "InvalidRange", ecUnknown)
	_, err = b.GetObject("empty", oss.NormalizedRange("-5"), oss.RangeBehavior("standard"))
	wantSvcErr(t, err, http.StatusRequestedRangeNotSatisfiable, "InvalidRange", ecUnknown)
}

func itoa(i int) string { return strconv.Itoa(i) }
