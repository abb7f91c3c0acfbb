// Package topics is clipgate's MQTT topic scheme (version 1) and the access-control
// decision built on it: which client role may publish or subscribe where.
//
// Every topic lives under a root, "clipgate/v1" by default:
//
//	{root}/devices/{id}/auth/request   device -> token workers (signed auth request)
//	{root}/devices/{id}/auth/reply     token worker -> device (credentials or an error)
//	{root}/devices/{id}/events/{name}  device -> consumers ({name}: one of EventNames, i.e. upload)
//	{root}/devices/{id}/status         device -> consumers (the one topic a device may retain)
//	{root}/revocations                 console -> broker, token workers, consumers
//	                                   (the signed revocation list, retained)
//
// Token workers share the requests with "$share/{group}/{root}/devices/+/auth/request";
// consumers read events and status, optionally inside a "$share/{group}/" group.
//
// Parse and Allowed do not allocate: the broker calls them for every publish and
// subscription.
package topics

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/clipgate/clipgate/internal/deviceid"
)

// DefaultRoot is the root of the version 1 topic scheme.
const DefaultRoot = "clipgate/v1"

// DefaultWorkerGroup is the shared-subscription group of the token workers.
const DefaultWorkerGroup = "tokenworkers"

// MaxTopicLen is the MQTT limit on the length of a topic name or filter, in bytes.
const MaxTopicLen = 65535

// MaxEventNameLen bounds the {name} level of an event topic a consumer may subscribe to.
const MaxEventNameLen = 64

// EventNames returns the event names of the protocol: the only {name}s of
// {root}/devices/{id}/events/{name} a device may publish on.
func EventNames() []string { return []string{uploadEvent} }

// maxRootLen leaves room under MaxTopicLen for the levels below the root.
const maxRootLen = 1024

// Topic levels below the root.
const (
	devicesLevel = "/devices/"
	authRequest  = "auth/request"
	authReply    = "auth/reply"
	eventsLevel  = "events/"
	uploadEvent  = "upload"
	statusLevel  = "status"
	revocations  = "revocations"
	sharePrefix  = "$share/"
	sysLevel     = "$SYS"
)

// Scheme is the topic scheme under one root. The zero Scheme is the default scheme
// (root DefaultRoot). Schemes are small values, safe for concurrent use.
type Scheme struct {
	root string
}

// ErrInvalidRoot is wrapped by the errors New returns.
var ErrInvalidRoot = errors.New("invalid topic root")

// New returns the scheme rooted at root. The root must be one or more non-empty topic
// levels separated by "/", without wildcards ("+", "#"), NUL bytes or a leading "$",
// valid UTF-8 and at most 1024 bytes long.
func New(root string) (Scheme, error) {
	switch {
	case root == "":
		return Scheme{}, fmt.Errorf("%w: empty", ErrInvalidRoot)
	case len(root) > maxRootLen:
		return Scheme{}, fmt.Errorf("%w: %d bytes, at most %d allowed", ErrInvalidRoot, len(root), maxRootLen)
	case root[0] == '$':
		return Scheme{}, fmt.Errorf("%w: %q starts with \"$\", which MQTT reserves for the broker", ErrInvalidRoot, root)
	case !utf8.ValidString(root):
		return Scheme{}, fmt.Errorf("%w: not valid UTF-8", ErrInvalidRoot)
	case strings.ContainsAny(root, "+#\x00"):
		return Scheme{}, fmt.Errorf("%w: %q contains a wildcard or NUL byte", ErrInvalidRoot, root)
	case root[0] == '/' || root[len(root)-1] == '/' || strings.Contains(root, "//"):
		return Scheme{}, fmt.Errorf("%w: %q has an empty topic level", ErrInvalidRoot, root)
	}
	return Scheme{root: root}, nil
}

// Default returns the scheme rooted at DefaultRoot.
func Default() Scheme { return Scheme{root: DefaultRoot} }

// Root returns the scheme's root.
func (s Scheme) Root() string {
	if s.root == "" {
		return DefaultRoot
	}
	return s.root
}

// The builders below do not validate deviceID: callers hold IDs validated with
// internal/deviceid, and Parse and Allowed refuse topics with invalid ones.

// AuthRequest returns the topic a device publishes its auth requests on:
// {root}/devices/{id}/auth/request.
func (s Scheme) AuthRequest(deviceID string) string {
	return s.Root() + devicesLevel + deviceID + "/" + authRequest
}

// AuthReply returns the topic a token worker answers a device on:
// {root}/devices/{id}/auth/reply.
func (s Scheme) AuthReply(deviceID string) string {
	return s.Root() + devicesLevel + deviceID + "/" + authReply
}

// UploadEvent returns the topic a device announces finished uploads on:
// {root}/devices/{id}/events/upload.
func (s Scheme) UploadEvent(deviceID string) string {
	return s.Root() + devicesLevel + deviceID + "/" + eventsLevel + uploadEvent
}

