package tokenworker

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/clipgate/clipgate/internal/deviceid"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/mqttclient"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/internal/quota"
	"github.com/clipgate/clipgate/policy"
	"github.com/clipgate/clipgate/topics"
)

// STSConfig says how the worker calls STS AssumeRole.
type STSConfig struct {
	// Endpoint is host[:port] of STS, e.g. "127.0.0.1:PORT" (localcloud) or
	// "sts.cn-hangzhou.aliyuncs.com". Required.
	Endpoint string
	// Scheme is "https" (default) or "http" (loopback stand-ins only).
	Scheme string
	// Region is the STS region ID; default "cn-hangzhou".
	Region string
	// AccessKeyID and AccessKeySecret are the long-term key of the RAM user that may assume
	// RoleARN. Required.
	AccessKeyID, AccessKeySecret string
	// RoleARN is the role the device credentials are issued for. Required.
	RoleARN string
	// Duration is the lifetime asked for, 900 s up to the role's maximum; default 1h.
	Duration time.Duration
	// Timeout bounds one AssumeRole call (connect and read); default 10s.
	Timeout time.Duration
}

// Config configures a Worker. Zero values take the documented defaults.
type Config struct {
	BrokerURL string // tcp://127.0.0.1:1883 or ssl://...; required by Start without Transport
	// Transport, when set, carries the requests and replies instead of the worker's own MQTT
	// client (BrokerURL, TLS, Username, Password, ClientID and Group are then unused): for
	// example a NATS queue group (internal/natsbus).
	Transport Transport
	TLS       *tls.Config // for ssl:// brokers
	// Username and Password are the worker's service account (role tokenworker).
	Username, Password string
	ClientID           string        // default "<Username>:<random>" (never of device-ID form)
	Group              string        // shared-subscription group; default topics.DefaultWorkerGroup
	Topics             topics.Scheme // zero value = topics.Default()
	// FleetKeys are the fleet keys (by key ID) that every device's request key derives
	// from (identity.Keyring.RequestKey); the broker holds only their connect roots.
	// Required unless FleetCA is set (a fleet of certificate devices only).
	FleetKeys *identity.Keyring
	// FleetCA, when set, serves devices that hold a client certificate and no device key:
	// their requests carry the certificate, which must chain to these CAs (client-auth
	// usage, valid now) with CN = device ID, and are signed with its key; replies are
	// sealed to it (identity.SealToPublicKey).
	FleetCA *x509.CertPool
	// Revocations lists revoked devices; nil means none is revoked (unless
	// RevocationsKey is set: then the worker keeps its own list).
	Revocations *identity.Revocations
	// RevocationsKey, when set, is the console's revocation list verification key: the
	// worker follows the signed list on the revocation topic (topics.Scheme.Revocations)
	// and applies it to Revocations. Workers of one process may share one Revocations.
	RevocationsKey ed25519.PublicKey
	STS            STSConfig
	// OSS is returned to devices. Bucket is required; Prefix is the global prefix
	// (e.g. "clips/"), and a device's own prefix is Prefix+deviceID+"/".
	OSS protocol.OSSInfo
	// ClockWindow is how far a request's timestamp may be from the worker's clock; default 5m.
	ClockWindow time.Duration
	// ReuseMargin: cached credentials with more than this left are handed out again instead
	// of calling STS; default 10m. Negative disables reuse.
	ReuseMargin time.Duration
	// DeviceRate and DeviceBurst bound requests per device (token bucket); default 1/s, 5.
	DeviceRate  rate.Limit
	DeviceBurst int
	// STSRate and STSBurst bound AssumeRole calls of this worker; default 50/s, 50.
	STSRate  rate.Limit
	STSBurst int
	// MaxConcurrent bounds AssumeRole calls in flight. Handle answers busy beyond it; a
	// request received over MQTT waits for a slot (and for the STS rate) up to 3 s after
	// its arrival, so that the queue, not the slots, is the backpressure. Default 32.
	MaxConcurrent int
	// QueueSize bounds requests received over MQTT and not yet handled; beyond it the worker
	// answers busy at once. Default 8*MaxConcurrent.
	QueueSize int
	// Seal encrypts the credentials to the device (AuthReply.Sealed); default true.
	Seal *bool
	// Replay is the nonce cache; nil means a private one sized for ClockWindow. Workers of one
	// process should share one so that a replay cannot slip through a sibling.
	Replay *identity.ReplayCache
	// CacheSize bounds the cached credentials (one per device and mode); default 100000.
	CacheSize int
	// Quota, when set, tells whether a device has used its upload quota: it returns the
	// time the quota resets, or the zero time when the device may upload. A device over
	// quota is refused write and append credentials with CodeQuotaExceeded and
	// retryAfterMs until then (at most a day); read credentials are not affected. It is
	// called for every request that asks for "w" or "a", and must be quick.
	Quota func(deviceID string, now time.Time) (resetAt time.Time)
	// QuotasKey, when set, is the console's signing key's public key (the one of
	// RevocationsKey): the worker follows the signed quota snapshot the console publishes,
	// retained, on the quota topic (topics.Scheme.Quotas) into Quotas, and Quota, unless
	// set, is Quotas.ResetAt. Snapshots that do not verify, or are older than the one in
	// force, are logged, counted (Stats.QuotaSnapshotsRefused) and ignored.
	QuotasKey ed25519.PublicKey
	// Quotas is the quota table QuotasKey fills; nil means a private one. Workers of one
	// process may share one.
	Quotas *quota.Table
	// Now is the clock; nil means time.Now.
	Now    func() time.Time
	Logger zerolog.Logger
	// Metrics, when set, counts this worker in a process's Prometheus metrics.
	Metrics *Metrics
}

