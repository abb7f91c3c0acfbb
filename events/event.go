package events

import (
	"context"
	"time"

	"github.com/clipgate/clipgate"
)

// Event is an upload event as the handler receives it: the event the device sent (or the
// Reconciler made up), with the outcome of its verification.
type Event struct {
	// UploadEvent is the decoded event: ID, Device, Status, Bucket, Key, Size, CRC64, ...
	clipgate.UploadEvent
	// Publisher is the device that published the event: the device ID in the MQTT topic,
	// which the broker authenticated (an admin account may also publish there). It is
	// empty for reconciled events.
	Publisher string
	// Verified reports that the object exists in the configured bucket, under the
	// device's own prefix, with the announced size and CRC-64.
	Verified bool
	// Reason says why the event was rejected; empty for verified events and for failed
	// uploads that passed the device check.
	Reason Reason
	// Detail explains a rejection in words, for logs (e.g. "size 10, object has 12").
	Detail string
	// ETag is the object's ETag as OSS reported it (without quotes), when Verified.
	ETag string
	// Reconciled marks an event made up by a Reconciler for an object that had none.
	Reconciled bool
	// Redelivered reports that this event may have been handed to a handler before: the
	// broker sent it again (MQTT DUP flag), or this is a retry after a handler error.
	Redelivered bool
}

// Rejected reports whether the verification rejected the event.
func (e *Event) Rejected() bool { return e.Reason != "" }

// Handler handles one event. It must be safe for concurrent use (the Consumer runs
// Config.Concurrency of them at once) and idempotent: delivery is at least once, and a
// reconciled event may follow the real one for the same object (or precede a late one).
// Returning nil acknowledges the event; an error has it retried and then redelivered.
// ctx is cancelled when the consumer closes.
type Handler func(ctx context.Context, ev *Event) error

// Reason is why an event was rejected.
type Reason string

// The rejection reasons.
const (
	// ReasonMalformed: the message is not a valid upload event (it never reaches the
	// handler; see Config.DeadLetter).
	ReasonMalformed Reason = "malformed"
	// ReasonWrongDevice: the event names another device than the one that published it.
	ReasonWrongDevice Reason = "wrong_device"
	// ReasonWrongBucket: the event names another bucket than Config.Bucket.
	ReasonWrongBucket Reason = "wrong_bucket"
	// ReasonWrongPrefix: the key is not under the device's own prefix
	// {Prefix}{deviceID}/, or has an empty, "." or ".." segment.
	ReasonWrongPrefix Reason = "wrong_prefix"
	// ReasonNotFound: OSS has no such object.
	ReasonNotFound Reason = "not_found"
	// ReasonSizeMismatch: the object's size differs from the event's.
	ReasonSizeMismatch Reason = "size_mismatch"
	// ReasonCRCMismatch: the object's CRC-64 differs from the event's (or OSS reports none).
	ReasonCRCMismatch Reason = "crc_mismatch"
	// ReasonRevoked: the device was revoked when OSS stored the object (its
	// Last-Modified is at or after the revocation time, to the second), so whoever holds
	// the device's credentials may have written it (Config.Revoked).
	ReasonRevoked Reason = "revoked"
)

// RevokedFunc reports whether a device is revoked and since when (zero if unknown:
// then its objects are not flagged). identity-style revocation lists provide one; the
// console passes its own.
type RevokedFunc func(device string) (at time.Time, revoked bool)

// writtenWhileRevoked reports whether an object stored at modified by device was
// written while the device was revoked. HTTP dates have whole seconds, so the
// revocation time is truncated: an object of the revocation's own second is flagged.
func writtenWhileRevoked(revoked RevokedFunc, device string, modified time.Time) (time.Time, bool) {
	if revoked == nil || modified.IsZero() {
		return time.Time{}, false
	}
	at, ok := revoked(device)
	if !ok || at.IsZero() {
		return time.Time{}, false
	}
	return at, !modified.Before(at.Truncate(time.Second))
}

// reasons lists every Reason, in the order of Stats' counters.
var reasons = [...]Reason{ReasonMalformed, ReasonWrongDevice, ReasonWrongBucket, ReasonWrongPrefix,
	ReasonNotFound, ReasonSizeMismatch, ReasonCRCMismatch, ReasonRevoked}

func reasonIndex(r Reason) int {
	for i, x := range reasons {
		if x == r {
			return i
		}
	}
	return -1
}

// Malformed is a message on an event topic that is not a valid upload event.
type Malformed struct {
	// Topic is the MQTT topic it arrived on.
	Topic string
	// Publisher is the device ID in the topic, if the topic names a valid one.
	Publisher string
	// Payload is the message as received (at most the broker's packet size limit).
	Payload []byte
	// Err says what is wrong with it.
	Err error
}

// DeadLetter receives malformed messages before they are acknowledged, e.g. to keep them
// for inspection. An error has the message retried and redelivered like a handler
// error. It must be safe for concurrent use.
type DeadLetter func(ctx context.Context, m *Malformed) error

// Deduper is the caller's durable record of handled events, e.g. a table in the
// database that the handler writes the index to. The consumer keeps an in-memory record
// too, bounded in size and age; a Deduper carries deduplication across restarts and
// across the members of a shared-subscription group. Events are identified by the
// device and the event ID together, so that one device cannot suppress another's events
// by announcing their IDs; the device is the publisher (Event.Publisher, which the broker
// authenticated), or for reconciled events the device whose prefix holds the object.
// Implementations must be safe for concurrent use.
type Deduper interface {
	// Seen reports whether the event was handled before. An error is transient: the
	// event is retried and redelivered.
	Seen(ctx context.Context, device, id string) (bool, error)
	// Mark records that the event was handled; it is called after the handler returned
	// nil and before the acknowledgement. If the handler records the event ID itself (in
	// the same transaction as the index, the better way), Mark may do nothing. An error is
	// logged and counted; the event is acknowledged anyway, since the handler has done
	// its work, and a redelivery would at worst hand it over once more.
	Mark(ctx context.Context, device, id string) error
}
