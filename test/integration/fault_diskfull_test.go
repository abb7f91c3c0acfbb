//go:build linux

package integration

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/internal/tokenworker"
)

// faultTmpfs mounts a tmpfs of the given size ("2m") on a new directory and unmounts it
// when the test ends. Mounting needs root (CAP_SYS_ADMIN): without it the test is
// skipped, unless CLIPGATE_E2E=1 (CI), which makes it a failure.
func faultTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size="+size+",mode=0700"); err != nil {
		if os.Getenv("CLIPGATE_E2E") == "1" {
			t.Fatalf("mount tmpfs on %s: %v (CLIPGATE_E2E=1: the disk-full test must run)", dir, err)
		}
		t.Skipf("cannot mount a tmpfs for the disk-full test (%v): it needs root with CAP_SYS_ADMIN; set CLIPGATE_E2E=1 to make this a failure", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// faultFill writes a file in dir until the file system is full and returns its path.
func faultFill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v, want ENOSPC", dir, err)
			}
			break
		}
	}
	// Fill the last bytes too, then check that not even a small file fits.
	for n := len(buf) / 2; n > 0; n /= 2 {
		f.Write(buf[:n])
	}
	probe := filepath.Join(dir, "probe")
	err = os.WriteFile(probe, buf[:512], 0o600)
	os.Remove(probe)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("after filling %s a 512-byte write gave %v, want ENOSPC", dir, err)
	}
	return path
}

// faultNoSpace fails the test unless err says the disk is full. (The message is what
// counts for the operator; not every devicekit error keeps ENOSPC in its chain.)
func faultNoSpace(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s succeeded on a full disk", what)
	}
	if !strings.Contains(err.Error(), "no space left on device") {
		t.Errorf("%s on a full disk: %v; want an error that says \"no space left on device\"", what, err)
	}
}

