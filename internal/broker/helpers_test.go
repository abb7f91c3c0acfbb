package broker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/rs/zerolog"

	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/testutil"
	"github.com/clipgate/clipgate/topics"
)

// Service accounts of the test brokers.
var testAccounts = []testutil.Account{
	{User: "worker", Password: "worker-secret-1", Role: "tokenworker"},
	{User: "consumer", Password: "consumer-secret-1", Role: "consumer"},
	{User: "admin", Password: "admin-secret-1", Role: "admin"},
	{User: "cam-svc", Password: "svc-secret-1", Role: "consumer"}, // a service whose username has device form
}

func accountsFile(t testing.TB, dir string) string {
	return testutil.AccountsFile(t, dir, testAccounts...)
}

func passwordOf(user string) string {
	for _, a := range testAccounts {
		if a.User == user {
			return a.Password
		}
	}
	panic("no test account " + user)
}

// testEnv is one broker with its fleet keys (the broker reads only their connect roots),
// files and data dir.
type testEnv struct {
	t      testing.TB
	dir    string
	fleet  *identity.Keyring
	cfg    Config
	b      *Broker
	scheme topics.Scheme
}

// newEnv starts a broker on loopback port 0 with a data dir, the test accounts and an
// empty revocation list; mod may change the config first.
func newEnv(t testing.TB, mod func(*Config)) *testEnv {
	t.Helper()
	dir := t.TempDir()
	fleet, err := identity.NewFleetKeyring()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "connect.keys")
	if err := identity.WriteKeyring(keyFile, fleet.ConnectRoots()); err != nil {
		t.Fatal(err)
	}
	revFile := filepath.Join(dir, "revoked.txt")
	if err := os.WriteFile(revFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	if os.Getenv("BROKER_TEST_LOG") != "" {
		log = log.Level(zerolog.DebugLevel)
	}
	cfg := Config{
		Addr:                "127.0.0.1:0",
		HTTPAddr:            "127.0.0.1:0",
		DataDir:             filepath.Join(dir, "data"),
		ConnectKeysFile:     keyFile,
		ServiceAccountsFile: accountsFile(t, dir),
		RevocationsFile:     revFile,
		DeviceRate:          -1,
		Limits:              noLimits(),
		Logger:              &log,
	}
	if mod != nil {
		mod(&cfg)
	}
	e := &testEnv{t: t, dir: dir, fleet: fleet, cfg: cfg, scheme: topics.Default()}
	e.start()
	t.Cleanup(func() { e.b.Close() })
	return e
}

// noLimits turns every abuse limit off but the password replay cache (which cannot be):
// most tests log in wrongly and reconnect often from one address. limits_test.go turns
// them on one by one.
func noLimits() LimitsConfig {
	return LimitsConfig{FailureDelay: -1, BlockAfter: -1, BcryptConcurrency: -1, BcryptPerSource: -1,
		ClientConnectRate: -1, SourceConnectRate: -1, MaxPendingPerSource: -1, MaxSubscriptions: -1}
}

func (e *testEnv) start() {
	e.t.Helper()
	b, err := New(e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.b = b
}

// restart closes the broker and starts a new one on the same data dir and MQTT port.
func (e *testEnv) restart() {
	e.t.Helper()
	addr := e.b.Addr()
	if err := e.b.Close(); err != nil {
		e.t.Fatal(err)
	}
	e.cfg.Addr = addr
	e.start()
}

// devicePassword is the MQTT password of device id at t under fleet's current key.
func devicePassword(fleet *identity.Keyring, id string, t time.Time) string {
	k, err := identity.NewDeviceKey(fleet, id)
	if err != nil {
		panic(err)
	}
	return k.Password(t)
}

// testConnectKeys returns a broker keyring of one random connect root.
func testConnectKeys(t testing.TB) *identity.Keyring {
	t.Helper()
	fleet, err := identity.NewFleetKeyring()
	if err != nil {
		t.Fatal(err)
	}
	return fleet.ConnectRoots()
}

func (e *testEnv) devicePassword(id string) string {
	return devicePassword(e.fleet, id, time.Now())
}

// client is a paho client with what the tests observe about it.
type client struct {
	paho.Client
	lost   chan error // closed-over: receives once when the connection is lost
	mu     sync.Mutex
	got    []paho.Message
	notify chan struct{} // closed and replaced on every message: wakes all waiters
}

type clientOpts struct {
	clientID, username, password string
	clean                        *bool
	will                         *[2]string // topic, payload (QoS 1, retained)
	tlsAddr                      bool
	tweak                        func(*paho.ClientOptions)
}

// options builds paho options for the tests: MQTT 3.1.1, no automatic reconnects,
// concurrent handlers, every message recorded.
func (e *testEnv) options(o clientOpts) (*paho.ClientOptions, *client) {
	c := &client{lost: make(chan error, 1), notify: make(chan struct{})}
	opts := paho.NewClientOptions().
		AddBroker("tcp://" + e.b.Addr()).
		SetClientID(o.clientID).
		SetUsername(o.username).
		SetPassword(o.password).
		SetProtocolVersion(4).
		SetOrderMatters(false).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(5 * time.Second).
		SetWriteTimeout(5 * time.Second).
		SetKeepAlive(30 * time.Second).
		SetCleanSession(o.clean == nil || *o.clean).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			select {
			case c.lost <- err:
			default:
			}
		}).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { c.record(m) })
	if o.will != nil {
		opts.SetWill(o.will[0], o.will[1], 1, true)
	}
	if o.tweak != nil {
		o.tweak(opts)
	}
	return opts, c
}