// Defaults for Config.
const (
	DefaultClockWindow   = 5 * time.Minute
	DefaultReuseMargin   = 10 * time.Minute
	DefaultDeviceRate    = rate.Limit(1)
	DefaultDeviceBurst   = 5
	DefaultSTSRate       = rate.Limit(50)
	DefaultSTSBurst      = 50
	DefaultMaxConcurrent = 32
	DefaultCacheSize     = 100000
	DefaultSTSDuration   = time.Hour
	DefaultSTSTimeout    = 10 * time.Second
	DefaultSTSRegion     = "cn-hangzhou"
	MinSTSDuration       = 900 * time.Second
	MaxSTSDuration       = 12 * time.Hour
	// replayEntries bounds the private replay cache.
	replayEntries = 1 << 20
)

// applyDefaults fills in the zero values. validate then checks everything that can be
// checked before the first request, so that a misconfiguration stops the process at start
// and does not turn into a stream of internal errors.
func (c *Config) applyDefaults() {
	if c.Topics == (topics.Scheme{}) {
		c.Topics = topics.Default()
	}
	if c.Group == "" {
		c.Group = topics.DefaultWorkerGroup
	}
	if c.ClientID == "" {
		var b [6]byte
		_, _ = rand.Read(b[:]) // crypto/rand.Read does not return errors (it crashes instead)
		user := c.Username
		if user == "" {
			user = "tokenworker"
		}
		c.ClientID = user + ":" + hex.EncodeToString(b[:])
	}
	if c.ClockWindow == 0 {
		c.ClockWindow = DefaultClockWindow
	}
	c.applyLimitDefaults()
	if c.Seal == nil {
		t := true
		c.Seal = &t
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Replay == nil {
		// A request is accepted within ±ClockWindow of its timestamp, so its nonce must be
		// remembered for that long after it.
		c.Replay = identity.NewReplayCache(c.ClockWindow, replayEntries)
	}
	c.STS.applyDefaults()
	if c.OSS.Region == "" {
		c.OSS.Region = c.STS.Region
	}
}

// applyLimitDefaults fills in the zero reuse margin, rates, bursts and sizes.
func (c *Config) applyLimitDefaults() {
	if c.ReuseMargin == 0 {
		c.ReuseMargin = DefaultReuseMargin
	}
	if c.DeviceRate == 0 {
		c.DeviceRate = DefaultDeviceRate
	}
	if c.DeviceBurst == 0 {
		c.DeviceBurst = DefaultDeviceBurst
	}
	if c.STSRate == 0 {
		c.STSRate = DefaultSTSRate
	}
	if c.STSBurst == 0 {
		c.STSBurst = DefaultSTSBurst
	}
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = DefaultMaxConcurrent
	}
	if c.QueueSize == 0 {
		c.QueueSize = 8 * c.MaxConcurrent
	}
	if c.CacheSize == 0 {
		c.CacheSize = DefaultCacheSize
	}
}

