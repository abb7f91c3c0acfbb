package natsauth_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"

	"github.com/clipgate/clipgate/internal/aclmatrix"
	"github.com/clipgate/clipgate/internal/broker"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/natsauth"
	"github.com/clipgate/clipgate/internal/natsbus"
	"github.com/clipgate/clipgate/topics"
)

var seq atomic.Int64

func unique(p string) string { return fmt.Sprintf("%s-%d", p, seq.Add(1)) }

// sink is an admin NATS client that records every payload published under the root,
// partitioned auth requests included, by MQTT topic.
type sink struct {
	mu   sync.Mutex
	seen map[string][]string
	cond *sync.Cond
}

func newSink(t *testing.T, s *inproc.Stack) *sink {
	t.Helper()
	k := &sink{seen: map[string][]string{}}
	k.cond = sync.NewCond(&k.mu)
	nc := natsConn(t, s, topics.RoleAdmin)
	record := func(m *nats.Msg) {
		subj := m.Subject
		if rest, ok := strings.CutPrefix(subj, natsbus.PartitionPrefix); ok {
			subj = rest[strings.IndexByte(rest, '.')+1:]
		}
		k.mu.Lock()
		k.seen[natsbus.Topic(subj)] = append(k.seen[natsbus.Topic(subj)], string(m.Data))
		k.cond.Broadcast()
		k.mu.Unlock()
	}
	for _, subj := range []string{natsbus.Subject(s.Topics().Root()) + ".>", natsbus.PartitionPrefix + ">"} {
		if _, err := nc.Subscribe(subj, record); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return k
}

// wait waits until payload was seen on topic.
func (k *sink) wait(t *testing.T, topic, payload string) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		k.mu.Lock()
		for !k.has(topic, payload) {
			k.cond.Wait()
		}
		k.mu.Unlock()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%q never arrived on %s", payload, topic)
	}
}

func (k *sink) has(topic, payload string) bool {
	for _, p := range k.seen[topic] {
		if p == payload {
			return true
		}
	}
	return false
}

func (k *sink) saw(topic, payload string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.has(topic, payload)
}

