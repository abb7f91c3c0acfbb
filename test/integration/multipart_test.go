package integration

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/internal/tokenworker"
)

// ossCall is one request the device made to OSS, as the tap saw it.
type ossCall struct {
	op     string // initiate, part, complete, put, other
	part   int    // part number of a part upload
	akid   string // access key ID of the signature
	status int
	code   string // OSS error code of a failure
}

// ossTap is a loopback reverse proxy in front of the local OSS. The token workers hand
// its address to devices as the OSS endpoint, so it sees every device request: it records
// them and lets a test act between a response and the device seeing it.
type ossTap struct {
	srv    *httptest.Server
	target atomic.Pointer[url.URL]
	// onResponse runs for every call before the device gets the response.
	onResponse func(ossCall)

	mu    sync.Mutex
	calls []ossCall
}

func newOSSTap(t testing.TB) *ossTap {
	tap := &ossTap{}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(tap.target.Load())
			pr.Out.Host = pr.In.Host // the device signed the host it dialled
		},
		ModifyResponse: tap.record,
	}
	tap.srv = httptest.NewServer(rp) // 127.0.0.1, random port
	t.Cleanup(tap.srv.Close)
	return tap
}

// setTarget points the tap at the local OSS endpoint ("http://127.0.0.1:PORT").
func (tap *ossTap) setTarget(t testing.TB, endpoint string) {
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	tap.target.Store(u)
}

var errorCodeRE = regexp.MustCompile(`<Code>([^<]*)</Code>`)

