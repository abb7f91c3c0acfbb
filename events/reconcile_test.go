package events_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/events"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/internal/testutil"
)

// index is the caller's index of objects by key, as a console would keep it.
type index struct {
	mu   sync.Mutex
	keys map[string]*events.Event
	err  error // returned by known while set
}

func newIndex() *index { return &index{keys: map[string]*events.Event{}} }

func (x *index) known(_ context.Context, key string) (bool, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.err != nil {
		return false, x.err
	}
	_, ok := x.keys[key]
	return ok, nil
}

// add is a Handler: it indexes verified completed events.
func (x *index) add(_ context.Context, ev *events.Event) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if ev.Verified {
		cp := *ev
		x.keys[ev.Key] = &cp
	}
	return nil
}

func (x *index) get(key string) *events.Event {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.keys[key]
}

func (x *index) len() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.keys)
}

func reconcilerConfig(t testing.TB, stack *inproc.Stack, x *index) events.ReconcilerConfig {
	return events.ReconcilerConfig{
		Bucket:  stack.Bucket(),
		Prefix:  stack.Prefix(),
		OSS:     stack.AdminBucket(t),
		Known:   x.known,
		Handler: x.add,
		Now:     func() time.Time { return time.Now().Add(time.Hour) }, // everything is old enough
	}
}

