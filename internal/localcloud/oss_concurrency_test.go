package localcloud

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	"github.com/clipgate/clipgate/internal/testutil"
)

// TestConcurrentPutsAndGets overwrites one key from several writers while readers fetch it:
// every read must be one whole version, never a mix or a short body.
func TestConcurrentPutsAndGets(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	const size = 150_000
	b := e.admin(oss.AuthV1)
	if err := b.PutObject("k", bytes.NewReader(bytes.Repeat([]byte{'0'}, size))); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 100)
	for w := range 3 {
		wg.Go(func() {
			c := e.admin(oss.AuthV4)
			for i := range 8 {
				v := byte('a' + w*8 + i)
				if err := c.PutObject("k", bytes.NewReader(bytes.Repeat([]byte{v}, size))); err != nil {
					errs <- err.Error()
					return
				}
			}
		})
	}
	for range 3 {
		wg.Go(func() {
			c := e.admin(oss.AuthV1)
			for range 15 {
				rc, err := c.GetObject("k")
				if err != nil {
					errs <- err.Error()
					return
				}
				var buf bytes.Buffer
				_, err = buf.ReadFrom(rc)
				rc.Close()
				got := buf.Bytes()
				if err != nil || len(got) != size || bytes.Count(got, got[:1]) != size {
					errs <- "torn read: " + strconv.Itoa(len(got)) + " bytes"
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	// Only the current version's blob remains.
	if n := countBlobs(t, e); n != 1 {
		t.Errorf("%d blobs for one object", n)
	}
}

// TestConcurrentAppends has several writers append to one object, each retrying at the
// position OSS reports: every append lands exactly once.
func TestConcurrentAppends(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	var wg sync.WaitGroup
	const writers, each = 4, 10
	for w := range writers {
		wg.Go(func() {
			c := e.admin(oss.AuthV4)
			var pos int64
			for i := 0; i < each; {
				chunk := "<" + strconv.Itoa(w) + ":" + strconv.Itoa(i) + ">"
				next, err := c.AppendObject("log", strings.NewReader(chunk), pos)
				if svcCode(err) == "PositionNotEqualToLength" {
					h, herr := c.GetObjectMeta("log")
					if herr != nil {
						t.Error(herr)
						return
					}
					pos, _ = strconv.ParseInt(h.Get("Content-Length"), 10, 64)
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				pos = next
				i++
			}
		})
	}
	wg.Wait()
	got := string(getAll(t, e.admin(oss.AuthV1), "log"))
	for w := range writers {
		for i := range each {
			if n := strings.Count(got, "<"+strconv.Itoa(w)+":"+strconv.Itoa(i)+">"); n != 1 {
				t.Errorf("chunk %d:%d appears %d times", w, i, n)
			}
		}
	}
	h, err := e.admin(oss.AuthV1).GetObjectDetailedMeta("log")
	if err != nil || h.Get("X-Oss-Hash-Crc64ecma") != testutil.CRC64([]byte(got)) {
		t.Errorf("CRC after concurrent appends: %v %v", h.Get("X-Oss-Hash-Crc64ecma"), err)
	}
}

func countBlobs(t *testing.T, e *ossEnv) int {
	t.Helper()
	b := e.srv.oss.store.buckets[testBucket]
	entries, err := os.ReadDir(b.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}