// Status returns the topic a device publishes its status on: {root}/devices/{id}/status.
func (s Scheme) Status(deviceID string) string {
	return s.Root() + devicesLevel + deviceID + "/" + statusLevel
}

// WorkerFilter returns the token workers' shared subscription:
// $share/{group}/{root}/devices/+/auth/request. An empty group means DefaultWorkerGroup,
// since token workers may only subscribe inside a share group.
func (s Scheme) WorkerFilter(group string) string {
	if group == "" {
		group = DefaultWorkerGroup
	}
	return sharePrefix + group + "/" + s.Root() + devicesLevel + "+/" + authRequest
}

// EventFilter returns the consumers' subscription to every device's upload events:
// {root}/devices/+/events/upload, inside $share/{group}/ unless group is empty.
func (s Scheme) EventFilter(group string) string {
	return share(group) + s.Root() + devicesLevel + "+/" + eventsLevel + uploadEvent
}

// StatusFilter returns the consumers' subscription to every device's status:
// {root}/devices/+/status, inside $share/{group}/ unless group is empty.
func (s Scheme) StatusFilter(group string) string {
	return share(group) + s.Root() + devicesLevel + "+/" + statusLevel
}

// Revocations returns the topic the console publishes its signed revocation list on,
// retained: {root}/revocations. Only RoleConsole may publish there; token workers,
// consumers and admins may subscribe (without a share group: each needs the list).
func (s Scheme) Revocations() string {
	return s.Root() + "/" + revocations
}

func share(group string) string {
	if group == "" {
		return ""
	}
	return sharePrefix + group + "/"
}

// ValidGroup reports whether group is a usable shared-subscription group name: non-empty,
// valid UTF-8, without "/", "+", "#" or NUL bytes.
func ValidGroup(group string) bool {
	if group == "" || len(group) > MaxTopicLen || !utf8.ValidString(group) {
		return false
	}
	for i := 0; i < len(group); i++ {
		switch group[i] {
		case '/', '+', '#', 0:
			return false
		}
	}
	return true
}

// Kind is the kind of a device topic.
type Kind int

// The kinds of device topics.
const (
	KindUnknown     Kind = iota
	KindAuthRequest      // {root}/devices/{id}/auth/request
	KindAuthReply        // {root}/devices/{id}/auth/reply
	KindEvent            // {root}/devices/{id}/events/{name}
	KindStatus           // {root}/devices/{id}/status
)

// String returns the kind's name.
func (k Kind) String() string {
	switch k {
	case KindAuthRequest:
		return "auth-request"
	case KindAuthReply:
		return "auth-reply"
	case KindEvent:
		return "event"
	case KindStatus:
		return "status"
	}
	return "unknown"
}

// Parse reports which device topic topic is and whose. The device ID is a substring of
// topic. It returns ok false for anything that is not exactly one of the four device
// topics of this scheme with a valid device ID (and, for events, one of EventNames);
// filters with wildcards are never device topics. Parse does not allocate.
func (s Scheme) Parse(topic string) (kind Kind, deviceID string, ok bool) {
	rest, ok := s.under(topic)
	if !ok || !strings.HasPrefix(rest, devicesLevel[1:]) {
		return KindUnknown, "", false
	}
	rest = rest[len(devicesLevel)-1:]
	slash := strings.IndexByte(rest, '/')
	if slash < 0 {
		return KindUnknown, "", false
	}
	id, rest := rest[:slash], rest[slash+1:]
	if !deviceid.Valid(id) {
		return KindUnknown, "", false
	}
	switch {
	case rest == authRequest:
		return KindAuthRequest, id, true
	case rest == authReply:
		return KindAuthReply, id, true
	case rest == statusLevel:
		return KindStatus, id, true
	case strings.HasPrefix(rest, eventsLevel) && knownEvent(rest[len(eventsLevel):]):
		return KindEvent, id, true
	}
	return KindUnknown, "", false
}

// under returns what follows "{root}/" in topic, or ("", true) for the root itself.
func (s Scheme) under(topic string) (rest string, ok bool) {
	root := s.Root()
	if !strings.HasPrefix(topic, root) {
		return "", false
	}
	rest = topic[len(root):]
	if rest == "" {
		return "", true
	}
	if rest[0] != '/' {
		return "", false
	}
	return rest[1:], true
}

// knownEvent reports whether name is one of EventNames.
func knownEvent(name string) bool { return name == uploadEvent }

// validEventName reports whether name may be an event name: 1 to 64 characters of
// [A-Za-z0-9._-], not "." or "..". Consumers may subscribe to any such name (devices
// publish only EventNames, so the others stay silent).
func validEventName(name string) bool {
	if name == "" || len(name) > MaxEventNameLen || name == "." || name == ".." {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
