package broker

import (
	"bytes"
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// takeovers carries QoS 1 and 2 messages across mochi's session takeover.
//
// mochi v2.7.9 (Server.inheritClientSession) clones the old session's inflight messages
// into the new client, then clears the old session's — OnQosDropped for each, which also
// makes the storage hook delete their records, the very records the new session's clones
// are stored under — and only then registers the new client. A message delivered in that
// window lands on the old session and is cleared with it, or stranded on it, although its
// publisher was acknowledged: a consumer reconnecting while devices publish (as after
// every broker restart) lost 5 to 30 of 460 events in TestFaultSessionTakeoverRace.
//
// So when a persistent session is taken over, the old client is recorded; what mochi
// drops from it is collected; and once the new session is established, every collected
// message (and any still left on the old client) that the new client does not hold is
// delivered to it under a new packet ID and stored, and the ones it does hold are stored
// again. A message that reaches the old client after that sweep (a publish that looked the
// client up just before the new one was registered and is still being routed) is not
// carried: that window is a few instructions wide, against the whole takeover before.
type takeovers struct {
	mu   sync.Mutex
	byID map[string]*takeover // by client ID; replaced by a later takeover of the same ID
}

type takeover struct {
	old, new *mqtt.Client
	dropped  []packets.Packet
}

// begin records that cl takes over old's persistent session.
func (t *takeovers) begin(old, cl *mqtt.Client) {
	t.mu.Lock()
	if t.byID == nil {
		t.byID = make(map[string]*takeover)
	}
	t.byID[cl.ID] = &takeover{old: old, new: cl}
	t.mu.Unlock()
}

// dropped collects a message mochi drops from a client whose session is being taken over.
func (t *takeovers) dropped(cl *mqtt.Client, pk packets.Packet) {
	t.mu.Lock()
	if to := t.byID[cl.ID]; to != nil && to.old == cl && pk.FixedHeader.Qos > 0 {
		to.dropped = append(to.dropped, pk)
	}
	t.mu.Unlock()
}

// end hands what the takeover of cl's session collected to cl (see takeovers). It returns
// how many messages were delivered anew and how many records were stored again.
func (t *takeovers) end(b *Broker, cl *mqtt.Client) (carried, restored int) {
	t.mu.Lock()
	to := t.byID[cl.ID]
	if to == nil || to.new != cl {
		t.mu.Unlock()
		return 0, 0
	}
	delete(t.byID, cl.ID)
	t.mu.Unlock()

	candidates := append(to.dropped, to.old.State.Inflight.GetAll(false)...)
	stored := make(map[uint16]bool, len(candidates))
	for _, p := range candidates {
		if p.FixedHeader.Qos == 0 {
			continue
		}
		if have, ok := cl.State.Inflight.Get(p.PacketID); ok && sameMessage(have, p) {
			// Inherited by the clone: mochi's drop deleted its record and uncounted it.
			if !stored[p.PacketID] {
				stored[p.PacketID] = true
				b.storeInflight(cl, have)
				atomic.AddInt64(&b.srv.Info.Inflight, 1)
				restored++
			}
			continue
		}
		id, err := cl.NextPacketID()
		if err != nil {
			b.log.Error().Str("client", cl.ID).Err(err).Msg("session takeover: no packet ID to carry a message; it is lost")
			continue
		}
		out := p.Copy(false)
		out.PacketID = uint16(id)
		out.FixedHeader.Dup = false
		if !cl.State.Inflight.Set(out) {
			continue
		}
		atomic.AddInt64(&b.srv.Info.Inflight, 1)
		b.storeInflight(cl, out)
		cl.State.Inflight.DecreaseSendQuota()
		_ = cl.WritePacket(out) // on failure it stays inflight and is resent when the session resumes
		carried++
	}
	return carried, restored
}

// sameMessage reports whether a and b are the same delivery: the inherited clone of a
// message has its topic, payload and creation time.
func sameMessage(a, b packets.Packet) bool {
	return a.TopicName == b.TopicName && a.Created == b.Created && bytes.Equal(a.Payload, b.Payload)
}

// storeInflight writes an inflight message to the session store, if there is one.
func (b *Broker) storeInflight(cl *mqtt.Client, pk packets.Packet) {
	if b.store != nil {
		b.store.OnQosPublish(cl, pk, pk.Created, 0)
	}
}