func newReconciler(t testing.TB, cfg events.ReconcilerConfig) *events.Reconciler {
	t.Helper()
	r, err := events.NewReconciler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func pass(t testing.TB, r *events.Reconciler) int {
	t.Helper()
	n, err := r.Pass(testContext(t))
	if err != nil {
		t.Fatalf("pass: %v", err)
	}
	return n
}

// An object uploaded around the event path (directly, with the admin key) gets a
// reconciled event with its facts from OSS; objects the index knows, objects outside
// any device prefix and objects outside the prefix get none; a second pass emits nothing.
func TestReconcilerEmitsForUnknownObjects(t *testing.T) {
	t.Parallel()
	stack := inproc.New(t, inproc.Options{})
	admin := stack.AdminBucket(t)
	x := newIndex()
	p := stack.Prefix()

	orphan := p + "cam-r/2024/05/01/orphan.mp4"
	data := putObject(t, admin, orphan, 321)
	indexed := p + "cam-r/2024/05/01/indexed.mp4"
	putObject(t, admin, indexed, 10)
	x.keys[indexed] = &events.Event{}
	for _, k := range []string{p + "readme.txt", p + "x/2024/a.mp4", p + "cam-r/a//b.mp4", "elsewhere/cam-r/a.mp4"} {
		putObject(t, admin, k, 1)
	}

	r := newReconciler(t, reconcilerConfig(t, stack, x))
	if n := pass(t, r); n != 1 {
		t.Fatalf("first pass emitted %d events, want 1", n)
	}
	ev := x.get(orphan)
	if ev == nil {
		t.Fatal("no event for the orphan object")
	}
	h, err := admin.GetObjectDetailedMeta(orphan)
	if err != nil {
		t.Fatal(err)
	}
	etag := strings.Trim(h.Get("ETag"), `"`)
	lastMod, err := time.Parse(time.RFC1123, h.Get("Last-Modified"))
	if err != nil {
		t.Fatal(err)
	}
	// The listing's LastModified has milliseconds, HEAD's Last-Modified whole seconds.
	if !ev.UploadedAt.Truncate(time.Second).Equal(lastMod) || ev.UploadedAt.Location() != time.UTC {
		t.Errorf("UploadedAt %v, object last modified %v", ev.UploadedAt, lastMod)
	}
	want := clipgate.UploadEvent{
		V: 1, ID: events.ReconciledID(stack.Bucket(), orphan, etag), Device: "cam-r", Status: clipgate.StatusCompleted,
		Bucket: stack.Bucket(), Key: orphan, Size: int64(len(data)), CRC64: testutil.CRC64(data),
		ContentType: h.Get("Content-Type"), UploadedAt: ev.UploadedAt,
	}
	if fmt.Sprint(ev.UploadEvent) != fmt.Sprint(want) {
		t.Errorf("reconciled event\n%+v\nwant\n%+v", ev.UploadEvent, want)
	}
	if !ev.Reconciled || !ev.Verified || ev.Rejected() || ev.Publisher != "" || ev.ETag != etag {
		t.Errorf("reconciled event flags: %s reconciled %v publisher %q etag %q", fmtEvent(ev), ev.Reconciled, ev.Publisher, ev.ETag)
	}
	if err := protocol.ValidateUploadEvent(&ev.UploadEvent); err != nil {
		t.Errorf("reconciled event is not a valid upload event: %v", err)
	}
	if n := pass(t, r); n != 0 {
		t.Errorf("second pass emitted %d events, want 0", n)
	}
	st := r.Stats()
	if st.Passes != 2 || st.Emitted != 1 || st.Skipped != 6 || st.Scanned != 10 || st.Errors != 0 {
		t.Errorf("stats %+v: want 2 passes, 1 emitted, 6 skipped (3 foreign, twice), 10 scanned (5 under the prefix, twice)", st)
	}
}

// Objects younger than MinAge are left for their events.
func TestReconcilerMinAge(t *testing.T) {
	t.Parallel()
	stack := inproc.New(t, inproc.Options{})
	key := stack.Prefix() + "cam-y/2024/05/01/young.mp4"
	putObject(t, stack.AdminBucket(t), key, 5)
	x := newIndex()
	cfg := reconcilerConfig(t, stack, x)
	cfg.Now = time.Now // MinAge is the default 10 minutes
	if n := pass(t, newReconciler(t, cfg)); n != 0 {
		t.Fatalf("emitted %d events for a fresh object", n)
	}
	cfg.MinAge = -1
	if n := pass(t, newReconciler(t, cfg)); n != 1 || x.get(key) == nil {
		t.Fatalf("without MinAge: %d events", n)
	}
}

// Listing pages through continuation tokens; MaxScan and MaxEvents bound a pass, and the
// next pass continues where it stopped, wrapping around at the end.
func TestReconcilerPagesAndBounds(t *testing.T) {
	t.Parallel()
	stack := inproc.New(t, inproc.Options{})
	admin := stack.AdminBucket(t)
	const n = 7
	for i := range n {
		putObject(t, admin, fmt.Sprintf("%scam-%02d/2024/05/01/a.mp4", stack.Prefix(), i), 3)
	}

	// Small pages, no bound: one pass gets all.
	x := newIndex()
	cfg := reconcilerConfig(t, stack, x)
	cfg.PageSize = 2
	if got := pass(t, newReconciler(t, cfg)); got != n || x.len() != n {
		t.Fatalf("paged pass: %d events, %d indexed; want %d", got, x.len(), n)
	}

	// MaxScan 3: 3, 3, 1; then the pass after the end starts over: a new object at the
	// start of the key space is found; the rest of the round finds nothing new.
	x = newIndex()
	cfg = reconcilerConfig(t, stack, x)
	cfg.PageSize = 2
	cfg.MaxScan = 3
	r := newReconciler(t, cfg)
	for i, want := range []int{3, 3, 1} {
		if got := pass(t, r); got != want {
			t.Fatalf("MaxScan pass %d: %d events, want %d", i, got, want)
		}
	}
	first := stack.Prefix() + "cam-00/2024/05/01/0-new.mp4"
	putObject(t, admin, first, 3)
	for i, want := range []int{1, 0, 0, 0} {
		if got := pass(t, r); got != want {
			t.Fatalf("MaxScan pass %d after the wrap: %d events, want %d", i, got, want)
		}
	}
	if x.get(first) == nil {
		t.Fatal("the new object was not indexed")
	}

	// MaxEvents 2 over unknown objects: 2, 2, 2, 2 (7+1 objects), then 0.
	x = newIndex()
	cfg = reconcilerConfig(t, stack, x)
	cfg.MaxEvents = 2
	r = newReconciler(t, cfg)
	for i, want := range []int{2, 2, 2, 2, 0} {
		if got := pass(t, r); got != want {
			t.Fatalf("MaxEvents pass %d: %d events, want %d", i, got, want)
		}
	}
}

// An error from the index or the handler ends the pass; the next pass starts with the
// object that failed, so nothing is skipped.
func TestReconcilerErrorsRetryTheObject(t *testing.T) {
	t.Parallel()
	stack := inproc.New(t, inproc.Options{})
	admin := stack.AdminBucket(t)
	keys := []string{stack.Prefix() + "cam-e/a.mp4", stack.Prefix() + "cam-e/b.mp4", stack.Prefix() + "cam-e/c.mp4"}
	for _, k := range keys {
		putObject(t, admin, k, 3)
	}
	x := newIndex()
	failOn := keys[1]
	cfg := reconcilerConfig(t, stack, x)
	cfg.Handler = func(ctx context.Context, ev *events.Event) error {
		if ev.Key == failOn {
			return errors.New("index write failed")
		}
		return x.add(ctx, ev)
	}
	r := newReconciler(t, cfg)
	n, err := r.Pass(testContext(t))
	if err == nil || n != 1 {
		t.Fatalf("pass with a failing handler: %d events, error %v; want 1 and an error", n, err)
	}
	failOn = ""
	if n := pass(t, r); n != 2 || x.len() != 3 {
		t.Fatalf("next pass: %d events, %d indexed; want 2, 3", n, x.len())
	}

	x.err = errors.New("index unreachable")
	if _, err := newReconciler(t, reconcilerConfig(t, stack, x)).Pass(testContext(t)); err == nil || !strings.Contains(err.Error(), "index unreachable") {
		t.Fatalf("pass with a failing index: %v", err)
	}

	// An unreachable OSS fails the pass with the listing error.
	cfg = reconcilerConfig(t, stack, newIndex())
	cfg.OSS = newFlakyStat(t, stack, 0).dead
	r = newReconciler(t, cfg)
	if _, err := r.Pass(testContext(t)); err == nil {
		t.Fatal("pass against a closed port succeeded")
	}
	if st := r.Stats(); st.Errors != 1 {
		t.Errorf("stats %+v: want 1 error", st)
	}
}

// The Deduper is consulted and marked with the deterministic IDs, so a reconciled event
// the handler accepted without indexing it is not emitted again, even by a new
// Reconciler (another process).
func TestReconcilerDedup(t *testing.T) {
	t.Parallel()
	stack := inproc.New(t, inproc.Options{})
	putObject(t, stack.AdminBucket(t), stack.Prefix()+"cam-d/a.mp4", 3)
	dedup := &memDeduper{}
	calls := 0
	cfg := reconcilerConfig(t, stack, newIndex())
	cfg.Dedup = dedup
	cfg.Handler = func(context.Context, *events.Event) error { calls++; return nil } // never indexes
	for range 2 {
		if n := pass(t, newReconciler(t, cfg)); calls > 1 || n > 1 {
			t.Fatalf("%d handler calls, pass emitted %d", calls, n)
		}
	}
	if calls != 1 || dedup.markCount() != 1 {
		t.Fatalf("%d handler calls and %d marks, want 1 and 1", calls, dedup.markCount())
	}
}

// Run passes until its context ends.
func TestReconcilerRun(t *testing.T) {
	t.Parallel()
	stack := inproc.New(t, inproc.Options{})
	admin := stack.AdminBucket(t)
	x := newIndex()
	cfg := reconcilerConfig(t, stack, x)
	cfg.Interval = 10 * time.Millisecond
	r := newReconciler(t, cfg)
	ctx, cancel := context.WithCancel(testContext(t))
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	key := stack.Prefix() + "cam-run/a.mp4"
	putObject(t, admin, key, 3)
	testutil.WaitFor(t, "the object indexed by Run", func() bool { return x.get(key) != nil })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v", err)
	}
	if st := r.Stats(); st.Passes < 1 || st.Emitted != 1 {
		t.Errorf("stats %+v", st)
	}
}

