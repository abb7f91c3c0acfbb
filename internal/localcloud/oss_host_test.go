package localcloud

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	osv2 "github.com/aliyun/alibabacloud-oss-go-sdk-v2/oss"
	"github.com/aliyun/alibabacloud-oss-go-sdk-v2/oss/credentials"
	"github.com/aliyun/aliyun-oss-go-sdk/oss"
)

const testDomain = "oss-cn-hangzhou.localcloud.test"

// hostRecorder is an HTTP client whose every connection goes to addr, whatever the URL's
// host (so that bucket.domain names need no DNS), and which records the Host and path of
// each request.
type hostRecorder struct {
	mu    sync.Mutex
	seen  []string
	inner http.RoundTripper
}

func (h *hostRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	h.mu.Lock()
	h.seen = append(h.seen, r.Host+" "+r.URL.EscapedPath())
	h.mu.Unlock()
	return h.inner.RoundTrip(r)
}

func newHostRecorder(t *testing.T, addr string) (*hostRecorder, *http.Client) {
	tr := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	h := &hostRecorder{inner: tr}
	return h, &http.Client{Transport: h, Timeout: time.Minute}
}

// TestVirtualHostedStyle drives both SDKs set up as for Alibaba, with an endpoint under the
// configured domain: they put the bucket in the Host header, and every operation works as in
// path style, which keeps working beside it.
func TestVirtualHostedStyle(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t, func(c *Config) { c.EndpointDomain = testDomain })
	addr := strings.TrimPrefix(e.srv.OSSEndpoint(), "http://")
	_, port, _ := net.SplitHostPort(addr)
	endpoint := "http://" + testDomain + ":" + port
	rec, hc := newHostRecorder(t, addr)
	data := randomBytes(t, minPartSize+1000)

	for _, av := range []struct {
		name string
		v    oss.AuthVersionType
	}{{"V1", oss.AuthV1}, {"V4", oss.AuthV4}} {
		c, err := oss.New(endpoint, e.ak, e.sk, oss.AuthVersion(av.v), oss.Region(testRegion), oss.HTTPClient(hc))
		if err != nil {
			t.Fatal(err)
		}
		b, err := c.Bucket(testBucket)
		if err != nil {
			t.Fatal(err)
		}
		key := "vh/" + av.name + "/clip ü+&.mp4"
		if err := b.PutObject(key, bytes.NewReader(data), oss.ForbidOverWrite(true)); err != nil {
			t.Fatal(err)
		}
		mustEqualBytes(t, getAll(t, b, key), data)
		if err := b.UploadFile(key+".mp", writeTemp(t, data), minPartSize, oss.Routines(2)); err != nil {
			t.Fatal(err)
		}
		mustEqualBytes(t, getAll(t, b, key+".mp"), data)
		ls, err := b.ListObjectsV2(oss.Prefix("vh/" + av.name + "/"))
		if err != nil || len(ls.Objects) != 2 {
			t.Fatalf("list: %+v %v", ls.Objects, err)
		}
		// A signed URL for the virtual host, fetched without the SDK.
		u, err := b.SignURL(key, oss.HTTPGet, 60)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(u, "http://"+testBucket+"."+testDomain+":"+port+"/") {
			t.Fatalf("signed URL %s", u)
		}
		resp, err := hc.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Equal(got, data) {
			t.Fatalf("signed URL: %d, %d bytes", resp.StatusCode, len(got))
		}
		if err := b.DeleteObject(key); err != nil {
			t.Fatal(err)
		}
		// The path-style client sees what the virtual-hosted one wrote.
		mustEqualBytes(t, getAll(t, e.admin(av.v), key+".mp"), data)
	}

	v2 := osv2.NewClient(osv2.LoadDefaultConfig().
		WithCredentialsProvider(credentials.NewStaticCredentialsProvider(e.ak, e.sk, "")).
		WithRegion(testRegion).WithEndpoint(endpoint).WithHttpClient(hc).WithRetryMaxAttempts(1))
	if _, err := v2.PutObject(bg, &osv2.PutObjectRequest{Bucket: osv2.Ptr(testBucket), Key: osv2.Ptr("vh/v2.bin"), Body: bytes.NewReader(data)}); err != nil {
		t.Fatal(err)
	}
	g, err := v2.GetObject(bg, &osv2.GetObjectRequest{Bucket: osv2.Ptr(testBucket), Key: osv2.Ptr("vh/v2.bin")})
	if err != nil {
		t.Fatal(err)
	}
	mustEqualBytes(t, readAllClose(t, g.Body), data)
	_, err = v2.GetObject(bg, &osv2.GetObjectRequest{Bucket: osv2.Ptr("other-bucket"), Key: osv2.Ptr("vh/v2.bin")})
	wantSvcErr(t, err, http.StatusNotFound, "NoSuchKey", "0026-00000001") // the other bucket, by its host
	_, err = v2.GetObject(bg, &osv2.GetObjectRequest{Bucket: osv2.Ptr("no-such-bucket"), Key: osv2.Ptr("k")})
	wantSvcErr(t, err, http.StatusNotFound, "NoSuchBucket", "0015-00000101")

	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, s := range rec.seen {
		host, path, _ := strings.Cut(s, " ")
		if !strings.HasSuffix(host, "."+testDomain+":"+port) || strings.HasPrefix(path, "/"+testBucket+"/") {
			t.Errorf("not a virtual-hosted request: %s", s)
		}
	}
	if len(rec.seen) < 10 {
		t.Errorf("only %d requests recorded", len(rec.seen))
	}
}

