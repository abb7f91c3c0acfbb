package mqttdial_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/rs/zerolog"

	"github.com/clipgate/clipgate/clipgatetest"
	"github.com/clipgate/clipgate/internal/mqttdial"
)

// startBroker starts a mochi broker on addr with the given authentication hook.
func startBroker(t *testing.T, addr string, hook mochi.Hook) {
	t.Helper()
	srv := mochi.New(&mochi.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := srv.AddHook(hook, nil); err != nil {
		t.Fatal(err)
	}
	if err := srv.AddListener(listeners.NewTCP(listeners.Config{ID: "t", Address: addr})); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
}

// denyHook refuses every login.
type denyHook struct{ mochi.HookBase }

func (denyHook) ID() string { return "deny" }
func (denyHook) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}
func (denyHook) OnConnectAuthenticate(*mochi.Client, packets.Packet) bool { return false }
func (denyHook) OnACLCheck(*mochi.Client, string, bool) bool              { return false }

func newClient(t *testing.T, addr string) mqtt.Client {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("svc:test").
		SetUsername("svc").SetPassword("pw").SetProtocolVersion(4).SetConnectRetry(false).
		SetAutoReconnect(false).SetConnectTimeout(5 * time.Second))
	t.Cleanup(func() { c.Disconnect(0) })
	return c
}

// failures is a log writer that signals each failed attempt.
type failures struct {
	mu   sync.Mutex
	n    int
	once sync.Once
	ch   chan struct{}
}

func (f *failures) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("cannot connect to the broker")) {
		f.mu.Lock()
		f.n++
		f.mu.Unlock()
		f.once.Do(func() { close(f.ch) })
	}
	return len(p), nil
}

func (f *failures) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

// TestConnectWaitsForBroker starts connecting before the broker listens: the first
// attempts fail, and Connect succeeds once the broker is up.
func TestConnectWaitsForBroker(t *testing.T) {
	t.Parallel()
	addr := clipgatetest.HoldAddr(t)
	client := newClient(t, addr)
	fails := &failures{ch: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	type result struct {
		tok *mqtt.ConnectToken
		err error
	}
	done := make(chan result, 1)
	go func() {
		tok, err := mqttdial.Connect(ctx, client, zerolog.New(fails))
		done <- result{tok, err}
	}()
	select {
	case <-fails.ch: // an attempt failed: nothing listens yet
	case r := <-done:
		t.Fatalf("Connect returned before the broker started: %v", r.err)
	}
	startBroker(t, addr, new(auth.AllowHook))
	r := <-done
	if r.err != nil || r.tok == nil || !client.IsConnectionOpen() {
		t.Fatalf("Connect = %v, %v; connected %v", r.tok, r.err, client.IsConnectionOpen())
	}
}

// TestConnectRefused: a refused login fails at once, not at the context's end.
func TestConnectRefused(t *testing.T) {
	t.Parallel()
	addr := clipgatetest.HoldAddr(t)
	startBroker(t, addr, new(denyHook))
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	fails := &failures{ch: make(chan struct{})}
	_, err := mqttdial.Connect(ctx, newClient(t, addr), zerolog.New(fails))
	if !errors.Is(err, mqttdial.ErrRefused) || ctx.Err() != nil || fails.count() != 0 {
		t.Fatalf("Connect = %v (context %v, %d retries); want mqttdial.ErrRefused at once", err, ctx.Err(), fails.count())
	}
}

// TestConnectGivesUp: without a broker, Connect ends with the context, saying why.
func TestConnectGivesUp(t *testing.T) {
	t.Parallel()
	addr := clipgatetest.HoldAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	fails := &failures{ch: make(chan struct{})}
	go func() {
		<-fails.ch
		cancel()
	}()
	_, err := mqttdial.Connect(ctx, newClient(t, addr), zerolog.New(fails))
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "last attempt") {
		t.Fatalf("Connect = %v; want the context's error with the last attempt's", err)
	}
}
