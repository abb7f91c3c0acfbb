// Package mqttstore is the in-memory session store of clipgate's paho clients.
//
// It is paho's MemoryStore except that Get hands out a copy of a stored PUBLISH packet.
// On reconnect, paho.mqtt.golang v1.5.1 resumes in-flight QoS 1 messages by setting the
// DUP flag on the packet that Get returned, while the previous connection's writer may
// still be encoding that same packet: a data race (upstream issue #703, open). With a copy,
// the resumed send owns its packet and the old writer keeps the original.
package mqttstore

import (
	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// Store is a paho Store kept in memory. Use it with ClientOptions.SetStore(New()).
type Store struct {
	*mqtt.MemoryStore
}

// New returns an empty Store.
func New() *Store { return &Store{MemoryStore: mqtt.NewMemoryStore()} }

// Get returns the packet stored under key; a PUBLISH packet is returned as a shallow copy
// (its fixed header, which holds the DUP flag, is a value field; the payload is shared and
// never written).
func (s *Store) Get(key string) packets.ControlPacket {
	p := s.MemoryStore.Get(key)
	if pub, ok := p.(*packets.PublishPacket); ok {
		cp := *pub
		return &cp
	}
	return p
}
