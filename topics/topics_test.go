package topics

import (
	"strings"
	"testing"
)

func mustNew(t testing.TB, root string) Scheme {
	t.Helper()
	s, err := New(root)
	if err != nil {
		t.Fatalf("New(%q): %v", root, err)
	}
	return s
}

func TestNew(t *testing.T) {
	t.Parallel()
	for _, root := range []string{"clipgate/v1", "a", "fleet-7/clipgate/v1", "ünïcode/v1", strings.Repeat("r", maxRootLen)} {
		s, err := New(root)
		if err != nil {
			t.Errorf("New(%q): %v", root, err)
			continue
		}
		if s.Root() != root {
			t.Errorf("New(%q).Root() = %q", root, s.Root())
		}
	}
	for _, root := range []string{
		"", "/", "/clipgate", "clipgate/", "clip//gate", "$SYS", "$share/g/x", "clip+gate", "+",
		"clip/#", "#", "a\x00b", "bad\xffutf8", strings.Repeat("r", maxRootLen+1),
	} {
		if _, err := New(root); err == nil {
			t.Errorf("New(%q) succeeded, want an error", root)
		}
	}
}

func TestBuilders(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		s    Scheme
		root string
	}{
		{Default(), "clipgate/v1"},
		{Scheme{}, "clipgate/v1"}, // the zero Scheme is the default
		{mustNew(t, "acme/cams"), "acme/cams"},
	} {
		r := tc.root
		checks := []struct{ got, want string }{
			{tc.s.AuthRequest("cam-01"), r + "/devices/cam-01/auth/request"},
			{tc.s.AuthReply("cam-01"), r + "/devices/cam-01/auth/reply"},
			{tc.s.UploadEvent("cam-01"), r + "/devices/cam-01/events/upload"},
			{tc.s.Status("cam-01"), r + "/devices/cam-01/status"},
			{tc.s.WorkerFilter(""), "$share/tokenworkers/" + r + "/devices/+/auth/request"},
			{tc.s.WorkerFilter("w2"), "$share/w2/" + r + "/devices/+/auth/request"},
			{tc.s.EventFilter(""), r + "/devices/+/events/upload"},
			{tc.s.EventFilter("idx"), "$share/idx/" + r + "/devices/+/events/upload"},
			{tc.s.StatusFilter(""), r + "/devices/+/status"},
			{tc.s.StatusFilter("idx"), "$share/idx/" + r + "/devices/+/status"},
		}
		for _, c := range checks {
			if c.got != c.want {
				t.Errorf("got %q, want %q", c.got, c.want)
			}
		}
		// The builders' own filters pass the ACL for the role that uses them.
		if !tc.s.Allowed(RoleTokenWorker, "", tc.s.WorkerFilter(""), Subscribe) {
			t.Errorf("worker filter %q denied to token workers", tc.s.WorkerFilter(""))
		}
		for _, f := range []string{tc.s.EventFilter(""), tc.s.EventFilter("g"), tc.s.StatusFilter(""), tc.s.StatusFilter("g")} {
			if !tc.s.Allowed(RoleConsumer, "", f, Subscribe) {
				t.Errorf("consumer filter %q denied to consumers", f)
			}
		}
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	s := Default()
	cases := []struct {
		topic string
		kind  Kind
		id    string
	}{
		{"clipgate/v1/devices/cam-01/auth/request", KindAuthRequest, "cam-01"},
		{"clipgate/v1/devices/cam-01/auth/reply", KindAuthReply, "cam-01"},
		{"clipgate/v1/devices/cam-01/events/upload", KindEvent, "cam-01"},
		{"clipgate/v1/devices/cam.01_X/events/upload", KindEvent, "cam.01_X"},
		{"clipgate/v1/devices/cam-01/status", KindStatus, "cam-01"},
		{"clipgate/v1/devices/" + strings.Repeat("d", 64) + "/status", KindStatus, strings.Repeat("d", 64)},
	}
	for _, c := range cases {
		kind, id, ok := s.Parse(c.topic)
		if !ok || kind != c.kind || id != c.id {
			t.Errorf("Parse(%q) = %v, %q, %v; want %v, %q, true", c.topic, kind, id, ok, c.kind, c.id)
		}
	}
	for _, topic := range []string{
		"", "clipgate/v1", "clipgate/v1/", "clipgate/v1/devices", "clipgate/v1/devices/",
		"clipgate/v1/devices/cam-01", "clipgate/v1/devices/cam-01/",
		"clipgate/v1/devices/cam-01/auth", "clipgate/v1/devices/cam-01/auth/",
		"clipgate/v1/devices/cam-01/auth/request/", "clipgate/v1/devices/cam-01/auth/request/x",
		"clipgate/v1/devices/cam-01/auth/replyx", "clipgate/v1/devices/cam-01/statu",
		"clipgate/v1/devices/cam-01/status/x", "clipgate/v1/devices/cam-01/events",
		"clipgate/v1/devices/cam-01/events/", "clipgate/v1/devices/cam-01/events/a/b",
		"clipgate/v1/devices/cam-01/events/.", "clipgate/v1/devices/cam-01/events/..",
		"clipgate/v1/devices/cam-01/events/a b", "clipgate/v1/devices/cam-01/events/+",
		"clipgate/v1/devices/cam-01/events/#", "clipgate/v1/devices/cam-01/events/" + strings.Repeat("e", 65),
		// Event names outside the protocol's (EventNames) are no device topic.
		"clipgate/v1/devices/cam-01/events/motion", "clipgate/v1/devices/cam-01/events/" + strings.Repeat("e", 64),
		"clipgate/v1/devices/cam-01/events/Upload", "clipgate/v1/devices/cam-01/events/upload.",
		"clipgate/v1/devices/+/status", "clipgate/v1/devices/#", "clipgate/v1/devices/x/status",
		"clipgate/v1/devices/../status", "clipgate/v1/devices//status", "clipgate/v1/devices/cam 1/status",
		"clipgate/v1/devices/" + strings.Repeat("d", 65) + "/status",
		"clipgate/v1x/devices/cam-01/status", "clipgate/v2/devices/cam-01/status",
		"/clipgate/v1/devices/cam-01/status", "Clipgate/v1/devices/cam-01/status",
		"clipgate/v1/Devices/cam-01/status", "clipgate/v1/device/cam-01/status",
		"$share/g/clipgate/v1/devices/cam-01/status", "clipgate/v1/devices/cam-01/STATUS",
		"clipgate/v1/devices/cam\x00/status", "clipgate/v1/devices/cam-01/status\x00",
	} {
		if kind, id, ok := s.Parse(topic); ok || kind != KindUnknown || id != "" {
			t.Errorf("Parse(%q) = %v, %q, %v; want unknown", topic, kind, id, ok)
		}
	}
	// A custom root is parsed under that root only.
	c := mustNew(t, "acme/cams")
	if kind, id, ok := c.Parse("acme/cams/devices/cam-01/status"); !ok || kind != KindStatus || id != "cam-01" {
		t.Errorf("custom root Parse = %v, %q, %v", kind, id, ok)
	}
	if _, _, ok := c.Parse("clipgate/v1/devices/cam-01/status"); ok {
		t.Error("custom scheme parsed a default-root topic")
	}
	if _, _, ok := s.Parse("acme/cams/devices/cam-01/status"); ok {
		t.Error("default scheme parsed a custom-root topic")
	}
}

