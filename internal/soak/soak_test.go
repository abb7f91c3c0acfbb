package soak

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aliyun/alibaba-cloud-sdk-go/services/sts"
	"github.com/rs/zerolog"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/inproc"
)

func TestMain(m *testing.M) {
	// The STS SDK fills its endpoint table lazily and without a lock; fill it before
	// parallel tests start token workers.
	_ = sts.GetEndpointMap()
	os.Exit(m.Run())
}

func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func startCluster(t *testing.T, opts ClusterOptions) *inproc.Stack {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	c, err := StartCluster(testContext(t, time.Minute), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

// Every part of the cluster restarts in place: a device keeps its broker URL and its
// credentials (OSS endpoint behind the proxy), uploads after each restart, and the
// persistent consumer receives every event.
func TestClusterRestartsInPlace(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 3*time.Minute)
	c := startCluster(t, ClusterOptions{})
	consumer, err := NewConsumer(ctx, c, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	cfg := c.DeviceConfig("cam-restart")
	cfg.RequestTimeout = 3 * time.Second
	kit, err := devicekit.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer kit.Close()
	if err := kit.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	clip := filepath.Join(t.TempDir(), "a.bin")
	if err := os.WriteFile(clip, bytes.Repeat([]byte("x"), 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	var ids []string
	upload := func(step string) {
		t.Helper()
		ev, err := kit.Upload(ctx, devicekit.Clip{Path: clip, Name: step + ".bin"})
		if err != nil {
			t.Fatalf("%s: Upload: %v", step, err)
		}
		ids = append(ids, ev.ID)
	}
	upload("first")
	steps := []struct {
		name string
		do   func() error
	}{
		{"broker", c.RestartBroker},
		{"cloud", c.RestartCloud},
		{"worker", func() error {
			if err := c.StopWorker(0); err != nil {
				return err
			}
			_, err := c.StartWorkerContext(ctx)
			return err
		}},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("restart %s: %v", s.name, err)
		}
		upload("after-" + s.name)
	}
	if got := c.RunningWorkers(); len(got) != DefaultWorkers {
		t.Errorf("running workers %v, want %d", got, DefaultWorkers)
	}
	if missing := consumer.WaitAll(ctx, ids); missing != 0 {
		t.Fatalf("%d of %d events never arrived", missing, len(ids))
	}
	// The objects are all there, read through the admin client.
	client, err := c.OSSClient()
	if err != nil {
		t.Fatal(err)
	}
	b, err := client.Bucket(c.Bucket())
	if err != nil {
		t.Fatal(err)
	}
	res, err := b.ListObjects()
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Objects) != len(ids) {
		t.Errorf("%d objects stored, want %d", len(res.Objects), len(ids))
	}
	// Stopping what is stopped, or starting what runs, is an error, not a second copy.
	if err := c.StartBroker(); err == nil {
		t.Error("StartBroker on a running broker succeeded")
	}
	if err := c.StartCloud(); err == nil {
		t.Error("StartCloud on a running cloud succeeded")
	}
	if err := c.StopWorker(0); err == nil {
		t.Error("StopWorker on a stopped worker succeeded")
	}
	if err := c.StopWorker(99); err == nil {
		t.Error("StopWorker(99) succeeded")
	}
}

func TestClusterOptionsRefused(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, time.Minute)
	if _, err := StartCluster(ctx, ClusterOptions{}); err == nil {
		t.Error("StartCluster without Dir succeeded")
	}
	if _, err := StartCluster(ctx, ClusterOptions{Dir: t.TempDir(), Workers: -1}); err == nil {
		t.Error("StartCluster with -1 workers succeeded")
	}
	if _, err := StartCluster(ctx, ClusterOptions{Dir: t.TempDir(), Prefix: "../x/"}); err == nil {
		t.Error("StartCluster with a bad prefix succeeded")
	}
}

func TestConfigRefused(t *testing.T) {
	t.Parallel()
	for _, c := range []Config{
		{Devices: -1},
		{Devices: 1001},
		{Clips: -2},
		{Workers: 65},
		{Duration: -time.Second},
		{FaultInterval: time.Millisecond},
		{SmallSize: -1},
		{PartSize: 1000},
		{LargeSize: 200 << 10, PartSize: 300 << 10},
		{LargeEvery: -1},
		{Faults: []string{"meteor"}},
	} {
		if _, err := Run(testContext(t, time.Minute), c); !errors.Is(err, ErrConfig) {
			t.Errorf("Run(%+v): %v, want ErrConfig", c, err)
		}
	}
}

// A short soak with faults, often: nothing lost, nothing split, nothing left.
//
// Broker restarts are left out: after one, the consumer's persistent session is taken
// over while devices flush their outboxes, and mochi-mqtt v2.7.9 loses messages published
// during a takeover (test/integration TestFaultSessionTakeoverRace shows it on its own).
// The soak command injects them by default and reports what is lost.
func TestShortSoak(t *testing.T) {
	t.Parallel()
	var progress bytes.Buffer
	var logger zerolog.Logger // discards
	if path := os.Getenv("SOAK_TEST_LOG"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		logger = zerolog.New(f).Level(zerolog.DebugLevel).With().Timestamp().Logger()
	}
	res, err := Run(testContext(t, 4*time.Minute), Config{
		Devices:       4,
		Clips:         3,
		Duration:      25 * time.Second,
		Drain:         90 * time.Second,
		Interval:      300 * time.Millisecond,
		LargeEvery:    3,
		Faults:        []string{FaultWorkerRestart, FaultPartition, FaultCloudRestart},
		FaultInterval: 3 * time.Second,
		MaxPartition:  6 * time.Second,
		MaxDown:       2 * time.Second,
		Dir:           t.TempDir(),
		Progress:      &progress,
		ProgressEvery: 10 * time.Second,
		Logger:        logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	res.Print(&out)
	t.Logf("progress:\n%s\nresult:\n%s", progress.String(), out.String())
	if res.Uploads == 0 {
		t.Fatal("no upload succeeded")
	}
	if !res.OK() || res.Unknown != 0 || res.Malformed != 0 {
		t.Errorf("lost %d, split %d, unfinished %d, unknown %d, malformed %d", res.Lost, res.Split, res.Unfinished, res.Unknown, res.Malformed)
	}
	if res.Delivered != res.Uploads || res.Deliveries < res.Delivered {
		t.Errorf("delivered %d of %d uploads in %d messages", res.Delivered, res.Uploads, res.Deliveries)
	}
	total := 0
	for _, n := range res.Faults {
		total += n
	}
	if total == 0 {
		t.Error("no fault was injected")
	}
	if !strings.Contains(out.String(), "lost             0 ") {
		t.Errorf("printed result lacks the lost line:\n%s", out.String())
	}
}
