package broker

import (
	"sync"
	"sync/atomic"

	"github.com/clipgate/clipgate/topics"
)

// The ACL decision is topics.Scheme.Allowed, made once per client and topic (or filter)
// and cached in the client's session, because mochi asks for every publish, every
// subscribed filter and every delivery to every subscriber.
//
// Deliveries: mochi checks a delivery with the topic name and write=false, the same call
// it makes for a subscribed filter. A client may receive a message on a device topic if
// it may subscribe to that topic, or to that kind of topic for all devices
// ({root}/devices/+/...), plainly or in a share group: so a token worker in its group
// receives requests, a device only its own replies. Subscriptions are decided exactly by
// Allowed in the OnSubscribe hook (see denyFilter); the delivery check catches what
// bypasses it: subscriptions restored from storage or inherited on takeover, and
// principals that changed (a device revoked since it subscribed).
//
// Device topics ({root}/devices/{id}/{kind}) are cached by class: the decision depends
// only on the kind, on whether the ID is the client's own, and on the action (the
// topics package decides by exactly these), so a token worker's deliveries from a
// million devices share one cache cell. Other topics and filters (wildcards, $SYS,
// $share) are cached by string, up to maxCachedStrings per client.

// maxCachedStrings bounds a session's string-keyed ACL cache; past it, decisions are
// made without caching (Allowed does not allocate either).
const maxCachedStrings = 64

const (
	verdictUnknown uint32 = iota
	verdictAllow
	verdictDeny
)

// numKinds covers topics.KindUnknown..KindStatus.
const numKinds = int(topics.KindStatus) + 1

type aclKey struct {
	topic string
	write bool
}

// aclCache is one session's cache. Cells are written at most once (racing writers store
// the same verdict), so plain atomics suffice.
type aclCache struct {
	class [numKinds][2][2]atomic.Uint32 // [kind][own device][write]
	mu    sync.RWMutex
	strs  map[aclKey]bool
}

// readKinds[role][kind] reports whether role may receive every device's topics of kind.
type readKinds [int(topics.RoleConsole) + 1][numKinds]bool

func newReadKinds(s topics.Scheme) readKinds {
	var rk readKinds
	all := map[topics.Kind]string{
		topics.KindAuthRequest: s.AuthRequest("+"),
		topics.KindAuthReply:   s.AuthReply("+"),
		topics.KindStatus:      s.Status("+"),
		topics.KindEvent:       s.Root() + "/devices/+/events/+",
	}
	for _, role := range []topics.Role{topics.RoleTokenWorker, topics.RoleConsumer, topics.RoleAdmin, topics.RoleConsole} {
		for kind, filter := range all {
			rk[role][kind] = s.Allowed(role, "", filter, topics.Subscribe) ||
				s.Allowed(role, "", "$share/g/"+filter, topics.Subscribe)
		}
	}
	return rk
}

// denyFilter replaces a filter the OnSubscribe hook refuses; OnACLCheck denies it, so
// the client gets "not authorized" in its SUBACK. It contains NUL, which no valid filter
// does.
const denyFilter = "\x00clipgate-denied"

// allowedRaw is the uncached decision.
func (b *Broker) allowedRaw(s *session, topic string, write bool) bool {
	if write {
		return b.scheme.Allowed(s.Role, s.DeviceID, topic, topics.Publish)
	}
	if b.scheme.Allowed(s.Role, s.DeviceID, topic, topics.Subscribe) {
		return true
	}
	kind, _, ok := b.scheme.Parse(topic)
	return ok && s.Role != topics.RoleDevice && b.readKinds[s.Role][kind]
}

// allowed is the cached decision for a live session. It does not allocate once the
// verdict is cached.
func (b *Broker) allowed(s *session, topic string, write bool) bool {
	if s.Role == topics.RoleDevice && b.revs.Revoked(s.DeviceID) {
		return false
	}
	w := 0
	if write {
		w = 1
	}
	if kind, id, ok := b.scheme.Parse(topic); ok {
		own := 0
		if s.Role == topics.RoleDevice && id == s.DeviceID {
			own = 1
		}
		cell := &s.acl.class[kind][own][w]
		switch cell.Load() {
		case verdictAllow:
			return true
		case verdictDeny:
			return false
		}
		ok := b.allowedRaw(s, topic, write)
		cell.Store(verdict(ok))
		return ok
	}

	key := aclKey{topic, write}
	s.acl.mu.RLock()
	v, hit := s.acl.strs[key]
	s.acl.mu.RUnlock()
	if hit {
		return v
	}
	v = b.allowedRaw(s, topic, write)
	s.acl.mu.Lock()
	if len(s.acl.strs) < maxCachedStrings {
		if s.acl.strs == nil {
			s.acl.strs = make(map[aclKey]bool, 4)
		}
		s.acl.strs[key] = v
	}
	s.acl.mu.Unlock()
	return v
}

func verdict(ok bool) uint32 {
	if ok {
		return verdictAllow
	}
	return verdictDeny
}
