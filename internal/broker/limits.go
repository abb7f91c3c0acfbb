package broker

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/crypto/bcrypt"

	"github.com/clipgate/clipgate/internal/deviceid"
	"github.com/clipgate/clipgate/internal/identity"
)

// Abuse limits: what one client ID, username or source address may cost the broker.
//
//   - Each device password connects once (identity.PasswordReplayCache), per broker process.
//   - Failed service account logins (bcrypt passwords, which can be guessed; device
//     passwords are MACs, which cannot, and a device that fails, e.g. with a clock days off,
//     must not block its site's address) slow their username and their source address
//     down: the answer to the n-th failure in a row is held back FailureDelay·2^(n-1) (at
//     most MaxFailureDelay), the socket still counting against its source's
//     MaxPendingPerSource meanwhile; after BlockAfter failures in a row the key is blocked
//     for BlockFor: its service logins are refused at once ("server unavailable", which
//     clients retry later), without a password check. A username is not throttled for a
//     source address it logged in from before (knownLogins), so an attack from elsewhere
//     cannot lock a service out.
//   - bcrypt comparisons (service account logins) run at most BcryptConcurrency at a time,
//     at most BcryptPerSource of them for one source address; a login that cannot start
//     one within BcryptWait is refused as busy. Device logins (an HMAC) never wait for them.
//   - Connections per client ID (ClientConnectRate a minute) and per source address
//     (SourceConnectRate a second), token buckets; beyond them a CONNECT is refused as busy,
//     a new socket closed at once.
//   - Sockets not yet answered a CONNACK (in their TLS handshake, before CONNECT, or with
//     a held-back failure), per source address: beyond MaxPendingPerSource a new socket is
//     closed at once.
//   - Subscriptions per client: beyond MaxSubscriptions a new filter is refused (SUBACK
//     0x80).
//
// Everything is counted in Stats (AbuseStats, /sys). The state is per broker process.

// Defaults of LimitsConfig.
const (
	DefaultPasswordCacheEntries = identity.DefaultReplayEntries
	DefaultFailureDelay         = time.Second
	DefaultMaxFailureDelay      = 5 * time.Second // below clients' connect timeouts: they still see the refusal
	DefaultBlockAfter           = 10
	DefaultBlockFor             = 15 * time.Minute
	DefaultBcryptWait           = 2 * time.Second
	DefaultBcryptPerSource      = 2
	DefaultClientConnectRate    = 12 // connections a minute per client ID
	DefaultClientConnectBurst   = 6
	DefaultSourceConnectRate    = 50 // connections a second per source address
	DefaultSourceConnectBurst   = 200
	DefaultMaxPendingPerSource  = 64
	DefaultMaxSubscriptions     = 100
	DefaultMaxTracked           = 100_000
)

// DefaultBcryptConcurrency is half the CPUs (at least one), so that service logins under
// attack leave the other half to devices and messages.
func DefaultBcryptConcurrency() int { return max(1, runtime.NumCPU()/2) }

