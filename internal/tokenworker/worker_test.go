package tokenworker

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	sdkerrors "github.com/aliyun/alibaba-cloud-sdk-go/sdk/errors"
	"github.com/rs/zerolog"

	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/localcloud"
	"github.com/clipgate/clipgate/internal/policyeval"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/topics"
)

var bg = context.Background()

// handle runs Handle and requires a reply on the device's reply topic.
func handle(t *testing.T, w *Worker, r *request) []byte {
	t.Helper()
	return handleRaw(t, w, r.topic(), r.payload(t), r.Device)
}

func handleRaw(t *testing.T, w *Worker, topic string, payload []byte, device string) []byte {
	t.Helper()
	rt, reply, ok := w.Handle(bg, topic, payload)
	if !ok {
		t.Fatalf("Handle gave no reply for %s", payload)
	}
	if want := topics.Default().AuthReply(device); rt != want {
		t.Fatalf("reply topic %q, want %q", rt, want)
	}
	return reply
}

func ossRequest(action, bucket, key string) *policyeval.Request {
	return &policyeval.Request{
		Action:      action,
		Resource:    "acs:oss:" + testRegion + ":" + testAccount + ":" + bucket + "/" + key,
		CurrentTime: time.Now(),
	}
}

func TestHandleIssuesSealedCredentials(t *testing.T) {
	t.Parallel()
	c := startCloud(t, nil)
	fleet := newFleetKey(t)
	w := newWorker(t, c.config(fleet))

	r := newRequest(t, fleet, "cam-0001", "w", time.Now())
	before := time.Now()
	b := handle(t, w, r)
	rep := decodeReply(t, r.ID, b)
	if !rep.OK || rep.Error != nil {
		t.Fatalf("reply not OK: %s", b)
	}
	if rep.Credentials != nil || rep.Sealed == "" {
		t.Fatalf("default reply must be sealed, without plain credentials: %s", b)
	}
	if strings.Contains(string(b), "STS.") {
		t.Fatalf("sealed reply leaks the access key ID: %s", b)
	}
	if rep.ServerTime.Before(before.Add(-time.Second)) || rep.ServerTime.After(time.Now().Add(time.Second)) {
		t.Fatalf("serverTime %v is not now", rep.ServerTime)
	}
	wantOSS := protocol.OSSInfo{Endpoint: c.srv.OSSEndpoint(), Region: testRegion, Bucket: testBucket, Prefix: "clips/cam-0001/"}
	if rep.OSS == nil || *rep.OSS != wantOSS {
		t.Fatalf("oss = %+v, want %+v", rep.OSS, wantOSS)
	}
	cr := openCredentials(t, r, rep)
	if !strings.HasPrefix(cr.AccessKeyID, "STS.") {
		t.Fatalf("access key %q is not temporary", cr.AccessKeyID)
	}
	if d := time.Until(cr.Expiration); d < 50*time.Minute || d > 61*time.Minute {
		t.Fatalf("expiration %v is not about an hour away", cr.Expiration)
	}

	// The sealed reply is bound to this device and request.
	sealed, _ := base64.RawURLEncoding.DecodeString(rep.Sealed)
	nonce, _ := base64.RawURLEncoding.DecodeString(r.Nonce)
	if _, err := identity.Open(r.key, nonce, sealed, ReplyAAD(r.Device, "other-request")); err == nil {
		t.Fatal("sealed reply opens for another request ID")
	}
	if _, err := identity.Open(requestKey(t, fleet, "cam-0002"), nonce, sealed, ReplyAAD("cam-0002", r.ID)); err == nil {
		t.Fatal("sealed reply opens with another device's key")
	}

	// The key is real: the local cloud resolves it, and its policy keeps the device to its prefix.
	p, err := c.auth.Resolve(cr.AccessKeyID, cr.SecurityToken, time.Now())
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	if !p.Temporary || p.SessionName != "cam-0001" || !strings.EqualFold(p.Role, testRole) {
		t.Fatalf("principal = %+v, want temporary, session cam-0001, role %s", p, testRole)
	}
	if len(p.Policies) < 2 {
		t.Fatalf("principal has %d policies, want role and session policy", len(p.Policies))
	}
	for _, tc := range []struct {
		req  *policyeval.Request
		want bool
	}{
		{ossRequest("oss:PutObject", testBucket, "clips/cam-0001/2026/01/02/a.mp4"), true},
		{ossRequest("oss:ListParts", testBucket, "clips/cam-0001/2026/01/02/a.mp4"), true},
		{ossRequest("oss:PutObject", testBucket, "clips/cam-0002/a.mp4"), false},
		{ossRequest("oss:PutObject", testBucket, "clips/a.mp4"), false},
		{ossRequest("oss:PutObject", testBucket, "cam-0001/a.mp4"), false},
		{ossRequest("oss:GetObject", testBucket, "clips/cam-0001/a.mp4"), false}, // mode w only
		{ossRequest("oss:DeleteObject", testBucket, "clips/cam-0001/a.mp4"), false},
	} {
		if got := policyeval.Authorize(tc.req, p.Policies...); got != tc.want {
			t.Errorf("Authorize(%s %s) = %v, want %v", tc.req.Action, tc.req.Resource, got, tc.want)
		}
	}
	st := w.Stats()
	if st.Requests != 1 || st.OK != 1 || st.STSCalls != 1 || st.Reused != 0 || len(st.Errors) != 0 {
		t.Fatalf("stats = %+v", st)
	}
	if n := c.gate.calls.Load(); n != 1 {
		t.Fatalf("STS saw %d calls, want 1", n)
	}
}

