package broker

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/topics"
)

// Defaults of Config.
const (
	DefaultAddr             = "127.0.0.1:1883"
	DefaultHTTPAddr         = "127.0.0.1:18830"
	DefaultTLSAddr          = "127.0.0.1:8883"
	DefaultMaxPacketSize    = 64<<10 + 1<<10 // a 64 KiB message (protocol.MaxMessageSize) plus topic and headers
	DefaultMaxWritesPending = 256
	DefaultSessionExpiry    = 7 * 24 * time.Hour
	DefaultMessageExpiry    = 24 * time.Hour
	DefaultRevocationSweep  = time.Second
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultDeviceRate       = 10 // publishes per second
	DefaultDeviceBurst      = 20
)

// Config configures a Broker. The zero value of every field means its default (see the
// Default* constants); DefaultConfig returns a Config with the defaults filled in.
type Config struct {
	// Addr is the plain MQTT (TCP) listen address; "none" disables it.
	Addr string
	// TLS configures an optional MQTT-over-TLS listener.
	TLS TLSConfig
	// HTTPAddr serves /healthcheck, /sys (mochi's $SYS figures as JSON, with clipgate's
	// counters) and, when EMQX.Enabled, the EMQX HTTP authn/authz endpoints; "none"
	// disables it.
	HTTPAddr string
	// DataDir holds the persistent sessions (pebble, synchronous writes). Empty means
	// in-memory only: sessions and queued messages are lost on restart.
	DataDir string
	// TopicRoot is the root of the topic scheme (topics.DefaultRoot when empty).
	TopicRoot string

	// ConnectKeysFile is the keyring of connect roots (identity.LoadKeyring; made by
	// "broker connect-keys" from the fleet keys) that device passwords are checked with.
	// It opens no sealed reply. Ignored when ConnectKeys is set.
	ConnectKeysFile string
	// ServiceAccountsFile lists the token workers, consumers and admins
	// (identity.LoadServiceAccounts). Ignored when ServiceAccounts is set. Optional.
	ServiceAccountsFile string
	// RevocationsFile lists revoked device IDs, one a line; it is watched and reloaded,
	// and connected devices it revokes are disconnected. Ignored when Revocations is set.
	// Optional.
	RevocationsFile string
	// RevocationsKeyFile is the console's revocation list verification key (the public
	// key of its RevocationKey; identity.LoadRevocationPublicKey). When set, the broker
	// follows the signed list the console publishes, retained, on the revocation topic
	// (instead of RevocationsFile), and disconnects the devices it revokes at once.
	// Ignored when RevocationsKey is set.
	RevocationsKeyFile string
	// RevocationsKey is RevocationsKeyFile's key, given directly.
	RevocationsKey ed25519.PublicKey
	// PasswordWindow is how far a device password's timestamp may lie from the broker's
	// clock (identity.DefaultPasswordWindow when zero).
	PasswordWindow time.Duration
	// RevocationSweep is how often connected devices are checked against the revocation
	// list (DefaultRevocationSweep when zero).
	RevocationSweep time.Duration

	// HandshakeTimeout bounds how long a new connection may take for its TLS handshake and
	// CONNECT packet (mochi alone would wait forever).
	HandshakeTimeout time.Duration

	// MaxPacketSize bounds every MQTT packet a client sends, in bytes; larger ones close
	// the connection.
	MaxPacketSize uint32
	// MaxWritesPending bounds each client's outbound queue; a message to a client whose
	// queue is full is dropped and counted (messages_dropped in /sys). It also sets the
	// heap cost of an idle connection (about 8 bytes a slot).
	MaxWritesPending int32
	// SessionExpiry is how long a disconnected persistent session (clean session false)
	// is kept with its subscriptions and queued messages.
	SessionExpiry time.Duration
	// MessageExpiry bounds how long queued and retained messages are kept.
	MessageExpiry time.Duration
	// DeviceRate and DeviceBurst limit each device's publishes (token bucket, per second).
	// Beyond them a QoS 0 publish disconnects the device and a QoS 1 publish is held back
	// (at most a second, else the device is disconnected) until the bucket allows it. A
	// negative rate means unlimited. A device kit publishes one event per clip (and a
	// credentials request about once per credentials lifetime), so DeviceRate caps a
	// device at about that many uploads a second whatever their size: the default, 10,
	// is far above what a camera records; raise it for devices that upload many small
	// files (README, "Publish limit").
	DeviceRate  float64
	DeviceBurst int
	// ServiceRate and ServiceBurst do the same for service accounts; zero or negative
	// rate means unlimited (the default: token workers answer a whole fleet).
	ServiceRate  float64
	ServiceBurst int

	// WorkerRouting is how an auth request picks a token worker of its shared-subscription
	// group: WorkerRoutingRoundRobin (the default: connected members take turns) or
	// WorkerRoutingDevice (all of a device's requests go to the same connected worker, so
	// its credentials cache, rate limit and replay cache are per device, not per worker).
	// Either way a disconnected member is skipped while another is connected. Other
	// shared groups always take turns.
	WorkerRouting string

	// Limits bound what one client ID, username or source address may cost the broker:
	// password replay, login throttling, bcrypt CPU, connection rates, sockets before
	// CONNECT, subscriptions (see LimitsConfig).
	Limits LimitsConfig

	// EMQX serves the authentication and ACL decisions over EMQX 5's HTTP authn/authz
	// contract, so that an EMQX cluster enforces the same identities and topic rules.
	EMQX EMQXConfig

	// ConnectKeys, ServiceAccounts and Revocations, when set, are used instead of the
	// files. A ConnectKeys keyring may be Set while the broker runs (key rotation).
	ConnectKeys     *identity.Keyring
	ServiceAccounts *identity.ServiceAccounts
	Revocations     *identity.Revocations
	// Logger receives the broker's logs and mochi's (through slog). Nil means no logs.
	Logger *zerolog.Logger
	// Now is the clock for password checks; nil means time.Now.
	Now func() time.Time

	// allowAll replaces authentication and ACL by mochi's allow-all hook: the baseline of
	// the throughput benchmark. Tests only.
	allowAll bool
}

