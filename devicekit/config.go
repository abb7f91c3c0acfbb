package devicekit

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	"github.com/rs/zerolog"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/internal/deviceid"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/mqttclient"
	"github.com/clipgate/clipgate/topics"
)

// Config configures a Kit. Zero values take the documented defaults; New rejects values
// that cannot work with an error that names the field.
type Config struct {
	// BrokerURL is the MQTT broker, e.g. "tcp://127.0.0.1:1883" or "ssl://broker:8883"
	// (schemes tcp, mqtt, ssl, tls, mqtts, ws, wss). Required.
	BrokerURL string
	// FailoverURLs are further nodes of a clustered broker (a NATS cluster's MQTT
	// gateways): every connection attempt tries BrokerURL, then these in order, so the
	// device moves to a surviving node when its node dies. Optional.
	FailoverURLs []string
	// TLS configures ssl://, tls://, mqtts:// and wss:// connections; nil uses Go's defaults.
	TLS *tls.Config
	// Dialer, when set, opens the broker connections: its LocalAddr chooses the source
	// address (a camera with several interfaces; a load test spreading devices over
	// loopback addresses). nil uses a default dialer.
	Dialer *net.Dialer

	// DeviceID is the camera's identity (2 to 64 characters of [A-Za-z0-9._-]; no '.' on a
	// NATS cluster, whose MQTT gateway refuses it in client IDs). It is the
	// MQTT client ID and username. Required.
	DeviceID string
	// DeviceKey is the device's provisioned key (LoadDeviceKey reads its file): the key
	// ID, the connect key that makes its MQTT passwords and the request key that signs
	// its auth requests and opens its sealed credentials. Its Device must be DeviceID.
	// Nil for a device with a client certificate and no shared secret: then TLS must hold
	// the certificate (TLS.Certificates[0], ECDSA P-256 or Ed25519, CN = DeviceID) and
	// BrokerURL must be a TLS URL; the kit connects with it (mTLS, no password), signs its
	// auth requests with its key and opens replies sealed to it.
	DeviceKey *DeviceKey
	// DeviceKeyFile is where the kit persists the new device key a token worker hands it
	// after a fleet key rotation (atomically, mode 0600): normally the file DeviceKey was
	// read from. Empty: a new key is used until the kit closes, then lost (the device
	// receives it again while the old key is accepted).
	DeviceKeyFile string

	// StateDir holds what must survive a restart: multipart checkpoints, the upload journal,
	// the event outbox and the last credentials, still sealed to the device key
	// (credentials-<mode>.json). Created 0700 if missing. Required.
	StateDir string
	// Topics is the topic scheme (topics.New); the zero value is topics.Default().
	Topics topics.Scheme
	// Mode is the access asked for: letters from "r", "w", "a". Default "w".
	Mode clipgate.Mode

	// StopWhenRefused makes Connect return an error wrapping ErrRefused as soon as the
	// broker refuses the login (wrong key, revoked device), instead of trying again until
	// its context ends. One-shot tools want this. A long-running camera keeps the default,
	// since a refused device may be let in again when its revocation is lifted; once
	// connected, lost connections are always retried.
	StopWhenRefused bool

	// RequestTimeout bounds one credentials request (and the wait for an event's PUBACK).
	// Default 10s; 100ms to 5m.
	RequestTimeout time.Duration
	// RefreshMargin is how long before their expiration cached credentials are renewed.
	// Default 5m; 1s to 10m (STS credentials last at least 15 minutes).
	RefreshMargin time.Duration
	// MultipartThreshold is the size from which clips are uploaded in parts, resumably.
	// Default 8 MiB; PartSize to 5 GiB.
	MultipartThreshold int64
	// PartSize is the multipart part size. Default 1 MiB; 100 KiB to 5 GiB.
	PartSize int64

	// UploadRate caps the bytes per second the kit sends to OSS, all uploads together
	// (puts, multipart parts and appends alike; see bandwidth.go): 0 means no cap, else
	// at least MinUploadRate.
	UploadRate int64
	// UploadRates are daily exceptions to UploadRate: at any time the first profile
	// whose window holds the local time of Now sets the cap (0 lifts it), else
	// UploadRate does. For example 256 KiB/s by day and no cap from 22:00 to 06:00:
	// UploadRate 256<<10, UploadRates {{Window{22h, 6h}, 0}}.
	UploadRates []RateProfile

	// Now is the device clock; nil means time.Now. The kit corrects it by the offset it
	// learns from the server time in auth replies.
	Now func() time.Time
	// Logger receives the kit's logs; the zero value discards them.
	Logger zerolog.Logger
}

