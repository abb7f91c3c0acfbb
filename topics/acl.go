package topics

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/clipgate/clipgate/internal/deviceid"
)

// Role is the kind of MQTT client, which decides where it may publish and subscribe.
type Role int

// The client roles.
const (
	// RoleDevice is a camera: it publishes its own auth requests, events and status and
	// subscribes to its own auth replies, with no wildcards.
	RoleDevice Role = iota + 1
	// RoleTokenWorker answers auth requests: it subscribes only through a share group to
	// every device's requests and publishes to any device's reply topic.
	RoleTokenWorker
	// RoleConsumer reads events and status, never publishes.
	RoleConsumer
	// RoleAdmin may subscribe to anything under the root and to $SYS, and publish under
	// the root, except the revocation list.
	RoleAdmin
	// RoleConsole is the operator console: it reads what consumers read, and it alone
	// publishes the signed revocation list (Scheme.Revocations).
	RoleConsole
)

// ParseRole parses a role name: "device", "tokenworker", "consumer", "admin" or
// "console".
func ParseRole(s string) (Role, error) {
	switch s {
	case "device":
		return RoleDevice, nil
	case "tokenworker":
		return RoleTokenWorker, nil
	case "consumer":
		return RoleConsumer, nil
	case "admin":
		return RoleAdmin, nil
	case "console":
		return RoleConsole, nil
	}
	return 0, fmt.Errorf("unknown role %q: want device, tokenworker, consumer, admin or console", s)
}

