package tokenworker

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/clipgate/clipgate/internal/broker"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/mqttclient"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/internal/testutil"
	"github.com/clipgate/clipgate/topics"
)

const (
	workerUser, workerPassword = "worker-svc", "worker-password-for-tests"
	consumerUser               = "consumer-svc" // same password, role consumer
)

// startBroker runs the clipgate broker on a random loopback port with one tokenworker
// service account, and returns its tcp:// URL.
func startBroker(t *testing.T, fleet *identity.Keyring) string {
	t.Helper()
	path := testutil.AccountsFile(t, t.TempDir(),
		testutil.Account{User: workerUser, Password: workerPassword, Role: "tokenworker"},
		testutil.Account{User: consumerUser, Password: workerPassword, Role: "consumer"})
	accounts, err := identity.LoadServiceAccounts(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(broker.Config{Addr: "127.0.0.1:0", HTTPAddr: "none", ConnectKeys: fleet.ConnectRoots(), ServiceAccounts: accounts})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return "tcp://" + b.Addr()
}

// device is a paho client of one camera, subscribed to its reply topic.
type device struct {
	id      string
	key     *identity.DeviceKey
	client  *mqttclient.Client
	replies chan []byte
}

func connectDevice(t *testing.T, brokerURL string, fleet *identity.Keyring, id string) *device {
	t.Helper()
	key, err := identity.NewDeviceKey(fleet, id)
	if err != nil {
		t.Fatal(err)
	}
	d := &device{id: id, key: key, replies: make(chan []byte, 16)}
	client, err := mqttclient.New(mqttclient.Config{BrokerURL: brokerURL, ClientID: id, NoReconnect: true,
		Credentials: func() (string, string) { return id, d.key.Password(time.Now()) },
		Subscriptions: []mqttclient.Subscription{{Filter: topics.Default().AuthReply(id), QoS: 1, Handler: func(m mqttclient.Message) {
			select {
			case d.replies <- m.Payload():
			default:
			}
		}}}})
	if err != nil {
		t.Fatal(err)
	}
	d.client = client
	t.Cleanup(client.Close)
	ctx, cancel := context.WithTimeout(bg, 10*time.Second)
	defer cancel()
	if err := client.Connect(ctx); err != nil {
		t.Fatalf("device connect: %v", err)
	}
	return d
}

func (d *device) send(t *testing.T, r *request) {
	t.Helper()
	tok := d.client.Publish(r.topic(), 1, false, r.payload(t))
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish request: %v", tok.Error())
	}
}

// reply waits for the next reply; the test's deadline bounds the wait.
func (d *device) reply(t *testing.T) []byte {
	t.Helper()
	select {
	case b := <-d.replies:
		return b
	case <-time.After(30 * time.Second):
		t.Fatal("no reply within 30s")
		return nil
	}
}

func mqttConfig(c *cloud, fleet *identity.Keyring, brokerURL string) Config {
	cfg := c.config(fleet)
	cfg.BrokerURL = brokerURL
	cfg.Username, cfg.Password = workerUser, workerPassword
	if os.Getenv("TW_DEBUG") != "" {
		cfg.Logger = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr})
	}
	return cfg
}

func TestMQTTRequestGetsSealedReply(t *testing.T) {
	t.Parallel()
	c := startCloud(t, nil)
	fleet := newFleetKey(t)
	url := startBroker(t, fleet)
	ctx, cancel := context.WithTimeout(bg, 30*time.Second)
	defer cancel()

	// Two workers share the group.
	var workers []*Worker
	for i := 0; i < 2; i++ {
		w := newWorker(t, mqttConfig(c, fleet, url))
		if err := w.Start(ctx); err != nil {
			t.Fatalf("Start: %v", err)
		}
		workers = append(workers, w)
	}
	devs := []*device{connectDevice(t, url, fleet, "cam-mqtt-1"), connectDevice(t, url, fleet, "cam-mqtt-2")}
	const perDevice = 3
	for i := 0; i < perDevice; i++ {
		for _, d := range devs {
			r := newRequest(t, fleet, d.id, "w", time.Now())
			d.send(t, r)
			rep := decodeReply(t, r.ID, d.reply(t))
			if rep.Sealed == "" || rep.Credentials != nil {
				t.Fatalf("reply over MQTT is not sealed: %+v", rep)
			}
			cr := openCredentials(t, r, rep)
			if _, err := c.auth.Resolve(cr.AccessKeyID, cr.SecurityToken, time.Now()); err != nil {
				t.Fatalf("Resolve: %v", err)
			}
		}
	}
	var total, ok uint64
	for _, w := range workers {
		st := w.Stats()
		total += st.Requests
		ok += st.OK
	}
	if total != perDevice*uint64(len(devs)) || ok != total {
		t.Fatalf("workers handled %d requests (%d ok), want %d", total, ok, perDevice*len(devs))
	}
	// A reply goes to the requesting device only.
	select {
	case b := <-devs[0].replies:
		t.Fatalf("unexpected extra reply: %s", b)
	default:
	}
}

