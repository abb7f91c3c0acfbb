package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/deviceconfig"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/internal/tokenworker"
)

// faultBuildDevice builds cmd/device into dir and returns the binary's path.
func faultBuildDevice(ctx context.Context, t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "device")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/clipgate/clipgate/cmd/device")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go build cmd/device: %v\n%s", err, faultTrim(string(out)))
	}
	return bin
}

// faultDeviceRun is one run of the device command as a child process.
type faultDeviceRun struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	exited         chan struct{} // closed when the process has exited; err is set then
	err            error
}

func faultStartDevice(ctx context.Context, t *testing.T, bin, workDir string, args ...string) *faultDeviceRun {
	t.Helper()
	r := &faultDeviceRun{exited: make(chan struct{})}
	r.cmd = exec.CommandContext(ctx, bin, args...)
	r.cmd.Dir = workDir
	// Only what the command needs: no CLIPGATE_DEVICE_* of the caller's environment.
	r.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + workDir, "TMPDIR=" + os.TempDir()}
	r.cmd.Stdout, r.cmd.Stderr = &r.stdout, &r.stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		r.err = r.cmd.Wait()
		close(r.exited)
	}()
	t.Cleanup(func() {
		r.cmd.Process.Kill()
		<-r.exited
	})
	return r
}

// wait waits for the process to exit, or for ctx.
func (r *faultDeviceRun) wait(ctx context.Context) error {
	select {
	case <-r.exited:
		return r.err
	case <-ctx.Done():
		return fmt.Errorf("device still running: %w", ctx.Err())
	}
}

func (r *faultDeviceRun) output() string {
	return fmt.Sprintf("stdout:\n%s\nstderr:\n%s", faultTrim(r.stdout.String()), faultTrim(r.stderr.String()))
}

