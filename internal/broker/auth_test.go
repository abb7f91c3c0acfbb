package broker

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/testutil"
	"github.com/clipgate/clipgate/topics"
)

// TestAuthentication checks who may connect, as the CONNACK return code the client sees:
// 0 accepted, 2 identifier rejected, 4 bad username or password, 5 not authorized.
func TestAuthentication(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Revocations = identity.NewRevocations("cam-revoked")
	})
	otherFleet, err := identity.NewFleetKeyring()
	if err != nil {
		t.Fatal(err)
	}
	pw := e.devicePassword
	devOpts := func(id string) clientOpts { return clientOpts{clientID: id, username: id, password: pw(id)} }
	// A session held by the consumer account, for the takeover-by-another-account case.
	e.connect(clientOpts{clientID: "shared:1", username: "consumer", password: passwordOf("consumer")})

	cases := map[string]struct {
		o    clientOpts
		want byte
	}{
		"device":                         {devOpts("cam-ok"), 0},
		"device with dots":               {devOpts("site.cam_01-a"), 0},
		"other device's password":        {clientOpts{clientID: "cam-a", username: "cam-a", password: pw("cam-b")}, 4},
		"other fleet's password":         {clientOpts{clientID: "cam-a", username: "cam-a", password: devicePassword(otherFleet, "cam-a", time.Now())}, 4},
		"expired password":               {clientOpts{clientID: "cam-a", username: "cam-a", password: devicePassword(e.fleet, "cam-a", time.Now().Add(-25*time.Hour))}, 4},
		"future password":                {clientOpts{clientID: "cam-a", username: "cam-a", password: devicePassword(e.fleet, "cam-a", time.Now().Add(25*time.Hour))}, 4},
		"malformed device password":      {clientOpts{clientID: "cam-a", username: "cam-a", password: "v1.garbage"}, 4},
		"truncated device password":      {clientOpts{clientID: "cam-a", username: "cam-a", password: pw("cam-a")[:20]}, 4},
		"client ID is not username":      {clientOpts{clientID: "cam-b", username: "cam-a", password: pw("cam-a")}, 2},
		"empty client ID device":         {clientOpts{clientID: "", username: "cam-a", password: pw("cam-a")}, 2},
		"revoked device":                 {devOpts("cam-revoked"), 5},
		"invalid device ID":              {clientOpts{clientID: "cam/a", username: "cam/a", password: "v1.1.abc"}, 4},
		"no credentials":                 {clientOpts{clientID: "cam-a"}, 4},
		"username only":                  {clientOpts{clientID: "cam-a", username: "cam-a"}, 4},
		"unknown service":                {clientOpts{clientID: "nobody:1", username: "nobody", password: "whatever-1"}, 4},
		"service wrong password":         {clientOpts{clientID: "worker:1", username: "worker", password: "wrong"}, 4},
		"service":                        {clientOpts{clientID: "worker:1", username: "worker", password: passwordOf("worker")}, 0},
		"service assigned ID":            {clientOpts{clientID: "", username: "admin", password: passwordOf("admin")}, 0},
		"service device-form ID":         {clientOpts{clientID: "worker-1", username: "worker", password: passwordOf("worker")}, 2},
		"service named like device":      {clientOpts{clientID: "cam-svc:1", username: "cam-svc", password: passwordOf("cam-svc")}, 0},
		"device-named service as itself": {clientOpts{clientID: "cam-svc", username: "cam-svc", password: passwordOf("cam-svc")}, 2},
		"another account's session":      {clientOpts{clientID: "shared:1", username: "admin", password: passwordOf("admin")}, 2},
		"huge password":                  {clientOpts{clientID: "worker:2", username: "worker", password: strings.Repeat("x", 60000)}, 4},
		"device will on own status": {clientOpts{clientID: "cam-w1", username: "cam-w1", password: pw("cam-w1"),
			will: &[2]string{"clipgate/v1/devices/cam-w1/status", "offline"}}, 0},
		"device will on other's status": {clientOpts{clientID: "cam-w2", username: "cam-w2", password: pw("cam-w2"),
			will: &[2]string{"clipgate/v1/devices/cam-w1/status", "offline"}}, 5},
		"device retained will on own event": {clientOpts{clientID: "cam-w3", username: "cam-w3", password: pw("cam-w3"),
			will: &[2]string{"clipgate/v1/devices/cam-w3/events/upload", "gone"}}, 5},
		"device will on $SYS": {clientOpts{clientID: "cam-w3", username: "cam-w3", password: pw("cam-w3"),
			will: &[2]string{"$SYS/broker/version", "x"}}, 5},
	}
	t.Run("cases", func(t *testing.T) {
		for name, c := range cases {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				cl, code, err := e.tryConnect(c.o)
				if code != c.want {
					t.Fatalf("CONNACK %d (%v), want %d", code, err, c.want)
				}
				if c.want == 0 && (err != nil || !cl.IsConnected()) {
					t.Fatalf("not connected: %v", err)
				}
				if c.want != 0 && err == nil {
					t.Fatal("refused with no error")
				}
			})
		}
	})
	if got := e.b.Stats().AuthFailures; got < 10 {
		t.Fatalf("auth failures counted: %d", got)
	}
}

