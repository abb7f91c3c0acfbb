package broker

import (
	"sync"

	"github.com/mochi-mqtt/server/v2/system"

	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage/pebble"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/clipgate/clipgate/internal/deviceid"
	"github.com/clipgate/clipgate/topics"
)

// hook is clipgate's mochi hook: authentication, ACL, session takeover, rate limits and
// the shared-subscription picker.
type hook struct {
	mqtt.HookBase
	b *Broker
}

func (h *hook) ID() string { return "clipgate" }

func (h *hook) Provides(x byte) bool {
	switch x {
	case mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnSessionEstablish,
		mqtt.OnSessionEstablished, mqtt.OnQosDropped,
		mqtt.OnWill, mqtt.OnDisconnect, mqtt.OnSubscribe, mqtt.OnSelectSubscribers, mqtt.OnPacketRead,
		mqtt.OnPacketSent, mqtt.OnPublishDropped:
		return true
	}
	return false
}

// OnConnect authenticates the client. It runs before mochi's OnConnectAuthenticate so
// that a refusal can carry its own CONNACK code (mochi would send "not authorized" for
// everything); the session it records is what OnConnectAuthenticate then accepts.
func (h *hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	b := h.b
	r, why := b.admit(cl, pk) // limits.go
	var p Principal
	if r == refuseNone {
		p, r, why = b.authenticate(cl, pk)
		b.loginDone(cl, pk, r)
	}
	if r != refuseNone {
		b.stats.authFailures.Add(1)
		b.met.refused(r)
		b.log.Info().Str("client", cl.ID).Str("username", safeUsername(pk.Connect.Username)).
			Str("remote", cl.Net.Remote).Str("refusal", r.String()).Str("reason", why).Msg("connection refused")
		_ = b.srv.SendConnack(cl, r.connackCode(cl.Properties.ProtocolVersion), false, nil)
		return errRefused
	}
	b.sessions.add(cl, b.newSession(p))
	b.met.accepted(p.Role)
	b.log.Debug().Str("client", cl.ID).Str("role", p.Role.String()).Str("remote", cl.Net.Remote).Msg("client authenticated")
	return nil
}

// safeUsername bounds what an unauthenticated client gets into the logs.
func safeUsername(u []byte) string {
	if len(u) > 128 {
		u = u[:128]
	}
	return string(u)
}

func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	return h.b.sessions.get(cl) != nil
}

// OnSessionEstablish runs before mochi takes over an existing session with the same
// client ID. A live old connection is marked superseded, so that OnWill drops its will:
// the client is not gone, it has reconnected, and a late "offline" will would contradict
// its new connection (mochi issue #483). (The old client's fields are not touched: its own
// goroutine and the storage hook read them unsynchronised.)
func (h *hook) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	old, ok := h.b.srv.Clients.Get(cl.ID)
	if !ok || old == cl {
		return
	}
	// The conditions under which mochi inherits the old session (inheritClientSession).
	if !pk.Connect.Clean && !(old.Properties.Clean && old.Properties.ProtocolVersion < 5) {
		h.b.carry.begin(old, cl)
	}
	if s := h.b.sessions.get(old); s != nil {
		s.superseded.Store(true)
	}
	if !old.Closed() { // a live connection, not a stored session being resumed
		h.b.stats.takeovers.Add(1)
		h.b.log.Info().Str("client", cl.ID).Str("old_remote", old.Net.Remote).Str("remote", cl.Net.Remote).
			Msg("session taken over")
	}
	if sessionExpires(old) {
		h.awaitCleanup(old, cl)
	}
}

// sessionExpires reports whether mochi ends cl's session when its connection ends (clean
// session in MQTT 3, session expiry 0 in MQTT 5), the condition of attachClient's cleanup.
func sessionExpires(cl *mqtt.Client) bool {
	if cl.Properties.ProtocolVersion == 5 {
		return cl.Properties.Props.SessionExpiryInterval == 0
	}
	return cl.Properties.Clean
}