func TestHandleUnsealed(t *testing.T) {
	t.Parallel()
	c := startCloud(t, nil)
	fleet := newFleetKey(t)
	cfg := c.config(fleet)
	off := false
	cfg.Seal = &off
	w := newWorker(t, cfg)

	r := newRequest(t, fleet, "cam-plain", "wa", time.Now())
	rep := decodeReply(t, r.ID, handle(t, w, r))
	if !rep.OK || rep.Sealed != "" || rep.Credentials == nil {
		t.Fatalf("unsealed reply = %+v", rep)
	}
	p, err := c.auth.Resolve(rep.Credentials.AccessKeyID, rep.Credentials.SecurityToken, time.Now())
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	if !policyeval.Authorize(ossRequest("oss:GetObject", testBucket, "clips/cam-plain/x"), p.Policies...) {
		t.Fatal("mode wa does not allow GetObject on the device prefix")
	}
}

func TestHandleDropsWithoutReply(t *testing.T) {
	t.Parallel()
	fleet := newFleetKey(t)
	w := newWorker(t, offlineConfig(fleet))
	good := newRequest(t, fleet, "cam-drop", "w", time.Now())
	goodPayload := good.payload(t)
	big := make([]byte, protocol.MaxMessageSize+1)
	copy(big, `{"id":"abc","x":"`)
	for i := 17; i < len(big)-2; i++ {
		big[i] = 'a'
	}
	copy(big[len(big)-2:], `"}`)

	cases := []struct {
		name    string
		topic   string
		payload []byte
	}{
		{"reply topic", topics.Default().AuthReply("cam-drop"), goodPayload},
		{"event topic", topics.Default().UploadEvent("cam-drop"), goodPayload},
		{"other root", "other/v1/devices/cam-drop/auth/request", goodPayload},
		{"shared filter as topic", topics.Default().WorkerFilter("g"), goodPayload},
		{"empty topic", "", goodPayload},
		{"bad device in topic", "clipgate/v1/devices/x/auth/request", goodPayload},
		{"binary garbage", good.topic(), []byte{0xff, 0x00, 0x13, 0x37}},
		{"empty payload", good.topic(), nil},
		{"truncated JSON", good.topic(), goodPayload[:len(goodPayload)/2]},
		{"no id", good.topic(), []byte(`{"v":1,"device":"cam-drop"}`)},
		{"numeric id", good.topic(), []byte(`{"v":1,"id":5,"device":"cam-drop"}`)},
		{"id with spaces", good.topic(), []byte(`{"v":1,"id":"a b","device":"cam-drop"}`)},
		{"id too long", good.topic(), []byte(`{"id":"` + strings.Repeat("a", protocol.MaxIDLen+1) + `"}`)},
		{"array", good.topic(), []byte(`[1,2,3]`)},
		{"over 64 KiB", good.topic(), big},
	}
	for _, tc := range cases {
		rt, reply, ok := w.Handle(bg, tc.topic, tc.payload)
		if ok || rt != "" || reply != nil {
			t.Errorf("%s: got a reply on %q: %s", tc.name, rt, reply)
		}
	}
	st := w.Stats()
	if st.Dropped != uint64(len(cases)) || st.Requests != uint64(len(cases)) || st.OK != 0 || len(st.Errors) != 0 {
		t.Fatalf("stats = %+v, want %d dropped", st, len(cases))
	}
}