// The consumer and the reconciler together: uploads through devices are indexed from
// their events, and the reconciler only adds what bypassed them.
func TestReconcilerWithConsumer(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	stack := inproc.New(t, inproc.Options{})
	x := newIndex()
	c := startConsumer(t, consumerConfig(t, stack, "consumer:with-reconciler"), x.add)
	kit := stack.Kit(t, ctx, "cam-w", nil)
	dir := t.TempDir()
	var sent []*clipgate.UploadEvent
	for _, name := range []string{"a.mp4", "b.mp4"} {
		sent = append(sent, uploadClip(t, ctx, kit, dir, name, 50))
	}
	testutil.WaitFor(t, "the uploads indexed", func() bool { return c.Stats().Handled == 2 })
	direct := stack.Prefix() + "cam-w/2024/05/01/direct.mp4"
	putObject(t, stack.AdminBucket(t), direct, 9)

	r := newReconciler(t, reconcilerConfig(t, stack, x))
	if n := pass(t, r); n != 1 {
		t.Fatalf("reconciler emitted %d events, want 1 (the direct upload)", n)
	}
	for _, s := range sent {
		if ev := x.get(s.Key); ev == nil || ev.Reconciled || ev.ID != s.ID {
			t.Errorf("upload %s indexed as %v", s.Key, ev)
		}
	}
	if ev := x.get(direct); ev == nil || !ev.Reconciled {
		t.Errorf("direct upload indexed as %v", ev)
	}
}

