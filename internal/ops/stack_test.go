package ops_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/events"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/libmetrics"
	"github.com/clipgate/clipgate/internal/mqttclient"
	"github.com/clipgate/clipgate/internal/ops"
	"github.com/clipgate/clipgate/internal/ops/opstest"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/internal/testutil"
	"github.com/clipgate/clipgate/internal/tokenworker"
	"github.com/clipgate/clipgate/topics"
)

func testContext(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// serve starts an operations endpoint for collectors on a random loopback port.
func serve(t testing.TB, service string, checks []ops.Check, cs ...prometheus.Collector) *ops.Server {
	t.Helper()
	reg := ops.NewRegistry(service)
	reg.MustRegister(cs...)
	s, err := ops.Serve("127.0.0.1:0", service, reg, checks...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func adminBucket(t testing.TB, stack *inproc.Stack) *oss.Bucket {
	t.Helper()
	c, err := stack.OSSClient()
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Bucket(stack.Bucket())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// connectDevice connects a raw MQTT client as device id (it may publish anything on its
// own topics), or returns the connection error.
func connectDevice(t testing.TB, stack *inproc.Stack, id, password string) (*mqttclient.Client, error) {
	t.Helper()
	c, err := mqttclient.New(mqttclient.Config{BrokerURL: stack.BrokerURL(), ClientID: id,
		Username: id, Password: password, NoReconnect: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c, c.Connect(ctx)
}

func publishEvent(t testing.TB, stack *inproc.Stack, c *mqttclient.Client, from string, ev *clipgate.UploadEvent) {
	t.Helper()
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	tok := c.Publish(stack.Topics().UploadEvent(from), 1, false, b)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
}

func newKit(t testing.TB, ctx context.Context, stack *inproc.Stack, id string) *devicekit.Kit {
	t.Helper()
	k, err := devicekit.New(stack.DeviceConfig(id))
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Connect(ctx); err != nil {
		k.Close()
		t.Fatal(err)
	}
	return k
}

// TestMetricsAfterTraffic runs real traffic through an in-process stack (broker, token
// worker, local cloud, an events consumer and reconciler, a device kit with a spool) and
// checks that each endpoint's counters moved by exactly what the traffic did.
func TestMetricsAfterTraffic(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	twm := tokenworker.NewMetrics()
	stack := inproc.New(t, inproc.Options{WorkerConfig: func(c *tokenworker.Config) { c.Metrics = twm }})

	brokerOps := serve(t, "broker", []ops.Check{stack.Broker().ReadyCheck()}, stack.Broker().Collector())
	workerOps := serve(t, "tokenworker", nil, twm)
	cloudOps := serve(t, "localcloud", nil, stack.Cloud().Collector())

	// The events consumer and reconciler, as the console runs them.
	user, pw := stack.ServiceAccount(topics.RoleConsumer)
	var known sync.Map // keys of verified clips
	consumer, err := events.NewConsumer(events.Config{
		BrokerURL: stack.BrokerURL(), Username: user, Password: pw, ClientID: "consumer:ops",
		Topics: stack.Topics(), Bucket: stack.Bucket(), Prefix: stack.Prefix(), OSS: adminBucket(t, stack),
	}, func(_ context.Context, ev *events.Event) error {
		if ev.Verified {
			known.Store(ev.Key, true)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { consumer.Close() })
	var reconciled sync.Map
	rec, err := events.NewReconciler(events.ReconcilerConfig{
		Bucket: stack.Bucket(), Prefix: stack.Prefix(), OSS: adminBucket(t, stack), MinAge: -1,
		Known: func(_ context.Context, key string) (bool, error) { _, ok := known.Load(key); return ok, nil },
		Handler: func(_ context.Context, ev *events.Event) error {
			reconciled.Store(ev.Key, true)
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	eventsOps := serve(t, "events", nil, libmetrics.ConsumerCollector(consumer.Stats, rec.Stats))

	broker0, worker0, cloud0 := opstest.Scrape(t, brokerOps.Addr()), opstest.Scrape(t, workerOps.Addr()), opstest.Scrape(t, cloudOps.Addr())

	if err := consumer.Start(ctx); err != nil {
		t.Fatal(err)
	}

	// A refused login.
	if _, err := connectDevice(t, stack, "cam-9", "v1.garbage"); err == nil {
		t.Fatal("a garbage password was accepted")
	}

	// cam-1 uploads clips through a spool.
	kit := newKit(t, ctx, stack, "cam-1")
	defer kit.Close()
	spoolDir := t.TempDir()
	uploaded := make(chan devicekit.SpoolEvent, 16)
	spool, err := devicekit.NewSpool(kit, devicekit.SpoolConfig{Dir: spoolDir, OnEvent: func(e devicekit.SpoolEvent) {
		if e.Kind == devicekit.SpoolUploaded {
			uploaded <- e
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	deviceOps := serve(t, "device", []ops.Check{libmetrics.DeviceReady(kit)}, libmetrics.DeviceCollector(kit, spool))
	device0 := opstest.Scrape(t, deviceOps.Addr())
	spoolCtx, stopSpool := context.WithCancel(ctx)
	spoolDone := make(chan error, 1)
	go func() { spoolDone <- spool.Run(spoolCtx) }()
	defer func() {
		stopSpool()
		if err := <-spoolDone; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("spool: %v", err)
		}
	}()
	sizes := []int{1000, 2345, 70000}
	total := 0
	for i, n := range sizes {
		total += n
		tmp := filepath.Join(spoolDir, "clip.tmp")
		if err := os.WriteFile(tmp, randomBytes(t, n), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(spoolDir, "clip-"+strconv.Itoa(i)+".mp4")); err != nil {
			t.Fatal(err)
		}
		select {
		case e := <-uploaded:
			if e.Size != int64(n) {
				t.Fatalf("uploaded %d bytes, want %d", e.Size, n)
			}
		case <-ctx.Done():
			t.Fatal("clip not uploaded")
		}
	}

	// cam-2 asks for credentials twice, from two kits in turn: the second is served from
	// the worker's cache. Each kit has a state directory of its own (a kit on the first
	// one's would use the credentials kept there and not ask). Each kit's connection is
	// gone from the broker before the next one comes (else the broker would count a
	// session takeover).
	for range 2 {
		cfg := stack.DeviceConfig("cam-2")
		cfg.StateDir = t.TempDir()
		k, err := devicekit.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := k.Connect(ctx); err != nil {
			k.Close()
			t.Fatal(err)
		}
		if _, err := k.Credentials(ctx); err != nil {
			t.Fatal(err)
		}
		k.Close()
		testutil.WaitFor(t, "cam-2 to be disconnected", func() bool { _, up := stack.Broker().Connected("cam-2"); return !up })
	}

	// cam-3 publishes a rejected event twice (the second is a duplicate) and a failed one,
	// then connects again from a second connection (a session takeover).
	raw, err := connectDevice(t, stack, "cam-3", stack.DeviceKey("cam-3").Password(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	data := randomBytes(t, 10)
	forged := &clipgate.UploadEvent{V: protocol.Version, ID: "forged-1", Device: "cam-3", Status: clipgate.StatusCompleted,
		Bucket: stack.Bucket(), Key: stack.Prefix() + "cam-1/2024/05/01/x.mp4", Size: 10, CRC64: "1", UploadedAt: time.Now().UTC()}
	publishEvent(t, stack, raw, "cam-3", forged)
	publishEvent(t, stack, raw, "cam-3", forged)
	publishEvent(t, stack, raw, "cam-3", &clipgate.UploadEvent{V: protocol.Version, ID: "failed-1", Device: "cam-3",
		Status: clipgate.StatusFailed, Error: "camera unplugged"})
	if _, err := connectDevice(t, stack, "cam-3", stack.DeviceKey("cam-3").Password(time.Now())); err != nil {
		t.Fatal(err)
	}

	// An object without an event, which the reconciler finds.
	orphan := stack.Prefix() + "cam-4/2024/05/01/orphan.mp4"
	if err := adminBucket(t, stack).PutObject(orphan, bytesReader(data)); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the consumer to handle every event", func() bool {
		s := consumer.Stats()
		return s.Handled == int64(len(sizes))+2 && s.Duplicates == 1
	})
	testutil.WaitFor(t, "the outbox to empty", func() bool { return kit.Stats().OutboxDepth == 0 })
	if n, err := rec.Pass(ctx); err != nil || n != 1 {
		t.Fatalf("reconciler pass: %d, %v; want the orphan", n, err)
	}

	check := func(m opstest.Metrics, base opstest.Metrics, want float64, name string, labels ...string) {
		t.Helper()
		if got := opstest.Delta(base, m, name, labels...); got != want {
			t.Errorf("%s moved by %v, want %v", opstest.Series(name, labels...), got, want)
		}
	}
	none := opstest.Metrics{}

	b := opstest.Scrape(t, brokerOps.Addr())
	check(b, broker0, 1+2+2, "clipgate_broker_connects_total", "role", "device")
	check(b, broker0, 1, "clipgate_broker_connects_total", "role", "consumer")
	check(b, broker0, 0, "clipgate_broker_connects_total", "role", "tokenworker")
	check(b, broker0, 1, "clipgate_broker_connect_refusals_total", "reason", "bad_login")
	check(b, broker0, 0, "clipgate_broker_connect_refusals_total", "reason", "not_authorized")
	check(b, broker0, 1, "clipgate_broker_session_takeovers_total")
	check(b, none, 1, "clipgate_broker_connections", "role", "consumer")
	check(b, none, 1, "clipgate_broker_connections", "role", "tokenworker")
	check(b, none, 2, "clipgate_broker_connections", "role", "device") // cam-1's kit and cam-3's second connection
	check(b, broker0, 0, "clipgate_broker_messages_dropped_total", "cause", "queue_full")
	if d := opstest.Delta(broker0, b, "clipgate_broker_messages_received_total"); d < float64(len(sizes)+3+3) {
		t.Errorf("messages received moved by %v, fewer than the events and requests published", d)
	}

	w := opstest.Scrape(t, workerOps.Addr())
	check(w, worker0, 3, "clipgate_tokenworker_requests_total")
	check(w, worker0, 3, "clipgate_tokenworker_replies_total", "code", "ok")
	check(w, worker0, 0, "clipgate_tokenworker_replies_total", "code", "busy")
	check(w, worker0, 1, "clipgate_tokenworker_cache_hits_total")
	check(w, worker0, 2, "clipgate_tokenworker_sts_call_duration_seconds_count", "result", "ok")
	check(w, worker0, 0, "clipgate_tokenworker_sts_call_duration_seconds_count", "result", "error")
	check(w, none, 0, "clipgate_tokenworker_queue_depth")
	check(w, none, 1, "clipgate_tokenworker_broker_connected")

	c := opstest.Scrape(t, cloudOps.Addr())
	check(c, cloud0, 2, "clipgate_localcloud_requests_total", "code", "200", "operation", "AssumeRole", "service", "sts")
	check(c, cloud0, float64(len(sizes)+1), "clipgate_localcloud_requests_total", "code", "200", "operation", "PutObject", "service", "oss")
	check(c, cloud0, float64(len(sizes)+1), "clipgate_localcloud_requests_total", "code", "200", "operation", "HeadObject", "service", "oss")
	check(c, cloud0, float64(total+len(data)), "clipgate_localcloud_received_bytes_total", "service", "oss")

	e := opstest.Scrape(t, eventsOps.Addr())
	check(e, none, float64(len(sizes)), "clipgate_events_total", "outcome", "verified")
	check(e, none, 1, "clipgate_events_total", "outcome", "rejected")
	check(e, none, 1, "clipgate_events_total", "outcome", "duplicate")
	check(e, none, 1, "clipgate_events_total", "outcome", "failed")
	check(e, none, 1, "clipgate_events_rejected_total", "reason", "wrong_prefix")
	check(e, none, float64(len(sizes)), "clipgate_events_ingest_lag_seconds_count")
	check(e, none, float64(len(sizes)+3), "clipgate_events_received_total") // the clips, the forged event twice, the failed one
	check(e, none, 1, "clipgate_reconciler_objects_found_total")
	check(e, none, float64(len(sizes)+1), "clipgate_reconciler_objects_scanned_total")
	check(e, none, 1, "clipgate_reconciler_passes_total", "result", "ok")
	check(e, none, 1, "clipgate_events_broker_connected")

	d := opstest.Scrape(t, deviceOps.Addr())
	check(d, device0, float64(len(sizes)), "clipgate_device_uploads_total")
	check(d, device0, float64(total), "clipgate_device_uploaded_bytes_total")
	check(d, device0, 1, "clipgate_device_credential_refreshes_total")
	check(d, none, 0, "clipgate_device_spool_backlog_clips")
	check(d, none, 0, "clipgate_device_outbox_events")
	check(d, none, 1, "clipgate_device_broker_connected")

	for _, addr := range []string{brokerOps.Addr(), deviceOps.Addr()} {
		if status, rep := opstest.Health(t, addr, "/readyz"); status != 200 || rep.Status != ops.StatusOK || len(rep.Checks) != 1 {
			t.Errorf("%s /readyz: %d %+v", addr, status, rep)
		}
	}
}
