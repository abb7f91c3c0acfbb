package mqttclient_test

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clipgate/clipgate/clipgatetest"
	"github.com/clipgate/clipgate/internal/broker"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/mqttclient"
	"github.com/clipgate/clipgate/internal/testpki"
	"github.com/clipgate/clipgate/internal/testutil"
	"github.com/clipgate/clipgate/topics"
	"github.com/rs/zerolog"
)

// A client subscribes at Connect, and again after the broker restarted: messages
// published after the restart arrive, the password is asked for again, and the lost and
// restored connection are logged.
func TestReconnectResubscribes(t *testing.T) {
	t.Parallel()
	tb := newBroker(t, "", nil)
	got := make(chan mqttclient.Message, 10)
	var logs testutil.SyncBuffer
	var creds, connects atomic.Int32
	lost := make(chan error, 1)
	subscribed := make(chan error, 10)
	reconnectWaits := newBackoffs()
	cfg := consumerConfig(tb.url(), "restart", got)
	cfg.Username, cfg.Password = "", ""
	cfg.Credentials = func() (string, string) {
		creds.Add(1)
		return consumerUser, consumerPassword
	}
	cfg.OnConnect = func() { connects.Add(1) }
	cfg.OnSubscribed = func(err error) { subscribed <- err }
	cfg.OnConnectionLost = func(err error) { lost <- err }
	cfg.OnBackoff = reconnectWaits.record
	cfg.Logger = zerolog.New(&logs)
	c := newClient(t, cfg)
	connect(t, c)
	if err := <-subscribed; err != nil || creds.Load() != 1 || connects.Load() != 1 || !c.Connected() {
		t.Fatalf("after Connect: subscribed %v, %d credentials, %d connections, connected %v", err, creds.Load(), connects.Load(), c.Connected())
	}
	topic := topics.Default().UploadEvent("cam-1")
	pub := publisher(t, tb.url())
	publish(t, pub, topic, "before")
	if m := receive(t, got); string(m.Payload()) != "before" || m.Topic() != topic {
		t.Fatalf("got %q on %s", m.Payload(), m.Topic())
	}

	tb.restart()
	if err := <-lost; err == nil {
		t.Fatal("connection lost without a reason")
	}
	if err := <-subscribed; err != nil {
		t.Fatalf("subscription after the restart: %v", err)
	}
	if creds.Load() < 2 || connects.Load() != 2 {
		t.Fatalf("after the restart: %d credentials, %d connections; want new credentials and a second connection", creds.Load(), connects.Load())
	}
	if n := reconnectWaits.count(); n == 0 {
		t.Fatal("the reconnection was not paced by Backoff")
	}
	pub2 := publisher(t, tb.url())
	publish(t, pub2, topic, "after")
	if m := receive(t, got); string(m.Payload()) != "after" {
		t.Fatalf("after the restart got %q", m.Payload())
	}
	for _, line := range []string{"connection to the broker lost; reconnecting", "connection to the broker restored"} {
		if !strings.Contains(logs.String(), line) {
			t.Errorf("log lacks %q:\n%s", line, logs.String())
		}
	}
}

// Connect started before the broker listens tries again until the broker is there.
func TestConnectWaitsForBroker(t *testing.T) {
	t.Parallel()
	addr := clipgatetest.HoldAddr(t)
	got := make(chan mqttclient.Message, 1)
	waits := newBackoffs()
	cfg := consumerConfig("tcp://"+addr, "early", got)
	cfg.OnBackoff = waits.record
	c := newClient(t, cfg)
	done := make(chan error, 1)
	go func() { done <- c.Connect(t.Context()) }() // no deadline: until the broker is there
	select {
	case <-waits.ch: // an attempt failed: nothing listens yet
	case err := <-done:
		t.Fatalf("Connect returned before the broker started: %v", err)
	}
	tb := newBroker(t, addr, nil)
	if err := <-done; err != nil {
		t.Fatalf("Connect after the broker started: %v", err)
	}
	publish(t, publisher(t, tb.url()), topics.Default().UploadEvent("cam-2"), "x")
	receive(t, got)
}