// LimitsConfig bounds what one client ID, username or source address may cost the broker
// (see the package's limits.go). A zero field means its default; a negative one turns
// that limit off (not for PasswordCacheEntries or MaxTracked).
type LimitsConfig struct {
	// PasswordCacheEntries bounds the device passwords remembered against replay (each
	// of the wide and the synced ones; about 150 bytes an entry). When full of unexpired
	// passwords, new device logins are refused as busy until entries expire.
	PasswordCacheEntries int
	// FailureDelay is how long the answer to a failed login is held back, doubled by each
	// further failure in a row of its username or source address, up to MaxFailureDelay.
	FailureDelay    time.Duration
	MaxFailureDelay time.Duration
	// BlockAfter failures in a row block the username or source address for BlockFor. A
	// key without failures for BlockFor starts again from zero.
	BlockAfter int
	BlockFor   time.Duration
	// BcryptConcurrency bounds the bcrypt comparisons running at once
	// (DefaultBcryptConcurrency()), BcryptPerSource those of one source address; a login
	// that cannot start one within BcryptWait is refused as busy.
	BcryptConcurrency int
	BcryptPerSource   int
	BcryptWait        time.Duration
	// ClientConnectRate (a minute) and ClientConnectBurst limit the connections of one
	// client ID; SourceConnectRate (a second) and SourceConnectBurst those of one source
	// address.
	ClientConnectRate  float64
	ClientConnectBurst int
	SourceConnectRate  float64
	SourceConnectBurst int
	// MaxPendingPerSource bounds the sockets of one source address that have not been
	// answered a CONNACK yet (TLS handshake, waiting for CONNECT, held-back failures).
	MaxPendingPerSource int
	// MaxSubscriptions bounds the subscriptions of one client.
	MaxSubscriptions int
	// MaxTracked bounds the client IDs, usernames and source addresses each limit keeps
	// state for; past it, idle entries are dropped, and new keys are not limited until
	// there is room again (counted as untracked in /sys).
	MaxTracked int
}

func (c *LimitsConfig) applyDefaults() {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.PasswordCacheEntries, DefaultPasswordCacheEntries)
	defDur(&c.FailureDelay, DefaultFailureDelay)
	defDur(&c.MaxFailureDelay, DefaultMaxFailureDelay)
	def(&c.BlockAfter, DefaultBlockAfter)
	defDur(&c.BlockFor, DefaultBlockFor)
	def(&c.BcryptConcurrency, DefaultBcryptConcurrency())
	def(&c.BcryptPerSource, DefaultBcryptPerSource)
	defDur(&c.BcryptWait, DefaultBcryptWait)
	if c.ClientConnectRate == 0 {
		c.ClientConnectRate = DefaultClientConnectRate
	}
	def(&c.ClientConnectBurst, DefaultClientConnectBurst)
	if c.SourceConnectRate == 0 {
		c.SourceConnectRate = DefaultSourceConnectRate
	}
	def(&c.SourceConnectBurst, DefaultSourceConnectBurst)
	def(&c.MaxPendingPerSource, DefaultMaxPendingPerSource)
	def(&c.MaxSubscriptions, DefaultMaxSubscriptions)
	def(&c.MaxTracked, DefaultMaxTracked)
}

func (c *LimitsConfig) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("limits: "+format, args...)) }
	if c.PasswordCacheEntries < 1 {
		bad("passwordCacheEntries %d: at least 1", c.PasswordCacheEntries)
	}
	if c.MaxTracked < 1 {
		bad("maxTracked %d: at least 1", c.MaxTracked)
	}
	if c.FailureDelay > 0 && c.MaxFailureDelay > 0 && c.MaxFailureDelay < c.FailureDelay {
		bad("maxFailureDelay %v: below failureDelay %v", c.MaxFailureDelay, c.FailureDelay)
	}
	if c.BlockAfter > 0 && c.BlockFor <= 0 {
		bad("blockFor %v: blockAfter %d needs a positive duration", c.BlockFor, c.BlockAfter)
	}
	if c.BcryptConcurrency > 0 && c.BcryptWait <= 0 {
		bad("bcryptWait %v: bcryptConcurrency needs a positive wait", c.BcryptWait)
	}
	if c.ClientConnectRate > 0 && c.ClientConnectBurst < 1 {
		bad("clientConnectBurst %d: at least 1", c.ClientConnectBurst)
	}
	if c.SourceConnectRate > 0 && c.SourceConnectBurst < 1 {
		bad("sourceConnectBurst %d: at least 1", c.SourceConnectBurst)
	}
	return errors.Join(errs...)
}

