package broker

import (
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/testutil"
	"github.com/prometheus/client_golang/prometheus"
)

// fakeClock is a clock the tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// sysStats reads /sys over HTTP, as an operator would.
func (e *testEnv) sysStats() Stats {
	e.t.Helper()
	resp, err := http.Get("http://" + e.b.HTTPAddr() + "/sys")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var s Stats
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		e.t.Fatal(err)
	}
	return s
}

// 12.4: a captured device password connects once. The second use is refused (4), a fresh
// password connects, and /sys counts the replay.
func TestReplayedPasswordRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	pw := e.devicePassword("cam-1")
	c := e.connect(clientOpts{clientID: "cam-1", username: "cam-1", password: pw})
	c.Disconnect(0)
	if _, code, err := e.tryConnect(clientOpts{clientID: "cam-1", username: "cam-1", password: pw}); err == nil || code != 4 {
		t.Fatalf("replayed password: CONNACK %d, %v; want 4", code, err)
	}
	// The same password while the first connection is still up: refused too.
	pw2 := e.devicePassword("cam-1")
	e.connect(clientOpts{clientID: "cam-1", username: "cam-1", password: pw2})
	if _, code, err := e.tryConnect(clientOpts{clientID: "cam-1", username: "cam-1", password: pw2}); err == nil || code != 4 {
		t.Fatalf("password in use: CONNACK %d, %v; want 4", code, err)
	}
	if n := e.sysStats().PasswordReplays; n != 2 {
		t.Fatalf("/sys password_replays = %d, want 2", n)
	}
	if n := abuseCount(t, e.b, "password_replay"); n != 2 {
		t.Fatalf(`clipgate_broker_abuse_refusals_total{limit="password_replay"} = %v, want 2`, n)
	}
	if _, ok := e.b.Connected("cam-1"); !ok {
		t.Fatal("the legitimate connection was taken over by a replay")
	}
}

// 12.4: a device whose clock is 2 h off connects (a wide password), and after it has
// learned the server time its synced password connects too; a synced password 10 minutes
// off does not, however fresh. Broker time is a fake clock.
func TestPasswordClockSkew(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	e := newEnv(t, func(c *Config) { c.Now = clock.Now })
	key, err := identity.NewDeviceKey(e.fleet, "cam-skew")
	if err != nil {
		t.Fatal(err)
	}
	for _, skew := range []time.Duration{-2 * time.Hour, 2 * time.Hour} {
		c := e.connect(clientOpts{clientID: "cam-skew", username: "cam-skew",
			password: key.Password(clock.Now().Add(skew))})
		c.Disconnect(0)
	}
	c := e.connect(clientOpts{clientID: "cam-skew", username: "cam-skew",
		password: key.SyncedPassword(clock.Now().Add(3 * time.Second))})
	c.Disconnect(0)
	_, code, err := e.tryConnect(clientOpts{clientID: "cam-skew", username: "cam-skew",
		password: key.SyncedPassword(clock.Now().Add(-10 * time.Minute))})
	if err == nil || code != 4 {
		t.Fatalf("synced password 10 min off: CONNACK %d, %v; want 4", code, err)
	}
	// A day later the wide passwords of that day are forgotten but still refused, by time.
	clock.Add(25 * time.Hour)
	e.connect(clientOpts{clientID: "cam-skew", username: "cam-skew",
		password: key.Password(clock.Now().Add(-2 * time.Hour))})
}

