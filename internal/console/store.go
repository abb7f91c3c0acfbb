package console

import (
	"context"
	"errors"
	"time"

	"github.com/clipgate/clipgate/events"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/protocol"
)

// ErrNotFound is returned by Store lookups for a device, clip or session that does not
// exist (or, for sessions, has expired).
var ErrNotFound = errors.New("console: not found")

// Device is a device as the console knows it: from its events, its status messages and
// the operator's revocations.
type Device struct {
	ID string `json:"id"`
	// Online is the device's last status (devicekit publishes "online" retained when it
	// connects, and the broker publishes its will, "offline", when the connection drops).
	Online bool `json:"online"`
	// StatusAt is when the last status message arrived at the console; zero if none did.
	StatusAt time.Time `json:"statusAt,omitzero"`
	// LastSeen is the latest time the device was seen, by its own clock (no later than
	// the console's): the time of its latest status message or event. Zero if unknown.
	LastSeen time.Time `json:"lastSeen,omitzero"`
	// LastUpload is the upload time of the device's latest verified clip.
	LastUpload time.Time `json:"lastUpload,omitzero"`
	// Clips counts the device's indexed clips; Rejected its events that named an object
	// that was not its own; Failed its failed-upload events.
	Clips    int64 `json:"clips"`
	Rejected int64 `json:"rejected"`
	Failed   int64 `json:"failed"`
	// Revoked reports that the operator revoked the device (since RevokedAt).
	Revoked   bool      `json:"revoked"`
	RevokedAt time.Time `json:"revokedAt,omitzero"`
}

// Clip is one indexed object.
type Clip struct {
	// Key is the object key, {prefix}{device}/...: the clip's identity.
	Key string `json:"key"`
	// EventID is the latest event that described the object (a reconciled event's ID
	// starts with "r-").
	EventID     string    `json:"eventId"`
	Device      string    `json:"device"`
	Bucket      string    `json:"bucket"`
	Size        int64     `json:"size"`
	CRC64       string    `json:"crc64"`
	ContentType string    `json:"contentType,omitempty"`
	RecordedAt  time.Time `json:"recordedAt"`
	UploadedAt  time.Time `json:"uploadedAt"`
	IndexedAt   time.Time `json:"indexedAt"`
	// Verified reports that OSS holds the object with the announced size and CRC-64;
	// otherwise Reason says what was wrong (not_found, size_mismatch, crc_mismatch).
	Verified bool   `json:"verified"`
	Reason   string `json:"reason,omitempty"`
	// Reconciled marks a clip found by listing the bucket rather than by its event.
	Reconciled bool `json:"reconciled"`
}

// Problem is a failed or rejected event of a device, as indexed: what the devices'
// Failed and Rejected counters count.
type Problem struct {
	// ID orders the list (newest first); a list continues after an ID.
	ID int64 `json:"id"`
	// Device published the event (the broker authenticated it); ClaimedDevice is the
	// device the event names, which differs for a wrong_device rejection.
	Device        string `json:"device"`
	EventID       string `json:"eventId"`
	ClaimedDevice string `json:"claimedDevice"`
	// Status is the event's: "completed" (rejected by the verification) or "failed".
	Status string `json:"status"`
	// Reason is the rejection's (wrong_device, wrong_bucket, wrong_prefix, not_found,
	// size_mismatch, crc_mismatch), empty for a failed upload that passed the checks;
	// Detail explains it. Error is the device's own account of a failed upload.
	Reason string `json:"reason,omitempty"`
	Detail string `json:"detail,omitempty"`
	Error  string `json:"error,omitempty"`
	// Bucket, Key and Size are what the event announced.
	Bucket string `json:"bucket,omitempty"`
	Key    string `json:"key,omitempty"`
	Size   int64  `json:"size"`
	// EventAt is the device's time of the event (its uploadedAt), IndexedAt the console's.
	EventAt   time.Time `json:"eventAt,omitzero"`
	IndexedAt time.Time `json:"indexedAt"`
}

// ProblemQuery selects failed and rejected events, newest first.
type ProblemQuery struct {
	// Device restricts the list to one device's (as publisher); empty means every device.
	Device string
	// After continues a list: only problems with a smaller ID. 0 starts at the newest.
	After int64
	// Limit is the page size, 1 to MaxPageSize.
	Limit int
}

// Cursor is a position in a clip list, ordered by (RecordedAt, Key) descending.
type Cursor struct {
	RecordedAt time.Time
	Key        string
}

// ClipQuery selects clips, newest first.
type ClipQuery struct {
	// Device restricts the list to one device; empty means every device.
	Device string
	// From and To bound the recording time: From <= RecordedAt < To. Zero means unbounded.
	From, To time.Time
	// After continues a list: only clips strictly after this position (older, or as old
	// with a smaller key). Nil starts at the newest.
	After *Cursor
	// Limit is the page size, 1 to MaxPageSize.
	Limit int
}

