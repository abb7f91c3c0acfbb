package broker

import (
	"fmt"
	"testing"

	"github.com/clipgate/clipgate/internal/testutil"
)

// Persistent sessions (clean session false) keep their subscriptions and queued QoS 1
// messages across a broker restart over the same data dir: a consumer's events and a
// device's auth replies published while they were offline are delivered when they return.
func TestPersistentSessionSurvivesRestart(t *testing.T) {
	e := newEnv(t, nil)
	consumerOpts := clientOpts{clientID: "consumer:indexer", username: "consumer", password: passwordOf("consumer"), clean: ptr(false)}
	consumer := e.connect(consumerOpts)
	if code := consumer.subscribe(t, e.scheme.EventFilter(""), 1); code != 1 {
		t.Fatalf("consumer SUBACK %#x", code)
	}
	deviceOpts := func() clientOpts {
		return clientOpts{clientID: "cam-1", username: "cam-1", password: e.devicePassword("cam-1"), clean: ptr(false)}
	}
	dev := e.connect(deviceOpts())
	if code := dev.subscribe(t, e.scheme.AuthReply("cam-1"), 1); code != 1 {
		t.Fatalf("device SUBACK %#x", code)
	}
	// A refused subscription in the same session must not come back after the restart.
	if code := dev.subscribe(t, e.scheme.AuthReply("cam-2"), 1); code != 0x80 {
		t.Fatalf("device SUBACK for another's reply %#x", code)
	}
	consumer.Disconnect(100)
	dev.Disconnect(100)

	// While both are away: 5 events from other devices, 3 replies for cam-1.
	for i := 0; i < 5; i++ {
		id := fmt.Sprintf("cam-p%d", i)
		d := e.device(id)
		d.publish(t, e.scheme.UploadEvent(id), 1, fmt.Sprintf("event-%d", i))
		d.Disconnect(100)
	}
	worker := e.service("worker", "1")
	for i := 0; i < 3; i++ {
		worker.publish(t, e.scheme.AuthReply("cam-1"), 1, fmt.Sprintf("reply-%d", i))
	}
	worker.publish(t, e.scheme.AuthReply("cam-2"), 1, "not for cam-1")
	worker.Disconnect(100)

	e.restart()

	restored, ok := e.b.srv.Clients.Get("cam-1")
	if !ok {
		t.Fatal("cam-1's session was not restored")
	}
	if subs := restored.State.Subscriptions.GetAll(); len(subs) != 1 {
		t.Fatalf("restored subscriptions of cam-1: %v, want only its own reply topic", subs)
	}
	consumer = e.connect(consumerOpts)
	dev = e.connect(deviceOpts())
	consumer.waitCount(t, 5)
	dev.waitCount(t, 3)
	for i := 0; i < 5; i++ {
		consumer.waitMessage(t, e.scheme.UploadEvent(fmt.Sprintf("cam-p%d", i)), fmt.Sprintf("event-%d", i))
	}
	for i := 0; i < 3; i++ {
		dev.waitMessage(t, e.scheme.AuthReply("cam-1"), fmt.Sprintf("reply-%d", i))
	}
	if got := dev.payloads(e.scheme.AuthReply("cam-2")); len(got) != 0 {
		t.Fatalf("cam-1 received cam-2's reply: %q", got)
	}
	if n := e.b.Stats().Takeovers; n != 0 {
		t.Fatalf("resuming stored sessions counted as %d takeovers", n)
	}
	// The restored subscriptions keep working for new messages.
	d := e.device("cam-p9")
	d.publish(t, e.scheme.UploadEvent("cam-p9"), 1, "after restart")
	consumer.waitMessage(t, e.scheme.UploadEvent("cam-p9"), "after restart")
}

// The shared-subscription picker takes turns among connected members exactly, and skips a
// member whose persistent session is offline instead of queueing messages for it.
func TestPickerRoundRobin(t *testing.T) {
	e := newEnv(t, nil)
	filter := e.scheme.WorkerFilter("")
	workers := make([]*client, 3)
	workerOpts := func(i int) clientOpts {
		return clientOpts{clientID: fmt.Sprintf("worker:%d", i), username: "worker", password: passwordOf("worker"), clean: ptr(false)}
	}
	for i := range workers {
		workers[i] = e.connect(workerOpts(i))
		if code := workers[i].subscribe(t, filter, 1); code != 1 {
			t.Fatalf("worker %d SUBACK %#x", i, code)
		}
	}
	devs := make([]*client, 3)
	for i := range devs {
		devs[i] = e.device(fmt.Sprintf("cam-%d", i))
	}
	publish := func(n int) {
		for i := 0; i < n; i++ {
			n := i % len(devs)
			devs[n].publish(t, e.scheme.AuthRequest(fmt.Sprintf("cam-%d", n)), 1, fmt.Sprintf("req-%d", i))
		}
	}
	counts := func() []int {
		c := make([]int, len(workers))
		for i, w := range workers {
			c[i] = w.count()
		}
		return c
	}
	total := func(c []int) int { return c[0] + c[1] + c[2] }

	publish(300)
	testutil.WaitFor(t, "300 requests delivered", func() bool { return total(counts()) == 300 })
	if c := counts(); c[0] != 100 || c[1] != 100 || c[2] != 100 {
		t.Fatalf("300 requests spread %v, want 100 each", c)
	}

	// Worker 2 goes away but its session (and group membership) stays.
	workers[2].Disconnect(100)
	testutil.WaitFor(t, "worker 2 offline", func() bool { _, ok := e.b.Connected("worker:2"); return !ok })
	base := counts()
	publish(300)
	testutil.WaitFor(t, "300 more requests delivered", func() bool { return total(counts())-total(base) == 300 })
	c := counts()
	if got := []int{c[0] - base[0], c[1] - base[1], c[2] - base[2]}; got[0] != 150 || got[1] != 150 || got[2] != 0 {
		t.Fatalf("with worker 2 offline, 300 requests spread %v, want [150 150 0]", got)
	}
	off, ok := e.b.srv.Clients.Get("worker:2")
	if !ok {
		t.Fatal("worker 2's persistent session is gone")
	}
	if n := off.State.Inflight.Len(); n != 0 {
		t.Fatalf("%d requests queued for the offline worker", n)
	}
	if subs := e.b.srv.Topics.Subscribers(e.scheme.AuthRequest("cam-0")); len(subs.Shared[filter]) != 3 {
		t.Fatalf("group has %d members, want 3 (the offline one included)", len(subs.Shared[filter]))
	}
}

// With every member offline, messages are queued for one of them rather than lost.
func TestPickerAllOffline(t *testing.T) {
	e := newEnv(t, nil)
	o := clientOpts{clientID: "worker:solo", username: "worker", password: passwordOf("worker"), clean: ptr(false)}
	w := e.connect(o)
	w.subscribe(t, e.scheme.WorkerFilter(""), 1)
	w.Disconnect(100)
	d := e.device("cam-1")
	d.publish(t, e.scheme.AuthRequest("cam-1"), 1, "queued")
	w = e.connect(o)
	w.waitMessage(t, e.scheme.AuthRequest("cam-1"), "queued")
}