// DeviceKey is a device's provisioned key: its device ID, the ID of the fleet key it
// derives from, its connect key (MQTT passwords) and its request key (auth requests and
// sealed credentials). `broker device-key` writes its file; LoadDeviceKey reads it.
type DeviceKey struct {
	// Device is the device ID the keys belong to.
	Device string
	// KeyID names the fleet key the keys derive from.
	KeyID string
	// Connect is the 32-byte key of the device's MQTT passwords (checked by the broker).
	Connect []byte
	// Request is the 32-byte key that signs auth requests and opens sealed credentials
	// (shared with the token workers only).
	Request []byte
}

// The conversions between DeviceKey and identity.DeviceKey below rely on the two structs
// having the same fields; this fails to compile if they drift apart.
var _ = (*identity.DeviceKey)((*DeviceKey)(nil))

// internal returns k as the identity package's type (the same memory, no copy).
func (k *DeviceKey) internal() *identity.DeviceKey { return (*identity.DeviceKey)(k) }

// Validate checks the device ID, the key ID and the key sizes.
func (k *DeviceKey) Validate() error { return k.internal().Validate() }

// Password returns a fresh MQTT password of the device at now, for connecting with
// another MQTT client as this device (the kit makes its own).
func (k *DeviceKey) Password(now time.Time) string { return k.internal().Password(now) }

// MarshalText returns the file form of the key, which LoadDeviceKey reads back.
func (k *DeviceKey) MarshalText() ([]byte, error) { return k.internal().MarshalText() }

// LoadDeviceKey reads a device key file, which must be readable by its owner only.
func LoadDeviceKey(path string) (*DeviceKey, error) {
	k, err := identity.LoadDeviceKey(path)
	return (*DeviceKey)(k), err
}

// certIdentity returns the DER client certificate and private key of a device without a
// DeviceKey, checked: TLS broker and failover URLs, a certificate whose CN is DeviceID, a P-256 or
// Ed25519 key.
func (c *Config) certIdentity() ([]byte, crypto.Signer, error) {
	if c.TLS == nil || len(c.TLS.Certificates) == 0 || len(c.TLS.Certificates[0].Certificate) == 0 {
		return nil, nil, configErr("DeviceKey is required (or a client certificate in TLS.Certificates)")
	}
	if !mqttclient.UsesTLS(c.BrokerURL) {
		return nil, nil, configErr("a device with a certificate and no DeviceKey needs a TLS BrokerURL (ssl://, tls://, mqtts:// or wss://), not %q", c.BrokerURL)
	}
	for i, u := range c.FailoverURLs {
		if !mqttclient.UsesTLS(u) {
			return nil, nil, configErr("a device with a certificate and no DeviceKey needs TLS FailoverURLs, not FailoverURLs[%d] %q", i, u)
		}
	}
	tc := c.TLS.Certificates[0]
	leaf, err := x509.ParseCertificate(tc.Certificate[0])
	if err != nil {
		return nil, nil, configErr("TLS.Certificates[0]: %v", err)
	}
	if leaf.Subject.CommonName != c.DeviceID {
		return nil, nil, configErr("the client certificate's CN %q is not DeviceID %q", leaf.Subject.CommonName, c.DeviceID)
	}
	key, ok := tc.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, nil, configErr("the client certificate's private key (%T) cannot sign", tc.PrivateKey)
	}
	if _, err := identity.SignWithKey(key, []byte("probe")); err != nil {
		return nil, nil, configErr("the client certificate's key: %v", err)
	}
	return tc.Certificate[0], key, nil
}

// Defaults and limits of Config.
const (
	DefaultMode               = clipgate.ModeWrite
	DefaultRequestTimeout     = 10 * time.Second
	DefaultRefreshMargin      = 5 * time.Minute
	DefaultMultipartThreshold = 8 << 20
	DefaultPartSize           = 1 << 20

	MinRequestTimeout = 100 * time.Millisecond
	MaxRequestTimeout = 5 * time.Minute
	MinRefreshMargin  = time.Second
	MaxRefreshMargin  = 10 * time.Minute
	MinPartSize       = oss.MinPartSize // 100 KiB, the OSS minimum
	MaxPartSize       = oss.MaxPartSize // 5 GiB, the OSS maximum
	MaxPutSize        = 5 << 30         // largest single PutObject OSS accepts
)

// ErrConfig is wrapped by every error New returns for a bad Config.
var ErrConfig = errors.New("devicekit: invalid config")

func configErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...)
}

