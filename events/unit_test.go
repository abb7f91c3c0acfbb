package events

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/internal/protocol"
)

func TestUnderDevicePrefix(t *testing.T) {
	t.Parallel()
	cases := []struct {
		key, prefix, device string
		want                bool
	}{
		{"clips/cam-1/2024/05/01/a.mp4", "clips/", "cam-1", true},
		{"cam-1/a.mp4", "", "cam-1", true},
		{"clips/cam-1/a", "clips/", "cam-1", true},
		{"clips/cam-10/a.mp4", "clips/", "cam-1", false}, // another device sharing the start
		{"clips/cam-1", "clips/", "cam-1", false},
		{"clips/cam-1/", "clips/", "cam-1", false},
		{"clips/cam-2/a.mp4", "clips/", "cam-1", false},
		{"other/cam-1/a.mp4", "clips/", "cam-1", false},
		{"clips/cam-1/../cam-2/a.mp4", "clips/", "cam-1", false},
		{"clips/cam-1/./a.mp4", "clips/", "cam-1", false},
		{"clips/cam-1//a.mp4", "clips/", "cam-1", false},
		{"clips/cam-1/a/..", "clips/", "cam-1", false},
		{"clips/cam-1/a/", "clips/", "cam-1", false},
		{"clips/cam-1/..a", "clips/", "cam-1", true},                         // a name, not a traversal
		{"clips/cam-1/2024/05/01/门口 camera #1.mp4", "clips/", "cam-1", true}, // UTF-8 names
		{"clips/cam-1/2024/05/01/50% & more?x=1+2.ts", "clips/", "cam-1", true},
		{"", "clips/", "cam-1", false},
		{"clips/", "clips/", "cam-1", false},
	}
	for _, c := range cases {
		if got := underDevicePrefix(c.key, c.prefix, c.device); got != c.want {
			t.Errorf("underDevicePrefix(%q, %q, %q) = %v, want %v", c.key, c.prefix, c.device, got, c.want)
		}
	}
}

// The key check runs for every event: it must not allocate. (Not parallel: AllocsPerRun.)
func TestUnderDevicePrefixAllocs(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { underDevicePrefix("clips/cam-1/2024/05/01/a.mp4", "clips/", "cam-1") }); n != 0 {
		t.Errorf("underDevicePrefix allocates %v times", n)
	}
}

func TestDeviceOfKey(t *testing.T) {
	t.Parallel()
	cases := []struct {
		key, prefix, device string
		ok                  bool
	}{
		{"clips/cam-1/2024/05/01/a.mp4", "clips/", "cam-1", true},
		{"clips/cam-1/2024/05/01/门口 camera #1~0123456789abcdef.mp4", "clips/", "cam-1", true},
		{"cam-1/a.mp4", "", "cam-1", true},
		{"clips/readme.txt", "clips/", "", false},
		{"clips/x/a.mp4", "clips/", "", false}, // "x" is too short for a device ID
		{"clips/cam 1/a.mp4", "clips/", "", false},
		{"clips/../a.mp4", "clips/", "", false},
		{"clips/cam-1/", "clips/", "", false},
		{"clips/cam-1/a//b", "clips/", "", false},
		{"other/cam-1/a", "clips/", "", false},
	}
	for _, c := range cases {
		dev, ok := deviceOfKey(c.key, c.prefix)
		if dev != c.device || ok != c.ok {
			t.Errorf("deviceOfKey(%q, %q) = %q, %v; want %q, %v", c.key, c.prefix, dev, ok, c.device, c.ok)
		}
	}
}

// Every key deviceOfKey attributes to a device passes underDevicePrefix for it, and no
// other device's check.
func FuzzKeyChecks(f *testing.F) {
	for _, k := range []string{"clips/cam-1/a.mp4", "clips/cam-1/../x", "clips//a", "clips/cam-1/a/./b", "cam-1/x"} {
		f.Add(k, "clips/")
	}
	f.Fuzz(func(t *testing.T, key, prefix string) {
		dev, ok := deviceOfKey(key, prefix)
		if !ok {
			return
		}
		if !underDevicePrefix(key, prefix, dev) {
			t.Fatalf("deviceOfKey(%q, %q) = %q, but the key is not under its prefix", key, prefix, dev)
		}
		if underDevicePrefix(key, prefix, dev+"x") {
			t.Fatalf("key %q is under the prefixes of %q and %q", key, dev, dev+"x")
		}
	})
}

func TestSeenSetBoundAndTTL(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	s := newSeenSet(3, time.Minute, func() time.Time { return now })
	for _, k := range []string{"a", "b", "c"} {
		s.add(k)
	}
	if !s.has("a") || !s.has("b") || !s.has("c") {
		t.Fatal("fresh keys missing")
	}
	s.add("d") // evicts the oldest, "a"
	if s.has("a") || !s.has("d") || s.len() != 3 {
		t.Fatalf("after a fourth key: has(a)=%v has(d)=%v len=%d", s.has("a"), s.has("d"), s.len())
	}
	s.add("b") // refreshed: now the newest
	s.add("e") // evicts "c"
	if s.has("c") || !s.has("b") {
		t.Fatalf("refresh did not protect b: has(c)=%v has(b)=%v", s.has("c"), s.has("b"))
	}
	now = now.Add(time.Minute)
	if s.has("b") || s.has("e") {
		t.Fatal("keys outlived the TTL")
	}
	s.add("f") // drops the expired tail on the way
	if s.len() != 1 {
		t.Fatalf("len %d after expiry, want 1", s.len())
	}
}

