package devicekit

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	"github.com/rs/zerolog"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/internal/broker"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/localcloud"
	"github.com/clipgate/clipgate/internal/mqttclient"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/internal/testutil"
	"github.com/clipgate/clipgate/internal/tokenworker"
	"github.com/clipgate/clipgate/topics"
)

// The test stack: localcloud (OSS + STS), the clipgate broker, a token worker and an
// event consumer, all on loopback, all real.
//
// It is not internal/inproc's stack, which every other package's tests use, because:
//   - package devicekit's own tests cannot import inproc (inproc imports devicekit), and
//     these tests reach into the kit (k.cfg, unexported state);
//   - stackOptions.answer builds the token worker without starting it and puts a relay on
//     the worker's shared subscription that answers with scripted replies (error codes,
//     replayed and unknown replies, tampered seals, silence): fault injection that inproc, which starts and
//     owns its workers, does not offer;
//   - stackOptions.cloud hands a test the local cloud's whole Config (data directory,
//     keys), from which clockskew_test starts a second, skewed local cloud sharing the
//     first one's STS token key.
//
// What it shares with the other packages' tests (the accounts file, random text) comes
// from internal/testutil.
const (
	testBucket   = "clips-bucket"
	testPrefix   = "clips/"
	testRole     = "camera-uploader"
	testWorkerAK = "LTAIdevkitWorker001"
	testAdminAK  = "LTAIdevkitAdmin0001"
	rolePolicy   = `{"Version":"1","Statement":[{"Effect":"Allow","Action":["oss:*"],"Resource":["acs:oss:*:*:clips-bucket","acs:oss:*:*:clips-bucket/*"]}]}`
)

// Service accounts of the test broker.
var testAccounts = []testutil.Account{
	{User: "worker", Password: "worker-secret-1", Role: "tokenworker"},
	{User: "consumer", Password: "consumer-secret-1", Role: "consumer"},
}

// testClock is a settable clock shared by localcloud, the worker and (unless a test
// skews it) the kit.
type testClock struct{ off atomic.Int64 }

func (c *testClock) Now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *testClock) Advance(d time.Duration) { c.off.Add(int64(d)) }

type stackOptions struct {
	cloud  func(*localcloud.Config)
	worker func(*tokenworker.Config)
	// answer, when set, answers the auth requests instead of the worker's own MQTT
	// transport (fault injection): it gets the worker (not started) and the request and
	// returns the messages to publish on the device's reply topic, in order.
	answer answerFunc
}

type stack struct {
	t         *testing.T
	dir       string
	fleet     *identity.Keyring
	clock     *testClock
	cloud     *localcloud.Server
	secret    string // the worker's long-term STS key secret
	admin     string // a full-access key secret, to read objects back
	broker    *broker.Broker
	brokerCfg broker.Config
	brokerURL string
	worker    *tokenworker.Worker
	workerCfg tokenworker.Config
	events    chan *clipgate.UploadEvent
	// services receive the outcome of each subscription of the service clients.
	services []chan error
}

