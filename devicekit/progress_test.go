package devicekit

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

// progressLog records the calls of a Clip.Progress.
type progressLog struct {
	mu    sync.Mutex
	calls [][2]int64
	busy  atomic.Bool // a call is running (calls must not overlap)
	t     *testing.T
}

func (l *progressLog) fn(sent, total int64) {
	if !l.busy.CompareAndSwap(false, true) {
		l.t.Error("Progress calls overlap")
	}
	defer l.busy.Store(false)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, [2]int64{sent, total})
}

func (l *progressLog) get() [][2]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([][2]int64(nil), l.calls...)
}

// check verifies the calls of an upload without failures: the total is the size, sent
// never goes down, some calls fall within the file (bytes as they go, not whole
// requests), and the last is (size, size).
func (l *progressLog) check(t *testing.T, size int64, from int64) {
	t.Helper()
	calls := l.get()
	if len(calls) == 0 {
		t.Fatal("Progress never called")
	}
	prev, within := int64(-1), 0
	for _, c := range calls {
		if c[1] != size || c[0] < prev || c[0] < 0 || c[0] > size {
			t.Fatalf("call (%d, %d) after %d, size %d", c[0], c[1], prev, size)
		}
		if c[0] > from && c[0] < size && c[0]%MinPartSize != 0 {
			within++
		}
		prev = c[0]
	}
	if calls[0][0] != from {
		t.Errorf("first call at %d, want %d", calls[0][0], from)
	}
	if last := calls[len(calls)-1]; last != [2]int64{size, size} {
		t.Errorf("last call %v, want (%d, %d)", last, size, size)
	}
	if within == 0 {
		t.Errorf("no call within a request: %v", calls)
	}
}

func TestProgressOfPutAndMultipart(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	k := s.kit("cam-progress", smallParts)
	for _, size := range []int{MinPartSize + 12345, 7*MinPartSize + 99} {
		path, _ := clipFile(t, "progress.mp4", size)
		l := &progressLog{t: t}
		if _, err := k.Upload(t.Context(), Clip{Path: path, Progress: l.fn}); err != nil {
			t.Fatal(err)
		}
		s.event()
		l.check(t, int64(size), 0)
	}
}

// A resumed multipart upload starts its progress at the bytes already stored.
func TestProgressOfResumedUpload(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	k := s.kit("cam-progress2", smallParts)
	path, _ := clipFile(t, "resumed.mp4", 10*MinPartSize)
	ctx, cancel := context.WithCancel(t.Context())
	var parts atomic.Int32
	k.onProgress = func(done, total int64) {
		if parts.Add(1) == 3 {
			cancel()
		}
	}
	if _, err := k.Upload(ctx, Clip{Path: path}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled upload: %v", err)
	}
	k.onProgress = nil
	b, err := os.ReadFile(filepath.Join(k.cfg.StateDir, checkpointDir, dirEntries(t, k, checkpointDir)[0]))
	if err != nil {
		t.Fatal(err)
	}
	var cp mpCheckpoint
	if err := json.Unmarshal(b, &cp); err != nil {
		t.Fatal(err)
	}
	stored := int64(len(cp.Parts)) * MinPartSize
	l := &progressLog{t: t}
	if _, err := k.Upload(t.Context(), Clip{Path: path, Progress: l.fn}); err != nil {
		t.Fatal(err)
	}
	s.event()
	if stored == 0 {
		t.Fatal("no part in the checkpoint")
	}
	l.check(t, 10*MinPartSize, stored)
}
