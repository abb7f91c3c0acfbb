package devicekit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	"github.com/clipgate/clipgate"
)

func TestPartSizeFor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ size, configured, want int64 }{
		{100 << 20, 1 << 20, 1 << 20},
		{maxParts << 20, 1 << 20, 1 << 20},                // exactly 10000 parts
		{maxParts<<20 + 1, 1 << 20, 1<<20 + 1},            // one byte more: bigger parts
		{5 << 30, MinPartSize, (5<<30 + 9999) / maxParts}, // 5 GiB in 100 KiB parts would be 52429
	} {
		got := partSizeFor(tc.size, tc.configured)
		if got != tc.want || (tc.size+got-1)/got > maxParts {
			t.Errorf("partSizeFor(%d, %d) = %d, want %d", tc.size, tc.configured, got, tc.want)
		}
	}
}

// abortServer answers AbortMultipartUpload (DELETE ?uploadId) with 204 and records the
// "key uploadID" of each, in order; anything else gets 400.
func abortServer(t *testing.T) (*oss.Bucket, func() []string) {
	t.Helper()
	var mu sync.Mutex
	var aborted []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodDelete || !r.URL.Query().Has("uploadId") {
			http.Error(w, "unexpected", http.StatusBadRequest)
			return
		}
		mu.Lock()
		aborted = append(aborted, strings.TrimPrefix(r.URL.Path, "/bkt/")+" "+r.URL.Query().Get("uploadId"))
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	c, err := oss.New(srv.URL, "ak", "sk", oss.ForcePathStyle(true))
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Bucket("bkt")
	if err != nil {
		t.Fatal(err)
	}
	return b, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), aborted...)
	}
}

// A checkpoint that does not belong to the upload, or is garbage, is removed and the
// upload starts over, and the multipart upload it names (in this bucket) is aborted; one
// that belongs is used.
func TestLoadCheckpointRejectsGarbage(t *testing.T) {
	t.Parallel()
	k := cachedKit(t)
	bucket, aborted := abortServer(t)
	mtime := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	p := &prepared{size: 5 * MinPartSize, mtime: mtime}
	good := mpCheckpoint{V: checkpointVersion, Bucket: "bkt", Key: "k", UploadID: "U1", Size: p.size,
		ModTime: mtime.UnixNano(), PartSize: MinPartSize, Parts: []mpPart{{Number: 1, ETag: "E1", CRC: "42"}, {Number: 3, ETag: "E3"}}}
	mod := func(f func(*mpCheckpoint)) []byte {
		cp := good
		cp.Parts = append([]mpPart(nil), good.Parts...)
		f(&cp)
		b, _ := json.Marshal(cp)
		return b
	}
	for _, tc := range []struct {
		name    string
		content []byte
		abort   string // the upload aborted, if any
	}{
		{"empty", []byte{}, ""},
		{"not JSON", []byte("\x00\x01garbage"), ""},
		{"truncated", mod(func(*mpCheckpoint) {})[:40], ""},
		{"SDK checkpoint", []byte(`{"Magic":"FE8BB4EA-B593-4FAC-AD7A-2459A36E2E62","MD5":"x","FilePath":"/f","UploadID":"U1"}`), ""},
		{"other version", mod(func(c *mpCheckpoint) { c.V = 2 }), ""},
		{"other bucket", mod(func(c *mpCheckpoint) { c.Bucket = "ckt" }), ""},
		{"other key", mod(func(c *mpCheckpoint) { c.Key = "k2" }), "k2 U1"},
		{"no upload ID", mod(func(c *mpCheckpoint) { c.UploadID = "" }), ""},
		{"other size", mod(func(c *mpCheckpoint) { c.Size++ }), "k U1"},
		{"other mtime", mod(func(c *mpCheckpoint) { c.ModTime++ }), "k U1"},
		{"other partsize", mod(func(c *mpCheckpoint) { c.PartSize *= 2 }), "k U1"},
		{"part 0", mod(func(c *mpCheckpoint) { c.Parts[0].Number = 0 }), "k U1"},
		{"part too high", mod(func(c *mpCheckpoint) { c.Parts[0].Number = 6 }), "k U1"},
		{"duplicate part", mod(func(c *mpCheckpoint) { c.Parts[1].Number = 1 }), "k U1"},
		{"no ETag", mod(func(c *mpCheckpoint) { c.Parts[1].ETag = "" }), "k U1"},
		{"bad part CRC", mod(func(c *mpCheckpoint) { c.Parts[0].CRC = "-1" }), "k U1"},
		{"part CRC not a number", mod(func(c *mpCheckpoint) { c.Parts[1].CRC = "0x2a" }), "k U1"},
		{"too many parts", mod(func(c *mpCheckpoint) {
			for n := 1; n <= 6; n++ {
				c.Parts = append(c.Parts, mpPart{Number: n, ETag: "E"})
			}
		}), "k U1"},
	} {
		path := filepath.Join(t.TempDir(), "x.cp")
		if err := os.WriteFile(path, tc.content, 0o600); err != nil {
			t.Fatal(err)
		}
		before := len(aborted())
		if cp := k.loadCheckpoint(t.Context(), bucket, path, "k", p, MinPartSize); cp != nil {
			t.Errorf("%s: accepted %+v", tc.name, cp)
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: checkpoint kept: %v", tc.name, err)
		}
		got := aborted()[before:]
		if tc.abort == "" && len(got) != 0 || tc.abort != "" && (len(got) != 1 || got[0] != tc.abort) {
			t.Errorf("%s: aborted %q, want %q", tc.name, got, tc.abort)
		}
	}
	path := filepath.Join(t.TempDir(), "good.cp")
	if err := os.WriteFile(path, mod(func(*mpCheckpoint) {}), 0o600); err != nil {
		t.Fatal(err)
	}
	before := len(aborted())
	cp := k.loadCheckpoint(t.Context(), bucket, path, "k", p, MinPartSize)
	if cp == nil || cp.UploadID != "U1" || len(cp.Parts) != 2 {
		t.Fatalf("good checkpoint: %+v", cp)
	}
	if cp := k.loadCheckpoint(t.Context(), bucket, filepath.Join(t.TempDir(), "missing.cp"), "k", p, MinPartSize); cp != nil {
		t.Errorf("missing checkpoint: %+v", cp)
	}
	if got := aborted()[before:]; len(got) != 0 {
		t.Errorf("aborted %q for a good or missing checkpoint", got)
	}
}