// AbuseStats are the counters of the abuse limits, part of Stats (/sys).
type AbuseStats struct {
	SyncedPasswords      int64 `json:"synced_passwords"`       // device logins with a synced password (narrow window)
	PasswordReplays      int64 `json:"password_replays"`       // device passwords refused as used before
	PasswordCacheFull    int64 `json:"password_cache_full"`    // device logins refused: replay cache full
	PasswordCacheEntries int64 `json:"password_cache_entries"` // passwords remembered now
	LoginsDelayed        int64 `json:"logins_delayed"`         // failed logins whose answer was held back
	LoginsBlocked        int64 `json:"logins_blocked"`         // CONNECTs refused: their username or source is blocked after failures
	BcryptBusy           int64 `json:"bcrypt_busy"`            // service logins refused: no bcrypt slot in time
	ClientRateLimited    int64 `json:"client_rate_limited"`    // CONNECTs refused: client ID over its connection rate
	SourceRateLimited    int64 `json:"source_rate_limited"`    // sockets closed: source over its connection rate
	PendingRefused       int64 `json:"pending_refused"`        // sockets closed: source has too many sockets before CONNECT
	PendingConnections   int64 `json:"pending_connections"`    // sockets before their CONNACK now
	SubscriptionsRefused int64 `json:"subscriptions_refused"`  // filters refused: client at its subscription limit
	RetainRefused        int64 `json:"retain_refused"`         // clients disconnected for a retained publish they may not make
	Untracked            int64 `json:"untracked"`              // keys not limited because a table was full
}

// limits is the broker's abuse state.
type limits struct {
	cfg       LimitsConfig
	now       func() time.Time
	passwords *identity.PasswordReplayCache
	users     *throttle // failed logins per service username
	sources   *throttle // failed logins per source address
	known     *knownLogins
	bcrypt    *bcryptGate
	clientIDs *rates // connections per client ID
	srcRates  *rates // connections per source address
	pending   *pendingCount

	passwordReplays, passwordCacheFull, loginsDelayed, loginsBlocked  atomic.Int64
	bcryptBusy, syncedPasswords                                       atomic.Int64
	clientRateLimited, sourceRateLimited, pendingRefused, subsRefused atomic.Int64
	retainRefused, untracked                                          atomic.Int64
}

func newLimits(cfg LimitsConfig, window time.Duration, now func() time.Time) *limits {
	l := &limits{cfg: cfg, now: now, passwords: identity.NewPasswordReplayCache(window, cfg.PasswordCacheEntries)}
	l.users = newThrottle(cfg, &l.untracked)
	l.sources = newThrottle(cfg, &l.untracked)
	l.known = newKnownLogins(cfg.MaxTracked, cfg.BlockFor)
	l.bcrypt = newBcryptGate(cfg.BcryptConcurrency, cfg.BcryptPerSource, cfg.BcryptWait)
	l.clientIDs = newRates(cfg.ClientConnectRate/60, cfg.ClientConnectBurst, cfg.MaxTracked, &l.untracked)
	l.srcRates = newRates(cfg.SourceConnectRate, cfg.SourceConnectBurst, cfg.MaxTracked, &l.untracked)
	l.pending = newPendingCount(cfg.MaxPendingPerSource)
	return l
}

func (l *limits) stats() AbuseStats {
	return AbuseStats{
		SyncedPasswords:      l.syncedPasswords.Load(),
		PasswordReplays:      l.passwordReplays.Load(),
		PasswordCacheFull:    l.passwordCacheFull.Load(),
		PasswordCacheEntries: int64(l.passwords.Len()),
		LoginsDelayed:        l.loginsDelayed.Load(),
		LoginsBlocked:        l.loginsBlocked.Load(),
		BcryptBusy:           l.bcryptBusy.Load(),
		ClientRateLimited:    l.clientRateLimited.Load(),
		SourceRateLimited:    l.sourceRateLimited.Load(),
		PendingRefused:       l.pendingRefused.Load(),
		PendingConnections:   l.pending.total.Load(),
		SubscriptionsRefused: l.subsRefused.Load(),
		RetainRefused:        l.retainRefused.Load(),
		Untracked:            l.untracked.Load(),
	}
}