// Without a broker, Connect ends with its context, saying why the last attempt failed.
func TestConnectGivesUp(t *testing.T) {
	t.Parallel()
	waits := newBackoffs()
	cfg := consumerConfig("tcp://"+clipgatetest.HoldAddr(t), "late", make(chan mqttclient.Message))
	cfg.OnBackoff = waits.record
	c := newClient(t, cfg)
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-waits.ch
		<-waits.ch // the second wait: retries go on
		cancel()
	}()
	err := c.Connect(ctx)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "last attempt") || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Connect = %v; want the context's error with the last attempt's", err)
	}
	if err := c.Connect(t.Context()); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("second Connect = %v", err)
	}
}

// A refused login fails at once, not at the context's end, and is not tried again.
func TestConnectRefused(t *testing.T) {
	t.Parallel()
	tb := newBroker(t, "", nil)
	for name, mod := range map[string]func(*mqttclient.Config){
		"wrong password":   func(c *mqttclient.Config) { c.Password = "wrong" },
		"unknown user":     func(c *mqttclient.Config) { c.Username = "nobody" },
		"no credentials":   func(c *mqttclient.Config) { c.Username, c.Password = "", "" },
		"device client ID": func(c *mqttclient.Config) { c.ClientID = "cam-1" }, // a service may not take a device's ID
	} {
		cfg := consumerConfig(tb.url(), "refused", make(chan mqttclient.Message))
		mod(&cfg)
		if err := connectOnce(t, cfg); !errors.Is(err, mqttclient.ErrRefused) {
			t.Errorf("%s: Connect = %v; want ErrRefused at once", name, err)
		}
	}
}

// With KeepTrying a refused login is tried again, with credentials made afresh for each
// attempt: once they are right, the client connects.
func TestConnectKeepTrying(t *testing.T) {
	t.Parallel()
	tb := newBroker(t, "", nil)
	const device = "cam-keep"
	key, err := identity.NewDeviceKey(tb.fleet, device)
	if err != nil {
		t.Fatal(err)
	}
	other, err := identity.NewDeviceKey(tb.fleet, "cam-other")
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	waits := newBackoffs()
	got := make(chan mqttclient.Message, 1)
	c := newClient(t, mqttclient.Config{
		BrokerURL: tb.url(), ClientID: device, KeepTrying: true,
		Backoff:   mqttclient.Backoff{Min: time.Millisecond, Max: 10 * time.Millisecond},
		OnBackoff: waits.record,
		Credentials: func() (string, string) {
			if calls.Add(1) <= 2 { // the first two are made with another device's key
				return device, identity.MQTTPassword(other.Connect, other.KeyID, device, time.Now())
			}
			return device, key.Password(time.Now())
		},
		Subscriptions: []mqttclient.Subscription{{Filter: topics.Default().AuthReply(device), QoS: 1, Handler: func(m mqttclient.Message) { got <- m }}},
	})
	if err := c.Connect(cancelAfter(t, waits, 10)); err != nil { // 10: far more retries than needed
		t.Fatalf("Connect = %v", err)
	}
	if n := calls.Load(); n != 3 || waits.count() != 2 {
		t.Fatalf("%d credentials made, %d retries; want 3 and 2", n, waits.count())
	}
	publish(t, publisher(t, tb.url()), topics.Default().AuthReply(device), "reply")
	receive(t, got)

	// Refused for good: Connect ends with the context, naming the refusal.
	var logs testutil.SyncBuffer
	waits = newBackoffs()
	d := newClient(t, mqttclient.Config{BrokerURL: tb.url(), ClientID: "cam-wrong", KeepTrying: true, Username: "cam-wrong", Password: "wrong",
		Backoff: mqttclient.Backoff{Min: time.Millisecond, Max: time.Millisecond}, OnBackoff: waits.record, Logger: zerolog.New(&logs)})
	ctx := cancelAfter(t, waits, 3)
	err = d.Connect(ctx)
	if !errors.Is(err, context.Canceled) || errors.Is(err, mqttclient.ErrRefused) || !strings.Contains(err.Error(), "bad user name or password") {
		t.Fatalf("Connect = %v; want the context's end naming the refusal", err)
	}
	if !strings.Contains(logs.String(), "cannot connect to the broker; retrying") {
		t.Errorf("retries not logged:\n%s", logs.String())
	}
}

