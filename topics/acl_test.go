package topics

import (
	"fmt"
	"strings"
	"testing"

	"github.com/clipgate/clipgate/internal/deviceid"
)

var roles = []Role{RoleDevice, RoleTokenWorker, RoleConsumer, RoleAdmin}

const (
	me    = "cam-01"
	other = "cam-02"
)

// TestAllowedMatrix checks every role against every device topic kind, for the client's
// own device and another one, with both actions, under the default and a custom root.
func TestAllowedMatrix(t *testing.T) {
	t.Parallel()
	for _, s := range []Scheme{Default(), mustNew(t, "acme/fleet/v1")} {
		kinds := []struct {
			kind  Kind
			topic func(string) string
		}{
			{KindAuthRequest, s.AuthRequest},
			{KindAuthReply, s.AuthReply},
			{KindEvent, s.UploadEvent},
			{otherEvent, func(id string) string { return s.Root() + "/devices/" + id + "/events/motion" }},
			{KindStatus, s.Status},
		}
		for _, role := range roles {
			for _, k := range kinds {
				for _, owner := range []string{me, other} {
					topic := k.topic(owner)
					for _, a := range []Action{Publish, Subscribe} {
						want := expectConcrete(role, k.kind, owner == me, a)
						if got := s.Allowed(role, me, topic, a); got != want {
							t.Errorf("%v (device %s) %v %q = %v, want %v", role, me, a, topic, got, want)
						}
					}
				}
			}
		}
	}
}

// otherEvent stands for an event topic whose name is not one of EventNames: consumers
// may read it (their filters are syntactic), no device may publish it.
const otherEvent Kind = 100

func expectConcrete(role Role, kind Kind, own bool, a Action) bool {
	switch role {
	case RoleDevice:
		if !own {
			return false
		}
		if a == Publish {
			return kind == KindAuthRequest || kind == KindEvent || kind == KindStatus
		}
		return kind == KindAuthReply
	case RoleTokenWorker:
		// Subscribe to a concrete request topic is also mochi's per-delivery check.
		return a == Publish && kind == KindAuthReply || a == Subscribe && kind == KindAuthRequest
	case RoleConsumer:
		return a == Subscribe && (kind == KindEvent || kind == otherEvent || kind == KindStatus)
	case RoleAdmin:
		return true
	}
	return false
}

type aclCase struct {
	role   Role
	device string
	topic  string
	action Action
	want   bool
}