// TestFaultKillDeviceMidMultipart: the device CLI is killed with SIGKILL in the middle of a
// multipart upload (two of eleven parts stored, the next ones held at a gate in front of
// OSS, so that the kill falls mid-upload for certain) and run again with the same
// command. The second run resumes the same multipart upload from the checkpoint (no new
// initiate, no stored part sent again), completes it once under the journal's event ID,
// and the consumer sees that event ID and no other for the clip. The object is there
// once, with the file's bytes and CRC-64; the local cloud has no unfinished multipart
// upload left and the device's state directory is clean.
func TestFaultKillDeviceMidMultipart(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 4*time.Minute)
	dir := t.TempDir()
	bin := faultBuildDevice(ctx, t, dir)

	const (
		dev     = "cam-kill9"
		part    = devicekit.MinPartSize
		parts   = 11
		size    = (parts-1)*part + 777
		allowed = 2 // parts stored before the kill
	)
	gate := newFaultGate(t, "part", allowed)
	stack := inproc.New(t, inproc.Options{
		WorkerConfig: func(c *tokenworker.Config) { c.OSS.Endpoint = gate.endpoint() },
	})
	gate.setTarget(t, stack.OSSEndpoint())
	consumer, err := stack.Consumer(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	events := newFaultEvents()
	go func() {
		for ev := range consumer.Events() {
			events.add(ev)
		}
	}()

	keyFile := filepath.Join(dir, "device.key")
	if err := identity.WriteDeviceKey(keyFile, (*identity.DeviceKey)(stack.DeviceKey(dev))); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	cfgFile := filepath.Join(dir, "device.yaml")
	if err := deviceconfig.Write(cfgFile, deviceconfig.File{
		Broker:             stack.BrokerURL(),
		DeviceID:           dev,
		DeviceKeyFile:      keyFile,
		StateDir:           state,
		MultipartThreshold: part,
		PartSize:           part,
	}); err != nil {
		t.Fatal(err)
	}
	clip, err := writeClip(dir, "BIG.mp4", size)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--config", cfgFile, "--log-level", "info", "upload", clip.path}

	// Run 1: killed once two parts are stored and recorded in the checkpoint.
	run1 := faultStartDevice(ctx, t, bin, dir, args...)
	var cp *faultCheckpoint
	faultPoll(ctx, t, "two parts in the device's checkpoint", func() bool {
		select {
		case <-run1.exited:
			t.Fatalf("the device exited before the kill (%v)\n%s", run1.err, run1.output())
		default:
		}
		c, err := faultReadCheckpoint(state)
		if err == nil && len(c.completed()) == allowed {
			cp = c
			return true
		}
		return false
	})
	// The local cloud has the upload with its two parts (the test knows its layout).
	mpDir := faultMultipartDir(stack.Dir(), stack.Bucket())
	uploads := faultDirEntries(t, mpDir)
	if len(uploads) != 1 || uploads[0] != cp.UploadID {
		t.Fatalf("local cloud multipart uploads %v, want only %s", uploads, cp.UploadID)
	}
	if partFiles, _ := filepath.Glob(filepath.Join(mpDir, cp.UploadID, "part-*.json")); len(partFiles) != allowed {
		t.Fatalf("local cloud holds %d parts of the upload, want %d", len(partFiles), allowed)
	}
	faultPoll(ctx, t, "a part request held at the gate", func() bool { return gate.held.Load() > 0 })
	if err := run1.cmd.Process.Signal(os.Kill); err != nil {
		t.Fatal(err)
	}
	err = run1.wait(ctx)
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != -1 || !strings.Contains(exitErr.String(), "killed") {
		t.Fatalf("run 1 ended with %v, want killed by SIGKILL\n%s", err, run1.output())
	}
	journal, err := faultReadJournal(state)
	if err != nil || len(journal) != 1 {
		t.Fatalf("upload journal after the kill: %+v, %v; want one entry", journal, err)
	}
	eventID, key := journal[0].ID, journal[0].Key
	if strings.Contains(run1.stdout.String(), "ok ") {
		t.Fatalf("run 1 reported success before the kill\n%s", run1.output())
	}

	// Run 2: the same command completes the same upload.
	gate.Release()
	gate.nextPhase()
	run2 := faultStartDevice(ctx, t, bin, dir, args...)
	if err := run2.wait(ctx); err != nil {
		t.Fatalf("run 2: %v\n%s", err, run2.output())
	}
	wantLine := fmt.Sprintf("ok  %s -> oss://%s/%s size=%d crc64=%s event=%s", clip.path, stack.Bucket(), key, size, clip.crc64, eventID)
	if got := strings.TrimSpace(run2.stdout.String()); got != wantLine {
		t.Errorf("run 2 printed\n%s\nwant\n%s", got, wantLine)
	}

	// The event, under the journal's ID, and no other for the clip.
	want := map[string]*protocol.UploadEvent{eventID: {ID: eventID, Key: key, Size: size, CRC64: clip.crc64}}
	if missing := events.waitIDs(ctx, []string{eventID}); len(missing) > 0 {
		t.Fatalf("event %s never arrived", eventID)
	}
	// The device has exited, so whatever it published is at the broker; a probe event
	// published now arrives after all of it (the broker sends a subscriber its messages in
	// the order it takes them in), so once the probe is in, the check below sees every
	// event of the device without sleeping.
	faultProbe(ctx, t, stack, events)
	if failed := faultCheckEvents(t, events, dev, want); failed != 0 {
		t.Errorf("%d failed events for a device that was killed, not failed", failed)
	}

	// OSS: the object once, with the file's content; no multipart upload left.
	b := stack.AdminBucket(t)
	if err := checkObject(b, key, clip.data, "Multipart"); err != nil {
		t.Error(err)
	}
	list, err := b.ListObjects(oss.Prefix(stack.Prefix() + dev + "/"))
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Objects) != 1 || list.Objects[0].Key != key {
		t.Errorf("objects of the device: %+v, want only %s", list.Objects, key)
	}
	if left := faultDirEntries(t, mpDir); len(left) > 0 {
		t.Errorf("unfinished multipart uploads left in the local cloud: %v", left)
	}
	faultStateClean(t, state)

	// The resume: no second initiate, and no part stored in run 1 sent again.
	calls := gate.recorded()
	var initiates, completes int
	sent := map[int]bool{}
	for _, c := range calls {
		switch c.op {
		case "initiate":
			initiates++
		case "complete":
			if c.status == 200 {
				completes++
			}
		case "part":
			if c.phase == 1 && c.status == 200 {
				if slices.Contains(cp.completed(), c.part) {
					t.Errorf("run 2 uploaded part %d again, which run 1 had stored", c.part)
				}
				sent[c.part] = true
			}
		}
	}
	if initiates != 1 || completes != 1 {
		t.Errorf("%d initiates and %d completes, want 1 each (resume, not restart)", initiates, completes)
	}
	for n := 1; n <= parts; n++ {
		if !sent[n] && !slices.Contains(cp.completed(), n) {
			t.Errorf("part %d was never stored", n)
		}
	}
}

// faultProbe publishes an event from a probe device and waits for it: the broker sends a
// subscriber's messages in order, so whatever the devices published before has arrived
// too, and the test can check for duplicates without sleeping.
func faultProbe(ctx context.Context, t *testing.T, stack *inproc.Stack, events *faultEvents) {
	t.Helper()
	probe := "probe-" + randomHex(4)
	c, err := connectDevice(ctx, stack, probe, stack.DeviceKey(probe))
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	ev := &protocol.UploadEvent{
		V: protocol.Version, ID: randomHex(11), Device: probe, Status: protocol.StatusFailed,
		Error: "probe", UploadedAt: time.Now().UTC(),
	}
	payload, err := protocol.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.publish(ctx, stack.Topics().UploadEvent(probe), payload); err != nil {
		t.Fatal(err)
	}
	if missing := events.waitIDs(ctx, []string{ev.ID}); len(missing) > 0 {
		t.Fatal("the probe event never arrived")
	}
}