// withDefaults returns a copy of c with its defaults applied, validated, with StateDir
// made absolute and its subdirectories created.
func (c Config) withDefaults() (Config, error) {
	c.applyDefaults()
	if err := c.validate(); err != nil {
		return c, err
	}
	return c, c.prepareStateDir()
}

// applyDefaults fills in the zero mode, timeouts, sizes and clock.
func (c *Config) applyDefaults() {
	if c.Mode == "" {
		c.Mode = DefaultMode
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.RefreshMargin == 0 {
		c.RefreshMargin = DefaultRefreshMargin
	}
	if c.PartSize == 0 {
		c.PartSize = DefaultPartSize
	}
	if c.MultipartThreshold == 0 {
		c.MultipartThreshold = max(DefaultMultipartThreshold, c.PartSize)
	}
	c.UploadRates = slices.Clone(c.UploadRates) // the kit keeps its own
	if c.Now == nil {
		c.Now = time.Now
	}
}

// validate checks c after applyDefaults.
func (c *Config) validate() error {
	if err := c.validateIdentity(); err != nil {
		return err
	}
	if err := c.validateLimits(); err != nil {
		return err
	}
	if err := c.checkRates(); err != nil {
		return err
	}
	if c.StateDir == "" {
		return configErr("StateDir is required")
	}
	return nil
}

// validateIdentity checks the broker and failover URLs, the device ID and key, and the mode.
func (c *Config) validateIdentity() error {
	if err := mqttclient.CheckURL("BrokerURL", c.BrokerURL); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	for i, u := range c.FailoverURLs {
		if err := mqttclient.CheckURL(fmt.Sprintf("FailoverURLs[%d]", i), u); err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	if err := deviceid.Validate(c.DeviceID); err != nil {
		return configErr("DeviceID: %v", err)
	}
	if c.DeviceKey == nil {
		if _, _, err := c.certIdentity(); err != nil {
			return err
		}
	} else if err := c.DeviceKey.Validate(); err != nil {
		return configErr("DeviceKey: %v", err)
	} else if c.DeviceKey.Device != c.DeviceID {
		return configErr("DeviceKey is the key of device %q, not of DeviceID %q", c.DeviceKey.Device, c.DeviceID)
	}
	if _, err := clipgate.ParseMode(string(c.Mode)); err != nil {
		return configErr("Mode: %v", err)
	}
	return nil
}

// validateLimits checks the timeouts and the multipart sizes.
func (c *Config) validateLimits() error {
	switch {
	case c.RequestTimeout < MinRequestTimeout || c.RequestTimeout > MaxRequestTimeout:
		return configErr("RequestTimeout %v is outside %v..%v", c.RequestTimeout, MinRequestTimeout, MaxRequestTimeout)
	case c.RefreshMargin < MinRefreshMargin || c.RefreshMargin > MaxRefreshMargin:
		return configErr("RefreshMargin %v is outside %v..%v", c.RefreshMargin, MinRefreshMargin, MaxRefreshMargin)
	case c.PartSize < MinPartSize || c.PartSize > MaxPartSize:
		return configErr("PartSize %d is outside %d..%d bytes", c.PartSize, MinPartSize, int64(MaxPartSize))
	case c.MultipartThreshold < c.PartSize || c.MultipartThreshold > MaxPutSize:
		return configErr("MultipartThreshold %d is outside PartSize (%d) .. %d bytes", c.MultipartThreshold, c.PartSize, int64(MaxPutSize))
	}
	return nil
}

// prepareStateDir makes StateDir absolute and creates it and its subdirectories.
func (c *Config) prepareStateDir() error {
	var err error
	if c.StateDir, err = filepath.Abs(c.StateDir); err != nil {
		return configErr("StateDir: %v", err)
	}
	for _, dir := range []string{c.StateDir, filepath.Join(c.StateDir, checkpointDir), filepath.Join(c.StateDir, journalDir), filepath.Join(c.StateDir, outboxDir)} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return configErr("StateDir: %v", err)
		}
	}
	if fi, err := os.Stat(c.StateDir); err != nil {
		return configErr("StateDir: %v", err)
	} else if !fi.IsDir() {
		return configErr("StateDir %q is not a directory", c.StateDir)
	}
	return nil
}

// Subdirectories of StateDir.
const (
	checkpointDir = "checkpoints" // SDK multipart checkpoints, <eventID>.cp
	journalDir    = "uploads"     // upload journal: the stable event ID of a clip in flight
	outboxDir     = "outbox"      // events not yet acknowledged by the broker
)
