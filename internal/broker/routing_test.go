package broker

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/clipgate/clipgate/internal/testutil"
	"github.com/clipgate/clipgate/topics"
)

func deviceRouting(c *Config) { c.WorkerRouting = WorkerRoutingDevice }

// assignment maps each device to the indexes of the workers that received its requests
// (topics.Parse on the received topics), counting only the messages after base.
func assignment(t *testing.T, s topics.Scheme, workers []*client, base []int) map[string][]int {
	t.Helper()
	m := make(map[string][]int)
	for i, w := range workers {
		w.mu.Lock()
		for _, msg := range w.got[base[i]:] {
			kind, id, ok := s.Parse(msg.Topic())
			if !ok || kind != topics.KindAuthRequest {
				w.mu.Unlock()
				t.Fatalf("worker %d received %q", i, msg.Topic())
			}
			if !slices.Contains(m[id], i) {
				m[id] = append(m[id], i)
			}
		}
		w.mu.Unlock()
	}
	return m
}

// With WorkerRouting "device", every request of a device reaches the same connected
// worker; when a worker goes offline only its devices move (the others stay put), and
// when it returns they come back to it.
func TestWorkerRoutingDevice(t *testing.T) {
	t.Parallel()
	e := newEnv(t, deviceRouting)
	filter := e.scheme.WorkerFilter("")
	workerOpts := func(i int) clientOpts {
		return clientOpts{clientID: fmt.Sprintf("worker:%d", i), username: "worker", password: passwordOf("worker"), clean: ptr(false)}
	}
	workers := make([]*client, 3)
	for i := range workers {
		workers[i] = e.connect(workerOpts(i))
		if code := workers[i].subscribe(t, filter, 1); code != 1 {
			t.Fatalf("worker %d SUBACK %#x", i, code)
		}
	}
	const nDevices = 30
	devs := make([]*client, nDevices)
	for i := range devs {
		devs[i] = e.device(fmt.Sprintf("cam-%d", i))
	}
	counts := func() []int {
		c := make([]int, len(workers))
		for i, w := range workers {
			c[i] = w.count()
		}
		return c
	}
	total := func(c []int) int { return c[0] + c[1] + c[2] }
	// round publishes 300 requests, 10 per device interleaved, and returns which workers
	// each device's requests reached.
	round := func(what string) map[string][]int {
		t.Helper()
		base := counts()
		for i := 0; i < 300; i++ {
			n := i % nDevices
			devs[n].publish(t, e.scheme.AuthRequest(fmt.Sprintf("cam-%d", n)), 1, fmt.Sprintf("%s-%d", what, i))
		}
		testutil.WaitFor(t, what+": 300 requests delivered", func() bool { return total(counts())-total(base) == 300 })
		a := assignment(t, e.scheme, workers, base)
		if len(a) != nDevices {
			t.Fatalf("%s: requests of %d devices delivered, want %d", what, len(a), nDevices)
		}
		for id, ws := range a {
			if len(ws) != 1 {
				t.Fatalf("%s: %s's requests went to workers %v, want one", what, id, ws)
			}
		}
		return a
	}

	first := round("all up")
	perWorker := make([]int, len(workers))
	for _, ws := range first {
		perWorker[ws[0]]++
	}
	for i, n := range perWorker {
		if n == 0 {
			t.Fatalf("worker %d got no device (devices per worker %v)", i, perWorker)
		}
	}

	// Worker 1 goes away; its session (and group membership) stays.
	const gone = 1
	workers[gone].Disconnect(100)
	testutil.WaitFor(t, "worker 1 offline", func() bool { _, ok := e.b.Connected("worker:1"); return !ok })
	second := round("worker 1 down")
	for id, ws := range second {
		switch {
		case ws[0] == gone:
			t.Fatalf("%s's requests went to the offline worker", id)
		case first[id][0] != gone && ws[0] != first[id][0]:
			t.Fatalf("%s moved from worker %d to %d though its worker stayed up", id, first[id][0], ws[0])
		}
	}
	if off, ok := e.b.srv.Clients.Get("worker:1"); !ok {
		t.Fatal("worker 1's persistent session is gone")
	} else if n := off.State.Inflight.Len(); n != 0 {
		t.Fatalf("%d requests queued for the offline worker", n)
	}

	// It returns (same session): its devices come back.
	workers[gone] = e.connect(workerOpts(gone))
	third := round("worker 1 back")
	for id, ws := range third {
		if ws[0] != first[id][0] {
			t.Fatalf("%s on worker %d after worker 1 returned, was on %d", id, ws[0], first[id][0])
		}
	}
}

