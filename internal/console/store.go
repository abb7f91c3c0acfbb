package console

import (
	"context"
	"errors"
	"time"

	"github.com/clipgate/clipgate/events"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/media"
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
	Clips int64 `json:"clips"`
	// Bytes is the size of the device's indexed clips.
	Bytes    int64 `json:"bytes"`
	Rejected int64 `json:"rejected"`
	Failed   int64 `json:"failed"`
	// Revoked reports that the operator revoked the device (since RevokedAt).
	Revoked   bool      `json:"revoked"`
	RevokedAt time.Time `json:"revokedAt,omitzero"`
	// Quota is the device's upload quota set by the operator (zero: none).
	Quota Quota `json:"quota"`
}

// Quota is a device's upload quota: the bytes it may upload per UTC day and per UTC
// month; 0 means no limit. The token workers refuse it write and append credentials
// once its usage (the size of its clips indexed in the day or month) reaches a limit.
type Quota struct {
	DayBytes   int64 `json:"dayBytes"`
	MonthBytes int64 `json:"monthBytes"`
}

// QuotaUsage is a device's quota and its usage: the size of its clips indexed since the
// start of the UTC day and of the UTC month.
type QuotaUsage struct {
	Device string `json:"device"`
	Quota
	DayUsed   int64 `json:"dayUsed"`
	MonthUsed int64 `json:"monthUsed"`
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
	// DurationMS, Width, Height, Codec and Container are read from the clip's container
	// at ingest (zero or empty: unknown; MediaError says why when the clip could not be
	// read as a video).
	DurationMS int64  `json:"durationMs,omitempty"`
	Width      int    `json:"width,omitempty"`
	Height     int    `json:"height,omitempty"`
	Codec      string `json:"codec,omitempty"`
	Container  string `json:"container,omitempty"`
	MediaError string `json:"mediaError,omitempty"`
	// Poster reports that the device uploaded a poster image beside the clip
	// ({key}.poster.jpg).
	Poster bool `json:"poster"`
}

// Media is what the console read from a clip at ingest, for Store.Index.
type Media struct {
	media.Info
	// Error says why the clip could not be read as a video ("" if it was, or was not
	// tried).
	Error string
	// Poster reports that {key}.poster.jpg exists.
	Poster bool
}

// ClipRef names an indexed clip and whether it has a poster (ExpiredClips).
type ClipRef struct {
	Key    string
	Poster bool
}

// ClipStatus filters clip lists.
type ClipStatus string

// The clip statuses a list can be filtered by ("" is every clip).
const (
	ClipVerified     ClipStatus = "verified"
	ClipUnverified   ClipStatus = "unverified"
	ClipReconciled   ClipStatus = "reconciled"
	ClipWithPoster   ClipStatus = "poster"
	ClipMediaUnknown ClipStatus = "no-duration"
)