// 12.5: a device may retain its own status only. A retained upload event (QoS 1 or 0)
// ends its connection, nothing is retained, and a consumer that subscribes later gets only
// the status.
func TestDeviceRetainsOnlyStatus(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	for _, qos := range []byte{1, 0} {
		c := e.device("cam-ret")
		c.publishDone(t, c.Publish(e.scheme.Status("cam-ret"), 1, true, "online"), "status")
		tok := c.Publish(e.scheme.UploadEvent("cam-ret"), qos, true, `{"retained":"event"}`)
		tok.WaitTimeout(5 * time.Second)
		c.waitLost(t)
	}
	if n := e.sysStats().RetainRefused; n != 2 {
		t.Fatalf("/sys retain_refused = %d, want 2", n)
	}
	late := e.service("consumer", "late")
	for _, f := range []string{e.scheme.EventFilter(""), e.scheme.StatusFilter("")} {
		if code := late.subscribe(t, f, 1); code != 1 {
			t.Fatalf("subscribe %s: SUBACK %#x", f, code)
		}
	}
	late.waitMessage(t, e.scheme.Status("cam-ret"), "online")
	// A marker published after the subscriptions: everything retained has arrived before it.
	dev := e.device("cam-ret")
	dev.publish(t, e.scheme.UploadEvent("cam-ret"), 1, "marker")
	late.waitMessage(t, e.scheme.UploadEvent("cam-ret"), "marker")
	if got := late.payloads(e.scheme.UploadEvent("cam-ret")); len(got) != 1 {
		t.Fatalf("late consumer got events %q, want only the marker", got)
	}
}

// 12.5: event names are the protocol's: a device publishing on events/motion is refused
// (QoS 1: disconnected) and no consumer receives it.
func TestUnknownEventNameRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	cons := e.service("consumer", "all")
	if code := cons.subscribe(t, e.scheme.Root()+"/devices/+/events/+", 1); code != 1 {
		t.Fatalf("subscribe: SUBACK %#x", code)
	}
	c := e.device("cam-ev")
	for _, name := range []string{"motion", "Upload", "upload2", "x"} {
		tok := c.Publish(e.scheme.Root()+"/devices/cam-ev/events/"+name, 1, false, name)
		tok.WaitTimeout(5 * time.Second)
		c.waitLost(t)
		c = e.device("cam-ev")
	}
	c.publish(t, e.scheme.UploadEvent("cam-ev"), 1, "marker")
	cons.waitMessage(t, e.scheme.UploadEvent("cam-ev"), "marker")
	if n := cons.count(); n != 1 {
		t.Fatalf("consumer got %d messages, want only the marker", n)
	}
}

