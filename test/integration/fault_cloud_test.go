package integration

import (
	"errors"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/internal/soak"
	"github.com/clipgate/clipgate/internal/tokenworker"
	"github.com/clipgate/clipgate/topics"
)

// TestFaultCloudRestartMidUpload: the local cloud (OSS and STS) stops in the middle of a
// multipart upload — two of nine parts stored and in the device's checkpoint, the next
// ones held at a gate — and the held part requests are let go while it is down, so that
// the device sees them fail. The cloud starts again over the same data directory. The
// upload resumes (calling Upload again if it gave up: same clip, same event ID): the
// same multipart upload is continued (one initiate), the stored parts are not sent again,
// and the object has the file's bytes and CRC-64. The consumer gets the completed event
// under the journaled event ID and no other completed event for the clip; no multipart
// upload is left in the cloud.
func TestFaultCloudRestartMidUpload(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 3*time.Minute)
	const (
		dev     = "cam-cloud"
		part    = devicekit.MinPartSize
		parts   = 9
		size    = (parts-1)*part + 4321
		allowed = 2
	)
	gate := newFaultGate(t, "part", allowed)
	c := faultCluster(t, soak.ClusterOptions{
		WorkerConfig: func(cfg *tokenworker.Config) { cfg.OSS.Endpoint = gate.endpoint() },
	})
	gate.setTarget(t, c.OSSEndpoint()) // the cloud's proxy: the same address across restarts
	user, pw := c.ServiceAccount(topics.RoleConsumer)
	consumer := newFaultPersistentConsumer(c.BrokerURL(), user, pw, "fault-cloud", c.Topics().EventFilter(""))
	if _, err := consumer.connect(ctx, true); err != nil {
		t.Fatal(err)
	}
	defer consumer.disconnect()
	kit := newKit(ctx, t, c, dev, func(cfg *devicekit.Config) {
		cfg.PartSize, cfg.MultipartThreshold = part, part
		cfg.RequestTimeout = 3 * time.Second
	})
	state := c.DeviceConfig(dev).StateDir
	clip, err := writeClip(t.TempDir(), "restart.mp4", size)
	if err != nil {
		t.Fatal(err)
	}

	type result struct {
		ev  *protocol.UploadEvent
		err error
	}
	first := make(chan result, 1)
	go func() {
		ev, err := kit.Upload(ctx, devicekit.Clip{Path: clip.path})
		first <- result{ev, err}
	}()
	var cp *faultCheckpoint
	faultPoll(ctx, t, "two parts in the checkpoint", func() bool {
		got, err := faultReadCheckpoint(state)
		if err == nil && len(got.completed()) == allowed {
			cp = got
			return true
		}
		return false
	})
	faultPoll(ctx, t, "a part held at the gate", func() bool { return gate.held.Load() > 0 })
	journal, err := faultReadJournal(state)
	if err != nil || len(journal) != 1 {
		t.Fatalf("journal: %+v, %v", journal, err)
	}

	if err := c.StopCloud(); err != nil {
		t.Fatal(err)
	}
	gate.Release() // the held parts now meet the stopped cloud
	faultPoll(ctx, t, "a part to fail against the stopped cloud", func() bool {
		return gate.count("part", 502) > 0
	})
	if uploads := faultDirEntries(t, c.MultipartDir()); len(uploads) != 1 || uploads[0] != cp.UploadID {
		t.Fatalf("multipart uploads on disk while the cloud is down: %v, want %s", uploads, cp.UploadID)
	}
	if err := c.StartCloud(); err != nil {
		t.Fatal(err)
	}

	res := <-first
	for try := 1; res.err != nil; try++ {
		// The kit gave up during the outage: the same call resumes from the checkpoint.
		if try > 5 || errors.Is(res.err, devicekit.ErrInvalidClip) {
			t.Fatalf("Upload: %v", res.err)
		}
		t.Logf("attempt %d failed (%v); calling Upload again", try, res.err)
		res.ev, res.err = kit.Upload(ctx, devicekit.Clip{Path: clip.path})
	}
	ev := res.ev
	if ev.ID != journal[0].ID || ev.Key != journal[0].Key {
		t.Errorf("event %s for %s, want the journaled %s for %s", ev.ID, ev.Key, journal[0].ID, journal[0].Key)
	}
	if ev.Size != size || ev.CRC64 != clip.crc64 {
		t.Errorf("event size %d crc %s, want %d %s", ev.Size, ev.CRC64, size, clip.crc64)
	}

	// The same multipart upload, continued.
	if initiates := gate.count("initiate", -1); initiates != 1 {
		t.Errorf("%d multipart uploads initiated, want 1 (the one begun before the restart, resumed)", initiates)
	}
	stored := map[int]int{}
	for _, call := range gate.recorded() {
		if call.op == "part" && call.status == 200 {
			stored[call.part]++
		}
	}
	for n := 1; n <= parts; n++ {
		if stored[n] == 0 {
			t.Errorf("part %d was never stored", n)
		}
	}
	for _, n := range cp.completed() {
		if stored[n] != 1 {
			t.Errorf("part %d, stored before the restart, was stored %d times", n, stored[n])
		}
	}

	b, err := c.OSSClient()
	if err != nil {
		t.Fatal(err)
	}
	bucket, err := b.Bucket(c.Bucket())
	if err != nil {
		t.Fatal(err)
	}
	if err := checkObject(bucket, ev.Key, clip.data, "Multipart"); err != nil {
		t.Error(err)
	}
	list, err := bucket.ListObjects(oss.Prefix(c.Prefix() + dev + "/"))
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Objects) != 1 {
		t.Errorf("%d objects for the device, want 1", len(list.Objects))
	}
	if left := faultDirEntries(t, c.MultipartDir()); len(left) > 0 {
		t.Errorf("multipart uploads left in the cloud: %v", left)
	}

	if missing := consumer.events.waitIDs(ctx, []string{ev.ID}); len(missing) > 0 {
		t.Fatalf("event %s never arrived", ev.ID)
	}
	failed := faultCheckEvents(t, consumer.events, dev, map[string]*protocol.UploadEvent{ev.ID: ev})
	t.Logf("%d failed event(s) for attempts that gave up during the outage", failed)
	faultStateClean(t, state)
}