// A revocation takes effect on connected devices: when the list file changes, a revoked
// device is disconnected and cannot come back.
func TestRevocationDisconnects(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RevocationSweep = 20 * time.Millisecond })
	keep := e.device("cam-keep")
	gone := e.device("cam-gone")
	if _, ok := e.b.Connected("cam-gone"); !ok {
		t.Fatal("cam-gone not connected")
	}

	// Replace the file by rename, as the identity package recommends.
	tmp := filepath.Join(e.dir, "revoked.tmp")
	if err := os.WriteFile(tmp, []byte("# lost in transit\ncam-gone\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, e.cfg.RevocationsFile); err != nil {
		t.Fatal(err)
	}
	gone.waitLost(t)
	if _, code, err := e.tryConnect(clientOpts{clientID: "cam-gone", username: "cam-gone", password: e.devicePassword("cam-gone")}); code != 5 {
		t.Fatalf("revoked device reconnect: CONNACK %d (%v), want 5", code, err)
	}
	keep.publish(t, e.scheme.Status("cam-keep"), 1, "still here")
	if !keep.IsConnected() {
		t.Fatal("the revocation disconnected another device")
	}
	if n := e.b.Stats().RevokedDisconnects; n != 1 {
		t.Fatalf("revoked disconnects: %d, want 1", n)
	}
}

// A revoked device's publishes are refused at once, before the sweep runs.
func TestRevokedDevicePublishDenied(t *testing.T) {
	revs := identity.NewRevocations()
	e := newEnv(t, func(c *Config) {
		c.Revocations = revs
		c.RevocationSweep = time.Hour
	})
	d := e.device("cam-1")
	d.publish(t, e.scheme.Status("cam-1"), 1, "before")
	revs.Set([]string{"cam-1"})
	d.Publish(e.scheme.Status("cam-1"), 1, false, "after")
	d.waitLost(t)
}

// A second connection with the same device ID takes over cleanly (mochi issue #483: a
// device reboots while its old connection is half-open): the old connection is closed at
// once rather than at its keepalive timeout, the new one keeps its authorisation after the
// old one's cleanup, and the old connection's will ("offline") is not published over the
// new connection's presence. The old connection is a raw socket that the test never reads
// from or closes, like the half-open connection of a rebooted device.
func TestTakeover(t *testing.T) {
	for _, persistent := range []bool{false, true} {
		name := "clean"
		if persistent {
			name = "persistent"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil)
			status := e.scheme.Status("cam-1")
			watcher := e.service("admin", "watch")
			watcher.subscribe(t, status, 1)
			worker := e.service("worker", "1")

			old := e.rawConnect(t, connectPacket{clientID: "cam-1", username: "cam-1", password: e.devicePassword("cam-1"),
				clean: !persistent, keepalive: 60, willTopic: status, willPayload: "offline"})
			if code := readConnack(t, old); code != 0 {
				t.Fatalf("old connection: CONNACK %d", code)
			}
			// A PINGREQ answered shows the old connection settled in mochi's read loop (the
			// CONNACK comes before the session store write), as a long-lived one would be.
			ping(t, old)

			b := e.connect(clientOpts{clientID: "cam-1", username: "cam-1", password: e.devicePassword("cam-1"), clean: ptr(!persistent)})
			expectClosed(t, old) // within the 15 s read deadline, far below the 90 s keepalive timeout
			// Wait for the old connection's cleanup (its OnDisconnect) to have run.
			testutil.WaitFor(t, "old session cleanup", func() bool { return e.b.Stats().Sessions == 3 })
			p, ok := e.b.Connected("cam-1")
			if !ok || p.Role != topics.RoleDevice || p.DeviceID != "cam-1" {
				t.Fatalf("Connected(cam-1) = %+v, %v", p, ok)
			}

			b.subscribe(t, e.scheme.AuthReply("cam-1"), 1)
			worker.publish(t, e.scheme.AuthReply("cam-1"), 1, "reply")
			b.waitMessage(t, e.scheme.AuthReply("cam-1"), "reply")
			b.publish(t, status, 1, "online")
			watcher.waitMessage(t, status, "online")
			if got := watcher.payloads(status); len(got) != 1 {
				t.Fatalf("status messages %q: the old connection's will was published", got)
			}
			if n := e.b.Stats().Takeovers; n != 1 {
				t.Fatalf("takeovers %d, want 1", n)
			}
			if !b.IsConnected() {
				t.Fatal("new connection lost")
			}
		})
	}
}