func (tap *ossTap) record(resp *http.Response) error {
	r := resp.Request
	q := r.URL.Query()
	c := ossCall{status: resp.StatusCode, akid: accessKeyID(r.Header.Get("Authorization"))}
	switch {
	case r.Method == http.MethodPost && q.Has("uploads"):
		c.op = "initiate"
	case r.Method == http.MethodPut && q.Has("uploadId") && q.Has("partNumber"):
		c.op = "part"
		c.part, _ = strconv.Atoi(q.Get("partNumber"))
	case r.Method == http.MethodPost && q.Has("uploadId"):
		c.op = "complete"
	case r.Method == http.MethodPut && len(q) == 0:
		c.op = "put"
	default:
		c.op = "other"
	}
	if resp.StatusCode >= 300 {
		body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if err != nil {
			return err
		}
		if m := errorCodeRE.FindSubmatch(body); m != nil {
			c.code = string(m[1])
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		resp.ContentLength = int64(len(body))
		resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	}
	tap.mu.Lock()
	tap.calls = append(tap.calls, c)
	tap.mu.Unlock()
	if tap.onResponse != nil {
		tap.onResponse(c)
	}
	return nil
}

func (tap *ossTap) recorded() []ossCall {
	tap.mu.Lock()
	defer tap.mu.Unlock()
	return append([]ossCall(nil), tap.calls...)
}

// accessKeyID extracts the access key ID from an OSS V4 or V1 Authorization header.
func accessKeyID(auth string) string {
	if _, rest, ok := strings.Cut(auth, "Credential="); ok {
		id, _, _ := strings.Cut(rest, "/")
		return id
	}
	if rest, ok := strings.CutPrefix(auth, "OSS "); ok {
		id, _, _ := strings.Cut(rest, ":")
		return id
	}
	return ""
}

// Multipart test geometry: the clip is 7 parts of the OSS minimum part size.
const (
	partSize      = devicekit.MinPartSize
	multipartClip = 6*partSize + 1234
)

// TestMultipartCredentialsExpire: a clip above the multipart threshold goes up in parts
// (HEAD reports x-oss-object-type Multipart), and when the credentials expire in the
// middle of the upload the kit gets new ones and the upload completes.
//
// The expiry is made deterministic with a local cloud clock the test controls and the OSS
// tap: credentials last 15 minutes (the STS minimum); the clock starts 13 minutes behind
// (so that it can jump past the expiration while staying within OSS's and STS's 15-minute
// tolerance for the SDKs' real-time signatures) and is moved 16 minutes forward inside
// the tap, before the device sees the response that triggers it.
func TestMultipartCredentialsExpire(t *testing.T) {
	t.Parallel()
	const (
		start    = -13 * time.Minute
		advanced = 3 * time.Minute // 16 minutes later: past the 15-minute credentials
	)
	cases := []struct {
		name string
		// deviceFollows: the device's clock moves with the cloud's, so the kit sees its
		// credentials expire and renews them before the next request. Otherwise the
		// device's clock stays where it was: OSS refuses the stale token with
		// SecurityTokenExpired, and the kit renews and resumes from the checkpoint.
		deviceFollows bool
		// advanceOn is the response after which the clock moves.
		advanceOn string
	}{
		{name: "device unaware, expired between parts", deviceFollows: false, advanceOn: "part"},
		{name: "device clock follows, expired after initiate", deviceFollows: true, advanceOn: "initiate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t, 2*time.Minute)
			clk := newClock(start)
			tap := newOSSTap(t)
			stack := inproc.New(t, inproc.Options{
				Now: clk.Now,
				WorkerConfig: func(c *tokenworker.Config) {
					c.Now = clk.Now
					c.STS.Duration = tokenworker.MinSTSDuration
					c.OSS.Endpoint = tap.srv.URL
				},
			})
			tap.setTarget(t, stack.OSSEndpoint())
			var once sync.Once
			tap.onResponse = func(c ossCall) {
				if c.op == tc.advanceOn && c.status == http.StatusOK {
					once.Do(func() { clk.Set(advanced) })
				}
			}
			consumer, err := stack.Consumer(ctx, "")
			if err != nil {
				t.Fatal(err)
			}

			const dev = "cam-multipart"
			kit := newKit(ctx, t, stack, dev, func(c *devicekit.Config) {
				c.PartSize = partSize
				c.MultipartThreshold = 2 * partSize
				if tc.deviceFollows {
					c.Now = clk.Now
				} else {
					c.Now = func() time.Time { return time.Now().Add(start) }
				}
			})
			clip, err := writeClip(t.TempDir(), "long.mp4", multipartClip)
			if err != nil {
				t.Fatal(err)
			}
			ev, err := kit.Upload(ctx, devicekit.Clip{Path: clip.path, RecordedAt: time.Date(2024, 7, 1, 0, 0, 0, 0, time.UTC)})
			if err != nil {
				t.Fatalf("Upload: %v\nOSS calls: %+v", err, tap.recorded())
			}
			if ev.Status != protocol.StatusCompleted || ev.Size != multipartClip || ev.CRC64 != clip.crc64 {
				t.Errorf("event %+v, want completed, %d bytes, CRC-64 %s", ev, multipartClip, clip.crc64)
			}
			if err := checkObject(stack.AdminBucket(t), ev.Key, clip.data, "Multipart"); err != nil {
				t.Error(err)
			}
			got, err := consumer.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !sameEvent(got, ev) {
				t.Errorf("consumer got %+v, the device sent %+v", got, ev)
			}

			calls := tap.recorded()
			var initiate, complete *ossCall
			parts := map[int]string{} // part number -> access key of its successful upload
			var refused []ossCall
			for i, c := range calls {
				switch {
				case c.status != http.StatusOK:
					refused = append(refused, c)
				case c.op == "initiate":
					initiate = &calls[i]
				case c.op == "complete":
					complete = &calls[i]
				case c.op == "part":
					parts[c.part] = c.akid
				}
			}
			if initiate == nil || complete == nil || len(parts) != 7 {
				t.Fatalf("want one initiate, 7 parts and a complete; OSS calls: %+v", calls)
			}
			old := initiate.akid
			if complete.akid == old || complete.akid == "" {
				t.Errorf("the upload completed with the first credentials (%s): they were not rotated; calls %+v", old, calls)
			}
			keys := map[string]bool{}
			for _, ak := range parts {
				keys[ak] = true
			}
			for _, c := range refused {
				if c.status != http.StatusForbidden || c.code != "SecurityTokenExpired" || c.akid != old {
					t.Errorf("unexpected OSS refusal %+v", c)
				}
			}
			st := workerTotals(stack, 1)
			if st.STSCalls != 2 {
				t.Errorf("the worker made %d STS calls, want 2 (first credentials, then the renewal)", st.STSCalls)
			}
			if tc.deviceFollows {
				// The kit noticed the expiry itself: every part went with new credentials.
				if len(refused) != 0 || len(keys) != 1 || keys[old] {
					t.Errorf("parts used keys %v (first %s), refusals %+v; want all parts on renewed credentials, no refusal", keys, old, refused)
				}
				if ev.Attempts != 1 {
					t.Errorf("attempts %d, want 1", ev.Attempts)
				}
			} else {
				// Parts before the expiry used the first key, later ones the new key, and
				// OSS refused the stale token at least once.
				if len(refused) == 0 || len(keys) != 2 || !keys[old] {
					t.Errorf("parts used keys %v (first %s), refusals %+v; want both keys and a SecurityTokenExpired", keys, old, refused)
				}
				if ev.Attempts != 2 {
					t.Errorf("attempts %d, want 2 (the upload resumed once with new credentials)", ev.Attempts)
				}
				// The device's unchanged clock was 16 minutes off the worker's after the
				// jump: it was corrected through clock_skew on the way.
				if st.Errors[protocol.CodeClockSkew] == 0 {
					t.Errorf("no clock_skew answered; counters %+v", st)
				}
			}
		})
	}
}