// offlineConfig is a config whose STS endpoint is never reached.
func offlineConfig(fleet *identity.Keyring) Config {
	return Config{
		FleetKeys: fleet,
		STS: STSConfig{Endpoint: "127.0.0.1:1", Scheme: "http", AccessKeyID: "id", AccessKeySecret: "secret",
			RoleARN: "acs:ram::1:role/r"},
		OSS:    protocol.OSSInfo{Endpoint: "http://127.0.0.1:1", Bucket: testBucket, Prefix: testPrefix},
		Logger: zerolog.Nop(),
	}
}

func TestHandleInvalid(t *testing.T) {
	t.Parallel()
	fleet := newFleetKey(t)
	w := newWorker(t, offlineConfig(fleet))
	now := time.Now()

	mismatch := newRequest(t, fleet, "cam-a", "w", now)
	field := func(mut func(m map[string]any)) func() (string, []byte, string) {
		return func() (string, []byte, string) {
			r := newRequest(t, fleet, "cam-b", "w", now)
			var m map[string]any
			if err := json.Unmarshal(r.payload(t), &m); err != nil {
				t.Fatal(err)
			}
			mut(m)
			b, _ := json.Marshal(m)
			return r.topic(), b, r.ID
		}
	}
	cases := []struct {
		name    string
		build   func() (topic string, payload []byte, id string)
		message string
	}{
		{"device mismatch", func() (string, []byte, string) {
			return topics.Default().AuthRequest("cam-other"), mismatch.payload(t), mismatch.ID
		}, "does not match"},
		{"garbled but mismatched", field(func(m map[string]any) { m["device"] = "cam-zzz"; m["nonce"] = "?" }), "does not match"},
		{"missing sig", field(func(m map[string]any) { delete(m, "sig") }), "sig"},
		{"unknown field", field(func(m map[string]any) { m["extra"] = 1 }), "extra"},
		{"bad nonce", field(func(m map[string]any) { m["nonce"] = "short" }), "nonce"},
		{"bad mode", field(func(m map[string]any) { m["mode"] = "x" }), "mode"},
		{"bad version", field(func(m map[string]any) { m["v"] = 2 }), "version"},
		{"bad ts", field(func(m map[string]any) { m["ts"] = "yesterday" }), "ts"},
		{"oversized", field(func(m map[string]any) { m["pad"] = strings.Repeat("p", protocol.MaxAuthRequestSize) }), "limit"},
	}
	for _, tc := range cases {
		topic, payload, id := tc.build()
		rt, reply, ok := w.Handle(bg, topic, payload)
		if !ok {
			t.Errorf("%s: no reply", tc.name)
			continue
		}
		if !strings.HasSuffix(rt, "/auth/reply") {
			t.Errorf("%s: reply topic %q", tc.name, rt)
		}
		rep := wantError(t, id, reply, protocol.CodeInvalid)
		if !strings.Contains(rep.Error.Message, tc.message) {
			t.Errorf("%s: message %q does not mention %q", tc.name, rep.Error.Message, tc.message)
		}
	}
	if st := w.Stats(); st.Errors[protocol.CodeInvalid] != uint64(len(cases)) || st.STSCalls != 0 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestHandleBadSignature(t *testing.T) {
	t.Parallel()
	fleet := newFleetKey(t)
	w := newWorker(t, offlineConfig(fleet))

	wrong := newRequest(t, newFleetKey(t), "cam-sig", "w", time.Now())
	wantError(t, wrong.ID, handle(t, w, wrong), protocol.CodeUnauthenticated)

	tampered := newRequest(t, fleet, "cam-sig", "w", time.Now())
	tampered.Mode = "rw" // after signing
	wantError(t, tampered.ID, handle(t, w, tampered), protocol.CodeUnauthenticated)

	// The signature is checked before the clock: a forged request learns nothing of it.
	skewed := newRequest(t, newFleetKey(t), "cam-sig", "w", time.Now().Add(time.Hour))
	wantError(t, skewed.ID, handle(t, w, skewed), protocol.CodeUnauthenticated)
}

func TestHandleRevoked(t *testing.T) {
	t.Parallel()
	c := startCloud(t, nil)
	fleet := newFleetKey(t)
	cfg := c.config(fleet)
	rev := identity.NewRevocations("cam-gone")
	cfg.Revocations = rev
	w := newWorker(t, cfg)

	r := newRequest(t, fleet, "cam-gone", "w", time.Now())
	rep := wantError(t, r.ID, handle(t, w, r), protocol.CodeRevoked)
	if rep.Error.RetryAfterMs != 0 {
		t.Fatalf("revoked reply suggests a retry: %+v", rep.Error)
	}

	// Revoked at run time: cached credentials are not handed out again.
	ok := newRequest(t, fleet, "cam-live", "w", time.Now())
	openCredentials(t, ok, decodeReply(t, ok.ID, handle(t, w, ok)))
	rev.Set([]string{"cam-gone", "cam-live"})
	again := newRequest(t, fleet, "cam-live", "w", time.Now())
	wantError(t, again.ID, handle(t, w, again), protocol.CodeRevoked)
	if n := w.creds.len(); n != 0 {
		t.Fatalf("%d cached credentials left after revocation", n)
	}
	rev.Set(nil)
	back := newRequest(t, fleet, "cam-live", "w", time.Now())
	openCredentials(t, back, decodeReply(t, back.ID, handle(t, w, back)))
	if st := w.Stats(); st.Reused != 0 || st.STSCalls != 2 {
		t.Fatalf("stats = %+v, want 2 STS calls and no reuse", st)
	}
}

func TestHandleClockSkew(t *testing.T) {
	t.Parallel()
	fleet := newFleetKey(t)
	cfg := offlineConfig(fleet)
	serverNow := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	cfg.Now = func() time.Time { return serverNow }
	cfg.ClockWindow = 2 * time.Minute
	w := newWorker(t, cfg)

	for _, off := range []time.Duration{-2*time.Minute - time.Second, 2*time.Minute + time.Second, -24 * time.Hour, 365 * 24 * time.Hour} {
		r := newRequest(t, fleet, "cam-clock", "w", serverNow.Add(off))
		rep := wantError(t, r.ID, handle(t, w, r), protocol.CodeClockSkew)
		if !rep.ServerTime.Equal(serverNow) {
			t.Fatalf("offset %v: serverTime %v, want %v", off, rep.ServerTime, serverNow)
		}
	}
	// Inside the window the request passes the clock check and reaches STS (offline here).
	r := newRequest(t, fleet, "cam-clock", "w", serverNow.Add(-2*time.Minute))
	wantError(t, r.ID, handle(t, w, r), protocol.CodeUnavailable)
}

func TestHandleReplay(t *testing.T) {
	t.Parallel()
	c := startCloud(t, nil)
	fleet := newFleetKey(t)
	w := newWorker(t, c.config(fleet))

	r := newRequest(t, fleet, "cam-replay", "w", time.Now())
	first := handle(t, w, r)
	openCredentials(t, r, decodeReply(t, r.ID, first))
	wantError(t, r.ID, handle(t, w, r), protocol.CodeReplay)

	// A sibling worker sharing the replay cache refuses it too.
	cfg := c.config(fleet)
	cfg.Replay = w.cfg.Replay
	w2 := newWorker(t, cfg)
	wantError(t, r.ID, handle(t, w2, r), protocol.CodeReplay)
}

func TestHandleRateLimited(t *testing.T) {
	t.Parallel()
	c := startCloud(t, nil)
	fleet := newFleetKey(t)
	cfg := c.config(fleet)
	cfg.DeviceRate = 0.001
	cfg.DeviceBurst = 2
	w := newWorker(t, cfg)

	for i := 0; i < 2; i++ {
		r := newRequest(t, fleet, "cam-chatty", "w", time.Now())
		openCredentials(t, r, decodeReply(t, r.ID, handle(t, w, r)))
	}
	r := newRequest(t, fleet, "cam-chatty", "w", time.Now())
	rep := wantError(t, r.ID, handle(t, w, r), protocol.CodeRateLimited)
	if rep.Error.RetryAfterMs <= 0 {
		t.Fatalf("rate_limited without retryAfterMs: %+v", rep.Error)
	}
	// Other devices are not affected.
	o := newRequest(t, fleet, "cam-quiet", "w", time.Now())
	openCredentials(t, o, decodeReply(t, o.ID, handle(t, w, o)))
}

func TestHandleBusyAtMaxConcurrent(t *testing.T) {
	t.Parallel()
	c := startCloud(t, nil)
	fleet := newFleetKey(t)
	cfg := c.config(fleet)
	cfg.MaxConcurrent = 1
	w := newWorker(t, cfg)

	release := c.gate.close()
	defer release()
	slow := newRequest(t, fleet, "cam-slow", "w", time.Now())
	done := make(chan []byte, 1)
	go func() {
		_, reply, _ := w.Handle(bg, slow.topic(), slow.payload(t))
		done <- reply
	}()
	<-c.gate.entered // the one STS slot is taken

	r := newRequest(t, fleet, "cam-next", "w", time.Now())
	rep := wantError(t, r.ID, handle(t, w, r), protocol.CodeBusy)
	if rep.Error.RetryAfterMs <= 0 {
		t.Fatalf("busy without retryAfterMs: %+v", rep.Error)
	}
	release()
	openCredentials(t, slow, decodeReply(t, slow.ID, <-done))
	// The slot is free again.
	r2 := newRequest(t, fleet, "cam-next", "w", time.Now())
	openCredentials(t, r2, decodeReply(t, r2.ID, handle(t, w, r2)))
}

func TestHandleBusyAtSTSRate(t *testing.T) {
	t.Parallel()
	c := startCloud(t, nil)
	fleet := newFleetKey(t)
	cfg := c.config(fleet)
	cfg.STSRate = 0.001
	cfg.STSBurst = 1
	w := newWorker(t, cfg)

	a := newRequest(t, fleet, "cam-a", "w", time.Now())
	openCredentials(t, a, decodeReply(t, a.ID, handle(t, w, a)))
	b := newRequest(t, fleet, "cam-b", "w", time.Now())
	rep := wantError(t, b.ID, handle(t, w, b), protocol.CodeBusy)
	if rep.Error.RetryAfterMs < 1000 {
		t.Fatalf("busy retryAfterMs %d, want the rate's wait", rep.Error.RetryAfterMs)
	}
	// Cached credentials need no STS call, so they are still served.
	a2 := newRequest(t, fleet, "cam-a", "w", time.Now())
	openCredentials(t, a2, decodeReply(t, a2.ID, handle(t, w, a2)))
	if n := c.gate.calls.Load(); n != 1 {
		t.Fatalf("STS saw %d calls, want 1", n)
	}
}

func TestHandleSTSUnavailable(t *testing.T) {
	t.Parallel()
	t.Run("stopped", func(t *testing.T) {
		t.Parallel()
		c := startCloud(t, nil)
		fleet := newFleetKey(t)
		w := newWorker(t, c.config(fleet))
		if err := c.srv.Close(); err != nil {
			t.Fatal(err)
		}
		r := newRequest(t, fleet, "cam-down", "w", time.Now())
		rep := wantError(t, r.ID, handle(t, w, r), protocol.CodeUnavailable)
		if rep.Error.RetryAfterMs <= 0 {
			t.Fatalf("unavailable without retryAfterMs: %+v", rep.Error)
		}
	})
	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		fleet := newFleetKey(t)
		cfg := offlineConfig(fleet)
		cfg.STS.Endpoint = addr
		w := newWorker(t, cfg)
		r := newRequest(t, fleet, "cam-down", "w", time.Now())
		wantError(t, r.ID, handle(t, w, r), protocol.CodeUnavailable)
	})
	t.Run("throttled", func(t *testing.T) {
		t.Parallel()
		c := startCloud(t, func(cfg *localcloud.Config) { cfg.STSRate = 0.001 })
		fleet := newFleetKey(t)
		w := newWorker(t, c.config(fleet))
		a := newRequest(t, fleet, "cam-a", "w", time.Now())
		openCredentials(t, a, decodeReply(t, a.ID, handle(t, w, a)))
		b := newRequest(t, fleet, "cam-b", "w", time.Now())
		rep := wantError(t, b.ID, handle(t, w, b), protocol.CodeUnavailable)
		if rep.Error.RetryAfterMs <= 0 {
			t.Fatalf("throttled without retryAfterMs: %+v", rep.Error)
		}
	})
}

