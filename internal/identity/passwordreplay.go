package identity

import (
	"time"
)

// PasswordReplayCache remembers the device passwords a broker accepted, for as long as
// their timestamp is inside the window, so that each password connects once: a password
// captured on the wire (or from a log) is refused. It is two ReplayCaches keyed by device
// and password nonce, one for passwords made without the server time (window wide, up to
// a day either side) and one for synced passwords (SyncedPasswordWindow), whose entries
// are forgotten within minutes. Like ReplayCache it refuses new passwords rather than
// forget unexpired ones when full. Safe for concurrent use.
//
// The cache lives in one process: brokers that share no cache (several brokers behind a
// load balancer, EMQX nodes each asking another authn endpoint) each accept a captured
// password once more while it is inside their window. Synced passwords keep that
// exposure to minutes.
type PasswordReplayCache struct {
	wide, synced *ReplayCache
}

// NewPasswordReplayCache returns a cache for passwords within window either side of now
// (window <= 0: DefaultPasswordWindow) holding at most maxEntries passwords of each kind
// (maxEntries <= 0: DefaultReplayEntries).
func NewPasswordReplayCache(window time.Duration, maxEntries int) *PasswordReplayCache {
	if window <= 0 {
		window = DefaultPasswordWindow
	}
	return &PasswordReplayCache{
		wide:   NewReplayCache(window, maxEntries),
		synced: NewReplayCache(min(window, SyncedPasswordWindow), maxEntries),
	}
}

// Check records that deviceID used the password with stamp st (ParseMQTTPassword of a
// password VerifyMQTTPassword accepted) at time now. It returns nil the first time,
// ErrReplay for a second use, ErrReplayCacheFull when the cache is full (see
// ReplayCache), ErrOutsideWindow or an error wrapping deviceid.ErrInvalid.
func (c *PasswordReplayCache) Check(deviceID string, st PasswordStamp, now time.Time) error {
	rc := c.wide
	if st.Synced {
		rc = c.synced
	}
	return rc.Check(deviceID, st.Nonce, st.Time, now)
}

// Len returns the number of passwords held, expired ones not yet swept included.
func (c *PasswordReplayCache) Len() int { return c.wide.Len() + c.synced.Len() }