// warnWeakHashes logs the service accounts hashed below bcrypt's default cost (10): fine
// in tests, too cheap to guess against in production (HashPassword uses the default).
func (b *Broker) warnWeakHashes() {
	if weak := b.accounts.WeakHashes(bcrypt.DefaultCost); len(weak) > 0 {
		b.log.Warn().Strs("accounts", weak).Int("min_cost", bcrypt.DefaultCost).
			Msg("service account passwords hashed with a bcrypt cost below 10: cheap to guess; rehash with 'broker hash-password'")
	}
}

// sourceOf is the source address of a remote "host:port": the host.
func sourceOf(remote string) string {
	if host, _, err := net.SplitHostPort(remote); err == nil {
		return host
	}
	return remote
}

// passwordOnce refuses a device password (already verified) that was used before.
func (b *Broker) passwordOnce(deviceID, password string) (refusal, string) {
	st, err := identity.ParseMQTTPassword(password)
	if err == nil {
		err = b.lim.passwords.Check(deviceID, st, b.now())
	}
	switch {
	case err == nil:
		if st.Synced {
			b.lim.syncedPasswords.Add(1)
		}
		return refuseNone, ""
	case errors.Is(err, identity.ErrReplay):
		b.lim.passwordReplays.Add(1)
		return refuseBadLogin, "password used before (replayed)"
	case errors.Is(err, identity.ErrReplayCacheFull):
		b.lim.passwordCacheFull.Add(1)
		return refuseBusy, "password replay cache full"
	}
	return refuseBadLogin, err.Error()
}

// admit runs before authentication: the connection rate of the client ID and, for a
// service login, the blocks of the username and source address.
func (b *Broker) admit(cl *mqtt.Client, pk packets.Packet) (refusal, string) {
	l := b.lim
	now := l.now()
	src := sourceOf(cl.Net.Remote)
	if !l.clientIDs.allow(cl.ID, now) {
		l.clientRateLimited.Add(1)
		return refuseBusy, "client ID over its connection rate"
	}
	user := string(pk.Connect.Username)
	if !b.serviceLogin(user, pk) {
		return refuseNone, ""
	}
	if wait := l.sources.blocked(src, now); wait > 0 {
		l.loginsBlocked.Add(1)
		return refuseBusy, fmt.Sprintf("source address blocked after failed logins, for %v", wait.Round(time.Second))
	}
	if !l.known.has(user, src, now) {
		if wait := l.users.blocked(user, now); wait > 0 {
			l.loginsBlocked.Add(1)
			return refuseBusy, fmt.Sprintf("username blocked after failed logins, for %v", wait.Round(time.Second))
		}
	}
	return refuseNone, ""
}

// serviceLogin reports whether decideLogin checks a CONNECT against the service accounts
// (bcrypt): a username and password, not a device ID with a device password.
func (b *Broker) serviceLogin(user string, pk packets.Packet) bool {
	pw := string(pk.Connect.Password)
	device := deviceid.Valid(user) && strings.HasPrefix(pw, devicePasswordPrefix)
	return !device && user != "" && pw != ""
}

// loginDone records the outcome of an authentication: a bad service login counts against
// its source address and username and its answer is held back; a success clears the
// username and remembers its source address. Then the socket is no longer pending.
func (b *Broker) loginDone(cl *mqtt.Client, pk packets.Packet, r refusal) {
	l := b.lim
	defer l.pending.release(cl.Net.Remote)
	now := l.now()
	src := sourceOf(cl.Net.Remote)
	user := string(pk.Connect.Username)
	service := b.serviceLogin(user, pk)
	switch {
	case !service:
	case r == refuseNone:
		l.users.forget(user)
		l.known.add(user, src, now)
	case r == refuseBadLogin:
		d := l.sources.fail(src, now)
		if !l.known.has(user, src, now) {
			d = max(d, l.users.fail(user, now))
		}
		if d > 0 {
			l.loginsDelayed.Add(1)
			pace(cl, d)
		}
	}
}