func TestHandleSTSMisconfigured(t *testing.T) {
	t.Parallel()
	c := startCloud(t, func(cfg *localcloud.Config) {
		cfg.Keys = append(cfg.Keys, localcloud.AccessKey{ID: "LTAIrestrictedKey01", Secret: "restricted-secret-0123456789",
			Policy: `{"Version":"1","Statement":[{"Effect":"Allow","Action":["oss:*"],"Resource":["*"]}]}`})
	})
	fleet := newFleetKey(t)
	for name, mut := range map[string]func(*Config){
		"unknown role": func(cfg *Config) { cfg.STS.RoleARN = "acs:ram::" + testAccount + ":role/no-such-role" },
		"wrong secret": func(cfg *Config) { cfg.STS.AccessKeySecret = "not-the-secret" },
		"unknown key":  func(cfg *Config) { cfg.STS.AccessKeyID = "LTAIunknownKey0001" },
		"no permission": func(cfg *Config) {
			cfg.STS.AccessKeyID, cfg.STS.AccessKeySecret = "LTAIrestrictedKey01", "restricted-secret-0123456789"
		},
		"duration over role max": func(cfg *Config) {
			cfg.STS.Duration = 2 * time.Hour
		},
	} {
		cfg := c.config(fleet)
		mut(&cfg)
		w := newWorker(t, cfg)
		r := newRequest(t, fleet, "cam-misconf", "w", time.Now())
		rep := wantError(t, r.ID, handle(t, w, r), protocol.CodeInternal)
		if rep.Error.RetryAfterMs <= 0 {
			t.Errorf("%s: internal without retryAfterMs", name)
		}
		if strings.Contains(rep.Error.Message, "Role") || strings.Contains(rep.Error.Message, "LTAI") {
			t.Errorf("%s: message leaks configuration: %q", name, rep.Error.Message)
		}
		if st := w.Stats(); st.Errors[protocol.CodeInternal] != 1 || st.STSCalls != 1 {
			t.Errorf("%s: stats = %+v", name, st)
		}
	}
}

