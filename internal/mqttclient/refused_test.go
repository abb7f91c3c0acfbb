package mqttclient_test

import (
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/clipgate/clipgate/internal/mqttclient"
)

// refuseFirst is a mochi hook that admits everyone and refuses the first n
// subscriptions to filter, as a NATS cluster does while it elects a JetStream leader.
type refuseFirst struct {
	mqtt.HookBase
	filter  string
	n       int32
	refused atomic.Int32
}

func (h *refuseFirst) ID() string { return "refuse-first" }
func (h *refuseFirst) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}
func (h *refuseFirst) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }
func (h *refuseFirst) OnACLCheck(_ *mqtt.Client, topic string, write bool) bool {
	if !write && topic == h.filter && h.refused.Load() < h.n {
		h.refused.Add(1)
		return false
	}
	return true
}

// refusingBroker starts a plain mochi server with the hook.
func refusingBroker(t *testing.T, h *refuseFirst) string {
	t.Helper()
	srv := mqtt.New(&mqtt.Options{Logger: slog.New(slog.DiscardHandler)})
	if err := srv.AddHook(h, nil); err != nil {
		t.Fatal(err)
	}
	l := listeners.NewTCP(listeners.Config{ID: "t", Address: "127.0.0.1:0"})
	if err := srv.AddListener(l); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return "tcp://" + l.Address()
}

// TestRetryRefusedSubscription: a subscription with RetryRefused survives refusals and is
// granted once the broker grants it; without, Connect reports the refusal.
func TestRetryRefusedSubscription(t *testing.T) {
	t.Parallel()
	const filter = "dev/cam-1/reply"
	t.Run("retried", func(t *testing.T) {
		t.Parallel()
		h := &refuseFirst{filter: filter, n: 2}
		url := refusingBroker(t, h)
		got := make(chan mqttclient.Message, 1)
		c := newClient(t, mqttclient.Config{BrokerURL: url, ClientID: "cam-1", Subscriptions: []mqttclient.Subscription{
			{Filter: filter, QoS: 0, RetryRefused: time.Minute, Handler: func(m mqttclient.Message) { got <- m }}}})
		connect(t, c)
		if n := h.refused.Load(); n != 2 {
			t.Fatalf("refused %d times, want 2", n)
		}
		p := newClient(t, mqttclient.Config{BrokerURL: url, ClientID: "pub"})
		connect(t, p)
		publish(t, p, filter, "hello")
		if m := receive(t, got); string(m.Payload()) != "hello" {
			t.Fatalf("got %q", m.Payload())
		}
	})
	t.Run("not retried", func(t *testing.T) {
		t.Parallel()
		url := refusingBroker(t, &refuseFirst{filter: filter, n: 1})
		c := newClient(t, mqttclient.Config{BrokerURL: url, ClientID: "cam-1", Subscriptions: []mqttclient.Subscription{{Filter: filter, Handler: func(mqttclient.Message) {}}}})
		var se *mqttclient.SubscribeError
		if err := c.Connect(t.Context()); !errors.As(err, &se) {
			t.Fatalf("Connect = %v, want a SubscribeError", err)
		}
	})
}

// TestFailoverURLs: a client whose BrokerURL is down connects to a failover URL.
func TestFailoverURLs(t *testing.T) {
	t.Parallel()
	up := refusingBroker(t, &refuseFirst{})
	down := newBroker(t, "", nil)
	downURL := down.url()
	down.b.Close()
	c := newClient(t, mqttclient.Config{BrokerURL: downURL, FailoverURLs: []string{up}, ClientID: "cam-1",
		Subscriptions: []mqttclient.Subscription{{Filter: "x/y", Handler: func(mqttclient.Message) {}}}})
	connect(t, c)
	if _, err := mqttclient.New(mqttclient.Config{BrokerURL: up, FailoverURLs: []string{"http://x"}, ClientID: "c"}); err == nil {
		t.Fatal("a bad failover URL was accepted")
	}
}