// acquireBcrypt takes a bcrypt slot for a service login from source, or refuses as busy.
func (b *Broker) acquireBcrypt(source string) bool {
	if b.lim.bcrypt.acquire(source) {
		return true
	}
	b.lim.bcryptBusy.Add(1)
	return false
}

// checkRetain disconnects a client that publishes a retained message where it may not:
// devices retain only their own status (topics.Scheme.MayRetain).
func (b *Broker) checkRetain(cl *mqtt.Client, pk packets.Packet) error {
	if !pk.FixedHeader.Retain {
		return nil
	}
	s := b.sessions.get(cl)
	if s == nil || b.scheme.MayRetain(s.Role, s.DeviceID, pk.TopicName) {
		return nil
	}
	b.lim.retainRefused.Add(1)
	b.log.Warn().Str("client", cl.ID).Str("topic", pk.TopicName).Msg("retained publish not allowed on this topic, disconnecting")
	return packets.ErrRejectPacket
}

// limitSubscriptions refuses (with denyFilter) the new filters of a SUBSCRIBE beyond the
// client's subscription limit; filters it already holds are renewals and always pass.
func (b *Broker) limitSubscriptions(cl *mqtt.Client, pk *packets.Packet) {
	limit := b.lim.cfg.MaxSubscriptions
	if limit < 0 {
		return
	}
	n := cl.State.Subscriptions.Len()
	for i := range pk.Filters {
		f := pk.Filters[i].Filter
		if f == denyFilter {
			continue
		}
		if _, held := cl.State.Subscriptions.Get(f); held {
			continue
		}
		if n >= limit {
			b.lim.subsRefused.Add(1)
			b.log.Info().Str("client", cl.ID).Str("filter", f).Int("limit", limit).Msg("subscription refused: limit reached")
			pk.Filters[i].Filter = denyFilter
			continue
		}
		n++
	}
}

// jsonBool is a JSON boolean that EMQX's request templates may also render as a string
// ("${retain}" is "true" or "false").
type jsonBool bool

func (j *jsonBool) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case "true", `"true"`:
		*j = true
	case "false", `"false"`, `""`, "null":
		*j = false
	default:
		return fmt.Errorf("retain: want true or false, got %s", b)
	}
	return nil
}

// throttle tracks failed logins per key (see LimitsConfig).
type throttle struct {
	cfg       LimitsConfig
	untracked *atomic.Int64
	mu        sync.Mutex
	m         map[string]*failures
	nextSweep time.Time // a full table is swept at most once a second
}

type failures struct {
	n     int       // failures in a row
	last  time.Time // of the last failure
	until time.Time // blocked until
}

func newThrottle(cfg LimitsConfig, untracked *atomic.Int64) *throttle {
	return &throttle{cfg: cfg, untracked: untracked, m: make(map[string]*failures)}
}

func (t *throttle) off() bool { return t.cfg.FailureDelay < 0 && t.cfg.BlockAfter < 0 }

// blocked returns how long key is still blocked (0: it may try).
func (t *throttle) blocked(key string, now time.Time) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.m[key]
	if f == nil || !now.Before(f.until) {
		return 0
	}
	return f.until.Sub(now)
}

