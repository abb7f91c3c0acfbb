package broker

import (
	"math"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// picker chooses one member of each shared-subscription group for a message: the
// connected member picked least recently (ties broken by client ID), so that a steady
// group takes turns exactly and a disconnected member with a persistent session is
// skipped rather than left to pile up messages. Only when no member is connected does a
// message go to an offline one (least recently picked), to be delivered when it returns.
//
// mochi's own choice is a random member, connected or not.
type picker struct {
	clients *mqtt.Clients
	// device, when set (Config.WorkerRouting "device"), routes auth requests to token
	// worker groups by device ID; round-robin remains their fallback when no member is
	// connected, and the strategy of every other group.
	device *deviceRouter
	// flow, when set, routes auth requests only to token workers whose outbound queue has
	// room, holding them while none has (flow.go).
	flow *flow

	mu   sync.Mutex
	seq  uint64
	last map[string]map[string]uint64 // group filter -> member client ID -> seq of its last pick
}

func newPicker(clients *mqtt.Clients) *picker {
	return &picker{clients: clients, last: make(map[string]map[string]uint64)}
}

// pick fills subs.SharedSelected with one member of each group in subs.Shared for a
// message on topic.
func (p *picker) pick(subs *mqtt.Subscribers, topic string) {
	if len(subs.Shared) == 0 {
		return
	}
	if subs.SharedSelected == nil {
		subs.SharedSelected = make(map[string]packets.Subscription, len(subs.Shared))
	}
	device, parsed := "", false
	for filter, members := range subs.Shared {
		if len(members) == 0 {
			continue
		}
		best := ""
		if p.device != nil && p.device.workerGroup(filter) {
			if !parsed {
				device, parsed = p.device.device(topic), true
			}
			if device != "" {
				best = p.device.pick(device, members)
			}
		}
		if best == "" {
			best = p.roundRobin(filter, members)
		}
		if p.flow != nil && p.flow.match.workerGroup(filter) {
			best = p.flow.admit(best, members)
		}
		sub := members[best]
		if prev, ok := subs.SharedSelected[best]; ok {
			sub = prev.Merge(sub)
		}
		subs.SharedSelected[best] = sub
	}
}

// roundRobin returns the member of the group filter to send the next message to.
func (p *picker) roundRobin(filter string, members map[string]packets.Subscription) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	last := p.last[filter]
	if last == nil {
		last = make(map[string]uint64, len(members))
		p.last[filter] = last
	}
	best, bestSeq, bestOnline := "", uint64(math.MaxUint64), false
	for id := range members {
		online := p.online(id)
		s := last[id]
		if best == "" || online && !bestOnline ||
			online == bestOnline && (s < bestSeq || s == bestSeq && id < best) {
			best, bestSeq, bestOnline = id, s, online
		}
	}
	p.seq++
	last[best] = p.seq
	if len(last) > 2*len(members)+16 { // forget members that left the group
		for id := range last {
			if _, ok := members[id]; !ok {
				delete(last, id)
			}
		}
	}
	return best
}

func (p *picker) online(id string) bool {
	cl, ok := p.clients.Get(id)
	return ok && !cl.Closed()
}
