package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/broker"
	"github.com/clipgate/clipgate/internal/inproc"
)

// The per-source-address limits of issue 12 point 7 against the whole stack: the attacker
// and a bystander device connect from different loopback addresses (127.0.0.0/8 is all
// loopback on Linux), bound with net.Dialer.LocalAddr. The stack's own token worker
// connects from 127.0.0.1, which neither test uses.

// sourceDialer dials from the loopback address ip (any port).
func sourceDialer(ip string) *net.Dialer {
	return &net.Dialer{Timeout: mqttTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
}

// stoppedClock is a clock that moves only when told to, so that a token bucket refills
// only when the test says so, however slow the machine.
type stoppedClock struct{ t atomic.Int64 }

func newStoppedClock(t time.Time) *stoppedClock {
	c := &stoppedClock{}
	c.t.Store(t.UnixNano())
	return c
}

func (c *stoppedClock) Now() time.Time      { return time.Unix(0, c.t.Load()) }
func (c *stoppedClock) Add(d time.Duration) { c.t.Add(int64(d)) }

// brokerSys reads the broker's counters from its /sys endpoint, as an operator does.
func brokerSys(ctx context.Context, t testing.TB, stack *inproc.Stack) broker.Stats {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+stack.BrokerHTTPAddr()+"/sys", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /sys: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /sys: %s", resp.Status)
	}
	var st broker.Stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("GET /sys: %v", err)
	}
	return st
}

// uploadFrom uploads a clip with kit and checks the object with the admin's key.
func uploadFrom(ctx context.Context, t *testing.T, stack *inproc.Stack, kit *devicekit.Kit, name string) {
	t.Helper()
	clip, err := writeClip(t.TempDir(), name, 1500)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := kit.Upload(ctx, devicekit.Clip{Path: clip.path, RecordedAt: time.Now()})
	if err != nil {
		t.Fatalf("upload %s: %v", name, err)
	}
	if err := checkObject(stack.AdminBucket(t), ev.Key, clip.data, "Normal"); err != nil {
		t.Error(err)
	}
}

// TestAbuseSourceConnectRate (issue 12 point 7): valid devices, each within its own
// client-ID rate, connecting from one source address are cut off past the address's
// burst: the broker closes their sockets before reading a CONNECT (no CONNACK, no
// authentication) and counts them in /sys. A device from another address connects and
// uploads meanwhile, as does a device the busy address was refused for. The address
// connects again once its bucket refills on the broker's clock.
func TestAbuseSourceConnectRate(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, time.Minute)
	clk := newStoppedClock(time.Now())
	const burst = 3
	stack := inproc.New(t, inproc.Options{BrokerConfig: func(c *broker.Config) {
		c.Now = clk.Now
		c.Limits.SourceConnectRate, c.Limits.SourceConnectBurst = 1, burst // one a second
	}})
	const attacker, other = "127.0.0.71", "127.0.0.72"
	connectFrom := func(src, id string) error {
		c, err := connectMQTTVia(ctx, sourceDialer(src), stack.BrokerURL(), id, id, stack.DeviceKey(id).Password(time.Now()))
		if err == nil {
			c.close()
		}
		return err
	}
	dev := func(i int) string { return fmt.Sprintf("cam-abuse-src-%d", i) }

	for i := range burst {
		if err := connectFrom(attacker, dev(i)); err != nil {
			t.Fatalf("device %d from %s: %v", i, attacker, err)
		}
	}
	const refused = 3
	for i := burst; i < burst+refused; i++ {
		if err := connectFrom(attacker, dev(i)); err == nil {
			t.Fatalf("device %d from %s past the address's burst of %d: connected", i, attacker, burst)
		}
	}
	faultPoll(ctx, t, "the refused sockets counted", func() bool { return stack.BrokerStats().SourceRateLimited >= refused })

	kit := newKit(ctx, t, stack, "cam-abuse-src-bystander", func(c *devicekit.Config) { c.Dialer = sourceDialer(other) })
	uploadFrom(ctx, t, stack, kit, "bystander.mp4")
	if err := connectFrom(other, dev(burst)); err != nil {
		t.Fatalf("device %d, refused from %s, from %s: %v", burst, attacker, other, err)
	}

	st := brokerSys(ctx, t, stack)
	if st.SourceRateLimited != refused || st.AuthFailures != 0 {
		t.Errorf("/sys: source_rate_limited %d, auth_failures %d; want %d and 0 (closed before any CONNECT)", st.SourceRateLimited, st.AuthFailures, refused)
	}

	clk.Add(time.Second)
	if err := connectFrom(attacker, dev(burst+1)); err != nil {
		t.Fatalf("from %s a second later: %v", attacker, err)
	}
	if err := connectFrom(attacker, dev(burst+2)); err == nil {
		t.Fatalf("from %s a second later, a second connection: connected, want refused", attacker)
	}
	faultPoll(ctx, t, "the last refusal counted", func() bool { return stack.BrokerStats().SourceRateLimited >= refused+1 })
	if n := brokerSys(ctx, t, stack).SourceRateLimited; n != refused+1 {
		t.Errorf("/sys: source_rate_limited %d, want %d", n, refused+1)
	}
}