// TestAllowedTable holds the cases the matrix cannot: wildcards, shared subscriptions,
// $SYS, cross-device and malformed attempts.
func TestAllowedTable(t *testing.T) {
	t.Parallel()
	const r = "clipgate/v1"
	D, W, C, A := RoleDevice, RoleTokenWorker, RoleConsumer, RoleAdmin
	P, S := Publish, Subscribe
	cases := []aclCase{
		// Devices: no wildcards, no $share, no $SYS, only their own topics.
		{D, me, r + "/devices/cam-01/auth/reply", S, true},
		{D, me, r + "/devices/+/auth/reply", S, false},
		{D, me, r + "/devices/cam-01/auth/+", S, false},
		{D, me, r + "/devices/cam-01/#", S, false},
		{D, me, r + "/devices/cam-01/auth/#", S, false},
		{D, me, r + "/#", S, false},
		{D, me, "#", S, false},
		{D, me, "+/v1/devices/cam-01/auth/reply", S, false},
		{D, me, "$share/g/" + r + "/devices/cam-01/auth/reply", S, false},
		{D, me, "$share/g/" + r + "/devices/+/auth/request", S, false},
		{D, me, "$SYS/#", S, false},
		{D, me, "$SYS/broker/clients/connected", S, false},
		{D, me, r + "/devices/cam-02/auth/reply", S, false},
		{D, me, r + "/devices/cam-01/auth/request", S, false},
		{D, me, r + "/devices/cam-01/events/upload", S, false},
		{D, me, r + "/devices/cam-01/events/upload", P, true},
		{D, me, r + "/devices/cam-01/events/whatever", P, false}, // not an event of the protocol
		{D, me, r + "/devices/cam-01/events/Upload", P, false},
		{D, me, r + "/devices/cam-01/events/upload2", P, false},
		{D, me, r + "/devices/cam-01/events/+", P, false},
		{D, me, r + "/devices/cam-01/events/#", P, false},
		{D, me, r + "/devices/cam-01/events", P, false},
		{D, me, r + "/devices/cam-01/events/a/b", P, false},
		{D, me, r + "/devices/cam-02/events/upload", P, false},
		{D, me, r + "/devices/cam-02/auth/request", P, false},
		{D, me, r + "/devices/cam-02/status", P, false},
		{D, me, r + "/devices/cam-01/auth/reply", P, false}, // forging its own reply
		{D, me, r + "/devices/cam-01", P, false},
		{D, me, r + "/devices/cam-01/other", P, false},
		{D, me, r, P, false},
		{D, me, "$SYS/x", P, false},
		{D, me, "elsewhere/topic", P, false},
		{D, me, "acme/fleet/v1/devices/cam-01/status", P, false}, // other root
		// A device with an empty or invalid ID (e.g. not authenticated as one) gets nothing.
		{D, "", r + "/devices//status", P, false},
		{D, "", r + "/devices/+/auth/reply", S, false},
		{D, "+", r + "/devices/+/auth/reply", S, false},
		{D, "#", r + "/devices/#", S, false},
		{D, "x", r + "/devices/x/status", P, false},
		{D, "a/b", r + "/devices/a/b/status", P, false},
		{D, "cam-01/auth", r + "/devices/cam-01/auth/auth/request", P, false},

		// Token workers: only the shared request filter; publish replies only.
		{W, "", "$share/tokenworkers/" + r + "/devices/+/auth/request", S, true},
		{W, "", "$share/any-group/" + r + "/devices/+/auth/request", S, true},
		{W, "", r + "/devices/+/auth/request", S, false}, // plain: every worker would get every request
		{W, "", "$share/g/" + r + "/devices/cam-01/auth/request", S, true},
		{W, "", r + "/devices/cam-01/auth/request", S, true}, // delivery check of one request
		{W, "", r + "/devices/cam-01/auth/reply", S, false},
		{W, "", "$share/g/" + r + "/devices/+/auth/reply", S, false},
		{W, "", "$share/g/" + r + "/devices/+/auth/+", S, false},
		{W, "", "$share/g/" + r + "/devices/+/#", S, false},
		{W, "", "$share/g/" + r + "/#", S, false},
		{W, "", "$share/g/" + r + "/devices/+/events/upload", S, false},
		{W, "", "$share//" + r + "/devices/+/auth/request", S, false},
		{W, "", "$share/+/" + r + "/devices/+/auth/request", S, false},
		{W, "", "$share/#/" + r + "/devices/+/auth/request", S, false},
		{W, "", "$share/g+/" + r + "/devices/+/auth/request", S, false},
		{W, "", "$share/tokenworkers", S, false},
		{W, "", "$share/tokenworkers/", S, false},
		{W, "", "$share", S, false},
		{W, "", "$share/", S, false},
		{W, "", "$SHARE/g/" + r + "/devices/+/auth/request", S, false},
		{W, "", "$queue/" + r + "/devices/+/auth/request", S, false},
		{W, "", "$share/g/$share/h/" + r + "/devices/+/auth/request", S, false},
		{W, "", "$SYS/#", S, false},
		{W, "", r + "/devices/cam-02/auth/reply", P, true},
		{W, "", r + "/devices/+/auth/reply", P, false},
		{W, "", r + "/devices/#", P, false},
		{W, "", r + "/devices/x/auth/reply", P, false}, // invalid device ID
		{W, "", r + "/devices/cam-01/auth/request", P, false},
		{W, "", r + "/devices/cam-01/events/upload", P, false},
		{W, "", "$share/g/" + r + "/devices/cam-01/auth/reply", P, false},

		// Consumers: events and status only, plain or shared; never publish.
		{C, "", r + "/devices/+/events/upload", S, true},
		{C, "", r + "/devices/+/events/+", S, true},
		{C, "", r + "/devices/cam-01/events/+", S, true},
		{C, "", r + "/devices/cam-01/events/upload", S, true},
		{C, "", r + "/devices/+/status", S, true},
		{C, "", r + "/devices/cam-01/status", S, true},
		{C, "", "$share/idx/" + r + "/devices/+/events/upload", S, true},
		{C, "", "$share/idx/" + r + "/devices/cam-01/events/+", S, true},
		{C, "", "$share/idx/" + r + "/devices/+/status", S, true},
		{C, "", r + "/#", S, false},
		{C, "", r + "/devices/#", S, false},
		{C, "", r + "/devices/+/#", S, false},
		{C, "", r + "/devices/+/+", S, false},
		{C, "", r + "/devices/+/+/+", S, false},
		{C, "", r + "/devices/+/events/#", S, false}, // also matches .../events
		{C, "", r + "/devices/+/status/#", S, false},
		{C, "", r + "/devices/+/auth/reply", S, false},
		{C, "", r + "/devices/+/auth/request", S, false},
		{C, "", r + "/devices/+/auth/+", S, false},
		{C, "", "$share/g/" + r + "/devices/+/auth/reply", S, false},
		{C, "", "$share/g/" + r + "/#", S, false},
		{C, "", "+/v1/devices/+/events/upload", S, false},
		{C, "", "clipgate/+/devices/+/events/upload", S, false},
		{C, "", "#", S, false},
		{C, "", "+/#", S, false},
		{C, "", "$SYS/#", S, false},
		{C, "", r + "/devices/x/events/upload", S, false},   // invalid device ID
		{C, "", r + "/devices/cam-01/events/a b", S, false}, // invalid event name
		{C, "", r + "/devices/cam-01/events/upload", P, false},
		{C, "", r + "/devices/cam-01/status", P, false},

		// Admins: anything under the root and $SYS; publish under the root.
		{A, "", r + "/#", S, true},
		{A, "", "$share/ops/" + r + "/#", S, true},
		{A, "", r + "/devices/+/auth/reply", S, true},
		{A, "", r + "/+/+", S, true},
		{A, "", r, S, true},
		{A, "", "$SYS/#", S, true},
		{A, "", "$SYS", S, true},
		{A, "", "$SYS/broker/+/connected", S, true},
		{A, "", "$share/ops/$SYS/#", S, false},
		{A, "", "#", S, false},   // matches topics outside the root
		{A, "", "+/#", S, false}, // likewise
		{A, "", "clipgate/#", S, false},
		{A, "", "+/v1/#", S, false},
		{A, "", "other/#", S, false},
		{A, "", "$SYSX/#", S, false},
		{A, "", "$share/g/other/#", S, false},
		{A, "", r + "/devices/cam-01/anything/at/all", P, true},
		{A, "", r, P, true},
		{A, "", r + "/devices/+/status", P, false},
		{A, "", r + "/#", P, false},
		{A, "", "other/topic", P, false},
		{A, "", "$SYS/broker/x", P, false},
		{A, "", "$share/g/" + r + "/x", P, false},

		// Unknown roles and actions are denied.
		{Role(0), "", r + "/devices/cam-01/status", P, false},
		{Role(99), "", r + "/#", S, false},
	}
	cases = append(cases, malformedCases(r)...)
	s := Default()
	for _, c := range cases {
		if got := s.Allowed(c.role, c.device, c.topic, c.action); got != c.want {
			t.Errorf("%v (device %q) %v %q = %v, want %v", c.role, c.device, c.action, c.topic, got, c.want)
		}
	}
	for _, a := range []Action{0, 3} {
		if s.Allowed(RoleAdmin, "", r+"/x", a) {
			t.Errorf("Allowed with Action(%d) = true", a)
		}
	}
}