// fail records a failed login of key and returns how long to hold its answer back.
func (t *throttle) fail(key string, now time.Time) time.Duration {
	if t.off() {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.m[key]
	if f == nil {
		if len(t.m) >= t.cfg.MaxTracked {
			if !now.Before(t.nextSweep) {
				t.sweep(now)
				t.nextSweep = now.Add(time.Second)
			}
			if len(t.m) >= t.cfg.MaxTracked {
				t.untracked.Add(1)
				return max(t.cfg.FailureDelay, 0) // not tracked: the first delay
			}
		}
		f = &failures{}
		t.m[key] = f
	}
	if now.Sub(f.last) > t.cfg.BlockFor {
		f.n = 0 // quiet for long enough: start again
	}
	f.n++
	f.last = now
	var d time.Duration
	if t.cfg.FailureDelay > 0 {
		d = t.cfg.FailureDelay
		for i := 1; i < f.n && (t.cfg.MaxFailureDelay <= 0 || d < t.cfg.MaxFailureDelay); i++ {
			d *= 2
		}
		if t.cfg.MaxFailureDelay > 0 {
			d = min(d, t.cfg.MaxFailureDelay)
		}
	}
	if t.cfg.BlockAfter > 0 && f.n >= t.cfg.BlockAfter {
		f.until = now.Add(t.cfg.BlockFor)
	}
	return d
}

// forget clears key's failures (a successful login).
func (t *throttle) forget(key string) {
	t.mu.Lock()
	delete(t.m, key)
	t.mu.Unlock()
}

// sweep drops the keys that neither wait nor remember recent failures; t.mu is held.
func (t *throttle) sweep(now time.Time) {
	for k, f := range t.m {
		if !now.Before(f.until) && now.Sub(f.last) > t.cfg.BlockFor {
			delete(t.m, k)
		}
	}
}

// knownLogins remembers which source addresses each service username logged in from, for
// ttl: a failed login from such a source does not throttle the username, and the
// username's throttle does not apply to it.
type knownLogins struct {
	max       int
	ttl       time.Duration
	mu        sync.Mutex
	m         map[string]time.Time // username "\x00" source -> last success
	nextSweep time.Time            // a full table is swept at most once a second
}

func newKnownLogins(limit int, ttl time.Duration) *knownLogins {
	return &knownLogins{max: limit, ttl: max(ttl, time.Hour), m: make(map[string]time.Time)}
}

func (k *knownLogins) has(user, src string, now time.Time) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	t, ok := k.m[user+"\x00"+src]
	return ok && now.Sub(t) <= k.ttl
}

func (k *knownLogins) add(user, src string, now time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	key := user + "\x00" + src
	if _, ok := k.m[key]; !ok && len(k.m) >= k.max {
		if !now.Before(k.nextSweep) {
			for kk, t := range k.m {
				if now.Sub(t) > k.ttl {
					delete(k.m, kk)
				}
			}
			k.nextSweep = now.Add(time.Second)
		}
		if len(k.m) >= k.max {
			return
		}
	}
	k.m[key] = now
}