// dialFrom opens a TCP connection to the broker from a loopback source address.
func (e *testEnv) dialFrom(t testing.TB, ip string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	conn, err := d.Dial("tcp", e.b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	return conn
}

// loginFrom sends a CONNECT from source ip and returns the CONNACK code; the connection
// is closed after.
func (e *testEnv) loginFrom(t testing.TB, ip string, c connectPacket) byte {
	t.Helper()
	conn := e.dialFrom(t, ip)
	defer conn.Close()
	if _, err := conn.Write(c.encode()); err != nil {
		t.Fatal(err)
	}
	return readConnack(t, conn)
}

func serviceLogin(user, password string) connectPacket {
	return connectPacket{clientID: unique(user + ":"), username: user, password: password, clean: true, keepalive: 30}
}

// 12.6: failed service logins from one source address are answered later and later, and
// after BlockAfter of them the address is blocked for service logins (3, server
// unavailable) even with the right password, without a password check, until BlockFor
// has passed. Devices from that address and other addresses are not affected. The clock
// is fake.
func TestLoginThrottleBlocksSource(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	e := newEnv(t, func(c *Config) {
		c.Now = clock.Now
		c.Limits.FailureDelay, c.Limits.MaxFailureDelay = time.Millisecond, 2*time.Millisecond
		c.Limits.BlockAfter, c.Limits.BlockFor = 3, time.Minute
	})
	const attacker, other = "127.0.0.21", "127.0.0.22"
	for i := range 3 {
		if code := e.loginFrom(t, attacker, serviceLogin("admin", "guess-"+strconv.Itoa(i))); code != 4 {
			t.Fatalf("guess %d: CONNACK %d, want 4", i, code)
		}
	}
	if code := e.loginFrom(t, attacker, serviceLogin("admin", passwordOf("admin"))); code != 3 {
		t.Fatalf("right password from the blocked address: CONNACK %d, want 3", code)
	}
	dev := connectPacket{clientID: "cam-thr", username: "cam-thr", password: e.devicePassword("cam-thr"), clean: true, keepalive: 30}
	if code := e.loginFrom(t, attacker, dev); code != 0 {
		t.Fatalf("device from the blocked address: CONNACK %d, want 0", code)
	}
	if code := e.loginFrom(t, other, serviceLogin("consumer", passwordOf("consumer"))); code != 0 {
		t.Fatalf("another address: CONNACK %d, want 0", code)
	}
	st := e.sysStats()
	if st.LoginsDelayed != 3 || st.LoginsBlocked != 1 {
		t.Fatalf("/sys logins_delayed %d, logins_blocked %d; want 3 and 1", st.LoginsDelayed, st.LoginsBlocked)
	}
	clock.Add(time.Minute + time.Second)
	if code := e.loginFrom(t, attacker, serviceLogin("admin", passwordOf("admin"))); code != 0 {
		t.Fatalf("after the block: CONNACK %d, want 0", code)
	}
}

// 12.6: guesses at one service username from many addresses block the username, but not
// for an address it logged in from before, so an attack cannot lock a service out.
// Failed device logins throttle nothing: their passwords are MACs, not guessable.
func TestLoginThrottleBlocksUsername(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	e := newEnv(t, func(c *Config) {
		c.Now = clock.Now
		c.Limits.FailureDelay, c.Limits.MaxFailureDelay = time.Millisecond, 2*time.Millisecond
		c.Limits.BlockAfter, c.Limits.BlockFor = 3, time.Minute
	})
	const home = "127.0.0.31"
	if code := e.loginFrom(t, home, serviceLogin("worker", passwordOf("worker"))); code != 0 {
		t.Fatalf("worker from home: CONNACK %d", code)
	}
	for i, src := range []string{"127.0.0.32", "127.0.0.33", "127.0.0.34"} {
		if code := e.loginFrom(t, src, serviceLogin("worker", "guess")); code != 4 {
			t.Fatalf("guess %d: CONNACK %d, want 4", i, code)
		}
		dev := connectPacket{clientID: "cam-u", username: "cam-u", password: "v1.1.AAAAAAAAAAAAAAAA." + strings.Repeat("A", 43), clean: true, keepalive: 30}
		if code := e.loginFrom(t, src, dev); code != 4 {
			t.Fatalf("forged device password %d: CONNACK %d, want 4", i, code)
		}
	}
	if code := e.loginFrom(t, "127.0.0.35", serviceLogin("worker", passwordOf("worker"))); code != 3 {
		t.Fatalf("worker from a new address while blocked: CONNACK %d, want 3", code)
	}
	if code := e.loginFrom(t, home, serviceLogin("worker", passwordOf("worker"))); code != 0 {
		t.Fatalf("worker from home while blocked elsewhere: CONNACK %d, want 0", code)
	}
	dev := connectPacket{clientID: "cam-u", username: "cam-u", password: e.devicePassword("cam-u"), clean: true, keepalive: 30}
	if code := e.loginFrom(t, "127.0.0.36", dev); code != 0 {
		t.Fatalf("device after forged passwords for it: CONNACK %d, want 0", code)
	}
}

// 12.6: the bcrypt gate runs at most its concurrency at once, at most perSource for one
// source, and refuses what cannot start within its wait.
func TestBcryptGate(t *testing.T) {
	t.Parallel()
	g := newBcryptGate(2, 1, time.Millisecond)
	if !g.acquire("a") {
		t.Fatal("first slot refused")
	}
	if g.acquire("a") {
		t.Fatal("a second slot for the same source")
	}
	if !g.acquire("b") {
		t.Fatal("second slot refused")
	}
	if g.acquire("c") {
		t.Fatal("a third slot with a concurrency of 2")
	}
	g.release("a")
	if !g.acquire("c") {
		t.Fatal("freed slot refused")
	}
	g.release("b")
	g.release("c")
	if len(g.bySource) != 0 || len(g.slots) != 0 {
		t.Fatalf("gate not empty after releases: %v, %d", g.bySource, len(g.slots))
	}
}

// 12.7: connections per client ID: beyond the burst a CONNECT is refused (3) until the
// bucket refills on the (fake) clock; another client ID is not affected.
func TestClientConnectRate(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	e := newEnv(t, func(c *Config) {
		c.Now = clock.Now
		c.Limits.ClientConnectRate, c.Limits.ClientConnectBurst = 60, 2 // one a second
	})
	login := func(id string) byte {
		return e.loginFrom(t, "127.0.0.41", connectPacket{clientID: id, username: id, password: e.devicePassword(id), clean: true, keepalive: 30})
	}
	for i := range 2 {
		if code := login("cam-rate"); code != 0 {
			t.Fatalf("connection %d: CONNACK %d", i, code)
		}
	}
	if code := login("cam-rate"); code != 3 {
		t.Fatalf("third connection: CONNACK %d, want 3", code)
	}
	if code := login("cam-other"); code != 0 {
		t.Fatalf("another client ID: CONNACK %d, want 0", code)
	}
	if n := e.sysStats().ClientRateLimited; n != 1 {
		t.Fatalf("/sys client_rate_limited = %d, want 1", n)
	}
	clock.Add(time.Second)
	if code := login("cam-rate"); code != 0 {
		t.Fatalf("a second later: CONNACK %d, want 0", code)
	}
}

// 12.7: connections per source address: beyond the burst new sockets are closed at once;
// another address still connects.
func TestSourceConnectRate(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	e := newEnv(t, func(c *Config) {
		c.Now = clock.Now
		c.Limits.SourceConnectRate, c.Limits.SourceConnectBurst = 1, 3
	})
	for i := range 3 {
		if code := e.loginFrom(t, "127.0.0.51", serviceLogin("admin", passwordOf("admin"))); code != 0 {
			t.Fatalf("connection %d: CONNACK %d", i, code)
		}
	}
	expectClosed(t, e.dialFrom(t, "127.0.0.51"))
	if code := e.loginFrom(t, "127.0.0.52", serviceLogin("admin", passwordOf("admin"))); code != 0 {
		t.Fatalf("another address: CONNACK %d, want 0", code)
	}
	if n := e.sysStats().SourceRateLimited; n != 1 {
		t.Fatalf("/sys source_rate_limited = %d, want 1", n)
	}
	clock.Add(time.Second)
	if code := e.loginFrom(t, "127.0.0.51", serviceLogin("admin", passwordOf("admin"))); code != 0 {
		t.Fatalf("a second later: CONNACK %d, want 0", code)
	}
}

// 12.7: sockets that have not sent CONNECT, per source address: 300 sockets from one
// address hold at most the limit; the rest are closed at once, while other addresses
// connect; once the held sockets close, the address may connect again.
func TestPendingSocketsPerSource(t *testing.T) {
	t.Parallel()
	const limit, sockets = 50, 300
	e := newEnv(t, func(c *Config) {
		c.Limits.MaxPendingPerSource = limit
		c.HandshakeTimeout = time.Hour // the held sockets stay for the whole test
	})
	var held []net.Conn
	closed := 0
	for range sockets {
		conn := e.dialFrom(t, "127.0.0.61")
		held = append(held, conn)
	}
	// The broker has accepted every socket, and closed (before counting) those beyond the
	// limit: a read from them ends at once, a read from the others waits.
	testutil.WaitFor(t, "sockets accepted", func() bool {
		st := e.b.Stats()
		return st.PendingRefused+st.PendingConnections == sockets
	})
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, conn := range held {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = conn.SetReadDeadline(time.Now().Add(time.Second))
			var b [1]byte
			_, err := conn.Read(b[:])
			if ne, ok := err.(net.Error); err != nil && !(ok && ne.Timeout()) {
				mu.Lock()
				closed++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if closed != sockets-limit {
		t.Fatalf("%d sockets closed, want %d", closed, sockets-limit)
	}
	st := e.sysStats()
	if st.PendingRefused != sockets-limit || st.PendingConnections != limit {
		t.Fatalf("/sys pending_refused %d, pending_connections %d; want %d and %d", st.PendingRefused, st.PendingConnections, sockets-limit, limit)
	}
	for i := range 5 {
		if code := e.loginFrom(t, "127.0.0.62", serviceLogin("admin", passwordOf("admin"))); code != 0 {
			t.Fatalf("other address %d: CONNACK %d", i, code)
		}
	}
	for _, conn := range held {
		conn.Close()
	}
	testutil.WaitFor(t, "pending sockets closed", func() bool { return e.b.Stats().PendingConnections == 0 })
	if code := e.loginFrom(t, "127.0.0.61", serviceLogin("admin", passwordOf("admin"))); code != 0 {
		t.Fatalf("the address after its sockets closed: CONNACK %d, want 0", code)
	}
}

// 12.7: subscriptions per client: past the limit a new filter is refused (0x80); renewing
// a held one is not a new subscription.
func TestSubscriptionLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.Limits.MaxSubscriptions = 3 })
	c := e.service("admin", "subs")
	root := e.scheme.Root()
	for i := range 3 {
		if code := c.subscribe(t, root+"/x/"+strconv.Itoa(i), 1); code != 1 {
			t.Fatalf("subscription %d: SUBACK %#x", i, code)
		}
	}
	if code := c.subscribe(t, root+"/x/3", 1); code != 0x80 {
		t.Fatalf("fourth subscription: SUBACK %#x, want 0x80", code)
	}
	if code := c.subscribe(t, root+"/x/1", 0); code != 0 {
		t.Fatalf("renewed subscription: SUBACK %#x, want 0", code)
	}
	if n := e.sysStats().SubscriptionsRefused; n != 1 {
		t.Fatalf("/sys subscriptions_refused = %d, want 1", n)
	}
}

