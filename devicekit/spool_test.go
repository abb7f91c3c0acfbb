package devicekit_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/crc64"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/testutil"
	"github.com/clipgate/clipgate/internal/tokenworker"
)

// spoolEnv is a whole stack (clipgatetest) with a consumer that sorts the upload events
// it receives by device.
type spoolEnv struct {
	t     *testing.T
	stack *inproc.Stack

	mu     sync.Mutex
	events map[string][]*clipgate.UploadEvent
}

// testTimeout bounds every wait of these tests.
const testTimeout = 60 * time.Second

func newSpoolEnv(t *testing.T) *spoolEnv {
	t.Helper()
	e := &spoolEnv{t: t, stack: inproc.New(t, inproc.Options{}), events: map[string][]*clipgate.UploadEvent{}}
	e.consume()
	return e
}

// consume subscribes a consumer to every device's events.
func (e *spoolEnv) consume() {
	t := e.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, err := e.stack.Consumer(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range c.Events() {
			e.mu.Lock()
			e.events[ev.Device] = append(e.events[ev.Device], ev)
			e.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		c.Close()
		<-done
	})
}

// kit starts a kit for device (mod adjusts its config) and connects it.
func (e *spoolEnv) kit(device string, mod func(*devicekit.Config)) *devicekit.Kit {
	e.t.Helper()
	cfg := e.stack.DeviceConfig(device)
	cfg.RequestTimeout = 5 * time.Second
	if mod != nil {
		mod(&cfg)
	}
	k, err := devicekit.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { k.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := k.Connect(ctx); err != nil {
		e.t.Fatal(err)
	}
	return k
}

// deviceEvents returns the events received so far for device, in arrival order.
func (e *spoolEnv) deviceEvents(device string) []*clipgate.UploadEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.events[device])
}

