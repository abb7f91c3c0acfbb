package broker

import (
	"fmt"
	"testing"

	"github.com/clipgate/clipgate/internal/aclmatrix"
	"github.com/clipgate/clipgate/topics"
)

// The cases are internal/aclmatrix's, shared with the NATS engine's tests.
var (
	matrixRoles     = aclmatrix.Roles
	publishMatrix   = aclmatrix.Publish
	subscribeMatrix = aclmatrix.Subscribe
)

// connectRole connects a fresh client of role; for the device role its ID is own.
func (e *testEnv) connectRole(role topics.Role, own string) *client {
	e.t.Helper()
	switch role {
	case topics.RoleDevice:
		return e.device(own)
	case topics.RoleTokenWorker:
		return e.service("worker", unique("w"))
	case topics.RoleConsumer:
		return e.service("consumer", unique("c"))
	case topics.RoleAdmin:
		return e.service("admin", unique("a"))
	}
	panic("role")
}

// TestACLMatrix checks every role against every kind of topic and filter, as an MQTT 3.1.1
// client sees it: an allowed QoS 1 publish is acknowledged and delivered, a denied one
// ends the connection; a denied subscription gets SUBACK 0x80.
func TestACLMatrix(t *testing.T) {
	e := newEnv(t, nil)
	// The sink sees everything published under the root.
	sink := e.service("admin", "sink")
	if code := sink.subscribe(t, "clipgate/v1/#", 1); code != 1 {
		t.Fatalf("sink subscription: SUBACK %#x", code)
	}

	t.Run("publish", func(t *testing.T) {
		for name, c := range publishMatrix {
			for i, role := range matrixRoles {
				want := c.Want[i] == 'Y'
				t.Run(fmt.Sprintf("%s/%s", role, name), func(t *testing.T) {
					t.Parallel()
					own := unique("cam")
					topic := c.Topic(own, "cam-other")
					cl := e.connectRole(role, own)
					payload := unique("p")
					tok := cl.Publish(topic, 1, false, payload)
					if want {
						cl.publishDone(t, tok, topic)
						t.Cleanup(func() {
							if t.Failed() {
								t.Logf("broker stats: %+v", e.b.Stats())
							}
						})
						sink.waitMessage(t, topic, payload)
						if !cl.IsConnected() {
							t.Fatal("disconnected after an allowed publish")
						}
						return
					}
					cl.waitLost(t)
				})
			}
		}
	})

	t.Run("subscribe", func(t *testing.T) {
		for name, c := range subscribeMatrix {
			for i, role := range matrixRoles {
				want := byte(0x80)
				if c.Want[i] == 'Y' {
					want = 1
				}
				t.Run(fmt.Sprintf("%s/%s", role, name), func(t *testing.T) {
					t.Parallel()
					own := unique("cam")
					filter := c.Topic(own, "cam-other")
					cl := e.connectRole(role, own)
					if got := cl.subscribe(t, filter, 1); got != want {
						t.Fatalf("SUBACK for %q: got %#x, want %#x", filter, got, want)
					}
					if !cl.IsConnected() {
						t.Fatal("a subscription ended the connection")
					}
				})
			}
		}
	})
}

// A denied QoS 0 publish is dropped silently (MQTT 3.1.1 has no way to say no) and the
// client stays connected.
func TestACLDeniedQoS0Dropped(t *testing.T) {
	e := newEnv(t, nil)
	sink := e.service("admin", "sink")
	sink.subscribe(t, "clipgate/v1/#", 1)
	d := e.device("cam-1")
	tok := d.Publish(e.scheme.AuthRequest("cam-2"), 0, false, "forged")
	d.publishDone(t, tok, "forged")
	d.publish(t, e.scheme.AuthRequest("cam-1"), 1, "genuine")
	sink.waitMessage(t, e.scheme.AuthRequest("cam-1"), "genuine")
	// The sink receives one publisher's messages in order: the forged one is not there.
	if got := sink.payloads(e.scheme.AuthRequest("cam-2")); len(got) != 0 {
		t.Fatalf("forged request delivered: %q", got)
	}
	if !d.IsConnected() {
		t.Fatal("QoS 0 denial ended the connection")
	}
}

// Deliveries follow the ACL: a device receives its own reply and nothing else, even when
// a wildcard subscription slips past (here: one restored from before a role existed is
// simulated by subscribing the device's client in mochi directly).
func TestACLDeliveries(t *testing.T) {
	e := newEnv(t, nil)
	worker := e.service("worker", "1")
	if code := worker.subscribe(t, e.scheme.WorkerFilter(""), 1); code != 1 {
		t.Fatalf("worker SUBACK %#x", code)
	}
	d1 := e.device("cam-1")
	if code := d1.subscribe(t, e.scheme.AuthReply("cam-1"), 1); code != 1 {
		t.Fatalf("device SUBACK %#x", code)
	}
	// Slip a wildcard subscription past OnSubscribe, as storage or a takeover would.
	cl, ok := e.b.srv.Clients.Get("cam-1")
	if !ok {
		t.Fatal("cam-1 not connected")
	}
	sub := subscription("clipgate/v1/devices/+/auth/reply", 1)
	e.b.srv.Topics.Subscribe(cl.ID, sub)
	cl.State.Subscriptions.Add(sub.Filter, sub)

	d2 := e.device("cam-2")
	d2.publish(t, e.scheme.AuthRequest("cam-2"), 1, "req-2")
	d1.publish(t, e.scheme.AuthRequest("cam-1"), 1, "req-1")
	worker.waitMessage(t, e.scheme.AuthRequest("cam-2"), "req-2")
	worker.waitMessage(t, e.scheme.AuthRequest("cam-1"), "req-1")

	worker.publish(t, e.scheme.AuthReply("cam-2"), 1, "reply-2")
	worker.publish(t, e.scheme.AuthReply("cam-1"), 1, "reply-1")
	d1.waitMessage(t, e.scheme.AuthReply("cam-1"), "reply-1")
	if got := d1.payloads(e.scheme.AuthReply("cam-2")); len(got) != 0 {
		t.Fatalf("cam-1 received cam-2's reply: %q", got)
	}
	if e.b.Stats().ACLDenied == 0 {
		t.Fatal("the denied delivery was not counted")
	}
}
