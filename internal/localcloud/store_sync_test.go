package localcloud

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
)

// setFsync replaces the function that fsyncs g's directory.
func (g *groupSync) setFsync(f func(dir string) error) {
	g.mu.Lock()
	g.fsync = f
	g.mu.Unlock()
}

// waitBatch waits until the open batch of g holds at least n callers.
func waitBatch(g *groupSync, n int) {
	for {
		g.mu.Lock()
		size := 0
		if g.open != nil {
			size = g.open.size
		}
		g.mu.Unlock()
		if size >= n {
			return
		}
		runtime.Gosched()
	}
}

// TestGroupSyncBatches holds one fsync while 15 more callers arrive: they all wait for the
// next fsync, which covers them all (two fsyncs for 16 callers), and each gets its
// batch's result: the first batch fails, the second succeeds.
func TestGroupSyncBatches(t *testing.T) {
	t.Parallel()
	g := newGroupSync(t.TempDir())
	var calls atomic.Int32
	release := make(chan struct{})
	failFirst := errors.New("injected fsync failure")
	g.setFsync(func(string) error {
		if calls.Add(1) == 1 {
			<-release
			return failFirst
		}
		return nil
	})
	first := make(chan error, 1)
	go func() { first <- g.sync() }()
	waitFsyncs(&calls, 1) // the first fsync runs, its batch closed
	const more = 15
	errs := make(chan error, more)
	for range more {
		go func() { errs <- g.sync() }()
	}
	waitBatch(g, more)
	close(release)
	if err := <-first; !errors.Is(err, failFirst) {
		t.Errorf("first caller: %v, want the injected failure", err)
	}
	for range more {
		if err := <-errs; err != nil {
			t.Errorf("later caller: %v", err)
		}
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("%d fsyncs for %d callers, want 2", n, more+1)
	}
	// Alone, a caller pays its own fsync.
	if err := g.sync(); err != nil || calls.Load() != 3 {
		t.Errorf("lone caller: %v, %d fsyncs", err, calls.Load())
	}
}

func waitFsyncs(calls *atomic.Int32, n int32) {
	for calls.Load() < n {
		runtime.Gosched()
	}
}