// maxCleanupWait bounds how long a new connection waits for the cleanup of the old one
// with its client ID.
const maxCleanupWait = 5 * time.Second

// awaitCleanup stops old, a connection whose session ends with it, and waits until mochi
// has finished its cleanup, before mochi goes on to take over old's client ID for cl.
//
// mochi v2.7.9 cleans up a connection that ended (attachClient: "if expire &&
// !cl.IsTakenOver()") by unsubscribing its client ID from every filter and deleting the ID
// from the client table. A connection that ends by itself (a clean DISCONNECT, just before
// the device connects again) is not taken over, so when the new connection wins the race
// to the table, that cleanup removes the new connection's entry and subscriptions: it then
// receives nothing, its auth replies included (TestReconnectAfterCleanDisconnect lost one
// in a few hundred reconnects). Waiting here puts the old cleanup before the new connection
// enters the table; its session had nothing to inherit.
func (h *hook) awaitCleanup(old, cl *mqtt.Client) {
	if !old.Closed() {
		_ = h.b.srv.DisconnectClient(old, packets.ErrSessionTakenOver) // as mochi's takeover would
	}
	deadline := time.Now().Add(maxCleanupWait)
	for wait := 50 * time.Microsecond; ; wait = min(2*wait, 5*time.Millisecond) {
		if cur, ok := h.b.srv.Clients.Get(cl.ID); !ok || cur != old {
			return
		}
		if time.Now().After(deadline) {
			h.b.log.Warn().Str("client", cl.ID).Msg("the previous connection's cleanup did not finish; taking over its session")
			return
		}
		time.Sleep(wait)
	}
}

// OnQosDropped collects the messages mochi drops from a session being taken over, so that
// OnSessionEstablished can hand them to the new client (see takeovers).
func (h *hook) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	h.b.carry.dropped(cl, pk)
}

// OnSessionEstablished completes a takeover: what reached the old session meanwhile goes to
// the new client (see takeovers).
func (h *hook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	if carried, restored := h.b.carry.end(h.b, cl); carried+restored > 0 {
		h.b.stats.takeoverCarried.Add(int64(carried))
		h.b.log.Info().Str("client", cl.ID).Int("carried", carried).Int("restored", restored).
			Msg("session takeover: messages carried to the new connection")
	}
}

// OnWill drops the will of a connection that a new one with the same client ID has
// replaced. mochi publishes whatever will this returns; one with an empty topic reaches
// no subscriber and is not retained.
func (h *hook) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	if s := h.b.sessions.get(cl); s != nil && s.superseded.Load() {
		h.b.log.Debug().Str("client", cl.ID).Str("topic", will.TopicName).Msg("will of a replaced connection dropped")
		return mqtt.Will{}, nil
	}
	return will, nil
}

func (h *hook) OnDisconnect(cl *mqtt.Client, err error, _ bool) {
	h.b.sessions.remove(cl)
	h.b.log.Debug().Str("client", cl.ID).AnErr("cause", err).Msg("client disconnected")
}

// OnACLCheck is called for every publish, subscribed filter and delivery.
func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	b := h.b
	var ok bool
	if s := b.sessions.get(cl); s != nil {
		ok = b.allowed(s, topic, write)
	} else {
		ok = b.allowedOffline(cl, topic, write)
	}
	if !ok {
		b.stats.aclDenied.Add(1)
	}
	return ok
}

// allowedOffline decides for a client without a live session: a persistent session
// whose connection has ended, or one restored from storage. Nothing is published by
// it; messages are queued for it along its subscriptions, which were checked when made
// and can only be resumed by the same username (see authenticate). A device session (a
// client ID of device form equal to its username) is held to the device rule.
func (b *Broker) allowedOffline(cl *mqtt.Client, topic string, write bool) bool {
	if write {
		return false
	}
	if deviceid.Valid(cl.ID) && string(cl.Properties.Username) == cl.ID {
		return !b.revs.Revoked(cl.ID) && b.scheme.Allowed(topics.RoleDevice, cl.ID, topic, topics.Subscribe)
	}
	return true
}