func newStack(t *testing.T, o stackOptions) *stack {
	t.Helper()
	s := &stack{t: t, dir: t.TempDir(), clock: &testClock{}, events: make(chan *clipgate.UploadEvent, 64)}
	var err error
	if s.fleet, err = identity.NewFleetKeyring(); err != nil {
		t.Fatal(err)
	}
	s.secret, s.admin = testutil.RandomText(t, 30), testutil.RandomText(t, 30)
	ccfg := localcloud.Config{
		DataDir: filepath.Join(s.dir, "cloud"),
		Keys:    []localcloud.AccessKey{{ID: testWorkerAK, Secret: s.secret}, {ID: testAdminAK, Secret: s.admin}},
		Roles:   []localcloud.Role{{Name: testRole, Policy: rolePolicy}},
		Buckets: []string{testBucket},
		Now:     s.clock.Now,
		Logger:  zerolog.Nop(),
	}
	if o.cloud != nil {
		o.cloud(&ccfg)
	}
	if s.cloud, err = localcloud.Start(ccfg); err != nil {
		t.Fatalf("localcloud.Start: %v", err)
	}
	t.Cleanup(func() { s.cloud.Close() })

	blog := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	s.brokerCfg = broker.Config{
		Addr:                "127.0.0.1:0",
		HTTPAddr:            "none",
		ConnectKeys:         s.fleet.ConnectRoots(),
		ServiceAccountsFile: testutil.AccountsFile(t, s.dir, testAccounts...),
		DeviceRate:          -1,
		Logger:              &blog,
	}
	s.startBroker()
	s.brokerURL = "tcp://" + s.broker.Addr()

	s.workerCfg = tokenworker.Config{
		BrokerURL: s.brokerURL,
		Username:  "worker",
		Password:  "worker-secret-1",
		FleetKeys: s.fleet,
		STS: tokenworker.STSConfig{
			Endpoint:        s.cloud.STSEndpoint(),
			Scheme:          "http",
			Region:          s.cloud.Region(),
			AccessKeyID:     testWorkerAK,
			AccessKeySecret: s.secret,
			RoleARN:         s.cloud.RoleARN(testRole),
		},
		OSS:    clipgate.OSSInfo{Endpoint: s.cloud.OSSEndpoint(), Region: s.cloud.Region(), Bucket: testBucket, Prefix: testPrefix},
		Now:    s.clock.Now,
		Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
	}
	if o.worker != nil {
		o.worker(&s.workerCfg)
	}
	if o.answer == nil {
		s.worker = s.startWorker(s.workerCfg)
	} else {
		w, err := tokenworker.New(s.workerCfg)
		if err != nil {
			t.Fatalf("tokenworker.New: %v", err)
		}
		t.Cleanup(func() { w.Close() })
		s.worker = w
		s.relay(w, o.answer)
	}
	s.consume()
	return s
}

func (s *stack) startBroker() {
	s.t.Helper()
	b, err := broker.New(s.brokerCfg)
	if err != nil {
		s.t.Fatalf("broker.New: %v", err)
	}
	if err := b.Start(); err != nil {
		s.t.Fatalf("broker.Start: %v", err)
	}
	s.t.Cleanup(func() { b.Close() })
	s.broker = b
}

// restartBroker stops the broker and starts a new one on the same address.
func (s *stack) restartBroker() {
	s.t.Helper()
	s.brokerCfg.Addr = s.broker.Addr()
	if err := s.broker.Close(); err != nil {
		s.t.Fatal(err)
	}
	s.startBroker()
	// The service clients are subscribed again before the test goes on: else what a kit
	// publishes at once could reach no subscriber.
	for _, subscribed := range s.services {
		select {
		case err := <-subscribed:
			if err != nil {
				s.t.Fatalf("service subscription after the restart: %v", err)
			}
		case <-time.After(30 * time.Second):
			s.t.Fatal("a service client did not subscribe again within 30s")
		}
	}
}

func (s *stack) startWorker(cfg tokenworker.Config) *tokenworker.Worker {
	s.t.Helper()
	w, err := tokenworker.New(cfg)
	if err != nil {
		s.t.Fatalf("tokenworker.New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Start(ctx); err != nil {
		s.t.Fatalf("worker Start: %v", err)
	}
	s.t.Cleanup(func() { w.Close() })
	return w
}

type answerFunc func(w *tokenworker.Worker, topic string, payload []byte) [][]byte

// handle answers as the worker does.
func handle(w *tokenworker.Worker, topic string, payload []byte) [][]byte {
	if _, reply, ok := w.Handle(context.Background(), topic, payload); ok {
		return [][]byte{reply}
	}
	return nil
}

// relay answers auth requests with answer, as a token worker connected to the broker.
func (s *stack) relay(w *tokenworker.Worker, answer answerFunc) {
	s.t.Helper()
	scheme := topics.Default()
	var c *mqttclient.Client
	c = s.service("worker", "worker-secret-1", scheme.WorkerFilter(topics.DefaultWorkerGroup), func(m mqttclient.Message) {
		_, device, ok := scheme.Parse(m.Topic())
		if !ok {
			return
		}
		for _, reply := range answer(w, m.Topic(), m.Payload()) {
			c.Publish(scheme.AuthReply(device), 1, false, reply) // not waited for: in a handler
		}
	})
}

// service connects a client with a service account, subscribed to filter with handler
// h, once the subscription is acknowledged. It subscribes again after every reconnection.
func (s *stack) service(user, password, filter string, h mqttclient.Handler) *mqttclient.Client {
	s.t.Helper()
	subscribed := make(chan error, 16)
	c, err := mqttclient.New(mqttclient.Config{BrokerURL: s.brokerURL, ClientID: broker.ServiceClientID(user, testutil.RandomText(s.t, 8)),
		Username: user, Password: password, Backoff: mqttclient.Backoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond},
		Subscriptions: []mqttclient.Subscription{{Filter: filter, QoS: 1, Handler: h}},
		OnSubscribed: func(err error) {
			select {
			case subscribed <- err:
			default:
			}
		}})
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		s.t.Fatalf("%s connect: %v", user, err)
	}
	<-subscribed // the first, which Connect waited for
	s.services = append(s.services, subscribed)
	return c
}