func TestReconcilerConfigErrors(t *testing.T) {
	t.Parallel()
	stack := inproc.New(t, inproc.Options{})
	good := reconcilerConfig(t, stack, newIndex())
	otherBucket, err := stack.AdminBucket(t).Client.Bucket("another-bucket")
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]func(*events.ReconcilerConfig){
		"no bucket":     func(c *events.ReconcilerConfig) { c.Bucket = "" },
		"bad prefix":    func(c *events.ReconcilerConfig) { c.Prefix = "/clips/" },
		"no OSS":        func(c *events.ReconcilerConfig) { c.OSS = nil },
		"nil bucket":    func(c *events.ReconcilerConfig) { c.OSS = (*oss.Bucket)(nil) },
		"other bucket":  func(c *events.ReconcilerConfig) { c.OSS = otherBucket },
		"no Known":      func(c *events.ReconcilerConfig) { c.Known = nil },
		"no Handler":    func(c *events.ReconcilerConfig) { c.Handler = nil },
		"page size":     func(c *events.ReconcilerConfig) { c.PageSize = events.MaxPageSize + 1 },
		"max scan":      func(c *events.ReconcilerConfig) { c.MaxScan = -1 },
		"max events":    func(c *events.ReconcilerConfig) { c.MaxEvents = -1 },
		"interval":      func(c *events.ReconcilerConfig) { c.Interval = -time.Second },
		"OSS timeout":   func(c *events.ReconcilerConfig) { c.OSSTimeout = -time.Second },
		"upper bucket":  func(c *events.ReconcilerConfig) { c.Bucket = "Clips" },
		"double slash":  func(c *events.ReconcilerConfig) { c.Prefix = "a//" },
		"no final /":    func(c *events.ReconcilerConfig) { c.Prefix = "clips" },
		"dotdot prefix": func(c *events.ReconcilerConfig) { c.Prefix = "a/../" },
	}
	for name, mod := range cases {
		cfg := good
		mod(&cfg)
		if _, err := events.NewReconciler(cfg); !errors.Is(err, events.ErrInvalidConfig) {
			t.Errorf("%s: error %v, want ErrInvalidConfig", name, err)
		}
	}
}
