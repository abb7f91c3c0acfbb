package natsauth_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/internal/broker"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/natsauth"
	"github.com/clipgate/clipgate/internal/testutil"
	"github.com/clipgate/clipgate/internal/tokenworker"
	"github.com/clipgate/clipgate/topics"
)

// TestSignedRevocationsNATS runs the console's signed revocation list on the NATS
// engine: a console account publishes it, retained, through the MQTT gateway; the
// callouts (which share no file with it) refuse and kick the revoked device, and the NATS
// token workers put it in force; a callout and a worker started after the publish read
// the retained list before they start; a forged list and garbage are refused and counted,
// and the list in force stays.
func TestSignedRevocationsNATS(t *testing.T) {
	t.Parallel()
	seed, err := identity.NewRevocationKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := identity.RevocationPublicKey(seed)
	brokerList := identity.NewRevocations()
	var mu sync.Mutex
	var workerLists []*identity.Revocations
	s := inproc.New(t, inproc.Options{
		Engine:        inproc.EngineNATS,
		BrokerConfig:  func(c *broker.Config) { c.Revocations = brokerList },
		CalloutConfig: func(c *natsauth.Config) { c.RevocationsKey, c.Revocations = pub, brokerList },
		WorkerConfig: func(c *tokenworker.Config) {
			l := identity.NewRevocations()
			c.Revocations, c.RevocationsKey = l, pub
			mu.Lock()
			workerLists = append(workerLists, l)
			mu.Unlock()
		},
	})
	workerList := func(i int) *identity.Revocations { mu.Lock(); defer mu.Unlock(); return workerLists[i] }

	console := consoleClient(t, s)
	publish := func(payload []byte) {
		t.Helper()
		tok := console.Publish(s.Topics().Revocations(), 1, true, payload)
		if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			t.Fatalf("publishing the revocation list: %v", tok.Error())
		}
	}
	sign := func(key []byte, issued time.Time, ids ...string) []byte {
		t.Helper()
		var list []identity.Revocation
		for _, id := range ids {
			list = append(list, identity.Revocation{Device: id, At: issued.Truncate(time.Second)})
		}
		data, err := identity.SignRevocationList(key, issued, list)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}

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

	now := time.Now()
	publish(sign(seed, now, id))
	select {
	case <-lost:
	case <-time.After(30 * time.Second):
		t.Fatal("the revoked device was not kicked")
	}
	again := paho.NewClient(o.SetConnectionLostHandler(nil))
	if tok := again.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() == nil {
		again.Disconnect(0)
		t.Fatal("the revoked device connected again")
	}
	if !other.IsConnectionOpen() {
		t.Error("another device was disconnected")
	}
	testutil.WaitFor(t, "the token worker applies the list", func() bool { return workerList(0).Revoked(id) })

	// Started after the publish: both have the retained list when Start returns.
	lateList := identity.NewRevocations()
	if _, err := natsauthLate(t, s, pub, lateList); err != nil {
		t.Fatal(err)
	}
	if !lateList.Revoked(id) {
		t.Error("a callout started after the publish does not have the retained list")
	}
	w, err := s.StartWorker()
	if err != nil {
		t.Fatal(err)
	}
	if !workerList(w).Revoked(id) {
		t.Error("a token worker started after the publish does not have the retained list")
	}

	// A forged list (restoring the device) and garbage are refused; a good newer list
	// after them shows every follower has handled them (one subject, in order).
	other2 := unique("cam")
	forger, _ := identity.NewRevocationKey()
	publish(sign(forger, now.Add(time.Second)))
	publish([]byte("garbage\x00\xff"))
	publish(sign(seed, now.Add(2*time.Second), id, other2))
	for i := range s.CalloutStats() {
		testutil.WaitFor(t, "callout applies the newer list", func() bool { return s.CalloutStats()[i].RevocationLists >= 2 })
	}
	for _, i := range []int{0, w} {
		testutil.WaitFor(t, "worker applies the newer list", func() bool { st, _ := s.WorkerStats(i); return st.RevocationLists >= 2 })
		if st, _ := s.WorkerStats(i); st.RevocationListsRefused != 2 || st.RevocationLists != 2 {
			t.Errorf("worker %d: %d lists applied, %d refused; want 2 and 2", i, st.RevocationLists, st.RevocationListsRefused)
		}
		if l := workerList(i); !l.Revoked(id) || !l.Revoked(other2) {
			t.Errorf("worker %d: list %v", i, l.List())
		}
	}
	for i, st := range s.CalloutStats() {
		if st.RevocationListsRefused != 2 || st.RevocationLists != 2 {
			t.Errorf("callout %d: %d lists applied, %d refused; want 2 and 2", i, st.RevocationLists, st.RevocationListsRefused)
		}
	}
	if !brokerList.Revoked(id) || !brokerList.Revoked(other2) || !lateList.Revoked(other2) {
		t.Errorf("callouts' lists: %v, late %v", brokerList.List(), lateList.List())
	}
}