// consume subscribes a consumer to every upload event; they arrive on s.events.
func (s *stack) consume() {
	s.t.Helper()
	s.service("consumer", "consumer-secret-1", topics.Default().EventFilter(""), func(m mqttclient.Message) {
		ev, err := protocol.DecodeUploadEvent(m.Payload())
		if err != nil {
			s.t.Errorf("consumer got a malformed event: %v: %s", err, m.Payload())
			return
		}
		s.events <- ev
	})
}

// event waits for the next upload event.
func (s *stack) event() *clipgate.UploadEvent {
	s.t.Helper()
	select {
	case ev := <-s.events:
		return ev
	case <-time.After(20 * time.Second):
		s.t.Fatal("no upload event")
		return nil
	}
}

// noEvent checks that no further event arrived (after the kit's own acknowledgement, so
// anything in flight has been delivered).
func (s *stack) noEvent() {
	s.t.Helper()
	select {
	case ev := <-s.events:
		s.t.Fatalf("unexpected event %+v", ev)
	default:
	}
}

// deviceKey is the device key of device under the current fleet key.
func (s *stack) deviceKey(device string) *DeviceKey { return fleetDeviceKey(s.t, s.fleet, device) }

// fleetDeviceKey is the device key of device under the fleet keyring's current key.
func fleetDeviceKey(t testing.TB, fleet *identity.Keyring, device string) *DeviceKey {
	t.Helper()
	k, err := identity.NewDeviceKey(fleet, device)
	if err != nil {
		t.Fatal(err)
	}
	return (*DeviceKey)(k)
}

func (s *stack) kitConfig(device string) Config {
	return Config{
		BrokerURL: s.brokerURL,
		DeviceID:  device,
		DeviceKey: s.deviceKey(device),
		StateDir:  filepath.Join(s.dir, "kit-"+device),
		Now:       s.clock.Now,
		Logger:    zerolog.New(zerolog.NewTestWriter(s.t)).Level(zerolog.WarnLevel),
	}
}

// kit starts and connects a kit for device; mod may change its config first.
func (s *stack) kit(device string, mod func(*Config)) *Kit {
	s.t.Helper()
	cfg := s.kitConfig(device)
	if mod != nil {
		mod(&cfg)
	}
	k, err := New(cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { k.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := k.Connect(ctx); err != nil {
		s.t.Fatalf("Connect: %v", err)
	}
	return k
}

// object reads an object back with the full-access key.
func (s *stack) object(key string) []byte {
	s.t.Helper()
	c, err := oss.New(s.cloud.OSSEndpoint(), testAdminAK, s.admin, oss.AuthVersion(oss.AuthV4), oss.Region(s.cloud.Region()))
	if err != nil {
		s.t.Fatal(err)
	}
	b, err := c.Bucket(testBucket)
	if err != nil {
		s.t.Fatal(err)
	}
	r, err := b.GetObject(key)
	if err != nil {
		s.t.Fatalf("GetObject %s: %v", key, err)
	}
	defer r.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(r); err != nil {
		s.t.Fatal(err)
	}
	return buf.Bytes()
}

// clipFile writes n random bytes to a new clip file.
func clipFile(t testing.TB, name string, n int) (string, []byte) {
	data := make([]byte, n)
	rand.Read(data)
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, data
}

// dirEntries lists a state subdirectory.
func dirEntries(t testing.TB, k *Kit, sub string) []string {
	es, err := os.ReadDir(filepath.Join(k.cfg.StateDir, sub))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}
