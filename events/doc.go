// Package events is clipgate's backend consumer library: it receives the upload events
// that cameras publish after each upload, checks each one against OSS, drops duplicates
// and hands the rest to the caller's Handler, acknowledging an event to the broker only
// once the handler has returned nil. A Reconciler lists the bucket and makes up events
// for objects whose event never arrived, so that an index built from these events misses
// nothing.
//
// # Delivery
//
// A Consumer is an MQTT 3.1.1 client with a persistent session (clean session false, a
// stable ClientID, QoS 1), subscribed to every device's upload events, inside a
// shared-subscription group when Config.Group is set (each event then goes to one member
// of the group). Events published while the consumer is down wait in its session at the
// broker and arrive when it returns.
//
// Delivery is at least once. Each message goes through these steps, on a pool of
// Config.Concurrency workers:
//
//  1. Decode, strictly (the wire format of docs/ARCHITECTURE.md). A message that is not a valid
//     upload event can never become one: it is passed to Config.DeadLetter (if set),
//     counted as ReasonMalformed, logged and acknowledged.
//  2. Deduplicate by (publishing device, event ID), in a bounded in-memory set and,
//     when set, Config.Dedup (the caller's durable record). A duplicate is acknowledged
//     and not handed to the handler again.
//  3. Verify: see below. The result is in Event.Verified and Event.Reason.
//  4. Call the Handler. On nil the event is recorded as handled and acknowledged.
//
// An error in steps 2 to 4 (the handler's, or a transient OSS or Dedup error) is retried
// in place Config.MaxAttempts times with exponential backoff; then the message is left
// unacknowledged and, after Config.RedeliveryDelay, the consumer resumes its session
// (disconnects and connects again), which makes the broker send every unacknowledged
// message again (with the MQTT DUP flag: Event.Redelivered). Nothing is acknowledged
// before the handler has accepted it, so nothing is lost when the consumer stops or
// crashes; the price is duplicates, which step 2 removes.
//
// # Verification
//
// A device may only write under its own prefix, {Prefix}{deviceID}/, but it can say
// anything in an event. So for each completed event the consumer checks, in this order:
// the device named in the event is the one that published it (the device ID in the
// topic, which the broker authenticated), else ReasonWrongDevice; the bucket is
// Config.Bucket, else ReasonWrongBucket; the key lies under the device's own prefix with
// no empty, "." or ".." segment, else ReasonWrongPrefix; a HEAD of the object succeeds,
// else ReasonNotFound; its size and CRC-64 match the event, else ReasonSizeMismatch or
// ReasonCRCMismatch. An event passing every check is Verified. A rejected event still
// reaches the handler (so that it can flag the device), with Verified false and the
// reason. Failed-upload events (status "failed") name no object: only the device check
// applies to them, and they are neither verified nor rejected.
//
// OSS errors other than "no such key" (network failures, 5xx, throttling, a missing
// bucket, denied access) say nothing about the event; they are transient: retried, then
// redelivered, never turned into a rejection.
//
// # Overload
//
// mochi-mqtt, the embedded broker, acknowledges a publisher before it delivers and drops
// QoS 1 messages for a subscriber that falls behind: when its outbound queue is full, or
// when it holds too many unacknowledged messages (MaximumInflight, 8192 by default).
// Since the consumer acknowledges only handled events, the messages waiting for a worker
// count against that limit. Consumers must keep up (raise Concurrency, add members to
// the group) and run a Reconciler, which heals whatever was dropped.
package events