// natsConn connects a native client with role's service account.
func natsConn(t *testing.T, s *inproc.Stack, role topics.Role) *nats.Conn {
	t.Helper()
	c := s.NATSConn(role, unique("t"))
	nc, err := nats.Connect(strings.Join(c.URLs, ","), nats.UserInfo(c.Username, c.Password), nats.Name(c.Name),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// mqttDevice connects an MQTT 3.1.1 client as device id to node 0.
func mqttDevice(t *testing.T, s *inproc.Stack, id string, url string) paho.Client {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(url).SetClientID(id).SetUsername(id).
		SetPassword(s.DeviceKey(id).Password(time.Now())).
		SetProtocolVersion(4).SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false)
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatalf("device %s connect: %v", id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c
}

func newStack(t *testing.T) *inproc.Stack {
	return inproc.New(t, inproc.Options{Engine: inproc.EngineNATS})
}

// TestACLMatrixNATS runs the broker's ACL matrix (internal/aclmatrix) against the NATS
// cluster, as the auth callout's permissions make it enforce it:
//   - devices over MQTT, every case: an allowed publish is delivered, a denied one is
//     acknowledged and dropped (mochi instead ends the connection); an allowed
//     subscription is granted, a denied one gets SUBACK 0x80;
//   - token workers and consumers over native NATS, the publish cases on subjects: a
//     denied publish is a permissions violation.
//
// The subscribe cases of services are MQTT filters ($share groups) that have no native
// NATS equivalent; TestServicePermissions covers their subscriptions.
func TestACLMatrixNATS(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	k := newSink(t, s)
	url := s.BrokerURL()

	t.Run("device publish", func(t *testing.T) {
		for name, c := range aclmatrix.Publish {
			want := c.Want[0] == 'Y'
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				own := unique("cam")
				topic := c.Topic(own, "cam-other")
				d := mqttDevice(t, s, own, url)
				payload := unique("p")
				tok := d.Publish(topic, 1, false, payload)
				if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
					t.Fatalf("publish not acknowledged: %v", tok.Error())
				}
				// One publisher's messages reach a subscriber in order: once the marker is
				// there, so is the payload if it was let through.
				marker := unique("m")
				status := s.Topics().Status(own)
				if tok := d.Publish(status, 1, false, marker); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
					t.Fatalf("marker: %v", tok.Error())
				}
				k.wait(t, status, marker)
				if got := k.saw(topic, payload); got != want {
					t.Fatalf("publish on %q delivered = %v, want %v", topic, got, want)
				}
				if !d.IsConnected() {
					t.Fatal("disconnected")
				}
			})
		}
	})

	t.Run("device subscribe", func(t *testing.T) {
		for name, c := range aclmatrix.Subscribe {
			want := byte(0x80)
			if c.Want[0] == 'Y' {
				want = 0
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				own := unique("cam")
				filter := c.Topic(own, "cam-other")
				d := mqttDevice(t, s, own, url)
				tok := d.Subscribe(filter, 0, nil)
				if !tok.WaitTimeout(30 * time.Second) {
					t.Fatal("no SUBACK")
				}
				var got byte = 0xff
				if tok.Error() == nil {
					for _, code := range tok.(*paho.SubscribeToken).Result() {
						got = code
					}
				}
				if got != want {
					t.Fatalf("SUBACK for %q: %#x (error %v), want %#x", filter, got, tok.Error(), want)
				}
			})
		}
	})

	for i, role := range aclmatrix.Roles {
		if role != topics.RoleTokenWorker && role != topics.RoleConsumer {
			continue
		}
		t.Run(role.String()+" publish", func(t *testing.T) {
			for name, c := range aclmatrix.Publish {
				want := c.Want[i] == 'Y'
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					nc := natsConn(t, s, role)
					topic := c.Topic(unique("cam"), "cam-other")
					if err := nc.Publish(natsbus.Subject(topic), []byte("x")); err != nil {
						t.Fatal(err)
					}
					// The server answers a violation before the PONG of the flush.
					if err := nc.Flush(); err != nil {
						t.Fatal(err)
					}
					// The client records the -ERR before the flush's PONG.
					violation := errors.Is(nc.LastError(), nats.ErrPermissionViolation)
					if violation == want {
						t.Fatalf("publish on %q: permission violation %v, want allowed %v", topic, violation, want)
					}
				})
			}
		})
	}
}

// TestServicePermissions checks the subscriptions of the native service roles: token
// workers read requests only as members of their queue group, consumers read events and
// status and never replies.
func TestServicePermissions(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	sc := s.Topics()
	req := natsbus.Subject(sc.AuthRequest("+"))
	part := natsbus.PartitionSubject(sc, 3)
	cases := []struct {
		role         topics.Role
		subject, que string
		ok           bool
	}{
		{topics.RoleTokenWorker, part, topics.DefaultWorkerGroup, true},
		{topics.RoleTokenWorker, req, topics.DefaultWorkerGroup, true},
		{topics.RoleTokenWorker, part, "", false},
		{topics.RoleTokenWorker, req, "", false},
		{topics.RoleTokenWorker, part, "other-group", false},
		{topics.RoleTokenWorker, natsbus.Subject(sc.AuthReply("+")), "", false},
		{topics.RoleTokenWorker, natsbus.Subject(sc.UploadEvent("+")), "", false},
		{topics.RoleTokenWorker, natsbus.Subject(sc.Revocations()), "", true},
		{topics.RoleTokenWorker, natsbus.Subject(sc.Quotas()), "", true},
		{topics.RoleTokenWorker, natsbus.Subject(sc.StatusFilter("")), "", false},
		{topics.RoleConsumer, natsbus.Subject(sc.UploadEvent("+")), "", true},
		{topics.RoleConsumer, natsbus.Subject(sc.StatusFilter("")), "", true},
		{topics.RoleConsumer, natsbus.Subject(sc.AuthReply("+")), "", false},
		{topics.RoleConsumer, req, "", false},
		{topics.RoleConsumer, ">", "", false},
		{topics.RoleConsumer, "_INBOX.tokenworker.>", "", false},
		{topics.RoleConsumer, natsbus.MQTTStreamPrefix + ">", "", false},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s %s %s", c.role, c.subject, c.que), func(t *testing.T) {
			t.Parallel()
			nc := natsConn(t, s, c.role)
			var err error
			if c.que != "" {
				_, err = nc.QueueSubscribe(c.subject, c.que, func(*nats.Msg) {})
			} else {
				_, err = nc.Subscribe(c.subject, func(*nats.Msg) {})
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			violation := errors.Is(nc.LastError(), nats.ErrPermissionViolation)
			if violation == c.ok {
				t.Fatalf("permission violation %v, want allowed %v", violation, c.ok)
			}
		})
	}
}