// sockResult is what a raw socket read first: a packet, or the error that ended it.
type sockResult struct {
	i   int
	p   packets.ControlPacket
	err error
}

// TestAbusePendingSocketsPerSource (issue 12 point 7): sockets that never send CONNECT,
// from one source address: the broker holds at most its limit of them and closes the
// others at once, as it does a device's connection from that address while they are held;
// they are counted in /sys. A device from another address connects and uploads
// meanwhile. The held sockets are still open: each then logs in as a device (CONNACK 0),
// which ends their pending state, and the address connects again.
func TestAbusePendingSocketsPerSource(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, time.Minute)
	const limit, sockets = 3, 8
	stack := inproc.New(t, inproc.Options{BrokerConfig: func(c *broker.Config) {
		c.Limits.MaxPendingPerSource = limit
		c.HandshakeTimeout = time.Hour // the held sockets stay for the whole test
	}})
	const attacker, other = "127.0.0.81", "127.0.0.82"

	conns := make([]net.Conn, sockets)
	results := make(chan sockResult, sockets)
	for i := range conns {
		c, err := sourceDialer(attacker).DialContext(ctx, "tcp", stack.BrokerAddr())
		if err != nil {
			t.Fatalf("socket %d: %v", i, err)
		}
		t.Cleanup(func() { c.Close() })
		conns[i] = c
		go func() {
			p, err := packets.ReadPacket(c)
			results <- sockResult{i, p, err}
		}()
	}
	// Until the test writes a CONNECT, only a socket the broker closed reports.
	open := map[int]bool{}
	for i := range sockets {
		open[i] = true
	}
	for n := 0; n < sockets-limit; n++ {
		select {
		case r := <-results:
			if r.err == nil {
				t.Fatalf("socket %d read a %v without sending anything", r.i, r.p)
			}
			delete(open, r.i)
		case <-ctx.Done():
			t.Fatalf("%d of %d sockets closed by the broker, want %d: %v", n, sockets, sockets-limit, ctx.Err())
		}
	}

	// A device from the attacker's address is cut off too, while the sockets are held.
	const victim = "cam-abuse-pending-victim"
	if c, err := connectMQTTVia(ctx, sourceDialer(attacker), stack.BrokerURL(), victim, victim, stack.DeviceKey(victim).Password(time.Now())); err == nil {
		c.close()
		t.Fatalf("a device from %s while %d sockets are held: connected, want refused", attacker, limit)
	}
	faultPoll(ctx, t, "the refused sockets counted", func() bool { return stack.BrokerStats().PendingRefused >= sockets-limit+1 })
	st := brokerSys(ctx, t, stack)
	if st.PendingRefused != sockets-limit+1 || st.PendingConnections != limit {
		t.Errorf("/sys: pending_refused %d, pending_connections %d; want %d and %d", st.PendingRefused, st.PendingConnections, sockets-limit+1, limit)
	}

	kit := newKit(ctx, t, stack, "cam-abuse-pending-bystander", func(c *devicekit.Config) { c.Dialer = sourceDialer(other) })
	uploadFrom(ctx, t, stack, kit, "bystander.mp4")

	// The held sockets were never closed: each logs in now.
	for i := range open {
		id := fmt.Sprintf("cam-abuse-pending-%d", i)
		cp := packets.NewControlPacket(packets.Connect).(*packets.ConnectPacket)
		cp.ProtocolName, cp.ProtocolVersion, cp.CleanSession, cp.Keepalive = "MQTT", 4, true, 30
		cp.ClientIdentifier, cp.UsernameFlag, cp.Username = id, true, id
		cp.PasswordFlag, cp.Password = true, []byte(stack.DeviceKey(id).Password(time.Now()))
		if err := cp.Write(conns[i]); err != nil {
			t.Fatalf("held socket %d: CONNECT: %v", i, err)
		}
	}
	for range open {
		select {
		case r := <-results:
			ack, ok := r.p.(*packets.ConnackPacket)
			if !open[r.i] || r.err != nil || !ok || ack.ReturnCode != packets.Accepted {
				t.Fatalf("held socket %d (held: %v): read %v, %v; want CONNACK 0", r.i, open[r.i], r.p, r.err)
			}
		case <-ctx.Done():
			t.Fatalf("waiting for the held sockets' CONNACKs: %v", ctx.Err())
		}
	}
	// The broker releases a socket's pending state before it sends the CONNACK.
	if n := stack.BrokerStats().PendingConnections; n != 0 {
		t.Errorf("pending connections after the held sockets logged in: %d, want 0", n)
	}
	c, err := connectMQTTVia(ctx, sourceDialer(attacker), stack.BrokerURL(), victim, victim, stack.DeviceKey(victim).Password(time.Now()))
	if err != nil {
		t.Fatalf("a device from %s after its sockets logged in: %v", attacker, err)
	}
	c.close()
}