func TestParseRole(t *testing.T) {
	t.Parallel()
	for _, r := range []Role{RoleDevice, RoleTokenWorker, RoleConsumer, RoleAdmin} {
		got, err := ParseRole(r.String())
		if err != nil || got != r {
			t.Errorf("ParseRole(%q) = %v, %v", r.String(), got, err)
		}
	}
	for _, s := range []string{"", "Device", "ADMIN", "worker", "token-worker", "root", "device "} {
		if _, err := ParseRole(s); err == nil {
			t.Errorf("ParseRole(%q) succeeded", s)
		}
	}
	if s := Role(0).String(); s != "Role(0)" {
		t.Errorf("Role(0).String() = %q", s)
	}
	if Publish.String() != "publish" || Subscribe.String() != "subscribe" || Action(9).String() != "Action(9)" {
		t.Error("Action.String")
	}
	for k, want := range map[Kind]string{KindUnknown: "unknown", KindAuthRequest: "auth-request",
		KindAuthReply: "auth-reply", KindEvent: "event", KindStatus: "status", Kind(42): "unknown"} {
		if k.String() != want {
			t.Errorf("Kind(%d).String() = %q, want %q", int(k), k.String(), want)
		}
	}
}

func TestValidGroup(t *testing.T) {
	t.Parallel()
	for _, g := range []string{"g", "tokenworkers", "index-1", "ünï"} {
		if !ValidGroup(g) {
			t.Errorf("ValidGroup(%q) = false", g)
		}
	}
	for _, g := range []string{"", "a/b", "+", "#", "a+", "b#", "a\x00", "\xff"} {
		if ValidGroup(g) {
			t.Errorf("ValidGroup(%q) = true", g)
		}
	}
}