func TestMQTTQueueFullAnswersBusy(t *testing.T) {
	t.Parallel()
	c := startCloud(t, nil)
	fleet := newFleetKey(t)
	url := startBroker(t, fleet)
	cfg := mqttConfig(c, fleet, url)
	cfg.QueueSize = 1
	w := newWorker(t, cfg)
	w.poolSize = 0 // nothing takes requests off the queue: the first fills it
	if err := w.Start(bg); err != nil {
		t.Fatal(err)
	}
	d := connectDevice(t, url, fleet, "cam-queue")
	first := newRequest(t, fleet, d.id, "w", time.Now())
	d.send(t, first)
	// Publish the next requests only once the first sits in the queue.
	for len(w.queue) == 0 {
		time.Sleep(time.Millisecond)
	}
	for i := 0; i < 2; i++ {
		r := newRequest(t, fleet, d.id, "w", time.Now())
		d.send(t, r)
		rep := wantError(t, r.ID, d.reply(t), protocol.CodeBusy)
		if rep.Error.RetryAfterMs <= 0 {
			t.Fatalf("busy without retryAfterMs: %+v", rep.Error)
		}
	}
	// Closing answers what is still queued with unavailable.
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	wantError(t, first.ID, d.reply(t), protocol.CodeUnavailable)
	if st := w.Stats(); st.Errors[protocol.CodeBusy] != 2 || st.Errors[protocol.CodeUnavailable] != 1 || st.STSCalls != 0 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestMQTTStartRefusedAccount(t *testing.T) {
	t.Parallel()
	fleet := newFleetKey(t)
	url := startBroker(t, fleet)
	cfg := offlineConfig(fleet)
	cfg.BrokerURL = url
	cfg.Username, cfg.Password = workerUser, "wrong-password"
	w := newWorker(t, cfg)
	ctx, cancel := context.WithTimeout(bg, 30*time.Second)
	defer cancel()
	err := w.Start(ctx)
	if err == nil || ctx.Err() != nil {
		t.Fatalf("Start = %v (ctx %v), want a prompt refusal", err, ctx.Err())
	}
	if err := w.Start(ctx); err != ErrStarted {
		t.Fatalf("second Start = %v, want ErrStarted", err)
	}
}

func TestMQTTStartRefusedSubscription(t *testing.T) {
	t.Parallel()
	fleet := newFleetKey(t)
	url := startBroker(t, fleet)
	cfg := offlineConfig(fleet)
	cfg.BrokerURL = url
	cfg.Username, cfg.Password = consumerUser, workerPassword
	w := newWorker(t, cfg)
	ctx, cancel := context.WithTimeout(bg, 30*time.Second)
	defer cancel()
	if err := w.Start(ctx); err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "refused the subscription") {
		t.Fatalf("Start = %v (ctx %v), want a prompt subscription refusal", err, ctx.Err())
	}
}

func TestMQTTStartGivesUpWithContext(t *testing.T) {
	t.Parallel()
	fleet := newFleetKey(t)
	cfg := offlineConfig(fleet)
	cfg.BrokerURL = "tcp://127.0.0.1:1" // nothing listens
	w := newWorker(t, cfg)
	ctx, cancel := context.WithCancel(bg)
	var wg sync.WaitGroup
	wg.Add(1)
	var err error
	go func() { defer wg.Done(); err = w.Start(ctx) }()
	cancel()
	wg.Wait()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Start = %v, want context.Canceled", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestMQTTWaitsForSTSSlot: over MQTT a request that finds the only STS slot taken waits
// for it (the queue is the backpressure) instead of being answered busy at once.
func TestMQTTWaitsForSTSSlot(t *testing.T) {
	t.Parallel()
	c := startCloud(t, nil)
	fleet := newFleetKey(t)
	url := startBroker(t, fleet)
	cfg := mqttConfig(c, fleet, url)
	cfg.MaxConcurrent = 1
	w := newWorker(t, cfg)
	if err := w.Start(bg); err != nil {
		t.Fatal(err)
	}
	a, b := connectDevice(t, url, fleet, "cam-slot-a"), connectDevice(t, url, fleet, "cam-slot-b")
	release := c.gate.close()
	defer release()
	ra := newRequest(t, fleet, a.id, "w", time.Now())
	a.send(t, ra)
	<-c.gate.entered // a holds the one slot
	rb := newRequest(t, fleet, b.id, "w", time.Now())
	b.send(t, rb)
	for w.Stats().Requests < 2 { // b is being handled: waiting for the slot
		time.Sleep(time.Millisecond)
	}
	release()
	openCredentials(t, ra, decodeReply(t, ra.ID, a.reply(t)))
	openCredentials(t, rb, decodeReply(t, rb.ID, b.reply(t)))
	if st := w.Stats(); st.Errors[protocol.CodeBusy] != 0 || st.STSCalls != 2 {
		t.Fatalf("stats = %+v", st)
	}
}