// A subscription the account may not make fails Connect with a *SubscribeError.
func TestSubscribeRefused(t *testing.T) {
	t.Parallel()
	tb := newBroker(t, "", nil)
	cfg := consumerConfig(tb.url(), "not-a-worker", make(chan mqttclient.Message))
	cfg.Subscriptions[0].Filter = topics.Default().WorkerFilter("") // token workers only
	err := connectOnce(t, cfg)
	var se *mqttclient.SubscribeError
	if !errors.As(err, &se) || se.Code != 0x80 || se.Filter != cfg.Subscriptions[0].Filter {
		t.Fatalf("Connect = %v; want a *SubscribeError with code 0x80", err)
	}
}

// A persistent session keeps the messages published while the client is away; the
// broker sends them before the subscription is renewed, to DefaultHandler. A message
// left unacknowledged (ManualAck) comes again, marked duplicate, after Reconnect.
func TestPersistentSession(t *testing.T) {
	t.Parallel()
	tb := newBroker(t, "", nil)
	got := make(chan mqttclient.Message, 10)
	cfg := consumerConfig(tb.url(), "persistent", got)
	cfg.Persistent, cfg.ManualAck = true, true
	cfg.DefaultHandler = func(m mqttclient.Message) { got <- m }
	cfg.Subscriptions[0].Handler = nil
	first := newClient(t, cfg)
	connect(t, first)
	first.Close()

	topic := topics.Default().UploadEvent("cam-3")
	pub := publisher(t, tb.url())
	publish(t, pub, topic, "while away")
	c := newClient(t, cfg)
	connect(t, c)
	m := receive(t, got)
	if string(m.Payload()) != "while away" {
		t.Fatalf("got %q", m.Payload())
	}
	// Not acknowledged: the broker sends it again when the session resumes.
	if err := c.Reconnect(t.Context()); err != nil {
		t.Fatal(err)
	}
	again := receive(t, got)
	if string(again.Payload()) != "while away" || !again.Duplicate() {
		t.Fatalf("after Reconnect got %q, duplicate %v; want the unacknowledged message again", again.Payload(), again.Duplicate())
	}
	again.Ack()
}

// Close during Connect's retries ends Connect with ErrClosed; Close waits for a handler
// in flight.
func TestClose(t *testing.T) {
	t.Parallel()
	waits := newBackoffs()
	cfg := consumerConfig("tcp://"+clipgatetest.HoldAddr(t), "closing", make(chan mqttclient.Message))
	cfg.OnBackoff = waits.record
	c := newClient(t, cfg)
	done := make(chan error, 1)
	go func() { done <- c.Connect(t.Context()) }()
	<-waits.ch
	c.Close()
	if err := <-done; !errors.Is(err, mqttclient.ErrClosed) {
		t.Fatalf("Connect after Close = %v, want ErrClosed", err)
	}
	if err := c.Connect(t.Context()); !errors.Is(err, mqttclient.ErrClosed) {
		t.Fatalf("Connect on a closed client = %v", err)
	}
	if err := c.Reconnect(t.Context()); !errors.Is(err, mqttclient.ErrClosed) {
		t.Fatalf("Reconnect on a closed client = %v", err)
	}
	c.Close() // twice is fine

	tb := newBroker(t, "", nil)
	started, release := make(chan struct{}), make(chan struct{})
	var running atomic.Int32
	var once sync.Once
	h := newClient(t, mqttclient.Config{BrokerURL: tb.url(), ClientID: broker.ServiceClientID(consumerUser, "slow"),
		Username: consumerUser, Password: consumerPassword,
		Subscriptions: []mqttclient.Subscription{{Filter: topics.Default().EventFilter(""), QoS: 1, Handler: func(mqttclient.Message) {
			running.Add(1)
			defer running.Add(-1)
			once.Do(func() { close(started) })
			<-release
		}}}})
	connect(t, h)
	pub := publisher(t, tb.url())
	publish(t, pub, topics.Default().UploadEvent("cam-4"), "slow")
	<-started
	closeDone := make(chan struct{})
	go func() {
		h.Close()
		close(closeDone)
	}()
	// Close has disconnected; the handler goes on until released, and Close waits for it.
	for h.Connected() {
		time.Sleep(time.Millisecond)
	}
	close(release)
	<-closeDone
	if n := running.Load(); n != 0 {
		t.Fatalf("Close returned with %d handlers running", n)
	}
}