// faultCheckState fails the test if anything in the device state directory is damaged:
// journal entries and checkpoints must decode, queued events must be valid events, and
// no temporary or empty file may be left.
func faultCheckState(t *testing.T, stateDir string) {
	t.Helper()
	err := filepath.WalkDir(stateDir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(stateDir, path)
		if strings.HasPrefix(d.Name(), ".") {
			t.Errorf("temporary file %s left in the state directory", rel)
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if len(b) == 0 {
			t.Errorf("%s is empty", rel)
			return nil
		}
		switch filepath.Dir(rel) {
		case "outbox":
			if _, err := protocol.DecodeUploadEvent(b); err != nil {
				t.Errorf("queued event %s is damaged: %v", rel, err)
			}
		case "uploads":
			var j faultJournal
			if err := json.Unmarshal(b, &j); err != nil || j.ID == "" || j.Key == "" {
				t.Errorf("journal entry %s is damaged (%v): %q", rel, err, b)
			}
		case "checkpoints":
			var cp faultCheckpoint
			if err := json.Unmarshal(b, &cp); err != nil || cp.UploadID == "" {
				t.Errorf("checkpoint %s is damaged (%v): %q", rel, err, b)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// faultDiskStack is a stack with an OSS gate, a consumer whose events are collected, and
// a device whose state directory is a 2 MiB tmpfs.
type faultDiskStack struct {
	stack  *inproc.Stack
	gate   *faultGate
	events *faultEvents
	state  string
	dev    string
}

func newFaultDiskStack(ctx context.Context, t *testing.T, dev, holdOp string, allow int) *faultDiskStack {
	s := &faultDiskStack{state: faultTmpfs(t, "2m"), dev: dev, events: newFaultEvents()}
	s.gate = newFaultGate(t, holdOp, allow)
	s.stack = inproc.New(t, inproc.Options{
		WorkerConfig: func(c *tokenworker.Config) { c.OSS.Endpoint = s.gate.endpoint() },
	})
	s.gate.setTarget(t, s.stack.OSSEndpoint())
	consumer, err := s.stack.Consumer(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for ev := range consumer.Events() {
			s.events.add(ev)
		}
	}()
	return s
}

// kit starts a kit over the tmpfs state directory; the caller closes it.
func (s *faultDiskStack) kit(ctx context.Context, t *testing.T) *devicekit.Kit {
	t.Helper()
	k, err := startKit(ctx, s.stack, s.dev, func(c *devicekit.Config) {
		c.StateDir = s.state
		c.PartSize, c.MultipartThreshold = devicekit.MinPartSize, devicekit.MinPartSize
		c.RequestTimeout = 3 * time.Second
	})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// recover frees the disk, and a new kit over the same state directory uploads the clip
// again: it must complete under wantID (when set), arrive once as completed, and leave
// the state directory clean.
func (s *faultDiskStack) recover(ctx context.Context, t *testing.T, filler string, clip clipFile, wantID string, objectType string) *protocol.UploadEvent {
	t.Helper()
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	k := s.kit(ctx, t)
	defer k.Close()
	ev, err := k.Upload(ctx, devicekit.Clip{Path: clip.path})
	if err != nil {
		t.Fatalf("Upload after space returned: %v", err)
	}
	if wantID != "" && ev.ID != wantID {
		t.Errorf("event ID %s after recovery, want the journaled %s", ev.ID, wantID)
	}
	if missing := s.events.waitIDs(ctx, []string{ev.ID}); len(missing) > 0 {
		t.Fatalf("event %s never arrived", ev.ID)
	}
	faultProbe(ctx, t, s.stack, s.events)
	faultCheckEvents(t, s.events, s.dev, map[string]*protocol.UploadEvent{ev.ID: ev})
	if err := checkObject(s.stack.AdminBucket(t), ev.Key, clip.data, objectType); err != nil {
		t.Error(err)
	}
	if left := faultDirEntries(t, faultMultipartDir(s.stack.Dir(), s.stack.Bucket())); len(left) > 0 {
		t.Errorf("multipart uploads left in the cloud: %v", left)
	}
	faultStateClean(t, s.state)
	return ev
}

// TestFaultDiskFull: the device's state directory is on a full disk (a 2 MiB tmpfs).
// Upload fails with an error that says so, nothing in the state directory is damaged,
// and once space returns a new kit over the same directory uploads the clip, announced
// once (under the event ID journaled before the disk filled, when there was one).
func TestFaultDiskFull(t *testing.T) {
	t.Parallel()

	// Full before the upload: the journal entry cannot be written, nothing is uploaded.
	t.Run("before the upload", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t, 2*time.Minute)
		s := newFaultDiskStack(ctx, t, "cam-full-a", "none", -1)
		k := s.kit(ctx, t)
		clip, err := writeClip(t.TempDir(), "a.mp4", 50_000)
		if err != nil {
			t.Fatal(err)
		}
		filler := faultFill(t, s.state)
		_, err = k.Upload(ctx, devicekit.Clip{Path: clip.path})
		k.Close()
		faultNoSpace(t, "Upload", err)
		if n := s.gate.count("put", -1); n != 0 {
			t.Errorf("%d PutObject requests with no journal entry written", n)
		}
		faultCheckState(t, s.state)
		s.recover(ctx, t, filler, clip, "", "Normal")
	})

	// Full after the object is stored (the PUT is held at the gate while the disk
	// fills): the completed event cannot be queued. The journal keeps the event ID, and
	// the recovery announces the clip under it.
	t.Run("before the event is queued", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t, 2*time.Minute)
		s := newFaultDiskStack(ctx, t, "cam-full-b", "put", 0)
		k := s.kit(ctx, t)
		clip, err := writeClip(t.TempDir(), "b.mp4", 50_000)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		var ev *protocol.UploadEvent
		go func() {
			var err error
			ev, err = k.Upload(ctx, devicekit.Clip{Path: clip.path})
			done <- err
		}()
		faultPoll(ctx, t, "the PUT at the gate", func() bool { return s.gate.held.Load() == 1 })
		journal, err := faultReadJournal(s.state)
		if err != nil || len(journal) != 1 {
			t.Fatalf("journal before the disk filled: %+v, %v", journal, err)
		}
		filler := faultFill(t, s.state)
		s.gate.Release()
		err = <-done
		k.Close()
		faultNoSpace(t, "Upload", err)
		if ev == nil || ev.ID != journal[0].ID {
			t.Errorf("Upload returned event %+v, want the journaled ID %s", ev, journal[0].ID)
		}
		if n := s.gate.count("put", 200); n != 1 {
			t.Errorf("%d objects stored, want 1", n)
		}
		faultCheckState(t, s.state)
		if after, err := faultReadJournal(s.state); err != nil || len(after) != 1 || after[0].ID != journal[0].ID {
			t.Errorf("journal after the failure: %+v, %v; want the entry of %s kept", after, err, journal[0].ID)
		}
		s.recover(ctx, t, filler, clip, journal[0].ID, "Normal")
	})

	// Full in the middle of a multipart upload: the checkpoint cannot record the parts
	// stored after the disk filled. The checkpoint on disk is intact, and the recovery
	// continues the same multipart upload under the journaled event ID.
	t.Run("during a multipart upload", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t, 2*time.Minute)
		s := newFaultDiskStack(ctx, t, "cam-full-c", "part", 2)
		k := s.kit(ctx, t)
		clip, err := writeClip(t.TempDir(), "c.mp4", 6*devicekit.MinPartSize+99)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := k.Upload(ctx, devicekit.Clip{Path: clip.path})
			done <- err
		}()
		var cp *faultCheckpoint
		faultPoll(ctx, t, "two parts in the checkpoint", func() bool {
			got, err := faultReadCheckpoint(s.state)
			if err == nil && len(got.completed()) == 2 {
				cp = got
				return true
			}
			return false
		})
		faultPoll(ctx, t, "a part at the gate", func() bool { return s.gate.held.Load() > 0 })
		journal, err := faultReadJournal(s.state)
		if err != nil || len(journal) != 1 {
			t.Fatalf("journal: %+v, %v", journal, err)
		}
		filler := faultFill(t, s.state)
		s.gate.Release()
		select {
		case err = <-done:
		case <-ctx.Done():
			t.Fatal("Upload did not return on a full disk")
		}
		k.Close()
		faultNoSpace(t, "Upload", err)
		faultCheckState(t, s.state)
		after, err := faultReadCheckpoint(s.state)
		if err != nil || after.UploadID != cp.UploadID || len(after.completed()) < 2 {
			t.Errorf("checkpoint after the failure: %+v, %v; want upload %s with at least its 2 parts", after, err, cp.UploadID)
		}
		s.recover(ctx, t, filler, clip, journal[0].ID, "Multipart")
		if n := s.gate.count("initiate", -1); n != 1 {
			t.Errorf("%d multipart uploads initiated, want 1 (resumed)", n)
		}
	})
}
