package broker

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"
	"gopkg.in/yaml.v3"

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
	DefaultConnectTimeout   = 10 * time.Second
	DefaultDeviceRate       = 10 // publishes per second
	DefaultDeviceBurst      = 20
)

// Config configures a Broker. The zero value of every field means its default (see the
// Default* constants); DefaultConfig returns a Config with the defaults filled in.
// In YAML files the keys are the yaml tags below; unknown keys are errors.
type Config struct {
	// Addr is the plain MQTT (TCP) listen address; "none" disables it.
	Addr string `yaml:"addr"`
	// TLS configures an optional MQTT-over-TLS listener.
	TLS TLSConfig `yaml:"tls"`
	// HTTPAddr serves /healthcheck, /sys (mochi's $SYS figures as JSON, with clipgate's
	// counters) and, when EMQX.Enabled, the EMQX HTTP authn/authz endpoints; "none"
	// disables it.
	HTTPAddr string `yaml:"httpAddr"`
	// DataDir holds the persistent sessions (pebble, synchronous writes). Empty means
	// in-memory only: sessions and queued messages are lost on restart.
	DataDir string `yaml:"dataDir"`
	// TopicRoot is the root of the topic scheme (topics.DefaultRoot when empty).
	TopicRoot string `yaml:"topicRoot"`

	// FleetKeyFile is the fleet key file (identity.LoadKey) that device keys derive from.
	// Ignored when FleetKey is set.
	FleetKeyFile string `yaml:"fleetKeyFile"`
	// ServiceAccountsFile lists the token workers, consumers and admins
	// (identity.LoadServiceAccounts). Ignored when ServiceAccounts is set. Optional.
	ServiceAccountsFile string `yaml:"serviceAccountsFile"`
	// RevocationsFile lists revoked device IDs, one a line; it is watched and reloaded,
	// and connected devices it revokes are disconnected. Ignored when Revocations is set.
	// Optional.
	RevocationsFile string `yaml:"revocationsFile"`
	// PasswordWindow is how far a device password's timestamp may lie from the broker's
	// clock (identity.DefaultPasswordWindow when zero).
	PasswordWindow time.Duration `yaml:"passwordWindow"`
	// RevocationSweep is how often connected devices are checked against the revocation
	// list (DefaultRevocationSweep when zero).
	RevocationSweep time.Duration `yaml:"revocationSweep"`

	// ConnectTimeout bounds how long a new connection may take for its TLS handshake and
	// CONNECT packet (mochi alone would wait forever).
	ConnectTimeout time.Duration `yaml:"connectTimeout"`

	// MaxPacketSize bounds every MQTT packet a client sends, in bytes; larger ones close
	// the connection.
	MaxPacketSize uint32 `yaml:"maxPacketSize"`
	// MaxWritesPending bounds each client's outbound queue; a message to a client whose
	// queue is full is dropped and counted (messages_dropped in /sys). It also sets the
	// heap cost of an idle connection (about 8 bytes a slot).
	MaxWritesPending int32 `yaml:"maxWritesPending"`
	// SessionExpiry is how long a disconnected persistent session (clean session false)
	// is kept with its subscriptions and queued messages.
	SessionExpiry time.Duration `yaml:"sessionExpiry"`
	// MessageExpiry bounds how long queued and retained messages are kept.
	MessageExpiry time.Duration `yaml:"messageExpiry"`
	// DeviceRate and DeviceBurst limit each device's publishes (token bucket, per second).
	// Beyond them a QoS 0 publish disconnects the device and a QoS 1 publish is held back
	// (at most a second, else the device is disconnected) until the bucket allows it. A
	// negative rate means unlimited.
	DeviceRate  float64 `yaml:"deviceRate"`
	DeviceBurst int     `yaml:"deviceBurst"`
	// ServiceRate and ServiceBurst do the same for service accounts; zero or negative
	// rate means unlimited (the default: token workers answer a whole fleet).
	ServiceRate  float64 `yaml:"serviceRate"`
	ServiceBurst int     `yaml:"serviceBurst"`

	// WorkerRouting is how an auth request picks a token worker of its shared-subscription
	// group: WorkerRoutingRoundRobin (the default: connected members take turns) or
	// WorkerRoutingDevice (all of a device's requests go to the same connected worker, so
	// its credentials cache, rate limit and replay cache are per device, not per worker).
	// Either way a disconnected member is skipped while another is connected. Other
	// shared groups always take turns.
	WorkerRouting string `yaml:"workerRouting"`

	// EMQX serves the authentication and ACL decisions over EMQX 5's HTTP authn/authz
	// contract, so that an EMQX cluster enforces the same identities and topic rules.
	EMQX EMQXConfig `yaml:"emqx"`

	// FleetKey, ServiceAccounts and Revocations, when set, are used instead of the files.
	FleetKey        []byte                    `yaml:"-"`
	ServiceAccounts *identity.ServiceAccounts `yaml:"-"`
	Revocations     *identity.Revocations     `yaml:"-"`
	// Logger receives the broker's logs and mochi's (through slog). Nil means no logs.
	Logger *zerolog.Logger `yaml:"-"`
	// Now is the clock for password checks; nil means time.Now.
	Now func() time.Time `yaml:"-"`

	// allowAll replaces authentication and ACL by mochi's allow-all hook: the baseline of
	// the throughput benchmark. Tests only.
	allowAll bool
}

