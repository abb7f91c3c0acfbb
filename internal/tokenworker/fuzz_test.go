package tokenworker

import (
	"bytes"
	"testing"
	"time"

	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/topics"
)

// FuzzHandle feeds Handle arbitrary topics and payloads against a real local STS. It must
// never panic; every reply must be a valid protocol reply on the topic's device's reply
// topic; and a reply may be ok only for a payload that is a correctly signed request of
// that device (which random input never is).
func FuzzHandle(f *testing.F) {
	c := startCloud(f, nil)
	fleet := newFleetKey(f)
	cfg := c.config(fleet)
	cfg.DeviceRate, cfg.DeviceBurst = 1000, 1000
	w := newWorker(f, cfg)

	valid := newRequest(f, fleet, "cam-fuzz", "w", time.Now())
	vp := valid.payload(f)
	scheme := topics.Default()
	f.Add(valid.topic(), vp)
	f.Add(valid.topic(), bytes.Replace(vp, []byte(`"w"`), []byte(`"rw"`), 1))
	f.Add(valid.topic(), []byte(`{"v":1,"id":"x","device":"cam-fuzz"}`))
	f.Add(scheme.AuthRequest("other-cam"), vp)
	f.Add(scheme.AuthReply("cam-fuzz"), vp)
	f.Add(valid.topic(), []byte(`{"id":"abc","device":"cam-fuzz","pad":"`+string(bytes.Repeat([]byte{'a'}, 5000))+`"}`))
	f.Add(valid.topic(), []byte{0xff, 0xfe, '{'})
	f.Add(valid.topic(), []byte(`{"v":1,"id":"a","device":"cam-fuzz","ts":"2026-01-01T00:00:00Z","nonce":"AAAAAAAAAAAAAAAAAAAAAA","mode":"w","sig":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`))
	f.Add("", []byte(nil))

	f.Fuzz(func(t *testing.T, topic string, payload []byte) {
		rt, reply, ok := w.Handle(bg, topic, payload)
		if !ok {
			if rt != "" || reply != nil {
				t.Fatalf("no reply, yet topic %q and %d bytes", rt, len(reply))
			}
			return
		}
		kind, device, parsed := scheme.Parse(topic)
		if !parsed || kind != topics.KindAuthRequest {
			t.Fatalf("reply to a non-request topic %q", topic)
		}
		if rt != scheme.AuthReply(device) {
			t.Fatalf("reply topic %q for request topic %q", rt, topic)
		}
		rep, err := protocol.DecodeAuthReply(reply)
		if err != nil {
			t.Fatalf("reply does not decode: %v\n%s", err, reply)
		}
		if !rep.OK {
			return
		}
		req, err := protocol.DecodeAuthRequest(payload)
		if err != nil || req.Device != device ||
			!identity.Verify(requestKey(t, fleet, device), req.SigningString(), req.Sig) {
			t.Fatalf("ok reply for a payload that is not a signed request of %q: %q", device, payload)
		}
	})
}