// malformedCases are denied to every role (the admin is the most permissive one) with
// both actions.
func malformedCases(r string) []aclCase {
	bad := []string{
		"",
		"/",
		r + "/",
		"/" + r + "/x",
		r + "//x",
		r + "/devices//status",
		r + "/a+",
		r + "/+a",
		r + "/a#",
		r + "/#/x",
		r + "/#/",
		r + "/##",
		r + "/++",
		r + "/a/#b",
		r + "/x\x00y",
		r + "/\x00",
		r + "/bad\xff\xfe",
		r + "/" + strings.Repeat("x", MaxTopicLen),
		"$share/g/" + r + "//x",
		"$share/g/" + r + "/a+",
		"$share/g//" + r,
		"$share/g/",
		"$share//",
		"$share/g\x00/" + r + "/#",
		"$share/\xff/" + r + "/#",
		"$SYS/a+",
		"$SYS/#/x",
		"$SYS//x",
	}
	var out []aclCase
	for _, topic := range bad {
		for _, role := range roles {
			for _, a := range []Action{Publish, Subscribe} {
				out = append(out, aclCase{role, me, topic, a, false})
			}
		}
	}
	return out
}

func TestWellFormed(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", MaxTopicLen)
	for _, c := range []struct {
		t          string
		name, filt bool
	}{
		{"a", true, true},
		{"a/b/c", true, true},
		{long, true, true},
		{long + "x", false, false},
		{"+", false, true},
		{"#", false, true},
		{"a/+/c", false, true},
		{"a/#", false, true},
		{"+/+/#", false, true},
		{"$SYS/#", false, true},
		{"a/b#", false, false},
		{"a/#/c", false, false},
		{"a+/b", false, false},
		{"a//b", false, false},
		{"/a", false, false},
		{"a/", false, false},
		{"", false, false},
		{"a\x00", false, false},
		{"\xc3", false, false},
	} {
		if got := wellFormed(c.t, false); got != c.name {
			t.Errorf("wellFormed(%q, name) = %v, want %v", c.t, got, c.name)
		}
		if got := wellFormed(c.t, true); got != c.filt {
			t.Errorf("wellFormed(%q, filter) = %v, want %v", c.t, got, c.filt)
		}
	}
}