// TLSConfig configures the MQTT-over-TLS listener. It is enabled when CertFile is set.
type TLSConfig struct {
	// Addr is the listen address (DefaultTLSAddr when empty).
	Addr string `yaml:"addr"`
	// CertFile and KeyFile are the server's PEM certificate chain and private key.
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
	// ClientCAFile, when set, enables client certificates (mTLS): a presented certificate
	// must chain to these CAs and its subject CN must equal the MQTT client ID. A device
	// with such a certificate needs no password.
	ClientCAFile string `yaml:"clientCAFile"`
	// RequireClientCert refuses TLS connections without a client certificate.
	RequireClientCert bool `yaml:"requireClientCert"`
}

// EMQXConfig configures the EMQX HTTP authn/authz endpoints on the HTTP listener.
type EMQXConfig struct {
	// Enabled serves POST /emqx/authn and POST /emqx/authz.
	Enabled bool `yaml:"enabled"`
	// TokenFile holds a bearer token the requests must carry ("Authorization: Bearer
	// TOKEN", configured as a header in EMQX). Empty means no token is required: then
	// bind HTTPAddr to a private interface.
	TokenFile string `yaml:"tokenFile"`
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
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
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
}

// validate checks a Config whose defaults are applied.
func (c *Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
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
	if _, err := topics.New(c.TopicRoot); err != nil {
		bad("topicRoot: %w", err)
	}
	if !c.allowAll && c.FleetKey == nil && c.FleetKeyFile == "" {
		bad("no fleet key: set fleetKeyFile")
	}
	if c.FleetKey != nil && len(c.FleetKey) != identity.KeySize {
		bad("fleet key: %w, got %d", identity.ErrKeySize, len(c.FleetKey))
	}
	if c.PasswordWindow < time.Second {
		bad("passwordWindow %v: at least 1s", c.PasswordWindow)
	}
	if c.RevocationSweep < 10*time.Millisecond {
		bad("revocationSweep %v: at least 10ms", c.RevocationSweep)
	}
	if c.ConnectTimeout < 10*time.Millisecond {
		bad("connectTimeout %v: at least 10ms", c.ConnectTimeout)
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
	return errors.Join(errs...)
}

// maxConfigFile bounds a configuration file.
const maxConfigFile = 1 << 20

// LoadConfigFile reads a YAML configuration file into cfg: keys present in the file
// replace cfg's values, others are left alone. Unknown keys, a second YAML document and
// values of the wrong type are errors.
func LoadConfigFile(path string, cfg *Config) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigFile+1))
	if err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	if len(data) > maxConfigFile {
		return fmt.Errorf("config file %s: larger than %d bytes", path, maxConfigFile)
	}
	if err := decodeConfig(data, cfg); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	return nil
}

func decodeConfig(data []byte, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty file changes nothing
		}
		return err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errors.New("more than one YAML document")
	}
	return nil
}
