package devicekit

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/internal/atomicfile"
	"github.com/clipgate/clipgate/internal/testutil"
	"github.com/clipgate/clipgate/topics"
)

// These tests set the test hooks (atomicfile.SyncHook, stepHook), so they do not run in
// parallel: a test that calls t.Parallel waits until they are over.

// watchSyncs records the files and directories under dir that the kit syncs, until the
// test ends.
func watchSyncs(t *testing.T, dir string) func() []string {
	t.Helper()
	var mu sync.Mutex
	var names []string
	h := func(name string) {
		if name == dir || strings.HasPrefix(name, dir+string(filepath.Separator)) {
			mu.Lock()
			defer mu.Unlock()
			names = append(names, name)
		}
	}
	if !atomicfile.SyncHook.CompareAndSwap(nil, &h) {
		t.Fatal("syncHook in use")
	}
	t.Cleanup(func() { atomicfile.SyncHook.Store(nil) })
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(names)
	}
}

// waitEmpty waits until the state subdirectory sub of k is empty (a flush done).
func waitEmpty(t *testing.T, k *Kit, sub string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); len(dirEntries(t, k, sub)) != 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%s still holds %v", sub, dirEntries(t, k, sub))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A clip below MultipartThreshold costs no sync on the device when the broker
// acknowledges its event; without an acknowledgement the outbox entry, and nothing else,
// is synced (file and directory) before Upload returns, and is published once the broker
// is back. (Before issue 15: 4 syncs per clip, journal and outbox, file and directory.)
func TestSmallUploadSyncsOnlyUnacknowledgedEvents(t *testing.T) {
	s := newStack(t, stackOptions{})
	k := s.kit("cam-syncs", func(c *Config) { c.RequestTimeout = time.Second })
	syncs := watchSyncs(t, k.cfg.StateDir)
	path, data := clipFile(t, "a.mp4", 64<<10)
	ev, err := k.Upload(t.Context(), Clip{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	checkCompleted(t, s, k, ev, "a.mp4", data, mustStat(t, path).ModTime())
	if got := syncs(); len(got) != 0 {
		t.Errorf("a 64 KiB clip whose event the broker acknowledged synced %v on the device, want nothing", got)
	}

	// The broker goes away: the event cannot be acknowledged.
	s.brokerCfg.Addr = s.broker.Addr()
	if err := s.broker.Close(); err != nil {
		t.Fatal(err)
	}
	path2, _ := clipFile(t, "b.mp4", 64<<10)
	ev, err = k.Upload(t.Context(), Clip{Path: path2})
	if err != nil || ev.Status != clipgate.StatusCompleted {
		t.Fatalf("Upload with the broker down: %+v, %v", ev, err)
	}
	entry := k.outboxPath(ev.ID)
	want := []string{entry, filepath.Dir(entry)}
	if got := syncs(); !slices.Equal(got, want) {
		t.Errorf("with the broker down the device synced %v, want %v", got, want)
	}
	if es := dirEntries(t, k, outboxDir); len(es) != 1 || es[0] != filepath.Base(entry) {
		t.Fatalf("outbox %v, want the event %s", es, ev.ID)
	}
	if es := dirEntries(t, k, journalDir); len(es) != 0 {
		t.Errorf("journal %v after the upload, want nothing", es)
	}
	s.startBroker()
	waitEmpty(t, k, outboxDir) // published and acknowledged after the reconnect
}

// crashModes are what a crash leaves of the files written without a sync: a killed
// process keeps them (the page cache outlives it); a power loss may lose them, or
// leave them empty.
var crashModes = map[string]func(path string) error{
	"killed":           func(string) error { return nil },
	"power lost":       os.Remove,
	"power lost empty": func(path string) error { return os.Truncate(path, 0) },
}

// The device stops at each step of a single PutObject's Upload (see "Crash safety" in
// upload.go) and, after a kill or a power loss there, a new kit on the same state
// directory uploads the same file again, as the caller of an Upload that never returned
// does: the clip is stored once, announced under one event ID however many times it was
// published, and the state directory is left clean.
func TestUploadCrashAtEachStep(t *testing.T) {
	s := newStack(t, stackOptions{})
	n := 0
	for _, step := range []string{"journal", "stored", "outbox", "acknowledged", "announced"} {
		for mode, crash := range crashModes {
			n++
			t.Run(step+"/"+mode, func(t *testing.T) {
				dev := fmt.Sprintf("cam-crash-%02d", n)
				path, data := clipFile(t, "crash.mp4", 64<<10)
				k1 := s.kit(dev, nil)
				syncs := watchSyncs(t, k1.cfg.StateDir)
				reached := false
				h := func(name string) {
					if name == step {
						reached = true
						runtime.Goexit() // the device stops here
					}
				}
				stepHook.Store(&h)
				done := make(chan struct{})
				go func() {
					defer close(done)
					k1.Upload(t.Context(), Clip{Path: path})
				}()
				<-done
				stepHook.Store(nil)
				if !reached {
					t.Fatalf("Upload never reached step %q", step)
				}
				k1.Close()
				if got := syncs(); len(got) != 0 {
					t.Fatalf("synced %v before the crash: the crash modes assume nothing was", got)
				}
				for _, sub := range []string{journalDir, outboxDir} {
					for _, name := range dirEntries(t, k1, sub) {
						if err := crash(filepath.Join(k1.cfg.StateDir, sub, name)); err != nil {
							t.Fatal(err)
						}
					}
				}

				k2 := s.kit(dev, nil) // connects: flushes what the outbox kept
				ev, err := k2.Upload(t.Context(), Clip{Path: path})
				if err != nil {
					t.Fatalf("Upload after the crash: %v", err)
				}
				wantKey := testPrefix + dev + "/" + mustStat(t, path).ModTime().UTC().Format("2006/01/02") + "/crash.mp4"
				if ev.Status != clipgate.StatusCompleted || ev.Key != wantKey || ev.CRC64 != testutil.CRC64(data) {
					t.Fatalf("event after the crash %+v, want %s completed", ev, wantKey)
				}
				if got := s.object(ev.Key); string(got) != string(data) {
					t.Fatal("stored object differs from the clip")
				}
				if objs := s.objects(dev); len(objs) != 1 {
					t.Errorf("objects %v, want the clip's only", objs)
				}
				waitEmpty(t, k2, outboxDir)
				// Every event published before the probe's has arrived before it.
				probe, _ := clipFile(t, "probe.mp4", 1000)
				pev, err := k2.Upload(t.Context(), Clip{Path: probe})
				if err != nil {
					t.Fatal(err)
				}
				announced := 0
				for got := s.event(); got.ID != pev.ID; got = s.event() {
					if got.Key != ev.Key || got.ID != ev.ID || got.Status != clipgate.StatusCompleted {
						t.Errorf("consumer got %+v, want only event %s for %s", got, ev.ID, ev.Key)
					}
					announced++
				}
				if announced == 0 {
					t.Errorf("event %s never arrived", ev.ID)
				}
				for _, sub := range []string{journalDir, outboxDir, checkpointDir} {
					if es := dirEntries(t, k2, sub); len(es) != 0 {
						t.Errorf("%s left %v", sub, es)
					}
				}
			})
		}
	}
}

// A journal entry left empty by a power loss (it is written without a sync) counts as
// abandoned at once: it names no file to watch and no upload to abort.
func TestSweepForgetsEmptyJournalEntry(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	empty, full := filepath.Join(dir, "empty.json"), filepath.Join(dir, "full.json")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(`{"id":"x"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cutoff := time.Now().Add(-stateMaxAge)
	if !abandoned(&journal{}, false, mustStat(t, empty), cutoff) {
		t.Error("an empty journal entry is kept")
	}
	if abandoned(&journal{}, false, mustStat(t, full), cutoff) {
		t.Error("an unparsed, recent, non-empty entry (an older kit's) is abandoned before its age")
	}
}

// powerLoss applies crash to every journal and outbox entry in stateDir that the syncs
// recorded there (synced, in order) did not make durable: a file is durable once it was
// synced (under its name, or as the temporary file that atomicfile renamed to it) and
// then its directory was.
func powerLoss(t *testing.T, stateDir string, synced []string, crash func(path string) error) {
	t.Helper()
	durable := func(path string) bool {
		dir, fileSynced := filepath.Dir(path), false
		tmp := "." + filepath.Base(path) + strings.TrimSuffix(atomicfile.TempPattern, "*")
		for _, name := range synced {
			switch {
			case name == path || filepath.Dir(name) == dir && strings.HasPrefix(filepath.Base(name), tmp):
				fileSynced = true
			case name == dir && fileSynced:
				return true
			}
		}
		return false
	}
	for _, sub := range []string{journalDir, outboxDir} {
		es, err := os.ReadDir(filepath.Join(stateDir, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			if path := filepath.Join(stateDir, sub, e.Name()); !durable(path) {
				if err := crash(path); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// The broker connection dies while a single PutObject's event is being published: before
// the broker gets the PUBLISH, or after, before the device gets the PUBACK; the broker
// comes back at once or stays away beyond RequestTimeout. Upload returns the completed
// event, and the caller removes the clip (as Spool does), so the clip is never uploaded
// again. Then the device crashes (killed, or power lost: what was not synced is gone or
// empty) and restarts with a new kit on the same state directory. The event reaches the
// consumer, under the ID that Upload returned and no other, and the state directory is
// left clean. (This fails if Upload returns an unacknowledged event without syncing its
// outbox entry, or drops the entry before the acknowledgement.)
func TestUploadEventSurvivesBrokerCut(t *testing.T) {
	var mu sync.Mutex
	var synced []string
	h := func(name string) {
		mu.Lock()
		defer mu.Unlock()
		synced = append(synced, name)
	}
	if !atomicfile.SyncHook.CompareAndSwap(nil, &h) {
		t.Fatal("syncHook in use")
	}
	t.Cleanup(func() { atomicfile.SyncHook.Store(nil) })
	syncsUnder := func(dir string) []string {
		mu.Lock()
		defer mu.Unlock()
		var names []string
		for _, name := range synced {
			if name == dir || strings.HasPrefix(name, dir+string(filepath.Separator)) {
				names = append(names, name)
			}
		}
		return names
	}

	for _, cut := range []struct {
		name string
		cut  mqttCut
	}{{"before PUBLISH", cutPublish}, {"before PUBACK", cutPuback}} {
		for _, stayDown := range []bool{false, true} {
			for mode, crash := range crashModes {
				broker := "back at once"
				if stayDown {
					broker = "stays away"
				}
				t.Run(cut.name+"/"+broker+"/"+mode, func(t *testing.T) {
					t.Parallel()
					s := newStack(t, stackOptions{})
					const dev = "cam-cut"
					proxy := newMQTTProxy(t, s.broker.Addr(), topics.Default().UploadEvent(dev), cut.cut, stayDown)
					k1 := s.kit(dev, func(c *Config) {
						c.BrokerURL = proxy.URL()
						c.RequestTimeout = 2 * time.Second
					})
					path, data := clipFile(t, "cut.mp4", 64<<10)
					ev, err := k1.Upload(t.Context(), Clip{Path: path})
					if err != nil || ev.Status != clipgate.StatusCompleted {
						t.Fatalf("Upload: %+v, %v", ev, err)
					}
					synced := syncsUnder(k1.cfg.StateDir) // what a power loss now would keep
					select {
					case <-proxy.cuts:
					default:
						t.Fatal("the connection was never cut")
					}
					if err := os.Remove(path); err != nil { // uploaded: the caller lets it go
						t.Fatal(err)
					}
					k1.Close() // killed (or, with powerLoss, the power lost) as Upload returned
					powerLoss(t, k1.cfg.StateDir, synced, crash)

					k2 := s.kit(dev, nil) // straight to the broker: flushes what the outbox kept
					waitEmpty(t, k2, outboxDir)
					if objs := s.objects(dev); len(objs) != 1 || objs[0] != ev.Key {
						t.Errorf("objects %v, want %s only", objs, ev.Key)
					}
					if got := s.object(ev.Key); string(got) != string(data) {
						t.Error("stored object differs from the clip")
					}
					// Every event published before the probe's has arrived before it.
					probe, _ := clipFile(t, "probe.mp4", 1000)
					pev, err := k2.Upload(t.Context(), Clip{Path: probe})
					if err != nil {
						t.Fatal(err)
					}
					announced := 0
					for got := s.event(); got.ID != pev.ID; got = s.event() {
						if got.ID != ev.ID || got.Key != ev.Key || got.CRC64 != testutil.CRC64(data) || got.Status != clipgate.StatusCompleted {
							t.Errorf("consumer got %+v, want only event %s for %s", got, ev.ID, ev.Key)
						}
						announced++
					}
					if announced == 0 {
						t.Errorf("event %s, returned by Upload, never arrived", ev.ID)
					}
					for _, sub := range []string{journalDir, outboxDir, checkpointDir} {
						if es := dirEntries(t, k2, sub); len(es) != 0 {
							t.Errorf("%s left %v", sub, es)
						}
					}
				})
			}
		}
	}
}