// Unsubscribe ends the subscriptions: what is published afterwards does not arrive.
func TestUnsubscribe(t *testing.T) {
	t.Parallel()
	tb := newBroker(t, "", nil)
	got := make(chan mqttclient.Message, 10)
	cfg := consumerConfig(tb.url(), "unsub", got)
	cfg.OrderMatters = true // in arrival order, to see that one message did not come before another
	cfg.DefaultHandler = func(m mqttclient.Message) { got <- m }
	c := newClient(t, cfg)
	connect(t, c)
	if err := c.Unsubscribe(t.Context()); err != nil {
		t.Fatal(err)
	}
	// A sentinel subscription, made after Unsubscribe on the same connection.
	sentinel := topics.Default().Status("cam-5")
	if tok := c.Paho().Subscribe(topics.Default().StatusFilter(""), 1, nil); !tok.WaitTimeout(time.Minute) || tok.Error() != nil {
		t.Fatalf("sentinel subscription: %v", tok.Error())
	}
	pub := publisher(t, tb.url())
	publish(t, pub, topics.Default().UploadEvent("cam-5"), "unsubscribed")
	publish(t, pub, sentinel, "sentinel")
	if m := receive(t, got); m.Topic() != sentinel {
		t.Fatalf("got %q on %s after Unsubscribe", m.Payload(), m.Topic())
	}
}

// TLS from PEM files: the broker's CA lets the client in; another CA, or another server
// name, fails at once as untrusted; a device logs in with its client certificate alone.
func TestTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	serverCA, deviceCA, rogueCA := testpki.NewCA(t, "server CA"), testpki.NewCA(t, "device CA"), testpki.NewCA(t, "rogue CA")
	certFile, keyFile := testpki.WritePair(t, dir, "broker", serverCA.Issue(t, "broker", true))
	tb := newBroker(t, "", func(c *broker.Config) {
		c.TLS = broker.TLSConfig{Addr: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile, ClientCAFile: deviceCA.WriteCA(t, dir)}
	})
	url := "ssl://" + tb.b.TLSAddr()
	caFile := serverCA.WriteCA(t, dir)
	load := func(f mqttclient.TLSFiles) mqttclient.Config {
		tc, err := f.Load()
		if err != nil {
			t.Fatal(err)
		}
		cfg := consumerConfig(url, "tls-"+rand.Text(), make(chan mqttclient.Message))
		cfg.TLS = tc
		return cfg
	}
	connect(t, newClient(t, load(mqttclient.TLSFiles{CAFile: caFile})))

	for name, files := range map[string]mqttclient.TLSFiles{
		"another CA":          {CAFile: rogueCA.WriteCA(t, dir)},
		"another server name": {CAFile: caFile, ServerName: "broker.example"},
		"system roots":        {},
	} {
		if err := connectOnce(t, load(files)); !errors.Is(err, mqttclient.ErrUntrusted) {
			t.Errorf("%s: Connect = %v; want ErrUntrusted at once", name, err)
		}
	}

	// A device with a certificate of the device CA whose CN is its ID needs no password.
	devCert, devKey := testpki.WritePair(t, dir, "cam-tls", deviceCA.Issue(t, "cam-tls", false))
	tc, err := mqttclient.TLSFiles{CAFile: caFile, CertFile: devCert, KeyFile: devKey}.Load()
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan mqttclient.Message, 1)
	dev := newClient(t, mqttclient.Config{BrokerURL: url, TLS: tc, ClientID: "cam-tls", Username: "cam-tls",
		Subscriptions: []mqttclient.Subscription{{Filter: topics.Default().AuthReply("cam-tls"), QoS: 1, Handler: func(m mqttclient.Message) { got <- m }}}})
	connect(t, dev)
	publish(t, publisher(t, tb.url()), topics.Default().AuthReply("cam-tls"), "reply")
	receive(t, got)
}

// connectOnce connects a client of cfg, giving up at the first retry: the error of a
// failure that must not be retried, or the context's when it was.
func connectOnce(t *testing.T, cfg mqttclient.Config) error {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	cfg.OnBackoff = func(int, time.Duration) { cancel() }
	c := newClient(t, cfg)
	defer c.Close()
	return c.Connect(ctx)
}

// cancelAfter returns a context cancelled after n retries recorded by waits, or when
// the test ends.
func cancelAfter(t *testing.T, waits *backoffs, n int) context.Context {
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	go func() {
		for range n {
			select {
			case <-waits.ch:
			case <-ctx.Done():
				return
			}
		}
		cancel()
	}()
	return ctx
}
