package broker

import (
	"fmt"
	"math/rand/v2"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/topics"
)

func newIdleBroker(t testing.TB) *Broker {
	t.Helper()
	fleet, err := identity.NewFleetKeyring()
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{ConnectKeys: fleet.ConnectRoots(), Revocations: identity.NewRevocations("cam-revoked")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

var cacheRoles = []Principal{
	{Role: topics.RoleDevice, DeviceID: "cam-1", Username: "cam-1"},
	{Role: topics.RoleDevice, DeviceID: "cam-revoked", Username: "cam-revoked"},
	{Role: topics.RoleTokenWorker, Username: "worker"},
	{Role: topics.RoleConsumer, Username: "consumer"},
	{Role: topics.RoleAdmin, Username: "admin"},
}

// randomTopic draws from device topics of a few devices, wildcards, shares, $SYS and junk.
func randomTopic(r *rand.Rand) string {
	ids := []string{"cam-1", "cam-2", "cam-revoked", "+", "x", "a/b", ""}
	kinds := []string{"auth/request", "auth/reply", "events/upload", "events/motion", "events/+", "status", "#", "status/x", "auth"}
	roots := []string{"clipgate/v1", "clipgate/v2", "+/v1", "$share/g/clipgate/v1", "$share/tokenworkers/clipgate/v1", "$share//clipgate/v1"}
	switch r.IntN(8) {
	case 0:
		return []string{"#", "+", "$SYS/#", "$SYS/broker/uptime", "clipgate/v1/#", "clipgate/#", "", "\x00", denyFilter}[r.IntN(9)]
	default:
		return roots[r.IntN(len(roots))] + "/devices/" + ids[r.IntN(len(ids))] + "/" + kinds[r.IntN(len(kinds))]
	}
}

// The cache (by class for device topics, by string otherwise) gives the same answers as
// the uncached decision, whatever order topics arrive in.
func TestACLCacheMatchesDecision(t *testing.T) {
	b := newIdleBroker(t)
	r := rand.New(rand.NewPCG(1, 2))
	for _, p := range cacheRoles {
		warm := b.newSession(p)
		for i := 0; i < 20000; i++ {
			topic, write := randomTopic(r), r.IntN(2) == 0
			got := b.allowed(warm, topic, write)
			want := !(p.Role == topics.RoleDevice && b.revs.Revoked(p.DeviceID)) && b.allowedRaw(b.newSession(p), topic, write)
			if got != want {
				t.Fatalf("%s %q write=%v: cached %v, decision %v", p.Role, topic, write, got, want)
			}
		}
	}
}

// The read rule lets each role receive exactly what its subscriptions can deliver.
func TestACLReadRule(t *testing.T) {
	b := newIdleBroker(t)
	s := b.scheme
	cases := []struct {
		p     Principal
		topic string
		want  bool
	}{
		{cacheRoles[0], s.AuthReply("cam-1"), true},
		{cacheRoles[0], s.AuthReply("cam-2"), false},
		{cacheRoles[0], s.AuthRequest("cam-1"), false},
		{cacheRoles[1], s.AuthReply("cam-revoked"), false},
		{cacheRoles[2], s.AuthRequest("cam-2"), true},
		{cacheRoles[2], s.AuthReply("cam-2"), false},
		{cacheRoles[2], s.UploadEvent("cam-2"), false},
		{cacheRoles[3], s.UploadEvent("cam-2"), true},
		{cacheRoles[3], s.Status("cam-2"), true},
		{cacheRoles[3], s.AuthReply("cam-2"), false},
		{cacheRoles[3], s.AuthRequest("cam-2"), false},
		{cacheRoles[4], s.AuthReply("cam-2"), true},
		{cacheRoles[4], "$SYS/broker/uptime", true},
		{cacheRoles[3], "$SYS/broker/uptime", false},
	}
	for _, c := range cases {
		if got := b.allowed(b.newSession(c.p), c.topic, false); got != c.want {
			t.Errorf("%s reads %q: %v, want %v", c.p.Role, c.topic, got, c.want)
		}
	}
}

// The hot path (mochi's OnACLCheck for a connected client, verdict cached) allocates
// nothing, for class-cached device topics and string-cached filters and $SYS topics alike.
func TestACLCheckDoesNotAllocate(t *testing.T) {
	b := newIdleBroker(t)
	h := &hook{b: b}
	s := b.scheme
	cases := []struct {
		p     Principal
		topic string
		write bool
	}{
		{cacheRoles[0], s.AuthRequest("cam-1"), true},
		{cacheRoles[0], s.AuthReply("cam-1"), false},
		{cacheRoles[0], s.AuthRequest("cam-2"), true},
		{cacheRoles[2], s.AuthRequest("cam-77"), false},
		{cacheRoles[2], s.WorkerFilter(""), false},
		{cacheRoles[3], s.EventFilter("g"), false},
		{cacheRoles[4], "$SYS/broker/clients/connected", false},
	}
	for _, c := range cases {
		cl := &mqtt.Client{ID: c.p.Username}
		b.sessions.add(cl, b.newSession(c.p))
		want := h.OnACLCheck(cl, c.topic, c.write)
		allocs := testing.AllocsPerRun(1000, func() {
			if h.OnACLCheck(cl, c.topic, c.write) != want {
				panic("verdict changed")
			}
		})
		if allocs != 0 {
			t.Errorf("%s %q write=%v: %v allocations per check", c.p.Role, c.topic, c.write, allocs)
		}
	}
}

// BenchmarkACLCheck measures mochi's OnACLCheck call on the cached path.
func BenchmarkACLCheck(b *testing.B) {
	br := newIdleBroker(b)
	h := &hook{b: br}
	s := br.scheme
	bench := func(name string, p Principal, topic func(i int) string, write bool) {
		cl := &mqtt.Client{ID: p.Username}
		br.sessions.add(cl, br.newSession(p))
		topicsList := make([]string, 1024)
		for i := range topicsList {
			topicsList[i] = topic(i)
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				h.OnACLCheck(cl, topicsList[i&1023], write)
			}
		})
	}
	bench("device-publish-own-request", cacheRoles[0], func(int) string { return s.AuthRequest("cam-1") }, true)
	bench("device-delivery-own-reply", cacheRoles[0], func(int) string { return s.AuthReply("cam-1") }, false)
	bench("worker-delivery-1024-devices", cacheRoles[2], func(i int) string { return s.AuthRequest(fmt.Sprintf("cam-%d", i)) }, false)
	bench("consumer-delivery-1024-devices", cacheRoles[3], func(i int) string { return s.UploadEvent(fmt.Sprintf("cam-%d", i)) }, false)
	bench("admin-delivery-sys", cacheRoles[4], func(int) string { return "$SYS/broker/clients/connected" }, false)
	b.Run("uncached-topics.Allowed", func(b *testing.B) {
		b.ReportAllocs()
		topic := s.AuthRequest("cam-1")
		for b.Loop() {
			s.Allowed(topics.RoleDevice, "cam-1", topic, topics.Publish)
		}
	})
}