// TestSignedRevocationsNATSWorkers: the NATS token workers alone follow the signed list
// (the callouts do not here, so the device stays connected): once a published list
// revokes a connected device, its request is refused with CodeRevoked (another device
// got credentials before, so the path works).
func TestSignedRevocationsNATSWorkers(t *testing.T) {
	t.Parallel()
	seed, err := identity.NewRevocationKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := identity.RevocationPublicKey(seed)
	var mu sync.Mutex
	var lists []*identity.Revocations
	s := inproc.New(t, inproc.Options{
		Engine: inproc.EngineNATS,
		WorkerConfig: func(c *tokenworker.Config) {
			l := identity.NewRevocations()
			c.Revocations, c.RevocationsKey = l, pub
			mu.Lock()
			lists = append(lists, l)
			mu.Unlock()
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	id := unique("cam")
	kit := s.Kit(t, ctx, id, nil) // connected; it asks for credentials below only
	if _, err := s.Kit(t, ctx, unique("cam"), nil).Credentials(ctx); err != nil {
		t.Fatalf("another device before the revocation: %v", err)
	}
	data, err := identity.SignRevocationList(seed, time.Now(), []identity.Revocation{{Device: id, At: time.Now().Truncate(time.Second)}})
	if err != nil {
		t.Fatal(err)
	}
	tok := consoleClient(t, s).Publish(s.Topics().Revocations(), 1, true, data)
	if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatalf("publishing the revocation list: %v", tok.Error())
	}
	mu.Lock()
	l := lists[0]
	mu.Unlock()
	testutil.WaitFor(t, "the worker applies the list", func() bool { return l.Revoked(id) })
	_, err = kit.Credentials(ctx)
	var ae *clipgate.AuthError
	if !errors.As(err, &ae) || ae.Code != clipgate.CodeRevoked {
		t.Fatalf("Credentials of a revoked device: %v, want an AuthError with CodeRevoked", err)
	}
}

// natsauthLate starts one more callout instance following the list into its own list.
func natsauthLate(t *testing.T, s *inproc.Stack, pub []byte, list *identity.Revocations) (*natsauth.Service, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return s.StartCallout(ctx, func(c *natsauth.Config) { c.RevocationsKey, c.Revocations = pub, list })
}

// consoleClient connects an MQTT client with the console's service account.
func consoleClient(t *testing.T, s *inproc.Stack) paho.Client {
	t.Helper()
	user, pw := s.ServiceAccount(topics.RoleConsole)
	o := paho.NewClientOptions().AddBroker(s.BrokerURL()).SetClientID(broker.ServiceClientID(user, unique("c"))).
		SetUsername(user).SetPassword(pw).SetProtocolVersion(4).SetCleanSession(true).
		SetAutoReconnect(false).SetConnectRetry(false)
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatalf("console connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c
}