// OnSubscribe decides each filter exactly (mochi's ACL call cannot tell a subscription
// from a delivery) and replaces a refused one with denyFilter, which OnACLCheck denies.
func (h *hook) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if cl.Net.Inline {
		return pk // the broker's own subscription (the revocation list)
	}
	b := h.b
	s := b.sessions.get(cl)
	for i := range pk.Filters {
		f := pk.Filters[i].Filter
		if s == nil || (s.Role == topics.RoleDevice && b.revs.Revoked(s.DeviceID)) ||
			!b.scheme.Allowed(s.Role, s.DeviceID, f, topics.Subscribe) {
			b.log.Info().Str("client", cl.ID).Str("filter", f).Msg("subscription refused")
			pk.Filters[i].Filter = denyFilter
		}
	}
	b.limitSubscriptions(cl, &pk) // limits.go
	return pk
}

func (h *hook) OnSelectSubscribers(subs *mqtt.Subscribers, pk packets.Packet) *mqtt.Subscribers {
	h.b.picker.pick(subs, pk.TopicName)
	return subs
}

// OnPacketSent and OnPublishDropped count the auth requests that left a token worker's
// outbound queue (flow.go).
func (h *hook) OnPacketSent(cl *mqtt.Client, pk packets.Packet, _ []byte) { h.b.flow.release(cl, pk) }

func (h *hook) OnPublishDropped(cl *mqtt.Client, pk packets.Packet) { h.b.flow.release(cl, pk) }

// maxPace is the longest a QoS 1 or 2 publish is held back to keep its client within its
// rate; a client that would have to wait longer is disconnected.
const maxPace = time.Second

// OnPacketRead enforces the publish rate limit (a token bucket per client). A QoS 0
// publish beyond the rate disconnects the client: nothing else slows a fire-and-forget
// flood. A QoS 1 or 2 publish beyond it is paced instead: the broker reads nothing more
// from the client until the bucket allows, so its PUBACK comes later. A client that
// waits for acknowledgements (the device kit flushing its outbox after an outage) is
// thus slowed to the rate rather than cut off, only to reconnect and try again.
// Returning ErrRejectPacket makes mochi close the connection.
func (h *hook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type != packets.Publish {
		return pk, nil
	}
	b := h.b
	// mochi silently drops publishes to $SYS topics, even QoS 1 ones, leaving the client
	// waiting for its PUBACK; treat them like any denied QoS 1 publish.
	if pk.FixedHeader.Qos > 0 && strings.HasPrefix(pk.TopicName, "$") {
		b.stats.aclDenied.Add(1)
		b.log.Info().Str("client", cl.ID).Str("topic", pk.TopicName).Msg("publish to a $ topic refused, disconnecting")
		return pk, packets.ErrRejectPacket
	}
	if err := b.checkRetain(cl, pk); err != nil { // limits.go
		return pk, err
	}
	s := b.sessions.get(cl)
	if s == nil || s.limiter == nil {
		return pk, nil
	}
	now := time.Now()
	r := s.limiter.ReserveN(now, 1)
	wait := r.DelayFrom(now)
	if wait == 0 {
		return pk, nil
	}
	if !r.OK() || pk.FixedHeader.Qos == 0 || wait > maxPace {
		b.stats.rateLimited.Add(1)
		b.log.Warn().Str("client", cl.ID).Str("remote", cl.Net.Remote).Uint8("qos", pk.FixedHeader.Qos).
			Msg("publish rate exceeded, disconnecting")
		return pk, packets.ErrRejectPacket
	}
	b.stats.paced.Add(1)
	pace(cl, wait)
	return pk, nil
}