func TestOSSErrorClassification(t *testing.T) {
	t.Parallel()
	netErr := &url.Error{Op: "Post", URL: "http://127.0.0.1:1/b/k", Err: io.EOF}
	for _, tc := range []struct {
		err                  error
		transient, clock, cr bool
	}{
		{oss.ServiceError{StatusCode: 500, Code: "InternalError"}, true, false, false},
		{&oss.ServiceError{StatusCode: 503, Code: "ServiceUnavailable"}, true, false, false},
		{oss.ServiceError{StatusCode: 400, Code: "RequestTimeout"}, true, false, false},
		{oss.ServiceError{StatusCode: 404, Code: "NoSuchUpload"}, true, false, false},
		{oss.ServiceError{StatusCode: 404, Code: "NoSuchBucket"}, false, false, false},
		{oss.ServiceError{StatusCode: 403, Code: "RequestTimeTooSkewed"}, false, true, false},
		{oss.ServiceError{StatusCode: 403, Code: "SecurityTokenExpired"}, false, false, true},
		{oss.ServiceError{StatusCode: 403, Code: "AccessDenied"}, false, false, false},
		{oss.ServiceError{StatusCode: 409, Code: "PositionNotEqualToLength"}, false, false, false},
		{netErr, true, false, false},
		{fmt.Errorf("wrapped: %w", netErr), true, false, false},
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, true, false, false},
		{io.ErrUnexpectedEOF, true, false, false},
		{&url.Error{Op: "Put", Err: fmt.Errorf("x: %w", context.Canceled)}, false, false, false},
		{&os.PathError{Op: "open", Path: "/x", Err: os.ErrNotExist}, false, false, false},
		{fmt.Errorf("x: %w", &os.PathError{Op: "open", Path: "/x", Err: syscall.ENOENT}), false, false, false}, // a deleted clip
		{&clipgate.AuthError{Code: "unavailable"}, false, false, false},
		{errors.New("something else"), false, false, false},
		{nil, false, false, false},
	} {
		if got := transientOSS(tc.err); got != tc.transient {
			t.Errorf("transientOSS(%v) = %v", tc.err, got)
		}
		if got := clockRefused(tc.err); got != tc.clock {
			t.Errorf("clockRefused(%v) = %v", tc.err, got)
		}
		if got := credentialsRefused(tc.err); got != tc.cr {
			t.Errorf("credentialsRefused(%v) = %v", tc.err, got)
		}
	}
}