// rates is a token bucket per key, on the caller's clock.
type rates struct {
	rate      float64 // tokens a second; <= 0: unlimited
	burst     float64
	max       int
	untracked *atomic.Int64
	mu        sync.Mutex
	m         map[string]*bucket
	nextSweep time.Time // a full table is swept at most once a second
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newRates(rate float64, burst, limit int, untracked *atomic.Int64) *rates {
	return &rates{rate: rate, burst: float64(burst), max: limit, untracked: untracked, m: make(map[string]*bucket)}
}

// allow takes a token from key's bucket, and reports whether there was one.
func (r *rates) allow(key string, now time.Time) bool {
	if r.rate <= 0 {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.m[key]
	if b == nil {
		if len(r.m) >= r.max {
			if !now.Before(r.nextSweep) {
				r.sweep(now)
				r.nextSweep = now.Add(time.Second)
			}
			if len(r.m) >= r.max {
				r.untracked.Add(1)
				return true
			}
		}
		b = &bucket{tokens: r.burst, at: now}
		r.m[key] = b
	}
	if dt := now.Sub(b.at); dt > 0 {
		b.tokens = min(r.burst, b.tokens+dt.Seconds()*r.rate)
		b.at = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// sweep drops the buckets that have refilled (they hold no state); r.mu is held.
func (r *rates) sweep(now time.Time) {
	for k, b := range r.m {
		if b.tokens+now.Sub(b.at).Seconds()*r.rate >= r.burst {
			delete(r.m, k)
		}
	}
}

// bcryptGate bounds the bcrypt comparisons running at once, in total and per source.
type bcryptGate struct {
	slots     chan struct{} // nil: unlimited
	perSource int
	wait      time.Duration
	mu        sync.Mutex
	bySource  map[string]int
}

func newBcryptGate(n, perSource int, wait time.Duration) *bcryptGate {
	g := &bcryptGate{perSource: perSource, wait: wait, bySource: make(map[string]int)}
	if n > 0 {
		g.slots = make(chan struct{}, n)
	}
	return g
}

// acquire takes a slot for source, waiting at most g.wait; release gives it back. An
// empty source (an EMQX authn request, which names none) is held to the total only.
func (g *bcryptGate) acquire(source string) bool {
	g.mu.Lock()
	if g.perSource > 0 && source != "" && g.bySource[source] >= g.perSource {
		g.mu.Unlock()
		return false
	}
	g.bySource[source]++
	g.mu.Unlock()
	if g.slots == nil {
		return true
	}
	select {
	case g.slots <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(g.wait)
	defer t.Stop()
	select {
	case g.slots <- struct{}{}:
		return true
	case <-t.C:
		g.done(source)
		return false
	}
}

func (g *bcryptGate) release(source string) {
	if g.slots != nil {
		<-g.slots
	}
	g.done(source)
}

func (g *bcryptGate) done(source string) {
	g.mu.Lock()
	if g.bySource[source]--; g.bySource[source] <= 0 {
		delete(g.bySource, source)
	}
	g.mu.Unlock()
}

// pendingCount counts, per source address, the sockets that have not sent CONNECT yet.
type pendingCount struct {
	max   int // <= 0: unlimited
	total atomic.Int64
	mu    sync.Mutex
	n     map[string]int      // source -> pending sockets
	conns map[string]struct{} // remote "host:port" of each pending socket
}

func newPendingCount(limit int) *pendingCount {
	return &pendingCount{max: limit, n: make(map[string]int), conns: make(map[string]struct{})}
}

// add counts a new socket from remote, unless its source is at the limit.
func (p *pendingCount) add(remote string) bool {
	src := sourceOf(remote)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.max > 0 && p.n[src] >= p.max {
		return false
	}
	if _, dup := p.conns[remote]; dup {
		return true // cannot happen with TCP; count once
	}
	p.conns[remote] = struct{}{}
	p.n[src]++
	p.total.Add(1)
	return true
}

// release ends the pending state of the socket from remote (its CONNECT arrived, or it
// closed); it may be called more than once.
func (p *pendingCount) release(remote string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.conns[remote]; !ok {
		return
	}
	delete(p.conns, remote)
	src := sourceOf(remote)
	if p.n[src]--; p.n[src] <= 0 {
		delete(p.n, src)
	}
	p.total.Add(-1)
}

// limitListener closes, right after accepting them, sockets from a source address over
// its connection rate or with too many sockets before CONNECT; it counts the others as
// pending until their CONNECT (admit) or their close.
type limitListener struct {
	net.Listener
	b *Broker
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		lim := l.b.lim
		remote := c.RemoteAddr().String()
		switch {
		case !lim.srcRates.allow(sourceOf(remote), lim.now()):
			_ = c.Close() // mochi's Serve stops at an Accept error: refuse here and go on
			lim.sourceRateLimited.Add(1)
		case !lim.pending.add(remote):
			_ = c.Close()
			lim.pendingRefused.Add(1)
		default:
			return &pendingConn{Conn: c, p: lim.pending, remote: remote}, nil
		}
	}
}

// pendingConn ends its pending state when it closes.
type pendingConn struct {
	net.Conn
	p      *pendingCount
	remote string
}

func (c *pendingConn) Close() error {
	c.p.release(c.remote)
	return c.Conn.Close()
}