// TLSConfig configures the MQTT-over-TLS listener. It is enabled when CertFile is set.
type TLSConfig struct {
	// Addr is the listen address (DefaultTLSAddr when empty).
	Addr string
	// CertFile and KeyFile are the server's PEM certificate chain and private key.
	CertFile string
	KeyFile  string
	// ClientCAFile, when set, enables client certificates (mTLS): a presented certificate
	// must chain to these CAs and its subject CN must equal the MQTT client ID. A device
	// with such a certificate needs no password.
	ClientCAFile string
	// RequireClientCert refuses TLS connections without a client certificate.
	RequireClientCert bool
}

// EMQXConfig configures the EMQX HTTP authn/authz endpoints on the HTTP listener.
type EMQXConfig struct {
	// Enabled serves POST /emqx/authn and POST /emqx/authz.
	Enabled bool
	// TokenFile holds a bearer token the requests must carry ("Authorization: Bearer
	// TOKEN", configured as a header in EMQX). Empty means no token is required: then
	// bind HTTPAddr to a private interface. Ignored when Token is set.
	TokenFile string
	// Token, when set, is the bearer token itself, used instead of TokenFile.
	Token string
}

// DefaultConfig returns a Config with every default filled in.
func DefaultConfig() Config {
	var c Config
	c.applyDefaults()
	return c
}

