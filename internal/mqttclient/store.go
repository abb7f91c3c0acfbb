package mqttclient

// The session store of every client.
//
// Store is paho's MemoryStore except that it never shares a PUBLISH packet with paho's
// writer. paho.mqtt.golang v1.5.1 hands the packet it stores to the connection's writer,
// which sets its remaining length while encoding it, and on reconnect it resumes in-flight
// QoS 1 messages by setting the DUP flag on the packet that Get returned, while the previous
// connection's writer may still be encoding it: data races (upstream issue #703, open).
// So Put keeps a copy of its own, which nobody writes, and Get hands out a fresh copy of
// it, which the resumed send owns.

import (
	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// Store is a paho Store kept in memory. Every Client uses one; a raw paho client of a test
// uses it with ClientOptions.SetStore(NewStore()).
type Store struct {
	*mqtt.MemoryStore
}

// NewStore returns an empty Store.
func NewStore() *Store { return &Store{MemoryStore: mqtt.NewMemoryStore()} }

// Put stores packet under key; a PUBLISH packet is stored as a shallow copy, since paho
// goes on to encode the one it was given.
func (s *Store) Put(key string, packet packets.ControlPacket) {
	s.MemoryStore.Put(key, copyPublish(packet))
}

// Get returns the packet stored under key; a PUBLISH packet is returned as a shallow copy
// (its fixed header, which holds the DUP flag, is a value field; the payload is shared and
// never written).
func (s *Store) Get(key string) packets.ControlPacket {
	return copyPublish(s.MemoryStore.Get(key))
}

func copyPublish(p packets.ControlPacket) packets.ControlPacket {
	if pub, ok := p.(*packets.PublishPacket); ok {
		cp := *pub
		return &cp
	}
	return p
}