func (c *client) record(m paho.Message) {
	c.mu.Lock()
	c.got = append(c.got, m)
	close(c.notify)
	c.notify = make(chan struct{})
	c.mu.Unlock()
}

func (c *client) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.got)
}

// connect connects and fails the test unless the broker accepts.
func (e *testEnv) connect(o clientOpts) *client {
	e.t.Helper()
	c, code, err := e.tryConnect(o)
	if err != nil {
		e.t.Fatalf("connect %q as %q: CONNACK %d: %v", o.clientID, o.username, code, err)
	}
	return c
}

// tryConnect connects and returns the CONNACK return code.
func (e *testEnv) tryConnect(o clientOpts) (*client, byte, error) {
	opts, c := e.options(o)
	c.Client = paho.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		c.Disconnect(0)
		return nil, 0xff, errors.New("connect timed out")
	}
	code := tok.(*paho.ConnectToken).ReturnCode()
	if err := tok.Error(); err != nil {
		return nil, code, err
	}
	e.t.Cleanup(func() { c.Disconnect(0) })
	return c, code, nil
}

func (e *testEnv) device(id string) *client {
	e.t.Helper()
	return e.connect(clientOpts{clientID: id, username: id, password: e.devicePassword(id)})
}

func (e *testEnv) service(user, instance string) *client {
	e.t.Helper()
	return e.connect(clientOpts{clientID: ServiceClientID(user, instance), username: user, password: passwordOf(user)})
}

// subscribe subscribes and returns the SUBACK return code.
func (c *client) subscribe(t testing.TB, filter string, qos byte) byte {
	t.Helper()
	tok := c.Subscribe(filter, qos, nil)
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatalf("subscribe %q: no SUBACK", filter)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("subscribe %q: %v", filter, err)
	}
	key := filter // paho keys the result by the filter without its "$share/{group}/"
	if strings.HasPrefix(key, "$share/") {
		key = strings.Join(strings.Split(key, "/")[2:], "/")
	}
	code, ok := tok.(*paho.SubscribeToken).Result()[key]
	if !ok {
		t.Fatalf("subscribe %q: no result", filter)
	}
	return code
}

// publish publishes and waits for the PUBACK (QoS 1).
func (c *client) publish(t testing.TB, topic string, qos byte, payload string) {
	t.Helper()
	tok := c.Publish(topic, qos, false, payload)
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatalf("publish %q: not acknowledged", topic)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("publish %q: %v", topic, err)
	}
}

// waitLost waits for the broker to close the client's connection.
func (c *client) waitLost(t testing.TB) {
	t.Helper()
	select {
	case <-c.lost:
	case <-time.After(10 * time.Second):
		t.Fatal("the broker did not close the connection")
	}
}

// waitMessage waits for a message on topic with payload.
func (c *client) waitMessage(t testing.TB, topic, payload string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		c.mu.Lock()
		for _, m := range c.got {
			if m.Topic() == topic && string(m.Payload()) == payload {
				c.mu.Unlock()
				return
			}
		}
		wake := c.notify
		c.mu.Unlock()
		select {
		case <-wake:
		case <-deadline:
			t.Fatalf("no message %q on %q", payload, topic)
		}
	}
}

// waitCount waits until the client has recorded n messages.
func (c *client) waitCount(t testing.TB, n int) {
	t.Helper()
	testutil.WaitFor(t, fmt.Sprintf("%d messages", n), func() bool { return c.count() >= n })
}

// messages returns the payloads received on topic, in order.
func (c *client) payloads(topic string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, m := range c.got {
		if m.Topic() == topic {
			out = append(out, string(m.Payload()))
		}
	}
	return out
}

var uniq atomic.Int64

// unique returns a fresh string for payloads and client IDs.
func unique(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, uniq.Add(1))
}

func ptr[T any](v T) *T { return &v }

// publishDone waits for a publish token to complete without error.
func (c *client) publishDone(t testing.TB, tok paho.Token, what string) {
	t.Helper()
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatalf("publish %s: not acknowledged", what)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("publish %s: %v", what, err)
	}
}

func subscription(filter string, qos byte) packets.Subscription {
	return packets.Subscription{Filter: filter, Qos: qos}
}
