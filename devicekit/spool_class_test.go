package devicekit_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/devicekit"
)

// spoolClock is a settable clock for the spool (Settle, windows), in a fixed zone.
type spoolClock struct {
	ns  atomic.Int64
	loc *time.Location
}

func newSpoolClock(at time.Time) *spoolClock {
	c := &spoolClock{loc: at.Location()}
	c.ns.Store(at.UnixNano())
	return c
}

func (c *spoolClock) Now() time.Time          { return time.Unix(0, c.ns.Load()).In(c.loc) }
func (c *spoolClock) Set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func (c *spoolClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// starts records the order in which a spool starts uploads, with the spool clock's time.
type starts struct {
	mu    sync.Mutex
	names []string
	at    map[string]time.Time
}

func (s *starts) hook(clock *spoolClock) func(string) {
	s.at = map[string]time.Time{}
	return func(name string) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, seen := s.at[name]; !seen {
			s.names = append(s.names, name)
			s.at[name] = clock.Now()
		}
	}
}

func (s *starts) list() ([]string, map[string]time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.names), s.at
}

func mustClass(t *testing.T, spec string) devicekit.SpoolClass {
	t.Helper()
	c, err := devicekit.ParseSpoolClass(spec)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Clips go in class order, FIFO within a class, whatever their age across classes; the
// events carry the class.
func TestSpoolClassOrder(t *testing.T) {
	t.Parallel()
	e := newSpoolEnv(t)
	k := e.kit("cam-classes", nil)
	dir := t.TempDir()
	clock := newSpoolClock(time.Now())
	classes := []devicekit.SpoolClass{mustClass(t, "event=event/"), mustClass(t, "alarm=alarm-*"), mustClass(t, "continuous=continuous/")}
	r := newSpool(t, k, devicekit.SpoolConfig{Dir: dir, Settle: time.Second, Now: clock.Now, NoNotify: true, Classes: classes})
	now := time.Now()
	writeFile(t, filepath.Join(dir, "continuous"), "c1.mp4", 1000, now.Add(-50*time.Minute))
	writeFile(t, dir, "x.mp4", 1000, now.Add(-40*time.Minute))
	writeFile(t, filepath.Join(dir, "event"), "e2.mp4", 1000, now.Add(-10*time.Minute))
	writeFile(t, filepath.Join(dir, "event"), "e1.mp4", 1000, now.Add(-20*time.Minute))
	writeFile(t, dir, "alarm-1.mp4", 1000, now.Add(-5*time.Minute))
	var st starts
	devicekit.SetSpoolStartHook(r.spool, st.hook(clock))
	r.start(t)
	clock.Advance(2 * time.Second) // all settle in the same step
	for _, name := range []string{"x.mp4", "c1.mp4"} {
		r.out.wait(t, devicekit.SpoolUploaded, name)
	}
	order, _ := st.list()
	want := []string{"event/e1.mp4", "event/e2.mp4", "alarm-1.mp4", "continuous/c1.mp4", "x.mp4"}
	if !slices.Equal(order, want) {
		t.Fatalf("upload order %v, want %v", order, want)
	}
	classOf := map[string]string{}
	for _, ev := range e.waitEvents("cam-classes", 5) {
		classOf[ev.Metadata["file"]] = ev.Metadata["class"]
	}
	if classOf["event/e1.mp4"] != "event" || classOf["alarm-1.mp4"] != "alarm" || classOf["continuous/c1.mp4"] != "continuous" || classOf["x.mp4"] != "" {
		t.Errorf("event classes %v", classOf)
	}
	for _, p := range []string{"event/e1.mp4", "continuous/c1.mp4", "x.mp4"} {
		if exists(filepath.Join(dir, p)) {
			t.Errorf("%s not removed after its upload", p)
		}
	}
}

// A class with a window waits for it: continuous footage only at night, event clips
// at any time.
func TestSpoolClassWindow(t *testing.T) {
	t.Parallel()
	e := newSpoolEnv(t)
	k := e.kit("cam-windows", nil)
	dir := t.TempDir()
	loc := time.FixedZone("site", -5*3600)
	noon := time.Date(2026, 6, 1, 12, 0, 0, 0, loc)
	clock := newSpoolClock(noon)
	classes := []devicekit.SpoolClass{mustClass(t, "event=event/"), mustClass(t, "continuous=continuous/@22:00-06:00")}
	r := newSpool(t, k, devicekit.SpoolConfig{Dir: dir, Settle: time.Second, Now: clock.Now, Classes: classes})
	writeFile(t, filepath.Join(dir, "continuous"), "night.mp4", 1000, time.Now().Add(-time.Hour))
	writeFile(t, filepath.Join(dir, "event"), "door.mp4", 1000, time.Now())
	var st starts
	devicekit.SetSpoolStartHook(r.spool, st.hook(clock))
	var armed atomic.Bool
	idle := make(chan struct{}, 1)
	devicekit.SetSpoolIdleHook(r.spool, func() {
		if armed.Load() {
			select {
			case idle <- struct{}{}:
			default:
			}
		}
	})
	r.start(t)
	clock.Advance(2 * time.Second)
	r.out.wait(t, devicekit.SpoolUploaded, "door.mp4")
	armed.Store(true)
	select { // the spool looked again and found nothing it may start
	case <-idle:
	case <-time.After(testTimeout):
		t.Fatal("the spool never went idle")
	}
	if !exists(filepath.Join(dir, "continuous", "night.mp4")) {
		t.Fatal("the continuous clip left the spool outside its window")
	}
	clock.Set(time.Date(2026, 6, 1, 22, 30, 0, 0, loc))
	r.out.wait(t, devicekit.SpoolUploaded, "night.mp4")
	order, at := st.list()
	if !slices.Equal(order, []string{"event/door.mp4", "continuous/night.mp4"}) {
		t.Fatalf("upload order %v", order)
	}
	if h := at["continuous/night.mp4"].Hour(); h < 22 {
		t.Errorf("the continuous clip started at %s local time, outside 22:00-06:00", at["continuous/night.mp4"].Format("15:04"))
	}
}

// At MaxBytes the lowest class goes first (clips no class takes, then the lowest named
// class), oldest first, however old the higher classes' clips are; every eviction is
// announced with a failed event.
func TestSpoolEvictsLowestClassFirst(t *testing.T) {
	t.Parallel()
	e := newSpoolEnv(t)
	cfg := e.stack.DeviceConfig("cam-evict")
	k, err := devicekit.New(cfg) // not connected: nothing uploads until the drops are done
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	dir := t.TempDir()
	clock := newSpoolClock(time.Now())
	classes := []devicekit.SpoolClass{mustClass(t, "event=event/"), mustClass(t, "continuous=continuous/")}
	for _, sub := range []string{"event", "continuous"} { // NewSpool would make them
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	writeFile(t, filepath.Join(dir, "event"), "e-old.mp4", 1000, now.Add(-3*time.Hour))
	writeFile(t, filepath.Join(dir, "continuous"), "c1.mp4", 1000, now.Add(-2*time.Hour))
	writeFile(t, filepath.Join(dir, "continuous"), "c2.mp4", 1000, now.Add(-90*time.Minute))
	writeFile(t, dir, "loose.mp4", 1000, now.Add(-time.Minute))
	writeFile(t, filepath.Join(dir, "event"), "e-new.mp4", 1000, now)
	r := newSpool(t, k, devicekit.SpoolConfig{Dir: dir, Settle: time.Second, Now: clock.Now, MaxBytes: 2500, Classes: classes}).start(t)
	loose := r.out.wait(t, devicekit.SpoolDropped, "loose.mp4")
	c1 := r.out.wait(t, devicekit.SpoolDropped, "c1.mp4")
	c2 := r.out.wait(t, devicekit.SpoolDropped, "c2.mp4")
	if n := len(r.out.of(devicekit.SpoolDropped)); n != 3 {
		t.Fatalf("%d clips dropped, want 3", n)
	}
	for _, p := range []string{"event/e-old.mp4", "event/e-new.mp4"} {
		if !exists(filepath.Join(dir, p)) {
			t.Errorf("%s (higher class) was dropped", p)
		}
	}
	if !strings.Contains(c1.Event.Error, `class "continuous"`) || c1.Event.Status != clipgate.StatusFailed {
		t.Errorf("drop of c1: %+v", c1.Event)
	}

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := k.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Second)
	r.out.wait(t, devicekit.SpoolUploaded, "e-old.mp4")
	r.out.wait(t, devicekit.SpoolUploaded, "e-new.mp4")
	got := map[string]*clipgate.UploadEvent{}
	for _, ev := range e.waitEvents("cam-evict", 5) {
		got[ev.ID] = ev
	}
	for _, d := range []devicekit.SpoolEvent{loose, c1, c2} {
		if ev := got[d.Event.ID]; ev == nil || ev.Status != clipgate.StatusFailed || !strings.HasPrefix(ev.Error, "dropped: spool over") {
			t.Errorf("the drop of %s was not announced as failed: %+v", d.Path, ev)
		}
	}
}

func TestSpoolClassGarbage(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"", "event", "=event/", "ev ent=event/", "a=x/,y/", "a=/", "a=[", "a=event/@25:00-01:00",
		"a=event/@", "a=../", "a=.hidden/", strings.Repeat("n", 65) + "=x/"} {
		if c, err := devicekit.ParseSpoolClass(bad); err == nil {
			t.Errorf("ParseSpoolClass(%q) = %+v, want an error", bad, c)
		}
	}
	c := mustClass(t, " continuous = continuous/ , cont-*.mp4 @ 22:00-06:00,12:00-13:00")
	if c.Name != "continuous" || c.Dir != "continuous" || !slices.Equal(c.Patterns, []string{"cont-*.mp4"}) || len(c.Windows) != 2 || c.Windows[1].String() != "12:00-13:00" {
		t.Errorf("parsed %+v", c)
	}

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		classes []devicekit.SpoolClass
		after   devicekit.AfterUpload
		want    string
	}{
		{[]devicekit.SpoolClass{{Name: "a", Dir: "x"}, {Name: "a", Dir: "y"}}, "", "named twice"},
		{[]devicekit.SpoolClass{{Name: "a", Dir: "x"}, {Name: "b", Dir: "x"}}, "", "belongs to two classes"},
		{[]devicekit.SpoolClass{{Name: "a"}, {Name: "b"}}, "", "two classes without"},
		{[]devicekit.SpoolClass{{Name: "a", Dir: "file"}}, "", "not a directory"},
		{[]devicekit.SpoolClass{{Name: "a", Dir: "x/y"}}, "", "one plain name"},
		{[]devicekit.SpoolClass{{Name: "a", Patterns: []string{"["}}}, "", "not a file name pattern"},
		{[]devicekit.SpoolClass{{Name: "a", Dir: "done"}}, devicekit.AfterMove, "is DoneDir"},
		{[]devicekit.SpoolClass{{Name: "a", Windows: []devicekit.Window{{From: time.Hour, To: time.Hour}}}}, "", "empty window"},
		{[]devicekit.SpoolClass{{Name: ""}}, "", "class name"},
	} {
		err := devicekit.SpoolConfig{Dir: dir, Classes: tc.classes, After: tc.after}.Validate()
		if !errors.Is(err, devicekit.ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: Validate = %v, want ErrConfig with %q", tc.classes, err, tc.want)
		}
	}
}