// match is a reference MQTT topic matcher: filter (no $share prefix) against topic.
func match(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	f, tl := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, level := range f {
		if level == "#" {
			return true // matches the parent level too
		}
		if i >= len(tl) || level != "+" && level != tl[i] {
			return false
		}
	}
	return len(f) == len(tl)
}

// anyEvent reports whether topic is {root}/devices/{valid id}/events/{one level of
// [A-Za-z0-9._-], 1 to 64 characters, not "." or ".."}.
func anyEvent(s Scheme, topic string) bool {
	rest, ok := strings.CutPrefix(topic, s.Root()+"/devices/")
	if !ok {
		return false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || !deviceid.Valid(parts[0]) || parts[1] != "events" {
		return false
	}
	n := parts[2]
	if n == "" || len(n) > MaxEventNameLen || n == "." || n == ".." {
		return false
	}
	return strings.Trim(n, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == ""
}

// readable is the reference answer to "may role receive a message on this concrete
// topic?", written directly from the rules rather than from Allowed.
func readable(s Scheme, role Role, device, topic string) bool {
	kind, id, ok := s.Parse(topic)
	switch role {
	case RoleDevice:
		return ok && kind == KindAuthReply && id == device
	case RoleTokenWorker:
		return ok && kind == KindAuthRequest
	case RoleConsumer:
		return ok && (kind == KindEvent || kind == KindStatus) || anyEvent(s, topic)
	case RoleAdmin:
		return topic == s.Root() || strings.HasPrefix(topic, s.Root()+"/") ||
			topic == "$SYS" || strings.HasPrefix(topic, "$SYS/")
	}
	return false
}

// universe is a set of concrete topics that filters are checked against.
func universe(s Scheme) []string {
	r := s.Root()
	var u []string
	for _, id := range []string{me, other, "cam.03"} {
		d := r + "/devices/" + id
		u = append(u, s.AuthRequest(id), s.AuthReply(id), s.UploadEvent(id), s.Status(id),
			d+"/events/motion", d+"/events", d+"/auth", d, d+"/auth/reply/x", d+"/auth/request/x",
			d+"/events/upload/x", d+"/status/x", d+"/other", d+"/other/x/y")
	}
	u = append(u, r, r+"/devices", r+"/x", r+"/x/y/z/w/v", r+"/devices/cam-01/a/b/c/d",
		"clipgate", "clipgate/v2/devices/cam-01/status", "other/topic", "x/"+r+"/devices/cam-01/status",
		"$SYS", "$SYS/broker/clients/connected", "$share/g/"+r+"/devices/cam-01/status", "$other/x",
		"acme/fleet/v1/devices/cam-01/auth/reply", "acme/fleet/v1/devices/cam-01/status")
	return u
}

// candidateFilters derives filters from the universe: every topic with any subset of its
// levels replaced by "+" and any tail replaced by "#", plain and inside a share group.
func candidateFilters(u []string) []string {
	seen := map[string]bool{}
	var out []string
	add := func(f string) {
		if !seen[f] {
			seen[f] = true
			out = append(out, f, "$share/g/"+f)
		}
	}
	for _, topic := range u {
		levels := strings.Split(topic, "/")
		if len(levels) > 9 {
			continue
		}
		for mask := 0; mask < 1<<len(levels); mask++ {
			f := make([]string, len(levels))
			for i, l := range levels {
				if mask&(1<<i) != 0 {
					f[i] = "+"
				} else {
					f[i] = l
				}
			}
			add(strings.Join(f, "/"))
			for cut := 0; cut < len(f); cut++ {
				add(strings.Join(append(append([]string{}, f[:cut]...), "#"), "/"))
			}
		}
	}
	return out
}

// TestFilterSoundness checks the central rule: a filter is allowed only if every topic
// it can match is readable by the role, and each such topic passes the per-delivery
// check. Thousands of filters are derived from a universe of topics and checked against
// all of them.
func TestFilterSoundness(t *testing.T) {
	t.Parallel()
	for _, s := range []Scheme{Default(), mustNew(t, "acme/fleet/v1")} {
		u := universe(s)
		filters := candidateFilters(u)
		allowed := map[Role]int{}
		for _, role := range roles {
			for _, f := range filters {
				if !s.Allowed(role, me, f, Subscribe) {
					continue
				}
				allowed[role]++
				plain := f
				if rest, ok := strings.CutPrefix(f, "$share/g/"); ok {
					plain = rest
				}
				for _, topic := range u {
					if !match(plain, topic) {
						continue
					}
					if !readable(s, role, me, topic) {
						t.Errorf("%v may subscribe to %q, which matches %q", role, f, topic)
					}
					// mochi-mqtt checks every delivery with the concrete topic: what the
					// filter lets through must pass that check too.
					if !s.Allowed(role, me, topic, Subscribe) {
						t.Errorf("%v may subscribe to %q but not receive its match %q", role, f, topic)
					}
				}
			}
		}
		// The check must not pass vacuously: each role has filters it may use.
		for _, role := range roles {
			if allowed[role] == 0 {
				t.Errorf("root %q: no candidate filter allowed for %v", s.Root(), role)
			}
		}
		t.Logf("root %q: %d filters, allowed per role %v", s.Root(), len(filters), allowed)
	}
}

// aclInputs is a mix of allowed and denied decisions for the allocation test and the
// benchmark.
var aclInputs = []aclCase{
	{RoleDevice, me, "clipgate/v1/devices/cam-01/auth/request", Publish, true},
	{RoleDevice, me, "clipgate/v1/devices/cam-01/events/upload", Publish, true},
	{RoleDevice, me, "clipgate/v1/devices/cam-01/auth/reply", Subscribe, true},
	{RoleDevice, me, "clipgate/v1/devices/cam-02/auth/reply", Subscribe, false},
	{RoleDevice, me, "clipgate/v1/devices/+/auth/reply", Subscribe, false},
	{RoleTokenWorker, "", "$share/tokenworkers/clipgate/v1/devices/+/auth/request", Subscribe, true},
	{RoleTokenWorker, "", "clipgate/v1/devices/cam-02/auth/reply", Publish, true},
	{RoleConsumer, "", "$share/idx/clipgate/v1/devices/+/events/upload", Subscribe, true},
	{RoleConsumer, "", "clipgate/v1/#", Subscribe, false},
	{RoleAdmin, "", "$SYS/#", Subscribe, true},
	{RoleAdmin, "", "clipgate/v1/devices/cam-01/x", Publish, true},
	{RoleAdmin, "", "bad/\xff", Publish, false},
}

func TestNoAllocations(t *testing.T) {
	s := mustNew(t, "acme/fleet/v1")
	d := Default()
	for _, c := range aclInputs {
		if got := d.Allowed(c.role, c.device, c.topic, c.action); got != c.want {
			t.Fatalf("%v %v %q = %v, want %v", c.role, c.action, c.topic, got, c.want)
		}
	}
	allocs := testing.AllocsPerRun(100, func() {
		for _, c := range aclInputs {
			d.Allowed(c.role, c.device, c.topic, c.action)
			s.Allowed(c.role, c.device, c.topic, c.action)
			d.Parse(c.topic)
			s.Parse(c.topic)
		}
	})
	if allocs != 0 {
		t.Errorf("Allowed and Parse allocate: %v allocations per run", allocs)
	}
}

func BenchmarkAllowed(b *testing.B) {
	s := Default()
	for i, c := range aclInputs[:4] {
		b.Run(fmt.Sprintf("%d-%v-%v-%v", i, c.role, c.action, c.want), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.Allowed(c.role, c.device, c.topic, c.action)
			}
		})
	}
	b.Run("mix", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, c := range aclInputs {
				s.Allowed(c.role, c.device, c.topic, c.action)
			}
		}
	})
}

