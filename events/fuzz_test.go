package events

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"

	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/topics"
)

// fakeMessage is an mqtt.Message as paho would hand it over, counting acknowledgements.
type fakeMessage struct {
	topic   string
	payload []byte
	dup     bool
	acks    atomic.Int32
}

func (m *fakeMessage) Duplicate() bool   { return m.dup }
func (m *fakeMessage) Qos() byte         { return 1 }
func (m *fakeMessage) Retained() bool    { return false }
func (m *fakeMessage) Topic() string     { return m.topic }
func (m *fakeMessage) MessageID() uint16 { return 1 }
func (m *fakeMessage) Payload() []byte   { return m.payload }
func (m *fakeMessage) Ack()              { m.acks.Add(1) }

// FuzzProcess feeds arbitrary topics and payloads through the consumer's message path
// (no broker; OSS on a closed loopback port, so every HEAD fails transiently). Whatever
// comes in, the consumer must not panic, and each message must end exactly one way:
// acknowledged once (malformed, duplicate or handled) or left for redelivery, with the
// handler called only for valid events and never for one that could not be verified.
func FuzzProcess(f *testing.F) {
	scheme := topics.Default()
	ev := `{"v":1,"id":"e1","device":"cam-1","status":"completed","bucket":"clips","key":"clips/cam-1/a.mp4",` +
		`"size":3,"crc64":"12","uploadedAt":"2024-05-01T12:00:00Z"}`
	for _, seed := range []struct{ topic, payload string }{
		{scheme.UploadEvent("cam-1"), ev},
		{scheme.UploadEvent("cam-2"), ev},
		{scheme.UploadEvent("cam-1"), `{"v":1,"id":"e2","device":"cam-1","status":"failed","error":"x"}`},
		{scheme.UploadEvent("cam-1"), `{"v":1,"id":"e3","device":"cam-1","status":"completed","bucket":"other","key":"k","size":1,"crc64":"1","uploadedAt":"2024-05-01T12:00:00Z"}`},
		{scheme.UploadEvent("cam-1"), "not json"},
		{scheme.Status("cam-1"), ev},
		{"elsewhere/devices/cam-1/events/upload", ev},
		{scheme.UploadEvent("c"), ev},
	} {
		f.Add(seed.topic, []byte(seed.payload), false)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	client, err := oss.New("http://"+dead, "id", "secret", oss.ForcePathStyle(true), oss.Timeout(1, 1))
	if err != nil {
		f.Fatal(err)
	}
	bucket, err := client.Bucket("clips")
	if err != nil {
		f.Fatal(err)
	}
	var handled atomic.Int64
	c, err := NewConsumer(Config{
		BrokerURL: "tcp://" + dead, Username: "consumer", Password: "pw", ClientID: "consumer:fuzz",
		Bucket: "clips", Prefix: "clips/", OSS: bucket, MaxAttempts: 1, RedeliveryDelay: -1,
	}, func(_ context.Context, ev *Event) error {
		handled.Add(1)
		if ev.Status == "completed" && !ev.Rejected() && !ev.Verified {
			panic("handler got a completed event that was neither verified nor rejected")
		}
		if err := protocol.ValidateUploadEvent(&ev.UploadEvent); err != nil {
			panic("handler got an invalid event: " + err.Error())
		}
		return nil
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { c.Close() })

	f.Fuzz(func(t *testing.T, topic string, payload []byte, dup bool) {
		m := &fakeMessage{topic: topic, payload: payload, dup: dup}
		parked, before := c.parked.Load(), handled.Load()
		done := make(chan struct{})
		go func() { c.process(m); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("process(%q, %q) hangs", topic, payload)
		}
		acks, park := m.acks.Load(), c.parked.Load()-parked
		if acks+int32(park) != 1 || acks > 1 {
			t.Fatalf("process(%q, %q): %d acks, %d left for redelivery; want exactly one outcome", topic, payload, acks, park)
		}
		if handled.Load() > before && acks != 1 {
			t.Fatalf("process(%q, %q): handled but not acknowledged", topic, payload)
		}
	})
}