func TestInProgressWaitsForTheFirst(t *testing.T) {
	t.Parallel()
	var p inProgress
	done := make(chan struct{})
	held, ok := p.acquire("k", done)
	if !ok {
		t.Fatal("first acquire failed")
	}
	other, ok := p.acquire("other", done) // another key is independent
	if !ok {
		t.Fatal("acquire of another key failed")
	}
	p.release("other", other)
	var second atomic.Bool
	got := make(chan struct{})
	go func() {
		h, ok := p.acquire("k", done)
		if ok {
			second.Store(true)
			p.release("k", h)
		}
		close(got)
	}()
	select {
	case <-got:
		t.Fatal("second acquire did not wait")
	case <-time.After(20 * time.Millisecond):
	}
	p.release("k", held)
	<-got
	if !second.Load() {
		t.Fatal("second acquire failed after release")
	}
	// A waiter gives up when done closes.
	held, _ = p.acquire("k", done)
	defer p.release("k", held)
	res := make(chan bool)
	go func() { _, ok := p.acquire("k", done); res <- ok }()
	close(done)
	if <-res {
		t.Fatal("acquire succeeded while the key was held")
	}
}

func TestReconciledID(t *testing.T) {
	t.Parallel()
	id := ReconciledID("clips", "clips/cam-1/a.mp4", `"ABC"`)
	if id != ReconciledID("clips", "clips/cam-1/a.mp4", "ABC") {
		t.Error("quotes around the ETag change the ID")
	}
	if len(id) != 34 || !strings.HasPrefix(id, "r-") {
		t.Errorf("ID %q: want r- and 32 hex digits", id)
	}
	ev := clipgate.UploadEvent{V: 1, ID: id, Device: "cam-1", Status: clipgate.StatusFailed, Error: "x"}
	if err := protocol.ValidateUploadEvent(&ev); err != nil {
		t.Errorf("reconciled ID is not a valid event ID: %v", err)
	}
	seen := map[string]bool{id: true}
	for _, v := range [][3]string{{"clipz", "clips/cam-1/a.mp4", "ABC"}, {"clips", "clips/cam-1/b.mp4", "ABC"},
		{"clips", "clips/cam-1/a.mp4", "ABD"}, {"clips\x00clips/cam-1/a.mp4", "", "ABC"}} {
		other := ReconciledID(v[0], v[1], v[2])
		if seen[other] {
			t.Errorf("ReconciledID%q collides", v)
		}
		seen[other] = true
	}
}

func TestIsNotFound(t *testing.T) {
	t.Parallel()
	cases := []struct {
		err  error
		want bool
	}{
		{oss.ServiceError{Code: "NoSuchKey", StatusCode: 404}, true},
		{&oss.ServiceError{Code: "NoSuchKey", StatusCode: 404}, true},
		{fmt.Errorf("wrapped: %w", oss.ServiceError{StatusCode: 404}), true},
		{oss.ServiceError{Code: "NoSuchBucket", StatusCode: 404}, false},
		{oss.ServiceError{Code: "AccessDenied", StatusCode: 403}, false},
		{oss.ServiceError{Code: "InternalError", StatusCode: 500}, false},
		{errors.New("dial tcp: connection refused"), false},
		{context.DeadlineExceeded, false},
	}
	for _, c := range cases {
		if got := isNotFound(c.err); got != c.want {
			t.Errorf("isNotFound(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestObjectFacts(t *testing.T) {
	t.Parallel()
	h := http.Header{}
	h.Set("Content-Length", "12")
	h.Set(oss.HTTPHeaderOssCRC64, "123")
	h.Set("ETag", `"E1"`)
	if size, crc, etag := objectFacts(h); size != 12 || crc != "123" || etag != "E1" {
		t.Errorf("objectFacts = %d %q %q", size, crc, etag)
	}
	h.Set("Content-Length", "twelve")
	if size, _, _ := objectFacts(h); size != -1 {
		t.Errorf("bad Content-Length read as %d", size)
	}
}

func TestRetry(t *testing.T) {
	t.Parallel()
	var retries atomic.Int64
	calls := 0
	err := retry(context.Background(), 3, time.Millisecond, 2*time.Millisecond, &retries, func(context.Context) error {
		calls++
		return errors.New("no")
	})
	if err == nil || calls != 3 || retries.Load() != 2 {
		t.Fatalf("retry: err %v, %d calls, %d retries; want an error, 3, 2", err, calls, retries.Load())
	}
	calls = 0
	err = retry(context.Background(), 5, time.Millisecond, time.Millisecond, &retries, func(context.Context) error {
		if calls++; calls < 2 {
			return errors.New("no")
		}
		return nil
	})
	if err != nil || calls != 2 {
		t.Fatalf("retry: err %v after %d calls, want nil after 2", err, calls)
	}
	// A cancelled context ends the waits.
	ctx, cancel := context.WithCancel(context.Background())
	calls = 0
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		err = retry(ctx, 1000, time.Hour, time.Hour, &retries, func(context.Context) error { calls++; return errors.New("no") })
	}()
	time.Sleep(10 * time.Millisecond)
	cancel()
	wg.Wait()
	if err == nil || calls != 1 {
		t.Fatalf("retry after cancel: err %v, %d calls", err, calls)
	}
}