// pace waits d, or less if the client is closed meanwhile (so that Close is not held up).
func pace(cl *mqtt.Client, d time.Duration) {
	const step = 50 * time.Millisecond
	for d > 0 && !cl.Closed() {
		w := min(d, step)
		time.Sleep(w)
		d -= w
	}
}

// storageHook is mochi's pebble storage hook with two fixes.
//
// mochi hands OnSubscribed every filter of a SUBSCRIBE, refused ones included, and the
// pebble hook stores them all (with the refusal code as QoS), so a refused subscription
// would come back as a live one after a restart. Only granted filters are passed on.
//
// mochi's Close stops the hooks (closing the database) while its housekeeping loop may
// still be running a tick ($SYS info, expiries), whose writes then panic with "pebble:
// closed" (seen once in 600 closes of TestCloseWhileClientsChurn). Every write is skipped
// once the hook has stopped.
type storageHook struct {
	*pebble.Hook
	mu      sync.RWMutex
	stopped bool
}

// live runs f unless the hook has stopped, and keeps Stop from closing the database
// while f runs.
func (h *storageHook) live(f func()) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if !h.stopped {
		f()
	}
}

// Stop closes the database once no write is in progress; later writes are skipped.
func (h *storageHook) Stop() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return nil
	}
	h.stopped = true
	return h.Hook.Stop()
}

func (h *storageHook) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	h.live(func() { h.Hook.OnSessionEstablished(cl, pk) })
}

func (h *storageHook) OnWillSent(cl *mqtt.Client, pk packets.Packet) {
	h.live(func() { h.Hook.OnWillSent(cl, pk) })
}

func (h *storageHook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	h.live(func() { h.Hook.OnDisconnect(cl, err, expire) })
}

func (h *storageHook) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	h.live(func() { h.Hook.OnUnsubscribed(cl, pk) })
}

func (h *storageHook) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, r int64) {
	h.live(func() { h.Hook.OnRetainMessage(cl, pk, r) })
}

func (h *storageHook) OnQosPublish(cl *mqtt.Client, pk packets.Packet, sent int64, resends int) {
	h.live(func() { h.Hook.OnQosPublish(cl, pk, sent, resends) })
}

func (h *storageHook) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	h.live(func() { h.Hook.OnQosComplete(cl, pk) })
}

func (h *storageHook) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	h.live(func() { h.Hook.OnQosDropped(cl, pk) })
}

func (h *storageHook) OnSysInfoTick(sys *system.Info) {
	h.live(func() { h.Hook.OnSysInfoTick(sys) })
}

func (h *storageHook) OnRetainedExpired(filter string) {
	h.live(func() { h.Hook.OnRetainedExpired(filter) })
}

func (h *storageHook) OnClientExpired(cl *mqtt.Client) {
	h.live(func() { h.Hook.OnClientExpired(cl) })
}

func (h *storageHook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, reasonCodes []byte) {
	h.live(func() { h.onSubscribed(cl, pk, reasonCodes) })
}

func (h *storageHook) onSubscribed(cl *mqtt.Client, pk packets.Packet, reasonCodes []byte) {
	n := 0
	for i := range pk.Filters {
		if i < len(reasonCodes) && reasonCodes[i] <= packets.CodeGrantedQos2.Code {
			n++
		}
	}
	if n == len(pk.Filters) {
		h.Hook.OnSubscribed(cl, pk, reasonCodes)
		return
	}
	filters := make(packets.Subscriptions, 0, n)
	codes := make([]byte, 0, n)
	for i, f := range pk.Filters {
		if i < len(reasonCodes) && reasonCodes[i] <= packets.CodeGrantedQos2.Code {
			filters = append(filters, f)
			codes = append(codes, reasonCodes[i])
		}
	}
	if n > 0 {
		pk.Filters = filters
		h.Hook.OnSubscribed(cl, pk, codes)
	}
}