func TestClassifySTSError(t *testing.T) {
	t.Parallel()
	srvErr := func(status int, code string) error {
		return sdkerrors.NewServerError(status, `{"Code":"`+code+`","Message":"m","RequestId":"r"}`, "")
	}
	for _, tc := range []struct {
		err   error
		code  protocol.Code
		retry bool
	}{
		{srvErr(400, "Throttling.User"), protocol.CodeUnavailable, true},
		{srvErr(503, "Throttling"), protocol.CodeUnavailable, true},
		{srvErr(500, "InternalError"), protocol.CodeUnavailable, true},
		{srvErr(502, ""), protocol.CodeUnavailable, true},
		{srvErr(503, "ServiceUnavailable"), protocol.CodeUnavailable, true},
		{srvErr(400, "InvalidParameter.RoleSessionName"), protocol.CodeDenied, false},
		{srvErr(403, "NoPermission"), protocol.CodeInternal, true},
		{srvErr(404, "EntityNotExist.Role"), protocol.CodeInternal, true},
		{srvErr(400, "InvalidParameter.PolicyGrammar"), protocol.CodeInternal, true},
		{srvErr(404, "InvalidAccessKeyId.NotFound"), protocol.CodeInternal, true},
		{srvErr(400, "SignatureDoesNotMatch"), protocol.CodeInternal, true},
		{sdkerrors.NewClientError(sdkerrors.TimeoutErrorCode, "timeout", nil), protocol.CodeUnavailable, true},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, protocol.CodeUnavailable, true},
		{errMalformedSTS, protocol.CodeUnavailable, true},
	} {
		o := classifySTSError(tc.err)
		if o.code != tc.code || (o.retryAfter > 0) != tc.retry || o.message == "" {
			t.Errorf("classify(%v) = %+v, want %s (retry %v)", tc.err, o, tc.code, tc.retry)
		}
	}
}

