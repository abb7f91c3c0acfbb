package mqttclient

import (
	"io"
	"testing"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// What paho's resume does to a stored PUBLISH (set DUP) must not reach the packet held by
// the store, which an earlier connection's writer may still be encoding.
func TestGetCopiesPublish(t *testing.T) {
	t.Parallel()
	s := NewStore()
	s.Open()
	defer s.Close()
	pub := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
	pub.Qos, pub.MessageID, pub.TopicName, pub.Payload = 1, 7, "a/b", []byte("x")
	s.Put("o.7", pub)

	got, ok := s.Get("o.7").(*packets.PublishPacket)
	if !ok || got == pub {
		t.Fatalf("Get returned %T %p, want a copy of %p", got, got, pub)
	}
	if got.MessageID != 7 || got.TopicName != "a/b" || string(got.Payload) != "x" || got.Qos != 1 {
		t.Fatalf("copy differs: %+v", got)
	}
	got.Dup = true
	if pub.Dup {
		t.Fatal("setting DUP on the copy changed the stored packet")
	}
	if len(s.All()) != 1 {
		t.Fatalf("store holds %d packets, want 1", len(s.All()))
	}
	s.Del("o.7")
	if len(s.All()) != 0 {
		t.Fatal("Del left the packet")
	}
}

// Packets other than PUBLISH come back as stored, and a missing key as nil.
func TestGetOthers(t *testing.T) {
	t.Parallel()
	s := NewStore()
	s.Open()
	defer s.Close()
	rel := packets.NewControlPacket(packets.Pubrel).(*packets.PubrelPacket)
	rel.MessageID = 3
	s.Put("o.3", rel)
	if got := s.Get("o.3"); got != rel {
		t.Fatalf("Get = %v, want the stored PUBREL", got)
	}
	if got := s.Get("o.99"); got != nil {
		t.Fatalf("Get of a missing key = %v, want nil", got)
	}
}

// The packet given to Put goes on to the connection's writer, which sets its remaining
// length while encoding it; a reconnect meanwhile reads the stored packet through Get.
// The store must not share that packet with the writer (a data race seen in
// TestFaultNetworkPartition under -race: PublishPacket.Write against Get's copy).
func TestPutKeepsItsOwnCopy(t *testing.T) {
	t.Parallel()
	s := NewStore()
	s.Open()
	defer s.Close()
	pub := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
	pub.Qos, pub.MessageID, pub.TopicName, pub.Payload = 1, 9, "a/b", []byte("payload")
	s.Put("o.9", pub)

	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 100 {
			_ = pub.Write(io.Discard) // the writer owns the packet it was handed
		}
	}()
	for range 100 {
		got, ok := s.Get("o.9").(*packets.PublishPacket)
		if !ok || got.MessageID != 9 || string(got.Payload) != "payload" {
			t.Fatalf("Get = %+v", got)
		}
	}
	<-done
}