func BenchmarkParse(b *testing.B) {
	s := Default()
	topic := s.UploadEvent(me)
	b.ReportAllocs()
	for b.Loop() {
		s.Parse(topic)
	}
}

// FuzzAllowed checks that Allowed never panics, that devices never get a filter with
// wildcards, that no one publishes to a wildcard topic, and that every allowed
// subscription matches only topics the role may read.
func FuzzAllowed(f *testing.F) {
	s := Default()
	for _, c := range aclInputs {
		f.Add(uint8(c.role), c.device, c.topic)
	}
	for _, topic := range []string{"$share/g/clipgate/v1/devices/+/auth/reply", "clipgate/v1/#", "#", "$SYS/#",
		"clipgate/v1/devices/cam-01/+", "clipgate/v1/devices/+/+/+", "$share//x", "a/#/b"} {
		f.Add(uint8(RoleDevice), me, topic)
		f.Add(uint8(RoleConsumer), "", topic)
	}
	u := universe(s)
	f.Fuzz(func(t *testing.T, roleN uint8, device, topic string) {
		role := Role(roleN % 6) // includes the invalid roles 0 and 5
		pub := s.Allowed(role, device, topic, Publish)
		sub := s.Allowed(role, device, topic, Subscribe)
		wild := strings.ContainsAny(topic, "+#")
		if pub && wild {
			t.Fatalf("%v may publish to wildcard topic %q", role, topic)
		}
		if role == RoleDevice && sub && (wild || strings.HasPrefix(topic, "$")) {
			t.Fatalf("device %q may subscribe to %q", device, topic)
		}
		if (pub || sub) && (strings.ContainsRune(topic, 0) || len(topic) > MaxTopicLen) {
			t.Fatalf("%v allowed malformed %q", role, topic)
		}
		if pub && !readable(s, RoleAdmin, "", topic) {
			t.Fatalf("%v may publish outside the root: %q", role, topic)
		}
		if !sub {
			return
		}
		plain := topic
		if rest, ok := strings.CutPrefix(topic, "$share/"); ok {
			_, plain, _ = strings.Cut(rest, "/")
		}
		topics := u
		if deviceid.Valid(device) {
			topics = append(topics[:len(topics):len(topics)], s.AuthReply(device), s.Status(device), s.AuthRequest(device))
		}
		for _, tp := range topics {
			if match(plain, tp) && !readable(s, role, device, tp) {
				t.Fatalf("%v (device %q) may subscribe to %q, which matches %q", role, device, topic, tp)
			}
		}
	})
}