// The limits' tables are bounded: past MaxTracked a new key is not tracked (and counted),
// until a sweep (at most once a second) finds idle entries to drop.
func TestLimitTablesBounded(t *testing.T) {
	t.Parallel()
	var untracked atomic.Int64
	now := time.Unix(1_700_000_000, 0)
	r := newRates(1, 1, 2, &untracked) // one a second, burst 1, two keys
	for _, k := range []string{"a", "b"} {
		if !r.allow(k, now) || r.allow(k, now) {
			t.Fatalf("%s: want one connection, then a refusal", k)
		}
	}
	if !r.allow("c", now) || !r.allow("c", now) || untracked.Load() != 2 || len(r.m) != 2 {
		t.Fatalf("full table: c untracked %d times, %d entries; want 2 and 2", untracked.Load(), len(r.m))
	}
	later := now.Add(2 * time.Second) // a and b have refilled: idle
	if !r.allow("c", later) || r.allow("c", later) || len(r.m) != 1 {
		t.Fatalf("after the sweep: %d entries, c not limited; want 1", len(r.m))
	}

	cfg := LimitsConfig{FailureDelay: time.Second, MaxFailureDelay: 4 * time.Second, BlockAfter: 3, BlockFor: time.Minute, MaxTracked: 1}
	th := newThrottle(cfg, &untracked)
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		if d := th.fail("x", now); d != want {
			t.Fatalf("failure %d: held back %v, want %v", i+1, d, want)
		}
	}
	if b := th.blocked("x", now); b != time.Minute {
		t.Fatalf("blocked for %v, want 1m", b)
	}
	if d := th.fail("y", now); d != time.Second || untracked.Load() != 3 || th.blocked("y", now) != 0 {
		t.Fatalf("untracked key: held back %v, untracked %d", d, untracked.Load())
	}
	// After the block and a quiet BlockFor, x starts from zero and its entry may go.
	later = now.Add(3 * time.Minute)
	if th.blocked("x", later) != 0 {
		t.Fatal("still blocked after BlockFor")
	}
	if d := th.fail("y", later); d != time.Second || len(th.m) != 1 || th.m["y"] == nil {
		t.Fatalf("after the sweep: held back %v, table %v", d, th.m)
	}
}

// abuseCount is the broker's abuse-refusal counter of one limit, as Prometheus scrapes it.
func abuseCount(t *testing.T, b *Broker, limit string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(b.Collector()); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "clipgate_broker_abuse_refusals_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "limit" && l.GetValue() == limit {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no clipgate_broker_abuse_refusals_total{limit=%q}", limit)
	return 0
}