func TestHandleReusesCredentials(t *testing.T) {
	t.Parallel()
	c := startCloud(t, nil)
	fleet := newFleetKey(t)
	w := newWorker(t, c.config(fleet))

	r1 := newRequest(t, fleet, "cam-reuse", "w", time.Now())
	cr1 := openCredentials(t, r1, decodeReply(t, r1.ID, handle(t, w, r1)))
	r2 := newRequest(t, fleet, "cam-reuse", "w", time.Now())
	rep2 := decodeReply(t, r2.ID, handle(t, w, r2))
	cr2 := openCredentials(t, r2, rep2)
	if *cr1 != *cr2 {
		t.Fatalf("second request got new credentials %s, want the cached %s", cr2.AccessKeyID, cr1.AccessKeyID)
	}
	if n := c.gate.calls.Load(); n != 1 {
		t.Fatalf("STS saw %d calls, want 1", n)
	}
	// Another mode is another policy: a new call.
	r3 := newRequest(t, fleet, "cam-reuse", "r", time.Now())
	cr3 := openCredentials(t, r3, decodeReply(t, r3.ID, handle(t, w, r3)))
	if cr3.AccessKeyID == cr1.AccessKeyID {
		t.Fatal("mode r reused mode w credentials")
	}
	if st := w.Stats(); st.OK != 3 || st.Reused != 1 || st.STSCalls != 2 {
		t.Fatalf("stats = %+v", st)
	}

	// Credentials with less than ReuseMargin left are not reused.
	cfg := c.config(fleet)
	cfg.ReuseMargin = 61 * time.Minute
	w2 := newWorker(t, cfg)
	for i := 0; i < 2; i++ {
		r := newRequest(t, fleet, "cam-margin", "w", time.Now())
		openCredentials(t, r, decodeReply(t, r.ID, handle(t, w2, r)))
	}
	if st := w2.Stats(); st.Reused != 0 || st.STSCalls != 2 {
		t.Fatalf("margin stats = %+v", st)
	}
}

