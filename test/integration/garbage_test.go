package integration

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/internal/tokenworker"
)

// waitStats polls worker 0's counters until ok returns true or ctx ends.
func waitStats(ctx context.Context, t *testing.T, stack *inproc.Stack, what string, ok func(tokenworker.Stats) bool) {
	t.Helper()
	for {
		st, running := stack.WorkerStats(0)
		if running && ok(st) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: counters %+v", what, st)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestGarbageRequests: malformed auth requests, sent by an authenticated device over the
// broker, never give credentials and never stop the worker. Those that carry a usable
// request ID are answered "invalid" under that ID; the rest are dropped without a reply.
// Afterwards a good request from the same connection still gets credentials. A device
// that publishes on another device's request topic is disconnected by the broker.
func TestGarbageRequests(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, time.Minute)
	stack := inproc.New(t, inproc.Options{})
	const dev = "cam-garbage"
	key := stack.DeviceKey(dev)
	scheme := stack.Topics()
	c, err := connectDevice(ctx, stack, dev, key)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	c.mustSubscribe(ctx, t, scheme.AuthReply(dev))

	// edited returns a signed request with id as its ID, then edited as JSON.
	edited := func(id string, edit func(m map[string]any)) []byte {
		req, _, _, err := signedRequest(key, dev, time.Now(), "w")
		if err != nil {
			t.Fatal(err)
		}
		req.ID = id
		req.Sig = ""
		b, _ := json.Marshal(req)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		edit(m)
		out, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	answered := []struct {
		name    string
		payload []byte
	}{
		{"another device in the body", edited("g-device", func(m map[string]any) { m["device"] = "cam-victim" })},
		{"unknown version", edited("g-version", func(m map[string]any) { m["v"] = 2 })},
		{"bad mode", edited("g-mode", func(m map[string]any) { m["mode"] = "wx" })},
		{"signature not base64url", edited("g-sig", func(m map[string]any) { m["sig"] = "!!not base64!!" })},
		{"missing nonce", edited("g-nonce", func(m map[string]any) { delete(m, "nonce") })},
		{"unknown field", edited("g-field", func(m map[string]any) { m["admin"] = true })},
		{"timestamp not RFC 3339", edited("g-ts", func(m map[string]any) { m["ts"] = "yesterday" })},
		{"larger than 4 KiB", edited("g-big", func(m map[string]any) { m["pad"] = strings.Repeat("x", protocol.MaxAuthRequestSize) })},
	}
	for _, tc := range answered {
		if err := c.publish(ctx, scheme.AuthRequest(dev), tc.payload); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		r, _, err := c.reply(ctx, scheme.AuthReply(dev))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var m map[string]any
		_ = json.Unmarshal(tc.payload, &m)
		if r.ID != m["id"] {
			t.Errorf("%s: reply to %q, want %q", tc.name, r.ID, m["id"])
		}
		wantReplyError(t, tc.name, r, protocol.CodeInvalid)
	}

	dropped := [][]byte{
		[]byte("not json at all"),
		[]byte("{}"),
		[]byte(`{"v":1,"id":"has spaces and ünïcode","device":"cam-garbage"}`),
		{0xff, 0xfe, 0x00, 0x01},
		[]byte(`[{"v":1,"id":"in-an-array"}]`),
		nil,
	}
	before, _ := stack.WorkerStats(0)
	for _, p := range dropped {
		if err := c.publish(ctx, scheme.AuthRequest(dev), p); err != nil {
			t.Fatalf("%q: %v", p, err)
		}
	}
	waitStats(ctx, t, stack, "garbage without a request ID counted as dropped", func(st tokenworker.Stats) bool {
		return st.Dropped >= before.Dropped+uint64(len(dropped))
	})

	// The connection and the worker are fine: a good request gets credentials, and it is
	// the first reply after the garbage (nothing was answered for the dropped payloads).
	req, _, payload, err := signedRequest(key, dev, time.Now(), "w")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.publish(ctx, scheme.AuthRequest(dev), payload); err != nil {
		t.Fatal(err)
	}
	r, _, err := c.reply(ctx, scheme.AuthReply(dev))
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK || r.ID != req.ID {
		t.Errorf("good request after the garbage: reply %+v, want credentials for %s", r, req.ID)
	}
	st, _ := stack.WorkerStats(0)
	if st.OK != 1 || st.Errors[protocol.CodeInvalid] != uint64(len(answered)) {
		t.Errorf("worker counters %+v: want 1 ok and %d invalid", st, len(answered))
	}

	// Asking on another device's topic is an ACL violation: the broker disconnects.
	_, _, victimPayload, err := signedRequest(key, dev, time.Now(), "w")
	if err != nil {
		t.Fatal(err)
	}
	_ = c.publish(ctx, scheme.AuthRequest("cam-victim"), victimPayload)
	select {
	case <-c.lost:
	case <-ctx.Done():
		t.Fatal("the broker let a device publish on another device's request topic")
	}
	if st, _ := stack.WorkerStats(0); st.Requests != before.Requests+uint64(len(dropped))+1 {
		t.Errorf("the worker saw %d requests after the garbage, want %d: the foreign-topic request reached it",
			st.Requests-before.Requests, len(dropped)+1)
	}
}

// TestGarbageEvents: a device that publishes malformed upload events, or events naming
// another device, does not get them to consumers: the consumer counts and drops them,
// and keeps delivering good events.
func TestGarbageEvents(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, time.Minute)
	stack := inproc.New(t, inproc.Options{})
	consumer, err := stack.Consumer(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	const dev = "cam-badevents"
	c, err := connectDevice(ctx, stack, dev, stack.DeviceKey(dev))
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	topic := stack.Topics().UploadEvent(dev)

	now := time.Now().UTC().Truncate(time.Second)
	event := func(id, device string) []byte {
		b, err := protocol.Encode(&protocol.UploadEvent{
			V: protocol.Version, ID: id, Device: device, Status: protocol.StatusCompleted,
			Bucket: stack.Bucket(), Key: stack.Prefix() + device + "/2024/01/01/x.mp4", Size: 1, CRC64: "1",
			ContentType: "video/mp4", RecordedAt: now, UploadedAt: now, Attempts: 1,
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	bad := [][]byte{
		[]byte("garbage"),
		[]byte(`{"v":1,"id":"e1","device":"cam-badevents","status":"completed"}`), // incomplete
		[]byte(strings.Replace(string(event("e2", dev)), `"v":1`, `"v":9`, 1)),
		event("e3", "cam-someone-else"), // on this device's topic
	}
	for _, p := range bad {
		if err := c.publish(ctx, topic, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.publish(ctx, topic, event("good-1", dev)); err != nil {
		t.Fatal(err)
	}
	ev, err := consumer.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ev.ID != "good-1" || ev.Device != dev {
		t.Errorf("consumer delivered %+v, want event good-1 of %s", ev, dev)
	}
	for consumer.Malformed() < int64(len(bad)) {
		select {
		case <-ctx.Done():
			t.Fatalf("consumer counted %d malformed events, want %d", consumer.Malformed(), len(bad))
		case <-time.After(10 * time.Millisecond):
		}
	}
	if n := consumer.Malformed(); n != int64(len(bad)) {
		t.Errorf("consumer counted %d malformed events, want %d", n, len(bad))
	}
}