// String returns the role's name as ParseRole accepts it.
func (r Role) String() string {
	switch r {
	case RoleDevice:
		return "device"
	case RoleTokenWorker:
		return "tokenworker"
	case RoleConsumer:
		return "consumer"
	case RoleAdmin:
		return "admin"
	case RoleConsole:
		return "console"
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

// Action is what a client wants to do with a topic or filter.
type Action int

// The actions.
const (
	Publish Action = iota + 1
	Subscribe
)

// String returns "publish" or "subscribe".
func (a Action) String() string {
	switch a {
	case Publish:
		return "publish"
	case Subscribe:
		return "subscribe"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Allowed is the ACL decision: may a client of role (with device ID deviceID, for
// RoleDevice) publish to the topic, or subscribe to the filter, topicOrFilter?
//
// A filter is allowed only if every topic it can match is allowed, so "{root}/#" is
// denied to consumers (it would also match auth replies). Subscribe with a concrete topic
// asks whether the client may receive messages on it: mochi-mqtt's OnACLCheck runs with
// write=false and the message's topic for every delivery, so Subscribe must (and does)
// allow each concrete topic that an allowed filter of the role matches. Token workers may
// use the request wildcard only inside a share group ("$share/{group}/"), so that each
// request reaches one worker. Publish topics never contain
// wildcards. Malformed topics and filters are denied: empty, longer than 65535 bytes,
// not UTF-8, containing NUL, with an empty level, with "+" or "#" sharing a level with
// other characters, "#" not last, "$share" without a group or filter. Allowed does not
// allocate.
func (s Scheme) Allowed(role Role, deviceID, topicOrFilter string, a Action) bool {
	switch a {
	case Publish:
		return wellFormed(topicOrFilter, false) && s.mayPublish(role, deviceID, topicOrFilter)
	case Subscribe:
		if !wellFormed(topicOrFilter, true) {
			return false
		}
		filter, shared, ok := splitShare(topicOrFilter)
		return ok && s.maySubscribe(role, deviceID, filter, shared)
	}
	return false
}

// MayRetain reports whether a client of role may publish a retained message on topic
// (Allowed(role, deviceID, topic, Publish) must hold too). A device may retain only its
// own status: a retained event would reach every new consumer again, and a retained
// request or reply every new subscriber. Token workers retain nothing; admins and the
// console may retain what they may publish (for the console: the revocation list, which
// must reach every follower that starts later). MayRetain does not allocate.
func (s Scheme) MayRetain(role Role, deviceID, topic string) bool {
	switch role {
	case RoleDevice:
		kind, id, ok := s.Parse(topic)
		return ok && id == deviceID && kind == KindStatus
	case RoleAdmin, RoleConsole:
		return s.Allowed(role, deviceID, topic, Publish)
	}
	return false
}

func (s Scheme) mayPublish(role Role, deviceID, topic string) bool {
	switch role {
	case RoleDevice:
		kind, id, ok := s.Parse(topic)
		return ok && id == deviceID && (kind == KindAuthRequest || kind == KindEvent || kind == KindStatus)
	case RoleTokenWorker:
		kind, _, ok := s.Parse(topic)
		return ok && kind == KindAuthReply
	case RoleAdmin:
		rest, ok := s.under(topic)
		return ok && rest != revocations
	case RoleConsole:
		rest, ok := s.under(topic)
		return ok && rest == revocations
	}
	return false
}

func (s Scheme) maySubscribe(role Role, deviceID, filter string, shared bool) bool {
	switch role {
	case RoleDevice:
		if shared {
			return false
		}
		// Parse accepts no wildcard: "+" and "#" are neither device ID nor event characters.
		kind, id, ok := s.Parse(filter)
		return ok && id == deviceID && kind == KindAuthReply
	case RoleTokenWorker:
		// Any one request topic may be read (this is also the per-delivery check), but
		// the wildcard only inside a share group, so that each request reaches one worker.
		if kind, _, ok := s.Parse(filter); ok {
			return kind == KindAuthRequest
		}
		rest, ok := s.under(filter)
		return ok && (shared && rest == "devices/+/"+authRequest || !shared && rest == revocations)
	case RoleConsumer, RoleConsole:
		rest, ok := s.under(filter)
		return ok && (consumerFilter(rest) || !shared && rest == revocations)
	case RoleAdmin:
		if filter == sysLevel || strings.HasPrefix(filter, sysLevel+"/") {
			return !shared
		}
		_, ok := s.under(filter)
		return ok
	}
	return false
}

// consumerFilter reports whether rest (a filter below the root) matches only event and
// status topics: devices/{id|+}/status or devices/{id|+}/events/{name|+}.
func consumerFilter(rest string) bool {
	rest, ok := strings.CutPrefix(rest, devicesLevel[1:])
	if !ok {
		return false
	}
	slash := strings.IndexByte(rest, '/')
	if slash < 0 {
		return false
	}
	id, rest := rest[:slash], rest[slash+1:]
	if id != "+" && !deviceid.Valid(id) {
		return false
	}
	if rest == statusLevel {
		return true
	}
	name, ok := strings.CutPrefix(rest, eventsLevel)
	return ok && (name == "+" || validEventName(name))
}

// splitShare removes a "$share/{group}/" prefix from a well-formed filter.
func splitShare(f string) (filter string, shared, ok bool) {
	rest, shared := strings.CutPrefix(f, sharePrefix)
	if !shared {
		// "$share" alone, or "$share/"-less variants, are not shared subscriptions; they
		// are plain $-topics, which only $SYS admits.
		return f, false, f != "$share"
	}
	slash := strings.IndexByte(rest, '/')
	if slash < 0 {
		return "", true, false // no filter
	}
	group, filter := rest[:slash], rest[slash+1:]
	return filter, true, filter != "" && ValidGroup(group)
}

// wellFormed reports whether t is a syntactically valid MQTT topic name (wild false) or
// topic filter (wild true) with no empty level.
func wellFormed(t string, wild bool) bool {
	if t == "" || len(t) > MaxTopicLen || !utf8.ValidString(t) {
		return false
	}
	start := 0
	for i := 0; i <= len(t); i++ {
		if i < len(t) && t[i] != '/' {
			switch t[i] {
			case 0:
				return false
			case '+', '#':
				// A wildcard must be the whole level, and "#" the last one.
				if !wild || i != start || i+1 < len(t) && t[i+1] != '/' || t[i] == '#' && i+1 != len(t) {
					return false
				}
			}
			continue
		}
		if i == start {
			return false // empty level
		}
		start = i + 1
	}
	return true
}