// TestRevocationsTopicACL (issue 12 point 3): only the console may publish the
// revocation list; the token workers, consumers, the console and admins may read it,
// without a share group; devices may neither.
func TestRevocationsTopicACL(t *testing.T) {
	t.Parallel()
	s := Default()
	topic := s.Revocations()
	if topic != "clipgate/v1/revocations" {
		t.Fatalf("Revocations() = %q", topic)
	}
	if _, _, ok := s.Parse(topic); ok {
		t.Fatal("the revocation topic parses as a device topic")
	}
	for _, c := range []struct {
		role          Role
		publish, read bool
	}{
		{RoleDevice, false, false},
		{RoleTokenWorker, false, true},
		{RoleConsumer, false, true},
		{RoleAdmin, false, true},
		{RoleConsole, true, true},
	} {
		if got := s.Allowed(c.role, "cam-1", topic, Publish); got != c.publish {
			t.Errorf("%s publish: %v", c.role, got)
		}
		if got := s.Allowed(c.role, "cam-1", topic, Subscribe); got != c.read {
			t.Errorf("%s subscribe: %v", c.role, got)
		}
		if c.role != RoleAdmin && s.Allowed(c.role, "cam-1", "$share/g/"+topic, Subscribe) {
			t.Errorf("%s may read the list inside a share group", c.role)
		}
	}
	// The console reads what consumers read and publishes nothing else.
	for _, f := range []string{s.EventFilter("console"), s.StatusFilter("")} {
		if !s.Allowed(RoleConsole, "", f, Subscribe) {
			t.Errorf("console subscribe %s: denied", f)
		}
	}
	for _, tp := range []string{s.UploadEvent("cam-1"), s.AuthReply("cam-1"), s.Root() + "/other"} {
		if s.Allowed(RoleConsole, "", tp, Publish) {
			t.Errorf("console publish %s: allowed", tp)
		}
	}
	if s.Allowed(RoleConsole, "", s.AuthReply("+"), Subscribe) {
		t.Error("console may read auth replies")
	}
	// The list is retained, so that a follower starting later gets it.
	if !s.MayRetain(RoleConsole, "", topic) || s.MayRetain(RoleAdmin, "", topic) || s.MayRetain(RoleConsole, "", s.Status("cam-1")) {
		t.Error("MayRetain: only the console retains the revocation list, and nothing else")
	}
	if r, err := ParseRole("console"); err != nil || r != RoleConsole || r.String() != "console" {
		t.Fatalf("ParseRole(console) = %v, %v", r, err)
	}
}

// TestMayRetain: a device may retain only its own status; token workers and consumers
// nothing; admins what they may publish.
func TestMayRetain(t *testing.T) {
	t.Parallel()
	s := Default()
	r := s.Root()
	D, W, C, A := RoleDevice, RoleTokenWorker, RoleConsumer, RoleAdmin
	cases := []struct {
		role   Role
		device string
		topic  string
		want   bool
	}{
		{D, me, s.Status(me), true},
		{D, me, s.Status(other), false},
		{D, me, s.UploadEvent(me), false},
		{D, me, r + "/devices/cam-01/events/motion", false},
		{D, me, s.AuthRequest(me), false},
		{D, me, s.AuthReply(me), false},
		{D, "", s.Status(me), false},
		{D, me, "$SYS/x", false},
		{W, "", s.AuthReply(me), false},
		{C, "", s.Status(me), false},
		{A, "", s.UploadEvent(me), true},
		{A, "", r + "/anything", true},
		{A, "", "elsewhere", false},
	}
	for _, c := range cases {
		if got := s.MayRetain(c.role, c.device, c.topic); got != c.want {
			t.Errorf("MayRetain(%v, %q, %q) = %v, want %v", c.role, c.device, c.topic, got, c.want)
		}
	}
}
