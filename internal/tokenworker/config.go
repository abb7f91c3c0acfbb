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
	BrokerURL string      // tcp://127.0.0.1:1883 or ssl://...; required by Start only
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

// withDefaults validates c and fills in defaults. Everything that can be checked before the
// first request is checked here, so that a misconfiguration stops the process at start and
// does not turn into a stream of internal errors.
func (c Config) withDefaults() (Config, error) {
	if c.FleetKeys == nil && c.FleetCA == nil {
		return c, errors.New("tokenworker: no fleet keys (FleetKeys) and no fleet CA (FleetCA)")
	}
	if c.FleetKeys != nil {
		if err := c.FleetKeys.CheckKind(identity.KindFleet); err != nil {
			return c, fmt.Errorf("tokenworker: fleet keys: %w (the broker's connect keys cannot check requests)", err)
		}
	}
	if c.Topics == (topics.Scheme{}) {
		c.Topics = topics.Default()
	}
	if c.Group == "" {
		c.Group = topics.DefaultWorkerGroup
	}
	if !topics.ValidGroup(c.Group) {
		return c, fmt.Errorf("tokenworker: %q is not a valid shared-subscription group name", c.Group)
	}
	if c.ClientID == "" {
		var b [6]byte
		if _, err := rand.Read(b[:]); err != nil {
			return c, err
		}
		user := c.Username
		if user == "" {
			user = "tokenworker"
		}
		c.ClientID = user + ":" + hex.EncodeToString(b[:])
	}
	if deviceid.Valid(c.ClientID) {
		// The broker keeps device IDs for devices, so that no service can take over a
		// device's session.
		return c, fmt.Errorf("tokenworker: client ID %q has the form of a device ID; use USERNAME:INSTANCE", c.ClientID)
	}
	if c.BrokerURL != "" {
		if err := mqttclient.CheckURL("BrokerURL", c.BrokerURL); err != nil {
			return c, fmt.Errorf("tokenworker: %w", err)
		}
	}
	if c.ClockWindow == 0 {
		c.ClockWindow = DefaultClockWindow
	}
	if c.ClockWindow < 0 {
		return c, errors.New("tokenworker: ClockWindow is negative")
	}
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
	if c.DeviceRate < 0 || c.DeviceBurst < 0 || c.STSRate < 0 || c.STSBurst < 0 {
		return c, errors.New("tokenworker: rates and bursts must not be negative")
	}
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = DefaultMaxConcurrent
	}
	if c.MaxConcurrent < 0 {
		return c, errors.New("tokenworker: MaxConcurrent is negative")
	}
	if c.QueueSize == 0 {
		c.QueueSize = 8 * c.MaxConcurrent
	}
	if c.QueueSize < 0 {
		return c, errors.New("tokenworker: QueueSize is negative")
	}
	if c.CacheSize == 0 {
		c.CacheSize = DefaultCacheSize
	}
	if c.CacheSize < 0 {
		return c, errors.New("tokenworker: CacheSize is negative")
	}
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
	s, err := c.STS.withDefaults()
	if err != nil {
		return c, err
	}
	c.STS = s
	if c.OSS.Bucket == "" || c.OSS.Endpoint == "" {
		return c, errors.New("tokenworker: OSS bucket and endpoint are required")
	}
	if c.OSS.Region == "" {
		c.OSS.Region = c.STS.Region
	}
	if err := policy.ValidateLocation(c.OSS.Bucket, c.OSS.Prefix); err != nil {
		return c, fmt.Errorf("tokenworker: OSS bucket/prefix: %w", err)
	}
	return c, nil
}

func (s STSConfig) withDefaults() (STSConfig, error) {
	if s.Endpoint == "" {
		return s, errors.New("tokenworker: STS endpoint is required")
	}
	if strings.Contains(s.Endpoint, "://") || strings.ContainsAny(s.Endpoint, "/?# ") {
		return s, fmt.Errorf("tokenworker: STS endpoint %q must be host[:port] (the scheme is separate)", s.Endpoint)
	}
	switch strings.ToLower(s.Scheme) {
	case "":
		s.Scheme = "https"
	case "http", "https":
		s.Scheme = strings.ToLower(s.Scheme)
	default:
		return s, fmt.Errorf("tokenworker: STS scheme %q is not http or https", s.Scheme)
	}
	if s.Region == "" {
		s.Region = DefaultSTSRegion
	}
	if s.AccessKeyID == "" || s.AccessKeySecret == "" {
		return s, errors.New("tokenworker: STS access key ID and secret are required")
	}
	if !strings.HasPrefix(s.RoleARN, "acs:ram::") || !strings.Contains(s.RoleARN, ":role/") {
		return s, fmt.Errorf("tokenworker: STS role ARN %q is not acs:ram::ACCOUNT:role/NAME", s.RoleARN)
	}
	if s.Duration == 0 {
		s.Duration = DefaultSTSDuration
	}
	if s.Duration < MinSTSDuration || s.Duration > MaxSTSDuration {
		return s, fmt.Errorf("tokenworker: STS duration %v is outside %v..%v", s.Duration, MinSTSDuration, MaxSTSDuration)
	}
	if s.Duration%time.Second != 0 {
		return s, fmt.Errorf("tokenworker: STS duration %v is not whole seconds", s.Duration)
	}
	if s.Timeout == 0 {
		s.Timeout = DefaultSTSTimeout
	}
	if s.Timeout < 0 {
		return s, errors.New("tokenworker: STS timeout is negative")
	}
	return s, nil
}