// TestPermissionsMatchScheme holds a device's permission lists to topics.Scheme.Allowed,
// case by case of the matrix, without a cluster: a publish or subscription is allowed by
// the lists exactly when Allowed allows it.
func TestPermissionsMatchScheme(t *testing.T) {
	t.Parallel()
	sc := topics.Default()
	own := "cam-7"
	pub, sub := natsauth.Permissions(sc, broker.Principal{Role: topics.RoleDevice, DeviceID: own, Username: own}, "tokenworkers")
	for name, c := range aclmatrix.Publish {
		topic := c.Topic(own, "cam-other")
		got := matchAny(pub, natsbus.Subject(topic))
		if want := sc.Allowed(topics.RoleDevice, own, topic, topics.Publish); got != want {
			t.Errorf("publish %s (%s): lists allow %v, Allowed %v", name, topic, got, want)
		}
	}
	for name, c := range aclmatrix.Subscribe {
		filter := c.Topic(own, "cam-other")
		got := !strings.HasPrefix(filter, "$share/") && matchAny(sub, natsbus.Subject(filter))
		if want := sc.Allowed(topics.RoleDevice, own, filter, topics.Subscribe); got != want {
			t.Errorf("subscribe %s (%s): lists allow %v, Allowed %v", name, filter, got, want)
		}
	}
}

// matchAny reports whether a permission subject covers subj: every subject subj can
// match is matched by the permission (NATS's rule for wildcard subscriptions).
func matchAny(perms []string, subj string) bool {
	for _, p := range perms {
		if covers(strings.Split(p, "."), strings.Split(subj, ".")) {
			return true
		}
	}
	return false
}

func covers(p, s []string) bool {
	for i, tok := range p {
		if tok == ">" {
			return len(s) > i
		}
		if i >= len(s) || s[i] == ">" || (tok != "*" && tok != s[i]) {
			return false
		}
	}
	return len(p) == len(s)
}

// TestRevokedDeviceKickedAndRefused revokes a connected device: the callout instance that
// admitted it kicks it through the system API, and its next connection is refused (the
// server closes it without CONNACK). Another device stays connected.
func TestRevokedDeviceKickedAndRefused(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	lost := make(chan error, 1)
	id := unique("cam")
	o := paho.NewClientOptions().AddBroker(s.BrokerURL()).SetClientID(id).SetUsername(id).
		SetPassword(s.DeviceKey(id).Password(time.Now())).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err })
	d := paho.NewClient(o)
	if tok := d.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	t.Cleanup(func() { d.Disconnect(0) })
	other := mqttDevice(t, s, unique("cam"), s.BrokerURLs()[1])

	s.Revoke(id)
	select {
	case <-lost:
	case <-time.After(30 * time.Second):
		t.Fatal("the revoked device was not disconnected")
	}
	again := paho.NewClient(o.SetConnectionLostHandler(nil))
	tok := again.Connect()
	if !tok.WaitTimeout(30*time.Second) || tok.Error() == nil {
		again.Disconnect(0)
		t.Fatal("the revoked device connected again")
	}
	if !other.IsConnectionOpen() {
		t.Error("another device was disconnected")
	}
	var kicked int64
	for _, st := range s.CalloutStats() {
		kicked += st.Kicked
	}
	if kicked != 1 {
		t.Errorf("kicked %d connections, want 1", kicked)
	}
}