// TestBucketAndPath checks the addressing rules, including hosts that only look like
// virtual hosts.
func TestBucketAndPath(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ host, domain, path, bucket, key string }{
		{"clips.localhost:9100", "localhost", "/a/b", "clips", "a/b"},
		{"CLIPS.LocalHost.:9100", "localhost", "/a", "clips", "a"},
		{"clips.localhost", "localhost", "/", "clips", ""},
		{"localhost:9100", "localhost", "/clips/a", "clips", "a"},
		{"127.0.0.1:9100", "localhost", "/clips/a/b", "clips", "a/b"},
		{"clips.localhost:9100", "", "/clips/a", "clips", "a"},
		{"clips.notlocalhost:9100", "localhost", "/clips/a", "clips", "a"},
		{"a.b.localhost", "localhost", "/k", "a.b", "k"}, // not a bucket name: NoSuchBucket
		{".localhost", "localhost", "/clips/k", "clips", "k"},
		{"[::1]:9100", "localhost", "/clips/k", "clips", "k"},
		{"", "localhost", "/clips/k", "clips", "k"},
	} {
		b, k := bucketAndPath(c.host, c.domain, c.path)
		if b != c.bucket || k != c.key {
			t.Errorf("bucketAndPath(%q, %q, %q) = %q, %q; want %q, %q", c.host, c.domain, c.path, b, k, c.bucket, c.key)
		}
	}
}

// writeTemp writes data to a file in a test directory and returns its path.
func writeTemp(t *testing.T, data []byte) string {
	t.Helper()
	p := t.TempDir() + "/f"
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestEndpointDomainDefaults(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"": "localhost", "-": "", "OSS.Example.TEST.": "oss.example.test"} {
		c, err := Config{DataDir: ".", EndpointDomain: in}.withDefaults()
		if err != nil || c.EndpointDomain != want {
			t.Errorf("EndpointDomain %q: %q, %v; want %q", in, c.EndpointDomain, err, want)
		}
	}
	for _, bad := range []string{"a_b.test", "a..b", "-a.test", "a-.test", "ü.test", strings.Repeat("a", 64) + ".test"} {
		if _, err := (Config{DataDir: ".", EndpointDomain: bad}).withDefaults(); err == nil {
			t.Errorf("EndpointDomain %q accepted", bad)
		}
	}
}