// Session is an operator session, stored by the SHA-256 of its ID (so that a copy of
// the database does not hand out live sessions).
type Session struct {
	IDHash  string
	CSRF    string
	Created time.Time
	Expires time.Time
}

// IndexOutcome is what Store.Index did with an event.
type IndexOutcome int

// The outcomes of Store.Index.
const (
	// Duplicate: the event was indexed before; nothing changed.
	Duplicate IndexOutcome = iota + 1
	// Inserted: a new clip.
	Inserted
	// Updated: the event replaced what an earlier event said about the clip (a verified
	// event replaces an unverified row, or describes an overwritten object).
	Updated
	// Unchanged: the clip is indexed already and the event does not improve on it (an
	// unverified event for a verified clip).
	Unchanged
	// NotStored: the event names no clip of its device (a failed upload, or an object
	// outside the device's prefix or bucket); only the device's counters changed.
	NotStored
)

// PruneResult counts what Store.Prune removed.
type PruneResult struct {
	Seen, Problems, Sessions int64
}

// Store is the console's database. *DB implements it on SQLite and on PostgreSQL.
// Every method is safe for concurrent use.
type Store interface {
	// Seen and Mark make the Store the events.Deduper of the consumer. Mark does
	// nothing: Index records the event in the transaction that indexes it.
	events.Deduper

	// Index records ev in one transaction: the event as seen (for deduplication, by
	// publisher and ID, as Seen), the device's last contact (the event's own time) and
	// counters, a failed or rejected event in the problem list, and the clip. It is
	// idempotent.
	Index(ctx context.Context, ev *events.Event, now time.Time) (IndexOutcome, error)
	// KnownClip reports whether a verified clip with this key is indexed (the
	// Reconciler's lookup).
	KnownClip(ctx context.Context, key string) (bool, error)
	// SetStatus records a status message of a device, received at; seen is the time of
	// the message by the device's clock (zero if unknown: last seen is left alone).
	SetStatus(ctx context.Context, device string, online bool, at, seen time.Time) error

	// Devices lists devices by ID, after the given ID ("" for the first page).
	Devices(ctx context.Context, after string, limit int) ([]Device, error)
	// Device returns one device, or ErrNotFound.
	Device(ctx context.Context, id string) (*Device, error)
	// Clips lists clips by q.
	Clips(ctx context.Context, q ClipQuery) ([]Clip, error)
	// Problems lists failed and rejected events by q.
	Problems(ctx context.Context, q ProblemQuery) ([]Problem, error)
	// Clip returns one clip, or ErrNotFound.
	Clip(ctx context.Context, key string) (*Clip, error)
	// DeleteClips removes the clips with these keys (keys not indexed are ignored) and
	// returns how many it removed.
	DeleteClips(ctx context.Context, keys []string) (int, error)
	// ExpiredClips returns up to limit keys under prefix, after the key after, of clips
	// uploaded before the given time, in key order.
	ExpiredClips(ctx context.Context, prefix string, before time.Time, after string, limit int) ([]string, error)

	// SetRevoked records the operator's revocation (or restoration) of a device.
	SetRevoked(ctx context.Context, device string, revoked bool, at time.Time) error
	// RevokedDevices returns the IDs of the revoked devices, sorted.
	RevokedDevices(ctx context.Context) ([]string, error)
	// Revocations returns the revoked devices with their revocation times, sorted by ID.
	Revocations(ctx context.Context) ([]identity.Revocation, error)

	// CreateSession stores a new session.
	CreateSession(ctx context.Context, s Session) error
	// Session returns the session with this ID hash if it has not expired at now.
	Session(ctx context.Context, idHash string, now time.Time) (*Session, error)
	// DeleteSession removes a session (logout).
	DeleteSession(ctx context.Context, idHash string) error

	// Prune removes seen-event records and problem events older than seenBefore, and
	// sessions expired at now.
	Prune(ctx context.Context, seenBefore, now time.Time) (PruneResult, error)

	// Close closes the database.
	Close() error
}

// storable reports whether ev describes an object of its own device, which the index
// keeps (verified or not): a completed upload that passed the device, bucket and prefix
// checks. Rejections for those checks name someone else's object (or none), and indexing
// them would let a device occupy another's keys.
func storable(ev *events.Event) bool {
	if ev.Status != protocol.StatusCompleted {
		return false
	}
	switch ev.Reason {
	case events.ReasonWrongDevice, events.ReasonWrongBucket, events.ReasonWrongPrefix, events.ReasonMalformed:
		return false
	}
	return true
}