func TestHandleCancelledWhileWaitingForSTS(t *testing.T) {
	t.Parallel()
	c := startCloud(t, nil)
	fleet := newFleetKey(t)
	w := newWorker(t, c.config(fleet))

	release := c.gate.close()
	defer release()
	ctx, cancel := context.WithCancel(bg)
	r := newRequest(t, fleet, "cam-cancel", "w", time.Now())
	done := make(chan []byte, 1)
	go func() {
		_, reply, _ := w.Handle(ctx, r.topic(), r.payload(t))
		done <- reply
	}()
	<-c.gate.entered
	cancel()
	rep := wantError(t, r.ID, <-done, protocol.CodeUnavailable)
	if rep.Error.RetryAfterMs <= 0 {
		t.Fatalf("no retry hint: %+v", rep.Error)
	}
	// The abandoned call completes in the background and its credentials are kept.
	release()
	w.stsWG.Wait()
	r2 := newRequest(t, fleet, "cam-cancel", "w", time.Now())
	openCredentials(t, r2, decodeReply(t, r2.ID, handle(t, w, r2)))
	if st := w.Stats(); st.Reused != 1 || c.gate.calls.Load() != 1 {
		t.Fatalf("stats = %+v, STS calls %d; want the background credentials reused", st, c.gate.calls.Load())
	}
}

