package identity

import (
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"github.com/clipgate/clipgate/internal/deviceid"
)

// Defaults of NewReplayCache.
const (
	// DefaultReplayWindow is the timestamp window of auth requests, either side of now.
	DefaultReplayWindow = 5 * time.Minute
	// DefaultReplayEntries bounds the nonces remembered at once.
	DefaultReplayEntries = 1 << 20
	// MaxNonceLen bounds the length of a nonce the cache accepts.
	MaxNonceLen = 128
)

// Errors of ReplayCache.Check.
var (
	// ErrReplay: this device already used this nonce inside the window.
	ErrReplay = errors.New("nonce already used (replayed request)")
	// ErrReplayCacheFull: the cache holds its maximum of unexpired nonces and refuses new
	// ones rather than forget one that could still be replayed. Retry later.
	ErrReplayCacheFull = errors.New("replay cache full")
	// ErrOutsideWindow: the request timestamp lies outside the window around now.
	ErrOutsideWindow = errors.New("request timestamp outside the accepted window")
	// ErrInvalidNonce: the nonce is empty or longer than MaxNonceLen.
	ErrInvalidNonce = errors.New("invalid nonce")
)

// ReplayCache remembers the nonces of auth requests, per device, for as long as their
// timestamp is inside the window; it is safe for concurrent use.
//
// A nonce must be remembered only until ts+window: after that the timestamp check (which
// Check makes itself) refuses the request whatever its nonce. So the cache forgets exactly
// the expired entries, and when it is full of unexpired ones it refuses new requests
// (ErrReplayCacheFull) instead of evicting: evicting an unexpired nonce would let that
// request be replayed, while refusing only costs availability, and a device retries.
//
// Entries are spread over shards by a seeded hash (so a client cannot aim at one shard);
// each shard has a mutex, a map from key to expiry, and a ring of time buckets listing
// the keys that expire in each bucket, so that expiry touches only expired entries.
type ReplayCache struct {
	window time.Duration
	gran   int64 // bucket width, nanoseconds
	seed   maphash.Seed
	mask   uint64
	shards []replayShard
}

type replayShard struct {
	mu      sync.Mutex
	seen    map[string]int64 // device "\x00" nonce -> expiry (unix ns): ts + window
	buckets [][]string       // ring: bucket b holds keys expiring in [b*gran, (b+1)*gran)
	swept   int64            // every bucket below this number has been swept
	limit   int
	_       [64]byte // keep hot shards on separate cache lines
}

// bucketsPerWindow sets the expiry granularity: entries linger at most window/8 past expiry.
const bucketsPerWindow = 8

// NewReplayCache returns a cache for timestamps within window either side of now
// (window <= 0: DefaultReplayWindow) holding at most maxEntries nonces
// (maxEntries <= 0: DefaultReplayEntries). Large caches are sharded; each shard holds an
// equal part of maxEntries.
func NewReplayCache(window time.Duration, maxEntries int) *ReplayCache {
	if window <= 0 {
		window = DefaultReplayWindow
	}
	if maxEntries <= 0 {
		maxEntries = DefaultReplayEntries
	}
	n := 1
	for n < 64 && maxEntries/(n*2) >= 1024 {
		n *= 2
	}
	gran := int64(window) / bucketsPerWindow
	if gran < int64(time.Millisecond) {
		gran = int64(time.Millisecond)
	}
	// Live expiries lie in (now, now+2*window]: that many buckets, the current one, slack.
	ring := int(2*int64(window)/gran) + 3
	c := &ReplayCache{window: window, gran: gran, seed: maphash.MakeSeed(), mask: uint64(n - 1),
		shards: make([]replayShard, n)}
	for i := range c.shards {
		s := &c.shards[i]
		s.limit = maxEntries / n
		s.seen = make(map[string]int64)
		s.buckets = make([][]string, ring)
	}
	return c
}

// Window returns the timestamp window of the cache.
func (c *ReplayCache) Window() time.Duration { return c.window }

// Check records that deviceID used nonce in a request stamped ts, at time now. It returns
// nil the first time, ErrReplay for a repeat inside the window, ErrOutsideWindow when ts
// is more than the window away from now, ErrReplayCacheFull when full (see ReplayCache),
// ErrInvalidNonce, or an error wrapping deviceid.ErrInvalid.
// It allocates only when it records a new nonce (the key) or fails.
func (c *ReplayCache) Check(deviceID, nonce string, ts, now time.Time) error {
	if !deviceid.Valid(deviceID) {
		return fmt.Errorf("replay cache: %w", deviceid.Validate(deviceID))
	}
	if len(nonce) == 0 || len(nonce) > MaxNonceLen {
		return ErrInvalidNonce
	}
	if ts.Before(now.Add(-c.window)) || ts.After(now.Add(c.window)) {
		return ErrOutsideWindow
	}
	n := now.UnixNano()
	exp := ts.UnixNano() + int64(c.window)

	var buf [deviceid.MaxLen + 1 + MaxNonceLen]byte
	k := append(buf[:0], deviceID...)
	k = append(k, 0)
	k = append(k, nonce...)
	s := &c.shards[maphash.Bytes(c.seed, k)&c.mask]

	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(n, c.gran)
	old, found := s.seen[string(k)] // no allocation: lookup by converted bytes
	if found && old >= n {
		return ErrReplay
	}
	if !found && len(s.seen) >= s.limit {
		// Entries of the current bucket that expired since it began are still here.
		s.sweepBucket(floorDiv(n, c.gran), n)
		if len(s.seen) >= s.limit {
			return ErrReplayCacheFull
		}
	}
	key := string(k)
	s.seen[key] = exp
	b := s.slot(floorDiv(exp, c.gran))
	s.buckets[b] = append(s.buckets[b], key)
	return nil
}

// Len returns the number of nonces held, expired ones not yet swept included.
func (c *ReplayCache) Len() int {
	total := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		total += len(s.seen)
		s.mu.Unlock()
	}
	return total
}

// sweep forgets the entries of every bucket that ended before now.
func (s *replayShard) sweep(now, gran int64) {
	cur := floorDiv(now, gran)
	if cur <= s.swept {
		return // clock went backwards or same bucket: nothing new has ended
	}
	from := s.swept
	if cur-from > int64(len(s.buckets)) { // idle for long: one turn of the ring is all
		from = cur - int64(len(s.buckets))
	}
	for b := from; b < cur; b++ {
		s.sweepBucket(b, now)
	}
	s.swept = cur
}

// sweepBucket forgets the expired entries listed in bucket b's slot and keeps the rest
// (a key re-recorded after expiry, or one of a later bucket sharing the slot).
func (s *replayShard) sweepBucket(b, now int64) {
	i := s.slot(b)
	keep := s.buckets[i][:0]
	for _, k := range s.buckets[i] {
		exp, ok := s.seen[k]
		switch {
		case !ok:
		case exp < now:
			delete(s.seen, k)
		default:
			keep = append(keep, k)
		}
	}
	clear(s.buckets[i][len(keep):]) // drop references to forgotten keys
	s.buckets[i] = keep
}

func (s *replayShard) slot(b int64) int {
	n := int64(len(s.buckets))
	return int((b%n + n) % n)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && (a < 0) {
		q--
	}
	return q
}