// With device routing, a group that is not the token workers' (consumers' events) still
// takes turns, and requests to a group without a connected member are queued on one, as
// with round-robin.
func TestWorkerRoutingDeviceOtherGroupsAndFallback(t *testing.T) {
	t.Parallel()
	e := newEnv(t, deviceRouting)
	consumers := make([]*client, 2)
	for i := range consumers {
		consumers[i] = e.service("consumer", fmt.Sprint(i))
		if code := consumers[i].subscribe(t, e.scheme.EventFilter("indexers"), 1); code != 1 {
			t.Fatalf("consumer %d SUBACK %#x", i, code)
		}
	}
	d := e.device("cam-1")
	for i := 0; i < 10; i++ {
		d.publish(t, e.scheme.UploadEvent("cam-1"), 1, fmt.Sprintf("event-%d", i))
	}
	testutil.WaitFor(t, "10 events", func() bool { return consumers[0].count()+consumers[1].count() == 10 })
	if a, b := consumers[0].count(), consumers[1].count(); a != 5 || b != 5 {
		t.Fatalf("one device's events spread %d/%d, want 5/5 (round-robin)", a, b)
	}

	o := clientOpts{clientID: "worker:solo", username: "worker", password: passwordOf("worker"), clean: ptr(false)}
	w := e.connect(o)
	w.subscribe(t, e.scheme.WorkerFilter("other-group"), 1)
	w.Disconnect(100)
	testutil.WaitFor(t, "worker offline", func() bool { _, ok := e.b.Connected("worker:solo"); return !ok })
	d.publish(t, e.scheme.AuthRequest("cam-1"), 1, "queued")
	w = e.connect(o)
	w.waitMessage(t, e.scheme.AuthRequest("cam-1"), "queued")
}

func TestWorkerRoutingConfig(t *testing.T) {
	t.Parallel()
	if got := DefaultConfig().WorkerRouting; got != WorkerRoutingRoundRobin {
		t.Fatalf("default routing %q", got)
	}
	for _, bad := range []string{"hash", "Device", "round_robin", " device", "device\x00"} {
		cfg := Config{ConnectKeys: testConnectKeys(t), WorkerRouting: bad}
		b, err := New(cfg)
		if err == nil {
			b.Close()
			t.Fatalf("routing %q accepted", bad)
		}
		if !strings.Contains(err.Error(), "workerRouting") {
			t.Fatalf("routing %q: error %q does not name workerRouting", bad, err)
		}
	}
	for _, good := range []string{"", WorkerRoutingRoundRobin, WorkerRoutingDevice} {
		b, err := New(Config{ConnectKeys: testConnectKeys(t), WorkerRouting: good})
		if err != nil {
			t.Fatalf("routing %q: %v", good, err)
		}
		if (b.picker.device != nil) != (good == WorkerRoutingDevice) {
			t.Fatalf("routing %q: device router set %v", good, b.picker.device != nil)
		}
		b.Close()
	}
}

func TestDeviceRouterGroupsAndTopics(t *testing.T) {
	t.Parallel()
	for _, root := range []string{topics.DefaultRoot, "acme"} {
		s, err := topics.New(root)
		if err != nil {
			t.Fatal(err)
		}
		r := newDeviceRouter(mqtt.NewClients(), s)
		groups := map[string]bool{
			s.WorkerFilter(""):                             true,
			s.WorkerFilter("other"):                        true,
			"$share/g/" + root + "/devices/+/auth/request": true,
			root + "/devices/+/auth/request":               false, // not shared
			"$share//" + root + "/devices/+/auth/request":  false, // empty group
			"$share/g":                        false,
			"$share/":                         false,
			"":                                false,
			s.EventFilter("g"):                false,
			s.StatusFilter("g"):               false,
			"$share/g/" + root + "/devices/#": false,
			"$share/g/" + root + "/devices/+/auth/reply":     false,
			"$share/g/" + root + "/devices/+/auth/request/x": false,
			"$share/g/x" + root + "/devices/+/auth/request":  false,
		}
		for f, want := range groups {
			if got := r.workerGroup(f); got != want {
				t.Errorf("root %q: workerGroup(%q) = %v", root, f, got)
			}
		}
		devices := map[string]string{
			s.AuthRequest("cam-1"):             "cam-1",
			s.AuthRequest("a.b_c-D9"):          "a.b_c-D9",
			s.AuthRequest("x"):                 "", // too short a device ID
			s.AuthRequest("cam 1"):             "",
			s.AuthReply("cam-1"):               "",
			s.UploadEvent("cam-1"):             "",
			s.AuthRequest("cam-1") + "/x":      "",
			"other/devices/cam-1/auth/request": "",
			"":                                 "",
			"\xff\xfe":                         "",
		}
		for topic, want := range devices {
			if got := r.device(topic); got != want {
				t.Errorf("root %q: device(%q) = %q, want %q", root, topic, got, want)
			}
		}
	}
}

