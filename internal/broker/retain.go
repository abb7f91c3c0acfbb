package broker

import (
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// retainGate serialises mochi's writes of retained messages against its scans of them.
//
// mochi v2.7.9 stores a topic's retained path under its index lock (TopicsIndex.
// RetainMessage) but reads it without the lock while it collects the retained messages
// for a new wildcard subscription (scanMessages): a data race whenever a device publishes
// its retained status while a consumer subscribes to every device's status. mochi has no
// hook around either step, so the gate takes a write lock from the hook that always
// precedes a retained write to the one that always follows it, and a read lock for the
// whole of a SUBSCRIBE:
//
//   - a retained PUBLISH: OnPublish (this is the only hook that provides it, so a nil error
//     here means mochi goes on to retainMessage) to OnRetainMessage;
//   - a retained will: OnWill (added after every other hook, it sees the final will) to
//     OnRetainMessage, unless the will is delayed (MQTT 5), which mochi sends later;
//   - a SUBSCRIBE from a client: OnSubscribe, which mochi calls only once the packet is
//     valid, to OnPacketProcessed, which it then always calls. (Inline subscriptions,
//     which call OnSubscribe without OnPacketProcessed, are not used.)
//
// Retained publishes are rare (statuses), so the cost is a few uncontended lock operations.
type retainGate struct {
	mqtt.HookBase
	srv *mqtt.Server
	mu  sync.RWMutex
}

func (g *retainGate) ID() string { return "clipgate-retain-gate" }

func (g *retainGate) Provides(b byte) bool {
	switch b {
	case mqtt.OnPublish, mqtt.OnWill, mqtt.OnRetainMessage, mqtt.OnSubscribe, mqtt.OnPacketProcessed:
		return true
	}
	return false
}

func (g *retainGate) retains() bool { return g.srv.Options.Capabilities.RetainAvailable != 0 }

func (g *retainGate) OnPublish(_ *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Retain && g.retains() {
		g.mu.Lock() // released in OnRetainMessage
	}
	return pk, nil
}

func (g *retainGate) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	if will.Retain && cl.Properties.Will.WillDelayInterval == 0 && g.retains() {
		g.mu.Lock() // released in OnRetainMessage
	}
	return will, nil
}

func (g *retainGate) OnRetainMessage(*mqtt.Client, packets.Packet, int64) {
	g.mu.Unlock()
}

func (g *retainGate) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if !cl.Net.Inline {
		g.mu.RLock() // released in OnPacketProcessed
	}
	return pk
}

func (g *retainGate) OnPacketProcessed(cl *mqtt.Client, pk packets.Packet, _ error) {
	if pk.FixedHeader.Type == packets.Subscribe && !cl.Net.Inline {
		g.mu.RUnlock()
	}
}