// TestGroupSyncCoversCallers has 16 goroutines make numbered changes and sync, with an
// fsync that notes at its start the last change made: once sync returns, a completed fsync
// must have started after the caller's change.
func TestGroupSyncCoversCallers(t *testing.T) {
	t.Parallel()
	g := newGroupSync(t.TempDir())
	var changes, durable atomic.Int64 // durable: changes made before a completed fsync began
	var fsyncs atomic.Int32
	g.setFsync(func(dir string) error {
		fsyncs.Add(1)
		seen := changes.Load()
		err := syncDir(dir)
		for {
			d := durable.Load()
			if seen <= d || durable.CompareAndSwap(d, seen) {
				return err
			}
		}
	})
	const workers, rounds = 16, 50
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range rounds {
				mine := changes.Add(1)
				if err := g.sync(); err != nil {
					t.Error(err)
					return
				}
				if d := durable.Load(); d < mine {
					t.Errorf("sync returned with change %d made, %d durable", mine, d)
					return
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d fsyncs for %d syncs", fsyncs.Load(), workers*rounds)
}

// TestConcurrentPutsDurable has 16 SDK clients put objects at once, then overwrite them,
// while every fsync of data/ records the names it makes durable: at its start it
// hard-links every record in data/ into a snapshot, which becomes "the disk" once the fsync
// completes. Each PutObject, once acknowledged, must be in the disk as it stands with its
// whole content; and a store opened on the last disk (a crash right after the last fsync)
// holds every object's last acknowledged version. Then the server restarts on its real
// directory and every object reads back through the SDK.
func TestConcurrentPutsDurable(t *testing.T) {
	t.Parallel()
	e := newOSSEnv(t)
	b := e.srv.oss.store.buckets[testBucket]
	snaps := t.TempDir()
	var (
		diskMu sync.Mutex
		disk   string // the bucket directory of the last completed fsync's snapshot
		seq    atomic.Int64
		fsyncs atomic.Int32
	)
	b.dataSync.setFsync(func(dir string) error {
		fsyncs.Add(1)
		snap := filepath.Join(snaps, strconv.FormatInt(seq.Add(1), 10))
		if err := linkRecords(dir, filepath.Join(snap, "data")); err != nil {
			return err
		}
		if err := syncDir(dir); err != nil {
			return err
		}
		diskMu.Lock()
		defer diskMu.Unlock()
		// fsyncs run one at a time, so the last to complete is the latest.
		if disk != "" {
			_ = os.RemoveAll(disk)
		}
		disk = snap
		return nil
	})
	// onDisk reads key's object from the disk.
	onDisk := func(key string) ([]byte, error) {
		diskMu.Lock()
		defer diskMu.Unlock()
		if disk == "" {
			return nil, errors.New("nothing durable yet")
		}
		path := filepath.Join(disk, "data", recordName(key))
		m, err := readRecord(path)
		if err != nil {
			return nil, err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		return data[:m.Size], nil
	}

	const clients, objects, size = 16, 6, 20_000
	content := func(c, i, round int) []byte {
		return bytes.Repeat([]byte(fmt.Sprintf("c%02d/o%d/r%d|", c, i, round)), size/12)
	}
	key := func(c, i int) string { return fmt.Sprintf("dur/c%02d/o%d", c, i) }
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			bk := e.admin(oss.AuthV1)
			for round := range 2 {
				for i := range objects {
					want := content(c, i, round)
					if err := bk.PutObject(key(c, i), bytes.NewReader(want)); err != nil {
						t.Error(err)
						return
					}
					if got, err := onDisk(key(c, i)); err != nil || !bytes.Equal(got, want) {
						t.Errorf("%s acknowledged but not on disk: %v (%d bytes)", key(c, i), err, len(got))
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("%d fsyncs of data/ for %d PutObjects", fsyncs.Load(), 2*clients*objects)

	// Crash: a store opened on the disk as the last fsync left it.
	diskMu.Lock()
	crashed, err := openBucket(disk, testBucket)
	diskMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if len(crashed.keys) != clients*objects {
		t.Errorf("%d objects after the crash, want %d", len(crashed.keys), clients*objects)
	}
	for c := range clients {
		for i := range objects {
			if got, ok := readAll(t, crashed, key(c, i)); !ok || got != string(content(c, i, 1)) {
				t.Errorf("after the crash %s: present %v, %d bytes", key(c, i), ok, len(got))
			}
		}
	}

	e.restart()
	bk := e.admin(oss.AuthV1)
	for c := range clients {
		for i := range objects {
			if got := getBody(t, bk, key(c, i)); !bytes.Equal(got, content(c, i, 1)) {
				t.Errorf("after restart %s: %d bytes", key(c, i), len(got))
			}
		}
	}
}

// linkRecords hard-links every record file of dataDir into dst (created).
func linkRecords(dataDir, dst string) error {
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	es, err := os.ReadDir(dataDir)
	if err != nil {
		return err
	}
	for _, e := range es {
		if !isRecordName(e.Name()) {
			continue
		}
		err := os.Link(filepath.Join(dataDir, e.Name()), filepath.Join(dst, e.Name()))
		if err != nil && !errors.Is(err, os.ErrNotExist) { // replaced or deleted meanwhile
			return err
		}
	}
	return nil
}

// getBody reads key's whole object through the SDK.
func getBody(t *testing.T, bk *oss.Bucket, key string) []byte {
	t.Helper()
	rc, err := bk.GetObject(key)
	if err != nil {
		t.Errorf("GetObject %s: %v", key, err)
		return nil
	}
	defer rc.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(rc); err != nil {
		t.Errorf("GetObject %s: %v", key, err)
	}
	return buf.Bytes()
}