// pickerFixture is a picker over n connected token workers (and offline ones), with a
// Subscribers value as mochi builds it for an auth request.
func pickerFixture(tb testing.TB, device bool, online, offline int) (*picker, *mqtt.Subscribers, string) {
	tb.Helper()
	srv := mqtt.New(&mqtt.Options{Logger: slog.New(slog.DiscardHandler)})
	tb.Cleanup(func() { srv.Close() })
	s := topics.Default()
	p := newPicker(srv.Clients)
	if device {
		p.device = newDeviceRouter(srv.Clients, s)
	}
	filter := s.WorkerFilter("")
	members := make(map[string]packets.Subscription)
	for i := range online + offline {
		id := fmt.Sprintf("tokenworker:%d", i)
		cl := &mqtt.Client{ID: id} // never opened: Closed
		if i < online {
			cl = srv.NewClient(nil, "test", id, true)
		}
		srv.Clients.Add(cl)
		members[id] = packets.Subscription{Filter: filter, Qos: 1}
	}
	subs := &mqtt.Subscribers{
		Shared:         map[string]map[string]packets.Subscription{filter: members},
		SharedSelected: map[string]packets.Subscription{},
	}
	return p, subs, filter
}

func selected(subs *mqtt.Subscribers) string {
	for id := range subs.SharedSelected {
		return id
	}
	return ""
}

// Rendezvous properties on the picker itself: the choice is a function of the device and
// the connected members only; removing a member moves exactly the devices it had, each
// to the member that was its second choice; devices spread over all members.
func TestDeviceRouterRendezvous(t *testing.T) {
	t.Parallel()
	p, subs, filter := pickerFixture(t, true, 4, 2)
	pick := func(dev string) string {
		clear(subs.SharedSelected)
		p.pick(subs, topics.Default().AuthRequest(dev))
		if len(subs.SharedSelected) != 1 {
			t.Fatalf("%d members selected", len(subs.SharedSelected))
		}
		return selected(subs)
	}
	const nDevices = 2000
	owner := make(map[string]string, nDevices)
	per := map[string]int{}
	for i := range nDevices {
		dev := fmt.Sprintf("cam-%d", i)
		owner[dev] = pick(dev)
		if pick(dev) != owner[dev] {
			t.Fatalf("%s: two picks differ", dev)
		}
		per[owner[dev]]++
	}
	for i := range 4 {
		// Each of 4 members expects 500 of 2000; 350 is more than 7 standard deviations off.
		if n := per[fmt.Sprintf("tokenworker:%d", i)]; n < 350 {
			t.Errorf("tokenworker:%d has %d of %d devices (%v)", i, n, nDevices, per)
		}
	}
	if per["tokenworker:4"]+per["tokenworker:5"] != 0 {
		t.Fatalf("offline members picked: %v", per)
	}

	// tokenworker:2 leaves the group (its subscription is gone).
	members := subs.Shared[filter]
	delete(members, "tokenworker:2")
	moved := 0
	for dev, was := range owner {
		now := pick(dev)
		if was != "tokenworker:2" && now != was {
			t.Fatalf("%s moved from %s to %s", dev, was, now)
		}
		if was == "tokenworker:2" {
			moved++
			// Its new worker is the heaviest of the rest.
			dh := fnv1a(fnvOffset, dev)
			for id := range members {
				if id != now && p.online(id) && rendezvousWeight(dh, id) > rendezvousWeight(dh, now) {
					t.Fatalf("%s went to %s, but %s weighs more", dev, now, id)
				}
			}
		}
	}
	if moved != per["tokenworker:2"] {
		t.Fatalf("%d devices moved, tokenworker:2 had %d", moved, per["tokenworker:2"])
	}
}

// The device path does not allocate (mochi hands the hook a SharedSelected map).
func TestDevicePickAllocations(t *testing.T) {
	p, subs, _ := pickerFixture(t, true, 3, 1)
	topic := topics.Default().AuthRequest("cam-1234")
	if n := testing.AllocsPerRun(1000, func() {
		clear(subs.SharedSelected)
		p.pick(subs, topic)
	}); n != 0 {
		t.Fatalf("%v allocations per pick", n)
	}
}

// BenchmarkPick compares the two strategies for one auth request over 2 and 8 connected
// token workers (plus one offline member).
func BenchmarkPick(b *testing.B) {
	for _, device := range []bool{false, true} {
		for _, n := range []int{2, 8} {
			name := fmt.Sprintf("%s/workers=%d", map[bool]string{false: WorkerRoutingRoundRobin, true: WorkerRoutingDevice}[device], n)
			b.Run(name, func(b *testing.B) {
				p, subs, _ := pickerFixture(b, device, n, 1)
				s := topics.Default()
				topicsList := make([]string, 1024)
				for i := range topicsList {
					topicsList[i] = s.AuthRequest(fmt.Sprintf("cam-%d", i))
				}
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					clear(subs.SharedSelected)
					p.pick(subs, topicsList[i&1023])
				}
			})
		}
	}
}