// Without a takeover the will is published as usual when a device drops.
func TestWillOnAbnormalDisconnect(t *testing.T) {
	e := newEnv(t, nil)
	status := e.scheme.Status("cam-1")
	watcher := e.service("admin", "watch")
	watcher.subscribe(t, status, 1)
	conn := e.rawConnect(t, connectPacket{clientID: "cam-1", username: "cam-1", password: e.devicePassword("cam-1"),
		willTopic: status, willPayload: "offline", keepalive: 30})
	if code := readConnack(t, conn); code != 0 {
		t.Fatalf("CONNACK %d", code)
	}
	conn.Close()
	watcher.waitMessage(t, status, "offline")
}

// TestRateLimit: a device flooding QoS 0 publishes beyond its bucket is disconnected; one
// publishing QoS 1 beyond it and waiting for acknowledgements is paced to the rate and
// stays connected; services are unlimited by default.
func TestRateLimit(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.DeviceRate = 5
		c.DeviceBurst = 3
	})
	flood := e.device("cam-flood")
	for i := 0; i < 20; i++ {
		flood.Publish(e.scheme.Status("cam-flood"), 0, false, "flood")
	}
	flood.waitLost(t)
	if n := e.b.Stats().RateLimited; n != 1 {
		t.Fatalf("rate limited %d, want 1", n)
	}

	sink := e.service("consumer", "sink")
	sink.subscribe(t, e.scheme.EventFilter(""), 1)
	backlog := e.device("cam-backlog")
	for i := 0; i < 8; i++ {
		backlog.publish(t, e.scheme.UploadEvent("cam-backlog"), 1, fmt.Sprintf("event-%d", i))
	}
	sink.waitCount(t, 8)
	if !backlog.IsConnected() {
		t.Fatal("a QoS 1 publisher waiting for acknowledgements was disconnected")
	}
	st := e.b.Stats()
	// 8 publishes against a burst of 3 at 5/s: unless they took over a second, some waited.
	if st.Paced < 1 || st.RateLimited != 1 {
		t.Fatalf("paced %d (want some), rate limited %d (want 1)", st.Paced, st.RateLimited)
	}

	admin := e.service("admin", "1")
	for i := 0; i < 50; i++ {
		admin.Publish(e.scheme.Status("cam-1"), 0, false, "fine")
	}
	admin.publish(t, e.scheme.Status("cam-1"), 1, "last")
	if !admin.IsConnected() || e.b.Stats().Paced != st.Paced {
		t.Fatal("service was rate limited")
	}
}

// A rate so low that pacing would hold a QoS 1 publish for more than a second
// disconnects instead.
func TestRateLimitSlowRate(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.DeviceRate = 0.2
		c.DeviceBurst = 1
	})
	d := e.device("cam-1")
	d.publish(t, e.scheme.Status("cam-1"), 1, "first")
	d.Publish(e.scheme.Status("cam-1"), 1, false, "second")
	d.waitLost(t)
}