func (c *Config) applyDefaults() {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.HTTPAddr == "" {
		c.HTTPAddr = DefaultHTTPAddr
	}
	if c.TLS.CertFile != "" && c.TLS.Addr == "" {
		c.TLS.Addr = DefaultTLSAddr
	}
	if c.TopicRoot == "" {
		c.TopicRoot = topics.DefaultRoot
	}
	if c.PasswordWindow == 0 {
		c.PasswordWindow = identity.DefaultPasswordWindow
	}
	if c.RevocationSweep == 0 {
		c.RevocationSweep = DefaultRevocationSweep
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.MaxPacketSize == 0 {
		c.MaxPacketSize = DefaultMaxPacketSize
	}
	if c.MaxWritesPending == 0 {
		c.MaxWritesPending = DefaultMaxWritesPending
	}
	if c.SessionExpiry == 0 {
		c.SessionExpiry = DefaultSessionExpiry
	}
	if c.MessageExpiry == 0 {
		c.MessageExpiry = DefaultMessageExpiry
	}
	if c.DeviceRate == 0 {
		c.DeviceRate = DefaultDeviceRate
	}
	if c.DeviceBurst == 0 {
		c.DeviceBurst = DefaultDeviceBurst
	}
	if c.WorkerRouting == "" {
		c.WorkerRouting = WorkerRoutingRoundRobin
	}
	if c.ServiceRate > 0 && c.ServiceBurst == 0 {
		c.ServiceBurst = max(1, int(c.ServiceRate))
	}
	c.Limits.applyDefaults()
}

// validate checks a Config whose defaults are applied, and reports every problem.
func (c *Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	c.validateListeners(bad)
	c.validateKeys(bad)
	c.validateLimits(bad)
	c.validateRouting(bad)
	if err := c.Limits.validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// validateListeners checks that some MQTT listener is on, and the TLS files.
func (c *Config) validateListeners(bad func(format string, args ...any)) {
	if c.Addr == "none" && c.TLS.CertFile == "" {
		bad("no MQTT listener: addr is \"none\" and no TLS certificate is set")
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		bad("tls: certFile and keyFile must be set together")
	}
	if c.TLS.CertFile == "" && (c.TLS.ClientCAFile != "" || c.TLS.RequireClientCert) {
		bad("tls: clientCAFile and requireClientCert need certFile and keyFile")
	}
	if c.TLS.RequireClientCert && c.TLS.ClientCAFile == "" {
		bad("tls: requireClientCert needs clientCAFile")
	}
}

// validateKeys checks the topic root, the fleet key and the revocation list's key.
func (c *Config) validateKeys(bad func(format string, args ...any)) {
	if _, err := topics.New(c.TopicRoot); err != nil {
		bad("topicRoot: %w", err)
	}
	if !c.allowAll && c.ConnectKeys == nil && c.ConnectKeysFile == "" {
		bad("no connect keys: set connectKeysFile")
	}
	if c.RevocationsKey != nil && len(c.RevocationsKey) != ed25519.PublicKeySize {
		bad("revocationsKey: %d bytes, want %d", len(c.RevocationsKey), ed25519.PublicKeySize)
	}
	if (c.RevocationsKey != nil || c.RevocationsKeyFile != "") && c.RevocationsFile != "" && c.Revocations == nil {
		bad("revocationsFile and revocationsKeyFile: choose one way to receive the revocation list")
	}
}

// validateLimits checks the time windows, sizes and expiries.
func (c *Config) validateLimits(bad func(format string, args ...any)) {
	if c.PasswordWindow < time.Second {
		bad("passwordWindow %v: at least 1s", c.PasswordWindow)
	}
	if c.RevocationSweep < 10*time.Millisecond {
		bad("revocationSweep %v: at least 10ms", c.RevocationSweep)
	}
	if c.HandshakeTimeout < 10*time.Millisecond {
		bad("handshakeTimeout %v: at least 10ms", c.HandshakeTimeout)
	}
	if c.MaxPacketSize < 1024 {
		bad("maxPacketSize %d: at least 1024 bytes", c.MaxPacketSize)
	}
	if c.MaxWritesPending < 1 {
		bad("maxWritesPending %d: at least 1", c.MaxWritesPending)
	}
	if c.SessionExpiry < time.Second || c.SessionExpiry > time.Duration(1<<32-1)*time.Second {
		bad("sessionExpiry %v: between 1s and 2^32-1 seconds", c.SessionExpiry)
	}
	if c.MessageExpiry < time.Second {
		bad("messageExpiry %v: at least 1s", c.MessageExpiry)
	}
}

// validateRouting checks the rate bursts, the worker routing and the EMQX endpoint.
func (c *Config) validateRouting(bad func(format string, args ...any)) {
	if c.DeviceRate > 0 && c.DeviceBurst < 1 {
		bad("deviceBurst %d: at least 1", c.DeviceBurst)
	}
	if c.ServiceRate > 0 && c.ServiceBurst < 1 {
		bad("serviceBurst %d: at least 1", c.ServiceBurst)
	}
	if c.WorkerRouting != WorkerRoutingRoundRobin && c.WorkerRouting != WorkerRoutingDevice {
		bad("workerRouting %q: %q or %q", c.WorkerRouting, WorkerRoutingRoundRobin, WorkerRoutingDevice)
	}
	if c.EMQX.Enabled && c.HTTPAddr == "none" {
		bad("emqx: enabled but httpAddr is \"none\"")
	}
}