func TestOSSRetryPolicy(t *testing.T) {
	t.Parallel()
	transient := oss.ServiceError{StatusCode: http.StatusServiceUnavailable}
	skew := oss.ServiceError{StatusCode: http.StatusForbidden, Code: "RequestTimeTooSkewed"}
	expired := oss.ServiceError{StatusCode: http.StatusForbidden, Code: "SecurityTokenExpired"}

	var r ossRetry
	if renew, wait, ok := r.next(skew); !renew || wait != 0 || !ok {
		t.Fatalf("skew: %v %v %v, want a renewal at once", renew, wait, ok)
	}
	if _, _, ok := r.next(expired); ok {
		t.Fatal("a second renewal in one operation")
	}
	r = ossRetry{}
	tries := 1
	for {
		renew, wait, ok := r.next(transient)
		if !ok {
			break
		}
		if renew || wait <= 0 || wait > ossBackoff.window(tries-1) {
			t.Fatalf("transient try %d: renew %v, wait %v", tries, renew, wait)
		}
		tries++
	}
	if tries != ossBackoff.Attempts {
		t.Errorf("%d tries of a transient failure, want %d", tries, ossBackoff.Attempts)
	}
	if _, _, ok := (&ossRetry{}).next(oss.ServiceError{StatusCode: 404, Code: "NoSuchBucket"}); ok {
		t.Error("NoSuchBucket retried")
	}
}

// Transient failures (a lost response, a request that never arrived) are retried after a
// backoff; a multipart upload resumes under the same upload ID.
func TestUploadRetriesTransientFailures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		size      int
		fault     *fault
		attempts  int
		initiates int
	}{
		{"put-response-lost", 5000, &fault{op: "put", action: dropResponse, count: 1}, 2, 0},
		{"put-request-lost", 5000, &fault{op: "put", action: dropRequest, count: 2}, 3, 0},
		{"part-request-lost", 6 * MinPartSize, &fault{op: "part", action: dropRequest, skip: 2, count: 1}, 2, 1},
		{"part-response-lost", 6 * MinPartSize, &fault{op: "part", action: dropResponse, skip: 4, count: 1}, 2, 1},
		// The completion landed but its answer was lost: the retry's HeadObject finds the
		// clip stored (same size and CRC-64); nothing is sent again. (Before, the retried
		// Complete got NoSuchUpload and a new upload sent every part again.)
		{"complete-response-lost", 3 * MinPartSize, &fault{op: "complete", action: dropResponse, count: 1}, 2, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, proxy := proxiedStack(t)
			k := s.kit("cam-transient", func(c *Config) {
				c.PartSize = MinPartSize
				c.MultipartThreshold = 2 * MinPartSize
			})
			proxy.inject(tc.fault)
			path, data := clipFile(t, "transient.mp4", tc.size)
			ev, err := k.Upload(t.Context(), Clip{Path: path})
			if err != nil {
				t.Fatal(err)
			}
			checkCompleted(t, s, k, ev, "transient.mp4", data, mustStat(t, path).ModTime())
			if ev.Attempts != tc.attempts || proxy.hits(tc.fault) != tc.fault.count {
				t.Errorf("%d attempts with %d faults, want %d attempts", ev.Attempts, proxy.hits(tc.fault), tc.attempts)
			}
			if n := proxy.count("initiate"); n != tc.initiates {
				t.Errorf("%d multipart uploads started, want %d", n, tc.initiates)
			}
			// Resumed from the checkpoint: each part is sent once, the faulted ones once
			// more. (Parts in flight when a sibling failed finish and are kept.)
			if nparts := (tc.size + MinPartSize - 1) / MinPartSize; tc.fault.op == "part" && proxy.count("part") != nparts+tc.fault.count {
				t.Errorf("%d part requests for %d parts and %d faults: not resumed, or parts in flight sent again", proxy.count("part"), nparts, tc.fault.count)
			}
			if tc.fault.op == "complete" && (proxy.count("part") != 3 || proxy.count("complete") != 1) {
				t.Errorf("%d part and %d complete requests, want 3 and 1: the stored clip was sent again", proxy.count("part"), proxy.count("complete"))
			}
			s.noEvent()
		})
	}
}
