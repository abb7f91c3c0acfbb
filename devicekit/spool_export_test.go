package devicekit

import (
	"sync/atomic"

	"github.com/clipgate/clipgate/internal/atomicfile"
)

// Test hooks for the external tests of the spool (package devicekit_test). Set them
// before Run.

// SetSpoolObserveHook calls fn when the spool sees a clip for the first time or changed.
func SetSpoolObserveHook(s *Spool, fn func(name string, size int64)) { s.onObserve = fn }

// SetSpoolStartHook calls fn when an upload attempt starts.
func SetSpoolStartHook(s *Spool, fn func(name string)) { s.onStart = fn }

// SetSpoolAfterUploadHook calls fn after a successful upload, before the clip is removed.
func SetSpoolAfterUploadHook(s *Spool, fn func(name string)) { s.afterUpload = fn }

// SetProgressHook calls fn with the progress of multipart uploads (from SDK goroutines).
func SetProgressHook(k *Kit, fn func(done, total int64)) { k.onProgress = fn }

// SetSpoolRunningHook calls fn once Run watches the directory and has scanned it.
func SetSpoolRunningHook(s *Spool, fn func()) { s.onRunning = fn }

// SetSpoolDroppingHook calls fn when the bounds interrupt the running upload to drop its
// clip (after the attempt's context is cancelled).
func SetSpoolDroppingHook(s *Spool, fn func(name string)) { s.onDropping = fn }

// SetSweepHook calls fn at the end of every background sweep of abandoned uploads, with
// the number of multipart uploads it aborted.
func SetSweepHook(k *Kit, fn func(aborted int, err error)) { k.onSweep = fn }

// CountSyncs counts the fsyncs that the kits' state writes make from now on, until stop,
// which returns the count.
func CountSyncs() (stop func() int64) {
	var n atomic.Int64
	h := func(string) { n.Add(1) }
	if !atomicfile.SyncHook.CompareAndSwap(nil, &h) {
		panic("syncHook in use")
	}
	return func() int64 {
		atomicfile.SyncHook.Store(nil)
		return n.Load()
	}
}

// SetStepHook calls fn at each step of Upload (see "Crash safety" in upload.go) from now
// on, until stop.
func SetStepHook(fn func(step string)) (stop func()) {
	if !stepHook.CompareAndSwap(nil, &fn) {
		panic("stepHook in use")
	}
	return func() { stepHook.Store(nil) }
}
