package broker

import (
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/clipgate/clipgate/internal/identity"
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
	key := identity.DeriveDeviceKey(e.fleet, "cam-skew")
	for _, skew := range []time.Duration{-2 * time.Hour, 2 * time.Hour} {
		c := e.connect(clientOpts{clientID: "cam-skew", username: "cam-skew",
			password: identity.MQTTPassword(key, "cam-skew", clock.Now().Add(skew))})
		c.Disconnect(0)
	}
	c := e.connect(clientOpts{clientID: "cam-skew", username: "cam-skew",
		password: identity.SyncedMQTTPassword(key, "cam-skew", clock.Now().Add(3*time.Second))})
	c.Disconnect(0)
	_, code, err := e.tryConnect(clientOpts{clientID: "cam-skew", username: "cam-skew",
		password: identity.SyncedMQTTPassword(key, "cam-skew", clock.Now().Add(-10*time.Minute))})
	if err == nil || code != 4 {
		t.Fatalf("synced password 10 min off: CONNACK %d, %v; want 4", code, err)
	}
	// A day later the wide passwords of that day are forgotten but still refused, by time.
	clock.Add(25 * time.Hour)
	e.connect(clientOpts{clientID: "cam-skew", username: "cam-skew",
		password: identity.MQTTPassword(key, "cam-skew", clock.Now().Add(-2*time.Hour))})
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