func TestHandleConcurrent(t *testing.T) {
	t.Parallel()
	c := startCloud(t, nil)
	fleet := newFleetKey(t)
	cfg := c.config(fleet)
	cfg.MaxConcurrent = 4
	w := newWorker(t, cfg)

	const n = 24
	var wg sync.WaitGroup
	results := make([]protocol.Code, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := newRequest(t, fleet, "cam-c"+itoa(int64(i%8)), "w", time.Now())
			_, b, ok := w.Handle(bg, r.topic(), r.payload(t))
			if !ok {
				t.Errorf("no reply")
				return
			}
			rep, err := protocol.DecodeAuthReply(b)
			if err != nil {
				t.Errorf("reply: %v", err)
				return
			}
			if rep.OK {
				results[i] = "ok"
			} else {
				results[i] = rep.Error.Code
			}
		}()
	}
	wg.Wait()
	var ok int
	for _, code := range results {
		switch code {
		case "ok":
			ok++
		case protocol.CodeBusy: // allowed: more than 4 STS calls at once
		default:
			t.Errorf("unexpected outcome %q", code)
		}
	}
	st := w.Stats()
	if ok == 0 || st.OK != uint64(ok) || st.Requests != n {
		t.Fatalf("%d ok, stats %+v", ok, st)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	fleet := newFleetKey(t)
	for name, mut := range map[string]func(*Config){
		"no fleet key":       func(c *Config) { c.FleetKeys = nil },
		"broker's keys":      func(c *Config) { c.FleetKeys = fleet.ConnectRoots() },
		"bad group":          func(c *Config) { c.Group = "a/b" },
		"device-like client": func(c *Config) { c.ClientID = "worker-1" },
		"bad broker URL":     func(c *Config) { c.BrokerURL = "127.0.0.1:1883" },
		"bad broker scheme":  func(c *Config) { c.BrokerURL = "http://127.0.0.1:1883" },
		"no STS endpoint":    func(c *Config) { c.STS.Endpoint = "" },
		"STS URL":            func(c *Config) { c.STS.Endpoint = "https://sts.aliyuncs.com" },
		"STS scheme":         func(c *Config) { c.STS.Scheme = "ftp" },
		"no STS key":         func(c *Config) { c.STS.AccessKeySecret = "" },
		"bad role ARN":       func(c *Config) { c.STS.RoleARN = "role/x" },
		"short duration":     func(c *Config) { c.STS.Duration = time.Minute },
		"long duration":      func(c *Config) { c.STS.Duration = 13 * time.Hour },
		"fractional seconds": func(c *Config) { c.STS.Duration = time.Hour + time.Millisecond },
		"no bucket":          func(c *Config) { c.OSS.Bucket = "" },
		"bad bucket":         func(c *Config) { c.OSS.Bucket = "Bad_Bucket" },
		"bad prefix":         func(c *Config) { c.OSS.Prefix = "/clips" },
		"no OSS endpoint":    func(c *Config) { c.OSS.Endpoint = "" },
		"negative window":    func(c *Config) { c.ClockWindow = -time.Second },
		"negative rate":      func(c *Config) { c.DeviceRate = -1 },
		"negative conc":      func(c *Config) { c.MaxConcurrent = -1 },
	} {
		cfg := offlineConfig(fleet)
		mut(&cfg)
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted the config", name)
		}
	}
	w, err := New(offlineConfig(fleet))
	if err != nil {
		t.Fatalf("good config: %v", err)
	}
	if w.cfg.STS.Scheme != "http" || w.cfg.OSS.Region != DefaultSTSRegion || !strings.HasPrefix(w.cfg.ClientID, "tokenworker:") ||
		w.cfg.MaxConcurrent != DefaultMaxConcurrent || !*w.cfg.Seal {
		t.Fatalf("defaults not applied: %+v", w.cfg)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Start(bg); err == nil {
		t.Fatal("Start without a broker URL succeeded")
	}
}

// TestHandleWaitsForSTSRateWithinBudget: with a wait budget, a request the STS rate can
// serve within it waits for its turn; one it cannot is busy with the rate's own wait.
func TestHandleWaitsForSTSRateWithinBudget(t *testing.T) {
	t.Parallel()
	c := startCloud(t, nil)
	fleet := newFleetKey(t)
	cfg := c.config(fleet)
	cfg.STSRate = 1 // one call per second
	cfg.STSBurst = 1
	cfg.ReuseMargin = -1
	w := newWorker(t, cfg)

	for i := 0; i < 2; i++ { // the second waits about 1 s, well within 10 s
		r := newRequest(t, fleet, "cam-rate", "w", time.Now())
		_, b, ok := w.handle(bg, r.topic(), r.payload(t), time.Now().Add(10*time.Second))
		if !ok {
			t.Fatal("no reply")
		}
		openCredentials(t, r, decodeReply(t, r.ID, b))
	}
	// A budget already spent: busy, with the limiter's wait (at most one interval) as hint.
	r := newRequest(t, fleet, "cam-rate", "w", time.Now())
	_, b, _ := w.handle(bg, r.topic(), r.payload(t), time.Now().Add(-time.Second))
	rep := wantError(t, r.ID, b, protocol.CodeBusy)
	if ms := rep.Error.RetryAfterMs; ms <= 0 || ms > 1000 {
		t.Fatalf("busy retryAfterMs %d, want the rate's wait (0, 1000]", ms)
	}
	if n := c.gate.calls.Load(); n != 2 {
		t.Fatalf("STS saw %d calls, want 2", n)
	}
}
