package broker

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clipgate/clipgate/internal/identity"
)

func httpDo(t *testing.T, method, url, token, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if len(data) > 0 && resp.Header.Get("Content-Type") == "application/json" {
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("%s %s: bad JSON %q: %v", method, url, data, err)
		}
	}
	return resp.StatusCode, m
}

func TestHealthAndStats(t *testing.T) {
	e := newEnv(t, nil)
	base := "http://" + e.b.HTTPAddr()
	if code, m := httpDo(t, "GET", base+"/healthcheck", "", ""); code != 200 || m["status"] != "ok" {
		t.Fatalf("healthcheck: %d %v", code, m)
	}
	if code, _ := httpDo(t, "POST", base+"/healthcheck", "", ""); code != http.StatusMethodNotAllowed {
		t.Fatalf("POST healthcheck: %d", code)
	}
	if code, _ := httpDo(t, "POST", base+"/emqx/authn", "", "{}"); code != http.StatusNotFound {
		t.Fatalf("EMQX endpoint served while disabled: %d", code)
	}
	d := e.device("cam-1")
	d.publish(t, e.scheme.Status("cam-1"), 1, "up")
	e.tryConnect(clientOpts{clientID: "cam-2", username: "cam-2", password: "v1.1.x"})
	code, m := httpDo(t, "GET", base+"/sys", "", "")
	if code != 200 {
		t.Fatalf("sys: %d", code)
	}
	for key, want := range map[string]float64{"clients_connected": 1, "sessions": 1, "auth_failures": 1, "messages_dropped": 0, "inflight_dropped": 0} {
		if got, ok := m[key].(float64); !ok || got != want {
			t.Errorf("/sys %s = %v, want %v", key, m[key], want)
		}
	}
	for _, key := range []string{"messages_received", "bytes_received", "packets_sent"} {
		if got, _ := m[key].(float64); got < 1 {
			t.Errorf("/sys %s = %v", key, m[key])
		}
	}
	if m["version"] != "2.7.9" {
		t.Errorf("/sys version = %v", m["version"])
	}
}

