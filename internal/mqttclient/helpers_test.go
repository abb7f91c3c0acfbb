package mqttclient_test

import (
	"context"
	"crypto/rand"
	"sync"
	"testing"
	"time"

	"github.com/clipgate/clipgate/internal/broker"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/mqttclient"
	"github.com/clipgate/clipgate/internal/testutil"
	"github.com/clipgate/clipgate/topics"
)

// The service accounts of the test brokers.
const (
	consumerUser, consumerPassword = "consumer", "consumer-secret-1"
	adminUser, adminPassword       = "admin", "admin-secret-1"
)

// testBroker is clipgate's broker on loopback, with the accounts above.
type testBroker struct {
	t     *testing.T
	cfg   broker.Config
	b     *broker.Broker
	fleet *identity.Keyring
}

// newBroker starts a broker on addr ("" for a free port); mod may change its config.
func newBroker(t *testing.T, addr string, mod func(*broker.Config)) *testBroker {
	t.Helper()
	dir := t.TempDir()
	fleet, err := identity.NewFleetKeyring()
	if err != nil {
		t.Fatal(err)
	}
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	tb := &testBroker{t: t, fleet: fleet, cfg: broker.Config{
		Addr:                addr,
		HTTPAddr:            "none",
		ConnectKeys:         fleet.ConnectRoots(),
		ServiceAccountsFile: accountsFile(t, dir),
		Revocations:         identity.NewRevocations(),
		DeviceRate:          -1,
		// The tests retry refused logins quickly: no held-back answers or blocks.
		Limits: broker.LimitsConfig{FailureDelay: -1, BlockAfter: -1},
	}}
	if mod != nil {
		mod(&tb.cfg)
	}
	tb.start()
	t.Cleanup(func() { tb.b.Close() })
	return tb
}

func (tb *testBroker) start() {
	tb.t.Helper()
	b, err := broker.New(tb.cfg)
	if err != nil {
		tb.t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		tb.t.Fatal(err)
	}
	tb.b = b
}

// restart closes the broker and starts a new one on the same address.
func (tb *testBroker) restart() {
	tb.t.Helper()
	tb.cfg.Addr = tb.b.Addr()
	if err := tb.b.Close(); err != nil {
		tb.t.Fatal(err)
	}
	tb.start()
}

func (tb *testBroker) url() string { return "tcp://" + tb.b.Addr() }

func accountsFile(t *testing.T, dir string) string {
	return testutil.AccountsFile(t, dir,
		testutil.Account{User: consumerUser, Password: consumerPassword, Role: topics.RoleConsumer.String()},
		testutil.Account{User: adminUser, Password: adminPassword, Role: topics.RoleAdmin.String()})
}

// consumerConfig is a clean-session consumer subscribed to every upload event, whose
// messages go to got.
func consumerConfig(url, instance string, got chan<- mqttclient.Message) mqttclient.Config {
	return mqttclient.Config{
		BrokerURL: url,
		ClientID:  broker.ServiceClientID(consumerUser, instance),
		Username:  consumerUser,
		Password:  consumerPassword,
		Subscriptions: []mqttclient.Subscription{{Filter: topics.Default().EventFilter(""), QoS: 1, Handler: func(m mqttclient.Message) {
			got <- m
		}}},
	}
}

// newClient makes a client and closes it when the test ends.
func newClient(t *testing.T, cfg mqttclient.Config) *mqttclient.Client {
	t.Helper()
	c, err := mqttclient.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// connect connects c within a minute.
func connect(t *testing.T, c *mqttclient.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatalf("Connect: %v", err)
	}
}

// publisher connects the admin account, which may publish on any device's topics.
func publisher(t *testing.T, url string) *mqttclient.Client {
	t.Helper()
	c := newClient(t, mqttclient.Config{BrokerURL: url, ClientID: broker.ServiceClientID(adminUser, "pub-"+rand.Text()),
		Username: adminUser, Password: adminPassword})
	connect(t, c)
	return c
}

// publish publishes payload with QoS 1 and waits for the PUBACK.
func publish(t *testing.T, c *mqttclient.Client, topic, payload string) {
	t.Helper()
	if tok := c.Publish(topic, 1, false, []byte(payload)); !tok.WaitTimeout(time.Minute) || tok.Error() != nil {
		t.Fatalf("publish on %s: %v", topic, tok.Error())
	}
}

// receive returns the next message of got within a minute.
func receive(t *testing.T, got <-chan mqttclient.Message) mqttclient.Message {
	t.Helper()
	select {
	case m := <-got:
		return m
	case <-time.After(time.Minute):
		t.Fatal("no message within a minute")
		return nil
	}
}

// backoffs records the OnBackoff calls and signals each on ch.
type backoffs struct {
	mu    sync.Mutex
	calls []int
	ch    chan int
}

func newBackoffs() *backoffs { return &backoffs{ch: make(chan int, 1000)} }

func (b *backoffs) record(retry int, _ time.Duration) {
	b.mu.Lock()
	b.calls = append(b.calls, retry)
	b.mu.Unlock()
	select {
	case b.ch <- retry:
	default: // nobody counts that far
	}
}

func (b *backoffs) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.calls)
}