// waitEvents waits until n distinct event IDs arrived for device and returns the first
// arrival of each, in order.
func (e *spoolEnv) waitEvents(device string, n int) []*clipgate.UploadEvent {
	e.t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		distinct := e.distinctEvents(device)
		if len(distinct) >= n {
			return distinct
		}
		if time.Now().After(deadline) {
			keys := make([]string, len(distinct))
			for i, ev := range distinct {
				keys[i] = ev.Key
			}
			e.t.Fatalf("timed out waiting for %d events of %s (got %d: %v)", n, device, len(distinct), keys)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// distinctEvents returns the device's events so far, first of each event ID, in order.
func (e *spoolEnv) distinctEvents(device string) []*clipgate.UploadEvent {
	var distinct []*clipgate.UploadEvent
	seen := map[string]bool{}
	for _, ev := range e.deviceEvents(device) {
		if !seen[ev.ID] {
			seen[ev.ID] = true
			distinct = append(distinct, ev)
		}
	}
	return distinct
}

// object reads an object back with the admin key.
func (e *spoolEnv) object(key string) []byte {
	e.t.Helper()
	c, err := e.stack.OSSClient()
	if err != nil {
		e.t.Fatal(err)
	}
	b, err := c.Bucket(e.stack.Bucket())
	if err != nil {
		e.t.Fatal(err)
	}
	r, err := b.GetObject(key)
	if err != nil {
		e.t.Fatalf("GetObject %s: %v", key, err)
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		e.t.Fatal(err)
	}
	return data
}

// objects lists the keys under a device's prefix.
func (e *spoolEnv) objects(device string) []string {
	e.t.Helper()
	c, err := e.stack.OSSClient()
	if err != nil {
		e.t.Fatal(err)
	}
	b, err := c.Bucket(e.stack.Bucket())
	if err != nil {
		e.t.Fatal(err)
	}
	res, err := b.ListObjects()
	if err != nil {
		e.t.Fatal(err)
	}
	var keys []string
	for _, o := range res.Objects {
		if strings.HasPrefix(o.Key, e.stack.Prefix()+device+"/") {
			keys = append(keys, o.Key)
		}
	}
	return keys
}

// eventually is testutil.WaitFor with a formatted description.
func eventually(t testing.TB, cond func() bool, format string, args ...any) {
	t.Helper()
	testutil.WaitFor(t, fmt.Sprintf(format, args...), cond)
}

// outcomes records what a spool reports.
type outcomes struct {
	mu   sync.Mutex
	list []devicekit.SpoolEvent
}

func (o *outcomes) add(e devicekit.SpoolEvent) {
	o.mu.Lock()
	o.list = append(o.list, e)
	o.mu.Unlock()
}

// of returns the outcomes of a kind, in order.
func (o *outcomes) of(kind devicekit.SpoolEventKind) []devicekit.SpoolEvent {
	o.mu.Lock()
	defer o.mu.Unlock()
	var r []devicekit.SpoolEvent
	for _, e := range o.list {
		if e.Kind == kind {
			r = append(r, e)
		}
	}
	return r
}

// wait waits for the outcome of kind for file name.
func (o *outcomes) wait(t testing.TB, kind devicekit.SpoolEventKind, name string) devicekit.SpoolEvent {
	t.Helper()
	var found devicekit.SpoolEvent
	eventually(t, func() bool {
		for _, e := range o.of(kind) {
			if filepath.Base(e.Path) == name {
				found = e
				return true
			}
		}
		return false
	}, "%s of %s", kind, name)
	return found
}

// running is a spool running in the background.
type running struct {
	spool   *devicekit.Spool
	out     *outcomes
	cancel  context.CancelFunc
	done    chan error
	running chan struct{} // closed once Run watches and has scanned
}

// newSpool makes a spool; its OnEvent records outcomes.
func newSpool(t *testing.T, k *devicekit.Kit, cfg devicekit.SpoolConfig) *running {
	t.Helper()
	r := &running{out: &outcomes{}, done: make(chan error, 1)}
	next := cfg.OnEvent
	cfg.OnEvent = func(e devicekit.SpoolEvent) {
		r.out.add(e)
		if next != nil {
			next(e)
		}
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 20 * time.Millisecond
	}
	if cfg.RetryMin == 0 {
		cfg.RetryMin, cfg.RetryMax = 50*time.Millisecond, 500*time.Millisecond
	}
	s, err := devicekit.NewSpool(k, cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.spool = s
	r.running = make(chan struct{})
	devicekit.SetSpoolRunningHook(s, func() { close(r.running) })
	return r
}

// start runs the spool until stop (or the end of the test).
func (r *running) start(t *testing.T) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- r.spool.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	select { // so that what the test does next is seen by fsnotify
	case <-r.running:
	case <-time.After(testTimeout):
		t.Fatal("the spool did not start")
	}
	return r
}

// stop cancels Run and checks that it returned nil.
func (r *running) stop(t testing.TB) {
	t.Helper()
	r.cancel()
	r.wait(t)
}

// wait waits for Run to return and checks that it returned nil.
func (r *running) wait(t testing.TB) {
	t.Helper()
	select {
	case err, ok := <-r.done:
		if ok && err != nil {
			t.Errorf("Run: %v", err)
		}
		if ok {
			close(r.done)
		}
	case <-time.After(testTimeout):
		t.Fatal("Run did not return")
	}
}

// writeFile writes n random bytes to dir/name, dated mtime (unless zero).
func writeFile(t testing.TB, dir, name string, n int, mtime time.Time) []byte {
	t.Helper()
	data := make([]byte, n)
	rand.Read(data)
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if !mtime.IsZero() {
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	return data
}

// renameIn writes a clip under a temporary name in dir and renames it into place.
func renameIn(t testing.TB, dir, name string, n int) []byte {
	t.Helper()
	data := writeFile(t, dir, "."+name+".part", n, time.Time{})
	if err := os.Rename(filepath.Join(dir, "."+name+".part"), filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
	return data
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// checkUploaded checks a completed event against the clip's bytes and the stored object.
func (e *spoolEnv) checkUploaded(ev *clipgate.UploadEvent, device, clipName, file string, data []byte) {
	e.t.Helper()
	if ev.Status != clipgate.StatusCompleted || ev.Device != device || ev.Size != int64(len(data)) || ev.CRC64 != testutil.CRC64(data) ||
		!strings.HasPrefix(ev.Key, e.stack.Prefix()+device+"/") || !strings.HasSuffix(ev.Key, "/"+clipName) || ev.Metadata["file"] != file {
		e.t.Fatalf("event %+v does not describe %s (%d bytes, clip %s)", ev, file, len(data), clipName)
	}
	if got := e.object(ev.Key); !bytes.Equal(got, data) {
		e.t.Fatalf("object %s: %d bytes differ from the clip's %d", ev.Key, len(got), len(data))
	}
}

// frozenClock is a clock that moves only when told.
type frozenClock struct{ off atomic.Int64 }

func (c *frozenClock) Now() time.Time {
	return time.Unix(1_750_000_000, 0).Add(time.Duration(c.off.Load()))
}
func (c *frozenClock) Advance(d time.Duration) { c.off.Add(int64(d)) }

// A clip renamed into place is uploaded at once (Settle is an hour on a frozen clock),
// then removed or moved aside; its event arrives.
func TestSpoolRenamedIntoPlace(t *testing.T) {
	t.Parallel()
	clock := &frozenClock{}
	for _, after := range []devicekit.AfterUpload{devicekit.AfterRemove, devicekit.AfterMove} {
		t.Run(string(after), func(t *testing.T) {
			t.Parallel()
			e := newSpoolEnv(t)
			device := "cam-rename-" + string(after)
			k := e.kit(device, nil)
			dir := t.TempDir()
			r := newSpool(t, k, devicekit.SpoolConfig{Dir: dir, Settle: time.Hour, Now: clock.Now, After: after}).start(t)
			data := renameIn(t, dir, "clip 1:a.mp4", 20<<10)
			evs := e.waitEvents(device, 1)
			e.checkUploaded(evs[0], device, "clip 1:a.mp4", "clip 1:a.mp4", data) // the name is kept as it is
			if evs[0].ContentType != "video/mp4" {
				t.Errorf("content type %q", evs[0].ContentType)
			}
			up := r.out.wait(t, devicekit.SpoolUploaded, "clip 1:a.mp4")
			if up.Event == nil || up.Event.ID != evs[0].ID || up.Size != int64(len(data)) {
				t.Errorf("outcome %+v, want event %s", up, evs[0].ID)
			}
			// The outcome is reported after the removal or move.
			if exists(filepath.Join(dir, "clip 1:a.mp4")) {
				t.Error("the uploaded clip is still in the spool")
			}
			moved := filepath.Join(dir, devicekit.DefaultDoneDir, "clip 1:a.mp4")
			if got, err := os.ReadFile(moved); after == devicekit.AfterMove && (err != nil || !bytes.Equal(got, data)) {
				t.Errorf("moved clip: %v", err)
			} else if after == devicekit.AfterRemove && exists(moved) {
				t.Error("removed clip found in done/")
			}
			if n := len(r.out.of(devicekit.SpoolSkipped)); n != 0 {
				t.Errorf("%d entries skipped (done/ must not be)", n)
			}
			if es, _ := os.ReadDir(filepath.Join(e.stack.DeviceConfig(device).StateDir, "spool")); len(es) != 0 {
				t.Errorf("upload records left: %v", es)
			}
		})
	}
}

// A file written in place is not uploaded while it grows, only once it has kept its
// size for Settle.
func TestSpoolWaitsUntilSettled(t *testing.T) {
	t.Parallel()
	e := newSpoolEnv(t)
	const device = "cam-settle"
	k := e.kit(device, nil)
	dir := t.TempDir()
	clock := &frozenClock{}
	r := newSpool(t, k, devicekit.SpoolConfig{Dir: dir, Settle: 10 * time.Second, Now: clock.Now})
	var seen sync.Map // name -> last observed size
	devicekit.SetSpoolObserveHook(r.spool, func(name string, size int64) { seen.Store(name, size) })
	var starts atomic.Int32
	devicekit.SetSpoolStartHook(r.spool, func(string) { starts.Add(1) })
	r.start(t)

	f, err := os.Create(filepath.Join(dir, "growing.mp4"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var all []byte
	for i := range 5 {
		chunk := make([]byte, 4096+i)
		rand.Read(chunk)
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
		all = append(all, chunk...)
		want := int64(len(all))
		// Wait until the spool has seen this size: an eager spool would upload it now.
		eventually(t, func() bool { v, ok := seen.Load("growing.mp4"); return ok && v.(int64) == want }, "the spool to see %d bytes", want)
		clock.Advance(9 * time.Second) // less than Settle since the last change
	}
	// Once the spool has seen a later file, it has had its chance to start an upload.
	writeFile(t, dir, "zz-fence.bin", 10, time.Now().Add(time.Hour))
	eventually(t, func() bool { _, ok := seen.Load("zz-fence.bin"); return ok }, "the spool to see the fence")
	if n := starts.Load(); n != 0 {
		t.Fatalf("%d uploads started before the clip settled", n)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// Let the frozen clock run while waiting: any later re-settle (a retry or a re-check
	// scheduled on the spool's clock) must not stall the test. What this test asserts about
	// settling was checked above, before the fence.
	clock.Advance(10 * time.Second)
	eventually(t, func() bool {
		if n := len(e.distinctEvents(device)); n >= 2 {
			return true
		}
		clock.Advance(time.Second)
		return false
	}, "2 events of %s", device)
	evs := e.waitEvents(device, 2)
	// The first event is of the whole file: nothing partial was uploaded before.
	e.checkUploaded(evs[0], device, "growing.mp4", "growing.mp4", all)
	r.out.wait(t, devicekit.SpoolUploaded, "growing.mp4")
}

// A backlog uploads oldest first (modification time, then name), one event each, in order.
func TestSpoolUploadsInOrder(t *testing.T) {
	t.Parallel()
	e := newSpoolEnv(t)
	const device = "cam-order"
	k := e.kit(device, nil)
	dir := t.TempDir()
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	files := []struct {
		name  string
		mtime time.Time
	}{
		{"a-third.mp4", base.Add(2 * time.Minute)},
		{"b-first.mp4", base},
		{"z-last.mp4", base.Add(3 * time.Minute)},
		{"d-second.mp4", base.Add(time.Minute)},
		{"c-second.mp4", base.Add(time.Minute)}, // same time as d: by name
	}
	data := map[string][]byte{}
	for _, f := range files {
		data[f.name] = writeFile(t, dir, f.name, 3000, f.mtime)
	}
	r := newSpool(t, k, devicekit.SpoolConfig{Dir: dir, Settle: 50 * time.Millisecond}).start(t)
	evs := e.waitEvents(device, len(files))
	want := []string{"b-first.mp4", "c-second.mp4", "d-second.mp4", "a-third.mp4", "z-last.mp4"}
	// The order is the spool's (its outcomes come one at a time from its goroutine): the
	// consumer's handlers run concurrently, so its arrival order may differ.
	r.out.wait(t, devicekit.SpoolUploaded, "z-last.mp4")
	uploaded := r.out.of(devicekit.SpoolUploaded)
	for i, name := range want {
		if i >= len(uploaded) || filepath.Base(uploaded[i].Path) != name {
			t.Fatalf("upload %d is not of %s (want the order %v)", i, name, want)
		}
	}
	slices.SortFunc(evs, func(a, b *clipgate.UploadEvent) int {
		return slices.Index(want, a.Metadata["file"]) - slices.Index(want, b.Metadata["file"])
	})
	for i, ev := range evs {
		e.checkUploaded(ev, device, want[i], want[i], data[want[i]])
		for _, f := range files {
			if f.name == want[i] && !ev.RecordedAt.Equal(f.mtime.UTC()) {
				t.Errorf("%s recorded at %v, want its mtime %v", f.name, ev.RecordedAt, f.mtime)
			}
		}
	}
}

// Temporary names (leading '.', .tmp, .part) are never uploaded, skipped or removed.
func TestSpoolIgnoresTemporaryNames(t *testing.T) {
	t.Parallel()
	e := newSpoolEnv(t)
	const device = "cam-temp"
	k := e.kit(device, nil)
	dir := t.TempDir()
	old := time.Now().Add(-time.Hour)
	temps := []string{".hidden.mp4", "clip.mp4.tmp", "clip2.mp4.part", ".x.tmp"}
	for _, name := range temps {
		writeFile(t, dir, name, 1000, old) // older than the clip: a spool taking them would upload them first
	}
	data := writeFile(t, dir, "real.mp4", 1000, time.Time{})
	r := newSpool(t, k, devicekit.SpoolConfig{Dir: dir, Settle: 50 * time.Millisecond}).start(t)
	evs := e.waitEvents(device, 1)
	e.checkUploaded(evs[0], device, "real.mp4", "real.mp4", data)
	r.out.wait(t, devicekit.SpoolUploaded, "real.mp4")
	r.stop(t)
	if n := len(r.out.list); n != 1 {
		t.Errorf("outcomes %+v, want only real.mp4's upload", r.out.list)
	}
	for _, name := range temps {
		if !exists(filepath.Join(dir, name)) {
			t.Errorf("%s was removed", name)
		}
	}
	if evs := e.deviceEvents(device); len(evs) != 1 {
		t.Errorf("events %+v, want one", evs)
	}
}

// With fsnotify off the scan alone finds clips, renamed or not.
func TestSpoolPollingOnly(t *testing.T) {
	t.Parallel()
	e := newSpoolEnv(t)
	const device = "cam-poll"
	k := e.kit(device, nil)
	dir := t.TempDir()
	clock := &frozenClock{}
	var observed sync.Map
	r := newSpool(t, k, devicekit.SpoolConfig{Dir: dir, NoNotify: true, Settle: time.Minute, Now: clock.Now})
	devicekit.SetSpoolObserveHook(r.spool, func(name string, _ int64) { observed.Store(name, true) })
	var starts atomic.Int32
	devicekit.SetSpoolStartHook(r.spool, func(string) { starts.Add(1) })
	r.start(t)
	a := renameIn(t, dir, "renamed.mp4", 5000)
	b := writeFile(t, dir, "written.mp4", 6000, time.Now().Add(time.Second))
	eventually(t, func() bool {
		_, ok1 := observed.Load("renamed.mp4")
		_, ok2 := observed.Load("written.mp4")
		return ok1 && ok2
	}, "the scan to see both clips")
	// After one more scan (it sees the fence), the spool has had its chance to start.
	writeFile(t, dir, "zz-fence.bin", 10, time.Now().Add(time.Hour))
	eventually(t, func() bool { _, ok := observed.Load("zz-fence.bin"); return ok }, "the scan to see the fence")
	// Without fsnotify a rename cannot be told from a write: both wait for Settle.
	if n := starts.Load(); n != 0 {
		t.Fatalf("%d uploads started before Settle", n)
	}
	clock.Advance(time.Minute)
	evs := e.waitEvents(device, 3)
	e.checkUploaded(evs[0], device, "renamed.mp4", "renamed.mp4", a)
	e.checkUploaded(evs[1], device, "written.mp4", "written.mp4", b)
	r.out.wait(t, devicekit.SpoolUploaded, "written.mp4")
	if exists(filepath.Join(dir, "renamed.mp4")) || exists(filepath.Join(dir, "written.mp4")) {
		t.Error("uploaded clips left in the spool")
	}
}

// Entries that are not clips: a directory and symlinks are skipped (once each) and left
// alone; an empty file is rejected with a failed event (the same event ID after a
// restart) and kept; the good clip beside them uploads.
func TestSpoolGarbage(t *testing.T) {
	t.Parallel()
	e := newSpoolEnv(t)
	const device = "cam-garbage"
	k := e.kit(device, nil)
	dir := t.TempDir()
	old := time.Now().Add(-time.Hour)
	if err := os.Mkdir(filepath.Join(dir, "clip-dir.mp4"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "missing.mp4"), filepath.Join(dir, "dangling.mp4")); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "target.mp4")
	writeFile(t, filepath.Dir(target), "target.mp4", 100, old)
	if err := os.Symlink(target, filepath.Join(dir, "link.mp4")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "empty.mp4", 0, old)
	data := writeFile(t, dir, "good.mp4", 2000, time.Time{})

	r := newSpool(t, k, devicekit.SpoolConfig{Dir: dir, Settle: 200 * time.Millisecond}).start(t)
	r.out.wait(t, devicekit.SpoolUploaded, "good.mp4")
	rej := r.out.wait(t, devicekit.SpoolRejected, "empty.mp4")
	evs := e.waitEvents(device, 2)
	r.stop(t)

	skipped := map[string]int{}
	for _, o := range r.out.of(devicekit.SpoolSkipped) {
		skipped[filepath.Base(o.Path)]++
		if o.Err == nil {
			t.Errorf("skipped %s without a reason", o.Path)
		}
	}
	want := map[string]int{"clip-dir.mp4": 1, "dangling.mp4": 1, "link.mp4": 1}
	if len(skipped) != len(want) || skipped["clip-dir.mp4"] != 1 || skipped["dangling.mp4"] != 1 || skipped["link.mp4"] != 1 {
		t.Errorf("skipped %v, want each of %v once (the scan ran many times)", skipped, want)
	}
	for _, name := range []string{"clip-dir.mp4", "dangling.mp4", "link.mp4", "empty.mp4"} {
		if !exists(filepath.Join(dir, name)) {
			t.Errorf("%s was removed", name)
		}
	}
	if !exists(target) {
		t.Error("the symlink's target was removed")
	}
	if rej.Event == nil || rej.Event.Status != clipgate.StatusFailed || !strings.HasPrefix(rej.Event.Error, "rejected: empty file (0 bytes)") ||
		rej.Event.Metadata["file"] != "empty.mp4" || rej.Event.Size != 0 {
		t.Fatalf("rejection %+v", rej.Event)
	}
	byID := map[string]*clipgate.UploadEvent{}
	for _, ev := range evs {
		byID[ev.ID] = ev
	}
	if got := byID[rej.Event.ID]; got == nil || got.Error != rej.Event.Error {
		t.Fatalf("the rejection %s did not arrive: %+v", rej.Event.ID, evs)
	}
	for _, ev := range evs {
		if ev.Status == clipgate.StatusCompleted {
			e.checkUploaded(ev, device, "good.mp4", "good.mp4", data)
		}
	}

	// A new spool rejects the same file again under the same event ID.
	r2 := newSpool(t, k, devicekit.SpoolConfig{Dir: dir, Settle: 50 * time.Millisecond}).start(t)
	rej2 := r2.out.wait(t, devicekit.SpoolRejected, "empty.mp4")
	if rej2.Event.ID != rej.Event.ID {
		t.Errorf("rejected again as %s, first as %s", rej2.Event.ID, rej.Event.ID)
	}
}

// A clip that changes after its upload, before its removal, is kept and uploaded again:
// under its alternate name, since its first version holds its own and is never
// overwritten.
func TestSpoolClipChangedAfterUpload(t *testing.T) {
	t.Parallel()
	e := newSpoolEnv(t)
	const device = "cam-changed"
	k := e.kit(device, nil)
	dir := t.TempDir()
	r := newSpool(t, k, devicekit.SpoolConfig{Dir: dir, Settle: 50 * time.Millisecond})
	path := filepath.Join(dir, "clip.mp4")
	first := writeFile(t, dir, "clip.mp4", 3000, time.Time{})
	more := make([]byte, 500)
	rand.Read(more)
	var once sync.Once
	devicekit.SetSpoolAfterUploadHook(r.spool, func(string) {
		once.Do(func() {
			f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Error(err)
				return
			}
			f.Write(more)
			f.Close()
		})
	})
	r.start(t)
	up := r.out.wait(t, devicekit.SpoolUploaded, "clip.mp4")
	evs := e.waitEvents(device, 2)
	if evs[0].Size != int64(len(first)) || evs[1].ID != up.Event.ID {
		t.Fatalf("events %+v %+v; want the first version, then the grown one (%s)", evs[0], evs[1], up.Event.ID)
	}
	e.checkUploaded(evs[0], device, "clip.mp4", "clip.mp4", first)
	grown := append(first, more...)
	alt := fmt.Sprintf("clip~%016x.mp4", crc64.Checksum(grown, crc64.MakeTable(crc64.ECMA)))
	e.checkUploaded(evs[1], device, alt, "clip.mp4", grown)
	if exists(path) {
		t.Error("the clip was not removed after its second upload")
	}
}

// Stopped in the middle of a multipart upload, the next spool (a new kit on the same
// state) resumes it: one event ID, one object, fewer parts sent again.
func TestSpoolRestartMidUpload(t *testing.T) {
	t.Parallel()
	e := newSpoolEnv(t)
	const device = "cam-resume"
	small := func(c *devicekit.Config) {
		c.PartSize = devicekit.MinPartSize
		c.MultipartThreshold = 2 * devicekit.MinPartSize
	}
	dir := t.TempDir()
	data := writeFile(t, dir, "long.mp4", 20*devicekit.MinPartSize, time.Time{})

	k1 := e.kit(device, small)
	r1 := newSpool(t, k1, devicekit.SpoolConfig{Dir: dir, Settle: 50 * time.Millisecond})
	var parts atomic.Int32
	devicekit.SetProgressHook(k1, func(done, total int64) {
		if parts.Add(1) == 3 {
			r1.cancel() // stop the spool (from an SDK goroutine) a few parts in
		}
	})
	r1.start(t)
	r1.wait(t)
	if parts.Load() < 3 {
		t.Fatalf("the spool stopped after %d parts", parts.Load())
	}
	if !exists(filepath.Join(dir, "long.mp4")) {
		t.Fatal("the interrupted clip was removed")
	}
	if n := len(r1.out.of(devicekit.SpoolUploaded)); n != 0 {
		t.Fatalf("%d uploads completed before the stop", n)
	}
	k1.Close()

	k2 := e.kit(device, small)
	var parts2 atomic.Int32
	devicekit.SetProgressHook(k2, func(done, total int64) { parts2.Add(1) })
	r2 := newSpool(t, k2, devicekit.SpoolConfig{Dir: dir, Settle: 50 * time.Millisecond}).start(t)
	up := r2.out.wait(t, devicekit.SpoolUploaded, "long.mp4")
	evs := e.waitEvents(device, 1)
	e.checkUploaded(evs[0], device, "long.mp4", "long.mp4", data)
	if up.Event.ID != evs[0].ID || evs[0].Attempts != 2 {
		t.Errorf("event %s (attempts %d), outcome %s: want one event of the resumed upload (attempt 2)", evs[0].ID, evs[0].Attempts, up.Event.ID)
	}
	if n := parts2.Load(); n >= 20 {
		t.Errorf("the second run sent %d parts of 20: not resumed", n)
	}
	for _, ev := range e.deviceEvents(device) {
		if ev.ID != evs[0].ID {
			t.Errorf("a second event ID %s for the clip", ev.ID)
		}
	}
	if keys := e.objects(device); len(keys) != 1 {
		t.Errorf("objects %v, want one", keys)
	}
}

// Stopped after the upload but before the removal, the next spool removes the clip
// without uploading it again: its outcome carries the first event.
func TestSpoolRestartBeforeRemoval(t *testing.T) {
	t.Parallel()
	e := newSpoolEnv(t)
	const device = "cam-record"
	k := e.kit(device, nil)
	dir := t.TempDir()
	data := writeFile(t, dir, "clip.mp4", 4000, time.Time{})
	r1 := newSpool(t, k, devicekit.SpoolConfig{Dir: dir, Settle: 50 * time.Millisecond})
	// Stop the spool from the hook: before it gets to remove the clip.
	devicekit.SetSpoolAfterUploadHook(r1.spool, func(string) { r1.cancel() })
	r1.start(t)
	r1.wait(t)
	if !exists(filepath.Join(dir, "clip.mp4")) {
		t.Fatal("removed although the spool stopped first (the test needs it kept)")
	}
	evs := e.waitEvents(device, 1)
	e.checkUploaded(evs[0], device, "clip.mp4", "clip.mp4", data)

	r2 := newSpool(t, k, devicekit.SpoolConfig{Dir: dir, Settle: 50 * time.Millisecond}).start(t)
	up := r2.out.wait(t, devicekit.SpoolUploaded, "clip.mp4")
	if up.Event == nil || up.Event.ID != evs[0].ID {
		t.Fatalf("second spool's outcome %+v: want the first upload's event %s (no second upload)", up.Event, evs[0].ID)
	}
	if exists(filepath.Join(dir, "clip.mp4")) {
		t.Error("not removed by the second spool")
	}
	if es, _ := os.ReadDir(filepath.Join(e.stack.DeviceConfig(device).StateDir, "spool")); len(es) != 0 {
		t.Errorf("upload records left: %v", es)
	}
}

// While the device is cut off (revoked: disconnected and refused), the bounds drop the
// oldest clips; their failed events and the remaining uploads arrive once it reconnects.
func TestSpoolBoundsWhileOffline(t *testing.T) {
	t.Parallel()
	e := newSpoolEnv(t)
	const device = "cam-offline"
	k := e.kit(device, func(c *devicekit.Config) { c.RequestTimeout = 200 * time.Millisecond })
	e.stack.Revoke(device)
	dir := t.TempDir()
	now := time.Now()
	writeFile(t, dir, "ancient.mp4", 1000, now.Add(-48*time.Hour))
	data := map[string][]byte{}
	var names []string
	for i := range 5 {
		name := "clip-" + strconv.Itoa(i) + ".mp4"
		names = append(names, name)
		data[name] = writeFile(t, dir, name, 10<<10, now.Add(time.Duration(i-10)*time.Minute))
	}
	r := newSpool(t, k, devicekit.SpoolConfig{Dir: dir, Settle: 50 * time.Millisecond, MaxBytes: 30 << 10, MaxAge: 24 * time.Hour}).start(t)
	aged := r.out.wait(t, devicekit.SpoolDropped, "ancient.mp4")
	d0 := r.out.wait(t, devicekit.SpoolDropped, "clip-0.mp4")
	d1 := r.out.wait(t, devicekit.SpoolDropped, "clip-1.mp4")
	if !strings.Contains(aged.Event.Error, "dropped: older than 24h") {
		t.Errorf("age drop: %q", aged.Event.Error)
	}
	for _, d := range []devicekit.SpoolEvent{d0, d1} {
		if !strings.Contains(d.Event.Error, "dropped: spool over 30 KiB") || d.Event.Status != clipgate.StatusFailed {
			t.Errorf("size drop: %+v", d.Event)
		}
		if exists(d.Path) {
			t.Errorf("%s dropped but still there", d.Path)
		}
	}
	for _, name := range names[2:] {
		if !exists(filepath.Join(dir, name)) {
			t.Errorf("%s is within the bound but gone", name)
		}
	}
	if n := len(r.out.of(devicekit.SpoolDropped)); n != 3 {
		t.Errorf("%d clips dropped, want 3", n)
	}
	if evs := e.deviceEvents(device); len(evs) != 0 {
		t.Fatalf("events while revoked: %+v", evs)
	}

	e.stack.Restore(device)
	evs := e.waitEvents(device, 6)
	failed := map[string]bool{aged.Event.ID: true, d0.Event.ID: true, d1.Event.ID: true}
	var completed []*clipgate.UploadEvent
	for _, ev := range evs {
		switch {
		case ev.Status == clipgate.StatusFailed && failed[ev.ID]:
			delete(failed, ev.ID)
		case ev.Status == clipgate.StatusCompleted:
			completed = append(completed, ev)
		default:
			t.Errorf("unexpected event %+v", ev)
		}
	}
	if len(failed) != 0 {
		t.Errorf("drops not announced: %v", failed)
	}
	if len(completed) != 3 {
		t.Fatalf("%d uploads, want 3", len(completed))
	}
	for i, ev := range completed {
		e.checkUploaded(ev, device, names[i+2], names[i+2], data[names[i+2]])
	}
}

// A clip whose upload is running when it passes MaxAge is dropped: the attempt is
// interrupted.
func TestSpoolDropsClipInFlight(t *testing.T) {
	t.Parallel()
	e := newSpoolEnv(t)
	const device = "cam-inflight"
	// Revoked: the credentials request waits (RequestTimeout, several tries) in vain.
	k := e.kit(device, func(c *devicekit.Config) { c.RequestTimeout = 5 * time.Second })
	e.stack.Revoke(device)
	dir := t.TempDir()
	clock := &frozenClock{}
	writeFile(t, dir, "clip.mp4", 1000, clock.Now())
	r := newSpool(t, k, devicekit.SpoolConfig{Dir: dir, Settle: time.Second, MaxAge: time.Hour, Now: clock.Now})
	started := make(chan struct{}, 1)
	devicekit.SetSpoolStartHook(r.spool, func(string) {
		select {
		case started <- struct{}{}:
		default:
		}
	})
	r.start(t)
	clock.Advance(time.Second)
	select {
	case <-started:
	case <-time.After(testTimeout):
		t.Fatal("the upload did not start")
	}
	clock.Advance(2 * time.Hour)
	d := r.out.wait(t, devicekit.SpoolDropped, "clip.mp4")
	if d.Event.Attempts != 1 || !strings.Contains(d.Event.Error, "dropped: older than 1h") {
		t.Errorf("drop event %+v: want one attempt, older than 1h", d.Event)
	}
	if exists(filepath.Join(dir, "clip.mp4")) {
		t.Error("dropped clip still there")
	}
	if n := len(r.out.of(devicekit.SpoolUploaded)); n != 0 {
		t.Error("uploaded although revoked")
	}
}

// A clip dropped by the bounds in the middle of its multipart upload has that upload
// aborted: no parts are left in OSS. (Before, they stayed until a lifecycle rule.)
func TestSpoolDropAbortsMultipartUpload(t *testing.T) {
	t.Parallel()
	e := newSpoolEnv(t)
	const device = "cam-dropmp"
	k := e.kit(device, func(c *devicekit.Config) {
		c.PartSize = devicekit.MinPartSize
		c.MultipartThreshold = 2 * devicekit.MinPartSize
	})
	sweeps := make(chan int, 8)
	devicekit.SetSweepHook(k, func(n int, err error) {
		if err != nil {
			t.Errorf("sweep: %v", err)
		}
		sweeps <- n
	})
	dir := t.TempDir()
	clock := &frozenClock{}
	writeFile(t, dir, "long.mp4", 12*devicekit.MinPartSize, clock.Now())
	r := newSpool(t, k, devicekit.SpoolConfig{Dir: dir, Settle: time.Second, MaxAge: time.Hour, Now: clock.Now})
	dropping := make(chan struct{})
	devicekit.SetSpoolDroppingHook(r.spool, func(string) { close(dropping) })
	var once sync.Once
	devicekit.SetProgressHook(k, func(done, total int64) {
		once.Do(func() {
			// Two hours pass during the upload; the part waits until the spool decided
			// to drop the clip (and cancelled the attempt).
			clock.Advance(2 * time.Hour)
			select {
			case <-dropping:
			case <-time.After(testTimeout):
				t.Error("the spool did not drop the clip")
			}
		})
	})
	r.start(t)
	clock.Advance(time.Second)
	d := r.out.wait(t, devicekit.SpoolDropped, "long.mp4")
	if !strings.Contains(d.Event.Error, "dropped: older than 1h") {
		t.Errorf("drop event %+v", d.Event)
	}
	// The first Upload's sweep, then the one the drop asked for.
	aborted := 0
	for aborted == 0 {
		select {
		case n := <-sweeps:
			aborted += n
		case <-time.After(testTimeout):
			t.Fatal("no sweep aborted the upload")
		}
	}
	c, err := e.stack.OSSClient()
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Bucket(e.stack.Bucket())
	if err != nil {
		t.Fatal(err)
	}
	res, err := b.ListMultipartUploads()
	if err != nil {
		t.Fatal(err)
	}
	if aborted != 1 || len(res.Uploads) != 0 {
		t.Errorf("aborted %d, uploads left %+v: want the one upload aborted", aborted, res.Uploads)
	}
	if n := len(e.objects(device)); n != 0 {
		t.Errorf("%d objects stored for a dropped clip", n)
	}
}

// Run fails when the spool directory disappears; a second Run is refused.
func TestSpoolFatalErrors(t *testing.T) {
	t.Parallel()
	cfg := devicekit.Config{BrokerURL: "tcp://127.0.0.1:1", DeviceID: "cam-fatal", DeviceKey: testZeroKey("cam-fatal"), StateDir: t.TempDir()}
	k, err := devicekit.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	dir := filepath.Join(t.TempDir(), "spool")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := newSpool(t, k, devicekit.SpoolConfig{Dir: dir})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.spool.Run(ctx) }()
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil || !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Run after the directory went: %v, want a not-exist error", err)
		}
	case <-ctx.Done():
		t.Fatal("Run did not notice the directory was removed")
	}
	if err := r.spool.Run(ctx); err == nil {
		t.Error("a second Run was accepted")
	}

	// A kit closed under a running spool ends it with ErrClosed.
	dir2 := t.TempDir()
	writeFile(t, dir2, "clip.mp4", 100, time.Time{})
	r2 := newSpool(t, k, devicekit.SpoolConfig{Dir: dir2, Settle: 10 * time.Millisecond})
	go func() { done <- r2.spool.Run(ctx) }()
	k.Close()
	select {
	case err := <-done:
		if !errors.Is(err, devicekit.ErrClosed) {
			t.Errorf("Run with the kit closed: %v, want ErrClosed", err)
		}
	case <-ctx.Done():
		t.Fatal("Run went on with a closed kit")
	}
	if !exists(filepath.Join(dir2, "clip.mp4")) {
		t.Error("the clip was removed")
	}
}

// An offline kit (never connected) keeps retrying, with bounded waits, and uploads
// nothing.
func TestSpoolRetriesWhileNeverConnected(t *testing.T) {
	t.Parallel()
	cfg := devicekit.Config{BrokerURL: "tcp://127.0.0.1:1", DeviceID: "cam-never", DeviceKey: testZeroKey("cam-never"), StateDir: t.TempDir()}
	k, err := devicekit.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	dir := t.TempDir()
	writeFile(t, dir, "clip.mp4", 100, time.Time{})
	r := newSpool(t, k, devicekit.SpoolConfig{Dir: dir, Settle: 10 * time.Millisecond, RetryMin: 10 * time.Millisecond, RetryMax: 80 * time.Millisecond}).start(t)
	eventually(t, func() bool { return len(r.out.of(devicekit.SpoolRetry)) >= 6 }, "six retries")
	r.stop(t)
	for i, o := range r.out.of(devicekit.SpoolRetry) {
		if !errors.Is(o.Err, devicekit.ErrNotConnected) || o.Retry <= 0 || o.Retry > 80*time.Millisecond {
			t.Errorf("retry %d: %+v", i, o)
		}
	}
	if !exists(filepath.Join(dir, "clip.mp4")) {
		t.Error("the clip was removed")
	}
}

// Failed attempts are not announced one by one (Upload alone announces its failures):
// the token worker hands out a bucket the device cannot write, so every PUT fails.
func TestSpoolAttemptsNotAnnounced(t *testing.T) {
	t.Parallel()
	e := &spoolEnv{t: t, events: map[string][]*clipgate.UploadEvent{}}
	e.stack = inproc.New(t, inproc.Options{WorkerConfig: func(c *tokenworker.Config) { c.OSS.Bucket = "no-such-bucket" }})
	e.consume()
	const device = "cam-quiet"
	k := e.kit(device, nil)
	dir := t.TempDir()
	writeFile(t, dir, "clip.mp4", 100, time.Time{})
	r := newSpool(t, k, devicekit.SpoolConfig{Dir: dir, Settle: 10 * time.Millisecond, RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond}).start(t)
	eventually(t, func() bool { return len(r.out.of(devicekit.SpoolRetry)) >= 3 }, "three failed attempts")
	r.stop(t)
	// A plain Upload announces its failure; the spool's attempts, published before it
	// by the same client, would arrive first.
	fence := filepath.Join(t.TempDir(), "fence.mp4")
	writeFile(t, filepath.Dir(fence), "fence.mp4", 100, time.Time{})
	ev, err := k.Upload(t.Context(), devicekit.Clip{Path: fence})
	if err == nil || ev == nil || ev.Status != clipgate.StatusFailed {
		t.Fatalf("Upload to a foreign bucket: %+v, %v", ev, err)
	}
	evs := e.waitEvents(device, 1)
	if len(evs) != 1 || evs[0].ID != ev.ID {
		t.Errorf("events %+v, want only the plain Upload's failure %s", evs, ev.ID)
	}
	if !exists(filepath.Join(dir, "clip.mp4")) {
		t.Error("the clip was removed")
	}
}

func TestNewSpoolRejectsBadConfig(t *testing.T) {
	t.Parallel()
	k, err := devicekit.New(devicekit.Config{BrokerURL: "tcp://127.0.0.1:1", DeviceID: "cam-cfg", DeviceKey: testZeroKey("cam-cfg"), StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	writeFile(t, dir, "file", 1, time.Time{})
	for name, cfg := range map[string]devicekit.SpoolConfig{
		"no dir":        {},
		"missing dir":   {Dir: filepath.Join(dir, "missing")},
		"file as dir":   {Dir: file},
		"neg settle":    {Dir: dir, Settle: -time.Second},
		"fast poll":     {Dir: dir, PollInterval: time.Millisecond},
		"neg bytes":     {Dir: dir, MaxBytes: -1},
		"neg age":       {Dir: dir, MaxAge: -time.Hour},
		"bad after":     {Dir: dir, After: "shred"},
		"done is dir":   {Dir: dir, After: devicekit.AfterMove, DoneDir: dir},
		"done is file":  {Dir: dir, After: devicekit.AfterMove, DoneDir: file},
		"retry order":   {Dir: dir, RetryMin: time.Minute, RetryMax: time.Second},
		"retry too low": {Dir: dir, RetryMin: time.Microsecond},
	} {
		if _, err := devicekit.NewSpool(k, cfg); !errors.Is(err, devicekit.ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", name, err)
		}
	}
	if _, err := devicekit.NewSpool(nil, devicekit.SpoolConfig{Dir: dir}); err == nil {
		t.Error("nil kit accepted")
	}
	if _, err := devicekit.NewSpool(k, devicekit.SpoolConfig{Dir: dir, After: devicekit.AfterMove}); err != nil {
		t.Errorf("move with the default done dir: %v", err)
	} else if fi, err := os.Stat(filepath.Join(dir, "done")); err != nil || !fi.IsDir() {
		t.Errorf("done dir not created: %v", err)
	}
}

// testZeroKey is a device key of all-zero keys for id (for configs that never reach a broker).
func testZeroKey(id string) *devicekit.DeviceKey {
	return &devicekit.DeviceKey{Device: id, KeyID: "k1", Connect: make([]byte, 32), Request: make([]byte, 32)}
}