// The EMQX HTTP authn/authz contract serves the same decisions as the MQTT listener.
func TestEMQXContract(t *testing.T) {
	token := "emqx-token-0123456789"
	var tokenFile string
	e := newEnv(t, func(c *Config) {
		tokenFile = filepath.Join(t.TempDir(), "emqx.token")
		if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		c.EMQX = EMQXConfig{Enabled: true, TokenFile: tokenFile}
		c.Revocations = identity.NewRevocations("cam-revoked")
	})
	authn := "http://" + e.b.HTTPAddr() + "/emqx/authn"
	authz := "http://" + e.b.HTTPAddr() + "/emqx/authz"
	js := func(v any) string {
		b, _ := json.Marshal(v)
		return string(b)
	}
	login := func(clientID, user, pw string) map[string]any {
		t.Helper()
		code, m := httpDo(t, "POST", authn, token, js(map[string]string{"clientid": clientID, "username": user, "password": pw, "peerhost": "10.0.0.1"}))
		if code != 200 {
			t.Fatalf("authn %s: HTTP %d %v", clientID, code, m)
		}
		return m
	}

	t.Run("authn", func(t *testing.T) {
		if m := login("cam-1", "cam-1", e.devicePassword("cam-1")); m["result"] != "allow" || m["is_superuser"] != false {
			t.Fatalf("device: %v", m)
		}
		if m := login("cam-1", "cam-1", e.devicePassword("cam-2")); m["result"] != "deny" {
			t.Fatalf("wrong password: %v", m)
		}
		if m := login("cam-revoked", "cam-revoked", e.devicePassword("cam-revoked")); m["result"] != "deny" {
			t.Fatalf("revoked: %v", m)
		}
		if m := login("worker-1", "worker", passwordOf("worker")); m["result"] != "deny" {
			t.Fatalf("service with device-form client ID: %v", m)
		}
		m := login("consumer:1", "consumer", passwordOf("consumer"))
		attrs, _ := m["client_attrs"].(map[string]any)
		if m["result"] != "allow" || attrs["clipgate_role"] != "consumer" || attrs["clipgate_sig"] == "" {
			t.Fatalf("service: %v", m)
		}
		// Certificate CN (verified by EMQX) replaces the device password.
		code, m := httpDo(t, "POST", authn, token, js(map[string]string{"clientid": "cam-3", "username": "cam-3", "cert_common_name": "cam-3"}))
		if code != 200 || m["result"] != "allow" {
			t.Fatalf("certificate login: %d %v", code, m)
		}
		code, m = httpDo(t, "POST", authn, token, js(map[string]string{"clientid": "cam-3", "username": "cam-3", "cert_common_name": "cam-4"}))
		if code != 200 || m["result"] != "deny" {
			t.Fatalf("certificate CN mismatch: %d %v", code, m)
		}
	})

	sig := func(user, role string) string {
		m := login(user+":1", user, passwordOf(user))
		attrs := m["client_attrs"].(map[string]any)
		if attrs["clipgate_role"] != role {
			t.Fatalf("role of %s: %v", user, attrs)
		}
		return attrs["clipgate_sig"].(string)
	}
	consumerSig := sig("consumer", "consumer")
	workerSig := sig("worker", "tokenworker")

	t.Run("authz", func(t *testing.T) {
		cases := map[string]struct {
			req  map[string]string
			want string
		}{
			"device own request":     {map[string]string{"clientid": "cam-1", "username": "cam-1", "topic": e.scheme.AuthRequest("cam-1"), "action": "publish"}, "allow"},
			"device other's request": {map[string]string{"clientid": "cam-1", "username": "cam-1", "topic": e.scheme.AuthRequest("cam-2"), "action": "publish"}, "deny"},
			"device own reply":       {map[string]string{"clientid": "cam-1", "username": "cam-1", "topic": e.scheme.AuthReply("cam-1"), "action": "subscribe"}, "allow"},
			"device wildcard":        {map[string]string{"clientid": "cam-1", "username": "cam-1", "topic": "clipgate/v1/devices/+/auth/reply", "action": "subscribe"}, "deny"},
			"revoked device":         {map[string]string{"clientid": "cam-revoked", "username": "cam-revoked", "topic": e.scheme.AuthRequest("cam-revoked"), "action": "publish"}, "deny"},
			"consumer events":        {map[string]string{"clientid": "consumer:1", "username": "consumer", "topic": e.scheme.EventFilter("idx"), "action": "subscribe", "role": "consumer", "sig": consumerSig}, "allow"},
			"consumer replies":       {map[string]string{"clientid": "consumer:1", "username": "consumer", "topic": "clipgate/v1/devices/+/auth/reply", "action": "subscribe", "role": "consumer", "sig": consumerSig}, "deny"},
			"worker group":           {map[string]string{"clientid": "worker:1", "username": "worker", "topic": e.scheme.WorkerFilter(""), "action": "subscribe", "role": "tokenworker", "sig": workerSig}, "allow"},
			"worker reply":           {map[string]string{"clientid": "worker:1", "username": "worker", "topic": e.scheme.AuthReply("cam-9"), "action": "publish", "role": "tokenworker", "sig": workerSig}, "allow"},
			"consumer claims admin":  {map[string]string{"clientid": "consumer:1", "username": "consumer", "topic": "clipgate/v1/#", "action": "subscribe", "role": "admin", "sig": consumerSig}, "deny"},
			"another account's sig":  {map[string]string{"clientid": "consumer:1", "username": "consumer", "topic": e.scheme.WorkerFilter(""), "action": "subscribe", "role": "tokenworker", "sig": workerSig}, "deny"},
			"no role":                {map[string]string{"clientid": "consumer:1", "username": "consumer", "topic": e.scheme.EventFilter(""), "action": "subscribe"}, "deny"},
			"service claims device":  {map[string]string{"clientid": "consumer:1", "username": "consumer", "topic": e.scheme.AuthRequest("cam-1"), "action": "publish", "role": "device", "sig": consumerSig}, "deny"},
			// Devices retain only their status (issue 12.5); EMQX renders ${retain} as a string.
			"device retained status": {map[string]string{"clientid": "cam-1", "username": "cam-1", "topic": e.scheme.Status("cam-1"), "action": "publish", "retain": "true"}, "allow"},
			"device retained event":  {map[string]string{"clientid": "cam-1", "username": "cam-1", "topic": e.scheme.UploadEvent("cam-1"), "action": "publish", "retain": "true"}, "deny"},
			"device plain event":     {map[string]string{"clientid": "cam-1", "username": "cam-1", "topic": e.scheme.UploadEvent("cam-1"), "action": "publish", "retain": "false"}, "allow"},
			"device unknown event":   {map[string]string{"clientid": "cam-1", "username": "cam-1", "topic": "clipgate/v1/devices/cam-1/events/motion", "action": "publish"}, "deny"},
			"worker retained reply":  {map[string]string{"clientid": "worker:1", "username": "worker", "topic": e.scheme.AuthReply("cam-9"), "action": "publish", "retain": "true", "role": "tokenworker", "sig": workerSig}, "deny"},
		}
		for name, c := range cases {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				code, m := httpDo(t, "POST", authz, token, js(c.req))
				if code != 200 || m["result"] != c.want {
					t.Fatalf("HTTP %d %v, want result %s", code, m, c.want)
				}
			})
		}
	})

	// Issue 12 point 8: EMQX takes any status but 200/204, and a 200 without allow or
	// deny, for "ignore", and then allows unless no_match = deny. Every failure must be a
	// decision: 200 {"result":"deny"}.
	t.Run("bad requests are denied", func(t *testing.T) {
		cases := map[string]struct {
			method, url, token, body string
		}{
			"no token":        {"POST", authn, "", `{"clientid":"cam-1"}`},
			"wrong token":     {"POST", authz, "emqx-token-wrong-000", `{"clientid":"cam-1"}`},
			"not JSON":        {"POST", authn, token, `clientid=cam-1`},
			"JSON array":      {"POST", authn, token, `["cam-1"]`},
			"wrong type":      {"POST", authn, token, `{"clientid": 7}`},
			"trailing data":   {"POST", authn, token, `{"clientid":"cam-1"} {}`},
			"empty body":      {"POST", authz, token, ``},
			"too large":       {"POST", authn, token, `{"password":"` + strings.Repeat("x", 20000) + `"}`},
			"too large authz": {"POST", authz, token, `{"clientid":"cam-1","username":"cam-1","topic":"` + strings.Repeat("x", 20000) + `","action":"publish"}`},
			"unknown action":  {"POST", authz, token, `{"clientid":"cam-1","username":"cam-1","topic":"a","action":"all"}`},
			"GET authn":       {"GET", authn, token, ``},
			"PUT authz":       {"PUT", authz, token, `{"clientid":"cam-1","username":"cam-1","topic":"clipgate/v1/devices/cam-1/auth/request","action":"publish"}`},
			"wrong token with a valid request": {"POST", authz, "emqx-token-wrong-000",
				`{"clientid":"cam-1","username":"cam-1","topic":"clipgate/v1/devices/cam-1/auth/request","action":"publish"}`},
			"garbage retain": {"POST", authz, token, `{"clientid":"cam-1","username":"cam-1","topic":"a","action":"publish","retain":"maybe"}`},
		}
		for name, c := range cases {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				code, m := httpDo(t, c.method, c.url, c.token, c.body)
				if code != http.StatusOK || m["result"] != "deny" || len(m) != 1 {
					t.Fatalf("HTTP %d %v, want 200 {\"result\":\"deny\"}", code, m)
				}
			})
		}
	})
}

// TestEMQXPanicDenies: a panic in an EMQX handler is answered with a denial, not a
// dropped connection (which EMQX would take for "ignore").
func TestEMQXPanicDenies(t *testing.T) {
	t.Parallel()
	b := &Broker{}
	h := b.emqxDecide("authz", func(http.ResponseWriter, *http.Request) error { panic("boom") })
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/emqx/authz", strings.NewReader("{}")))
	if rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != `{"result":"deny"}` {
		t.Fatalf("HTTP %d %q, want 200 {\"result\":\"deny\"}", rec.Code, rec.Body.String())
	}
}
