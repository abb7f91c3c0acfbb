package broker

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Flow control of auth requests to token workers (issue 15, "reconnect storm").
//
// mochi acknowledges a publish before it fans it out, and drops a message when its
// subscriber's outbound queue (Config.MaxWritesPending) is full: the device then waits its
// whole request timeout for a reply that cannot come. That queue is a channel per
// connection, made when the connection is accepted, before the client is known (mochi
// v2.7.9, newClient), so a service account cannot be given a deeper one than the devices
// without giving every device's connection its memory.
//
// So the picker keeps count, per connected token worker, of the auth requests it routed
// there that mochi has neither written to the worker's socket (OnPacketSent) nor dropped
// (OnPublishDropped), and never routes one to a worker at flow.limit of them: it picks
// another connected worker with room (the one with the fewest), and when none has room it
// holds the request until one has. The hold runs in the publishing device's own connection
// goroutine: the device has its PUBACK already, and mochi reads nothing more from that
// device meanwhile (TCP backpressure on that device alone). A hold lasts at most
// maxFlowHold; then the request goes to its worker anyway (counted in FlowTimeouts, and
// dropped by mochi if that queue is still full): a worker that writes nothing for that long
// is stuck, and the device asks again after its request timeout.

// maxFlowHold bounds how long an auth request is held for a token worker with room: well
// within the device kit's request timeout (10 s), so that a held request can still be
// answered in time.
const maxFlowHold = 5 * time.Second

// flow is the auth-request flow control described above.
type flow struct {
	clients  *mqtt.Clients
	sessions *sessions
	match    *deviceRouter // for workerGroup and device only
	// limit is how many auth requests may wait in one worker's outbound queue: the queue
	// less an eighth for the worker's other messages (the revocation list).
	limit int32
	// maxInflight is mochi's inflight window per client: a worker that does not
	// acknowledge its QoS 1 deliveries is full too, before mochi drops for the window.
	maxInflight int
	done        chan struct{} // closed at shutdown: every hold ends

	held, timeouts atomic.Int64 // requests held now; holds that ran out
	waiters        atomic.Int32 // len(line), read without the lock

	mu   sync.Mutex
	line []chan struct{} // held requests, oldest first; each is signalled to try again
}

func newFlow(b *Broker, maxInflight int) *flow {
	limit := max(1, b.cfg.MaxWritesPending-b.cfg.MaxWritesPending/8)
	return &flow{
		clients: b.srv.Clients, sessions: &b.sessions, match: newDeviceRouter(b.srv.Clients, b.scheme),
		limit: limit, maxInflight: maxInflight, done: make(chan struct{}),
	}
}

// stop ends every hold (at shutdown, so that mochi's client goroutines can finish).
func (f *flow) stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	select {
	case <-f.done:
	default:
		close(f.done)
	}
}

// admit returns the member of a token-worker group that an auth request goes to: best if
// its queue has room, else the connected member with the fewest requests queued; when
// every connected member is full it waits (see above). With no member connected it
// returns best, counting nothing (mochi queues the request for an offline member).
//
// Held requests go in arrival order: only the oldest tries for room, and a new request
// joins the line while one is held. Without this, the holds raced for each freed place and
// an unlucky one could lose for longer than maxFlowHold under a storm.
func (f *flow) admit(best string, members map[string]packets.Subscription) string {
	if f.waiters.Load() == 0 {
		if id, ok, connected := f.reserve(best, members); ok || !connected {
			return id
		}
	}
	me := make(chan struct{}, 1)
	f.mu.Lock()
	f.line = append(f.line, me)
	f.waiters.Add(1)
	f.mu.Unlock()
	f.held.Add(1)
	defer f.held.Add(-1)
	timer := time.NewTimer(maxFlowHold)
	defer timer.Stop()
	for {
		f.mu.Lock()
		if f.line[0] == me {
			if id, ok, connected := f.reserve(best, members); ok || !connected {
				f.leave(me)
				f.mu.Unlock()
				return id
			}
		}
		f.mu.Unlock()
		select {
		case <-me:
		case <-timer.C:
			f.timeouts.Add(1)
			f.mu.Lock()
			f.leave(me)
			f.mu.Unlock()
			return best
		case <-f.done:
			f.mu.Lock()
			f.leave(me)
			f.mu.Unlock()
			return best
		}
	}
}

// leave takes me out of the line and lets the next one try; f.mu is held.
func (f *flow) leave(me chan struct{}) {
	if i := slices.Index(f.line, me); i >= 0 {
		f.line = slices.Delete(f.line, i, i+1)
		f.waiters.Add(-1)
	}
	f.signalHead()
}

// signalHead wakes the oldest held request, if any; f.mu is held.
func (f *flow) signalHead() {
	if len(f.line) > 0 {
		select {
		case f.line[0] <- struct{}{}:
		default: // already signalled
		}
	}
}

// reserve takes a place in the queue of best, or of the connected member with the fewest
// queued. connected is false when no member is connected.
func (f *flow) reserve(best string, members map[string]packets.Subscription) (id string, ok, connected bool) {
	if q := f.queue(best); q != nil {
		connected = true
		if f.take(q) {
			return best, true, true
		}
	}
	for {
		var minID string
		var minQ *atomic.Int32
		minN := f.limit
		for m := range members {
			q := f.queue(m)
			if q == nil {
				continue
			}
			connected = true
			if n := q.Load(); n < minN {
				minID, minQ, minN = m, q, n
			}
		}
		if minQ == nil {
			return best, false, connected
		}
		if f.take(minQ) {
			return minID, true, true
		}
		// Another publisher took that place first: look again.
	}
}

// queue returns the counter of requests queued for the connected member id, or nil when
// it is not connected or is full by its inflight window.
func (f *flow) queue(id string) *atomic.Int32 {
	cl, ok := f.clients.Get(id)
	if !ok || cl.Closed() {
		return nil
	}
	s := f.sessions.get(cl)
	if s == nil || cl.State.Inflight.Len() >= f.maxInflight-int(f.limit) {
		return nil
	}
	return &s.queued
}

// take adds one to q unless it is at the limit.
func (f *flow) take(q *atomic.Int32) bool {
	for {
		n := q.Load()
		if n >= f.limit {
			return false
		}
		if q.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release counts an auth request that mochi wrote to cl, or dropped, and wakes the holds.
func (f *flow) release(cl *mqtt.Client, pk packets.Packet) {
	if pk.FixedHeader.Type != packets.Publish {
		return
	}
	s := f.sessions.get(cl)
	if s == nil || s.queued.Load() == 0 || f.match.device(pk.TopicName) == "" {
		return
	}
	for {
		n := s.queued.Load()
		if n <= 0 {
			return // written straight to the socket (a resumed session), never counted
		}
		if s.queued.CompareAndSwap(n, n-1) {
			break
		}
	}
	if f.waiters.Load() > 0 {
		f.mu.Lock()
		f.signalHead()
		f.mu.Unlock()
	}
}