// ClipStatuses lists the values of ClipStatus a query takes, "" (any) first.
func ClipStatuses() []string {
	return []string{"", string(ClipVerified), string(ClipUnverified), string(ClipReconciled), string(ClipWithPoster), string(ClipMediaUnknown)}
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
	// Status restricts the list to clips of that status; empty means every clip.
	Status ClipStatus
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
	// Operator is who logged in; Role is the operator's role now (Store.Session reads it
	// from the operator, so that a change applies at once).
	Operator string
	Role     Role
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

// TimelineSlot is one slot of a clip timeline: the clips recorded in [Start, Start+step).
type TimelineSlot struct {
	Start time.Time `json:"start"`
	Clips int64     `json:"clips"`
	Bytes int64     `json:"bytes"`
	// RecordedMS adds up the durations of the slot's clips (those whose duration is known).
	RecordedMS int64 `json:"recordedMs"`
}

// Totals is the storage of the whole index.
type Totals struct {
	Devices int64 `json:"devices"`
	Clips   int64 `json:"clips"`
	Bytes   int64 `json:"bytes"`
}

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
	// m is what the console read from the clip (nil: nothing).
	Index(ctx context.Context, ev *events.Event, m *Media, now time.Time) (IndexOutcome, error)
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
	// Timeline counts the clips of a device ("" for every device) recorded in [from, to),
	// per slot of step; slots without clips are left out.
	Timeline(ctx context.Context, device string, from, to time.Time, step time.Duration) ([]TimelineSlot, error)
	// Totals returns the storage of the whole index.
	Totals(ctx context.Context) (Totals, error)
	// Problems lists failed and rejected events by q.
	Problems(ctx context.Context, q ProblemQuery) ([]Problem, error)
	// Clip returns one clip, or ErrNotFound.
	Clip(ctx context.Context, key string) (*Clip, error)
	// DeleteClips removes the clips with these keys (keys not indexed are ignored) and
	// returns how many it removed.
	DeleteClips(ctx context.Context, keys []string) (int, error)
	// ExpiredClips returns up to limit clips under prefix, after the key after, uploaded
	// before the given time, in key order.
	ExpiredClips(ctx context.Context, prefix string, before time.Time, after string, limit int) ([]ClipRef, error)

	// SetRevoked records the operator's revocation (or restoration) of a device.
	SetRevoked(ctx context.Context, device string, revoked bool, at time.Time) error
	// RevokedDevices returns the IDs of the revoked devices, sorted.
	RevokedDevices(ctx context.Context) ([]string, error)
	// Revocations returns the revoked devices with their revocation times, sorted by ID.
	Revocations(ctx context.Context) ([]identity.Revocation, error)

	// SetQuota sets a known device's upload quota (ErrNotFound for an unknown device).
	SetQuota(ctx context.Context, device string, q Quota) error
	// QuotaUsage returns the quota and usage of every device with a quota, sorted by ID,
	// counting the clips indexed since day and since month (the starts of the UTC day
	// and month).
	QuotaUsage(ctx context.Context, day, month time.Time) ([]QuotaUsage, error)
	// DeviceQuotaUsage is QuotaUsage of one device, with or without a quota (ErrNotFound
	// for an unknown device).
	DeviceQuotaUsage(ctx context.Context, device string, day, month time.Time) (*QuotaUsage, error)

	// CreateSession stores a new session.
	CreateSession(ctx context.Context, s Session) error
	// Session returns the session with this ID hash if it has not expired at now.
	Session(ctx context.Context, idHash string, now time.Time) (*Session, error)
	// DeleteSession removes a session (logout).
	DeleteSession(ctx context.Context, idHash string) error

	// Operator returns an operator with its password hash, or ErrNotFound.
	Operator(ctx context.Context, name string) (*Operator, error)
	// Operators lists the operators by name (without password hashes).
	Operators(ctx context.Context) ([]Operator, error)
	// PutOperator creates an operator or replaces its role and password hash; a
	// replaced password ends the operator's sessions.
	PutOperator(ctx context.Context, op Operator) error
	// SetOperatorRole changes an operator's role (ErrNotFound if none).
	SetOperatorRole(ctx context.Context, name string, role Role, at time.Time) error
	// DeleteOperator removes an operator and its sessions (ErrNotFound if none).
	DeleteOperator(ctx context.Context, name string) error

	// CreateToken stores a new API token (by its hash).
	CreateToken(ctx context.Context, t APIToken) error
	// Token returns a token with its hash, or ErrNotFound.
	Token(ctx context.Context, id string) (*APIToken, error)
	// Tokens lists the tokens, newest first (without hashes).
	Tokens(ctx context.Context) ([]APIToken, error)
	// RevokeToken marks a token revoked (ErrNotFound if none or revoked already).
	RevokeToken(ctx context.Context, id string, at time.Time) error
	// TouchToken records a token's use.
	TouchToken(ctx context.Context, id string, at time.Time) error

	// AddAudit appends to the audit log.
	AddAudit(ctx context.Context, a AuditEntry) error
	// Audit lists audit entries by q, newest first.
	Audit(ctx context.Context, q AuditQuery) ([]AuditEntry, error)
	// PruneAudit removes audit entries older than before and returns how many.
	PruneAudit(ctx context.Context, before time.Time) (int64, error)

	// RetentionRules lists the retention rules by prefix.
	RetentionRules(ctx context.Context) ([]RetentionRule, error)
	// PutRetentionRule creates or replaces the rule for r.Prefix.
	PutRetentionRule(ctx context.Context, r RetentionRule) error
	// DeleteRetentionRule removes the rule for prefix (ErrNotFound if none).
	DeleteRetentionRule(ctx context.Context, prefix string) error
	// RecordRetentionRun records the outcome of a rule's run.
	RecordRetentionRun(ctx context.Context, prefix string, at time.Time, objects int, errText string) error

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