// validate checks c after applyDefaults.
func (c *Config) validate() error {
	for _, check := range []func() error{c.validateIdentity, c.validateLimits, c.STS.validate, c.validateOSS} {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

// validateIdentity checks the fleet key, the group, the client ID and the broker URL.
func (c *Config) validateIdentity() error {
	if c.FleetKeys == nil && c.FleetCA == nil {
		return errors.New("tokenworker: no fleet keys (FleetKeys) and no fleet CA (FleetCA)")
	}
	if c.FleetKeys != nil {
		if err := c.FleetKeys.CheckKind(identity.KindFleet); err != nil {
			return fmt.Errorf("tokenworker: fleet keys: %w (the broker's connect keys cannot check requests)", err)
		}
	}
	if !topics.ValidGroup(c.Group) {
		return fmt.Errorf("tokenworker: %q is not a valid shared-subscription group name", c.Group)
	}
	if deviceid.Valid(c.ClientID) {
		// The broker keeps device IDs for devices, so that no service can take over a
		// device's session.
		return fmt.Errorf("tokenworker: client ID %q has the form of a device ID; use USERNAME:INSTANCE", c.ClientID)
	}
	if c.BrokerURL != "" {
		if err := mqttclient.CheckURL("BrokerURL", c.BrokerURL); err != nil {
			return fmt.Errorf("tokenworker: %w", err)
		}
	}
	return nil
}

// validateLimits checks that the clock window, rates, bursts and sizes are not negative.
func (c *Config) validateLimits() error {
	switch {
	case c.ClockWindow < 0:
		return errors.New("tokenworker: ClockWindow is negative")
	case c.DeviceRate < 0 || c.DeviceBurst < 0 || c.STSRate < 0 || c.STSBurst < 0:
		return errors.New("tokenworker: rates and bursts must not be negative")
	case c.MaxConcurrent < 0:
		return errors.New("tokenworker: MaxConcurrent is negative")
	case c.QueueSize < 0:
		return errors.New("tokenworker: QueueSize is negative")
	case c.CacheSize < 0:
		return errors.New("tokenworker: CacheSize is negative")
	}
	return nil
}

// validateOSS checks the OSS location handed to devices.
func (c *Config) validateOSS() error {
	if c.OSS.Bucket == "" || c.OSS.Endpoint == "" {
		return errors.New("tokenworker: OSS bucket and endpoint are required")
	}
	if err := policy.ValidateLocation(c.OSS.Bucket, c.OSS.Prefix); err != nil {
		return fmt.Errorf("tokenworker: OSS bucket/prefix: %w", err)
	}
	return nil
}

// applyDefaults fills in the zero scheme, region, duration and timeout, and spells the
// scheme in lower case.
func (s *STSConfig) applyDefaults() {
	switch lower := strings.ToLower(s.Scheme); lower {
	case "":
		s.Scheme = "https"
	case "http", "https":
		s.Scheme = lower
	}
	if s.Region == "" {
		s.Region = DefaultSTSRegion
	}
	if s.Duration == 0 {
		s.Duration = DefaultSTSDuration
	}
	if s.Timeout == 0 {
		s.Timeout = DefaultSTSTimeout
	}
}

// validate checks s after applyDefaults.
func (s *STSConfig) validate() error {
	switch {
	case s.Endpoint == "":
		return errors.New("tokenworker: STS endpoint is required")
	case strings.Contains(s.Endpoint, "://") || strings.ContainsAny(s.Endpoint, "/?# "):
		return fmt.Errorf("tokenworker: STS endpoint %q must be host[:port] (the scheme is separate)", s.Endpoint)
	case s.Scheme != "http" && s.Scheme != "https":
		return fmt.Errorf("tokenworker: STS scheme %q is not http or https", s.Scheme)
	case s.AccessKeyID == "" || s.AccessKeySecret == "":
		return errors.New("tokenworker: STS access key ID and secret are required")
	case !strings.HasPrefix(s.RoleARN, "acs:ram::") || !strings.Contains(s.RoleARN, ":role/"):
		return fmt.Errorf("tokenworker: STS role ARN %q is not acs:ram::ACCOUNT:role/NAME", s.RoleARN)
	case s.Duration < MinSTSDuration || s.Duration > MaxSTSDuration:
		return fmt.Errorf("tokenworker: STS duration %v is outside %v..%v", s.Duration, MinSTSDuration, MaxSTSDuration)
	case s.Duration%time.Second != 0:
		return fmt.Errorf("tokenworker: STS duration %v is not whole seconds", s.Duration)
	case s.Timeout < 0:
		return errors.New("tokenworker: STS timeout is negative")
	}
	return nil
}
