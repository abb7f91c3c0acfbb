package events

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"

	"github.com/clipgate/clipgate/internal/mqttclient"
	"github.com/clipgate/clipgate/policy"
	"github.com/clipgate/clipgate/topics"
)

// Defaults of Config.
const (
	DefaultConcurrency     = 16
	DefaultMaxAttempts     = 3
	DefaultRetryBackoff    = 100 * time.Millisecond
	DefaultMaxBackoff      = 5 * time.Second
	DefaultRedeliveryDelay = 5 * time.Second
	DefaultOSSTimeout      = 10 * time.Second
	DefaultConnectTimeout  = 10 * time.Second
	DefaultKeepAlive       = 30 * time.Second
	DefaultDedupSize       = 100_000
	DefaultDedupTTL        = 24 * time.Hour // the broker's default message expiry
	// MaxConcurrency bounds Config.Concurrency.
	MaxConcurrency = 1024
)

// ErrInvalidConfig is wrapped by the errors NewConsumer and NewReconciler return for a
// bad configuration.
var ErrInvalidConfig = errors.New("events: invalid configuration")

// Config configures a Consumer. Zero values mean the defaults above.
type Config struct {
	// BrokerURL is the broker's address: tcp://host:port, ssl://host:port (with TLS) or
	// ws(s)://. Required.
	BrokerURL string
	// TLS configures ssl:// and wss:// connections.
	TLS *tls.Config
	// Username and Password are a service account with role "consumer". Required.
	Username, Password string
	// ClientID identifies the consumer's persistent session at the broker: keep it
	// stable across restarts, and give each instance of a group its own (two clients
	// with one ID take the session from each other). clipgate's broker requires service
	// client IDs not to look like device IDs; use "USERNAME:INSTANCE", e.g.
	// "consumer:indexer-1". Required.
	ClientID string
	// Group is the shared-subscription group ("$share/{Group}/..."): each event goes to
	// one member. Give each backend service its own group (indexer, transcoder, ...).
	// Empty means a plain subscription: this consumer receives every event.
	Group string
	// Topics is the topic scheme; the zero value is topics.Default().
	Topics topics.Scheme
	// Source, when set, delivers the messages instead of the consumer's own MQTT client
	// (BrokerURL, TLS, Username, Password, ClientID and Group are then unused); for
	// example a JetStream durable consumer on a NATS cluster (package events/natsevents).
	Source Source

	// Bucket is the OSS bucket the devices upload to; events naming another are
	// rejected. Required.
	Bucket string
	// Prefix is the global key prefix ("" or ending in "/", e.g. "clips/"): a device
	// writes under {Prefix}{deviceID}/.
	Prefix string
	// OSS heads the objects, typically an *oss.Bucket of aliyun-oss-go-sdk for Bucket
	// (if it is one, its name must equal Bucket). Required.
	OSS ObjectStat
	// OSSTimeout bounds each HEAD.
	OSSTimeout time.Duration
	// Revoked, when set, reports revoked devices: events whose object OSS stored after
	// the device's revocation are rejected with ReasonRevoked.
	Revoked RevokedFunc

	// Dedup, when set, is the durable record of handled events (see Deduper).
	Dedup Deduper
	// DedupSize and DedupTTL bound the in-memory record of handled events.
	DedupSize int
	DedupTTL  time.Duration
	// DeadLetter, when set, receives malformed messages before they are acknowledged.
	DeadLetter DeadLetter

	// Concurrency is the number of events processed at once (HEADs and handlers).
	Concurrency int
	// MaxAttempts is how many times a step (Dedup lookup, verification, handler, dead
	// letter) is tried per delivery before the message is left for redelivery.
	MaxAttempts int
	// RetryBackoff is the wait before the second attempt; it doubles up to MaxBackoff.
	RetryBackoff, MaxBackoff time.Duration
	// RedeliveryDelay is how long after a message was left unacknowledged the consumer
	// resumes its session to have the broker send it again. Negative disables that:
	// unacknowledged messages then come back at the next reconnect or restart.
	RedeliveryDelay time.Duration

	// ConnectTimeout bounds each connection attempt; KeepAlive is the MQTT keep-alive.
	ConnectTimeout, KeepAlive time.Duration
	// Logger receives the consumer's logs; the zero Logger discards them.
	Logger zerolog.Logger
}

func (c *Config) applyDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.DedupSize == 0 {
		c.DedupSize = DefaultDedupSize
	}
	def(&c.RetryBackoff, DefaultRetryBackoff)
	def(&c.MaxBackoff, DefaultMaxBackoff)
	def(&c.RedeliveryDelay, DefaultRedeliveryDelay)
	def(&c.OSSTimeout, DefaultOSSTimeout)
	def(&c.ConnectTimeout, DefaultConnectTimeout)
	def(&c.KeepAlive, DefaultKeepAlive)
	def(&c.DedupTTL, DefaultDedupTTL)
}

func (c *Config) validate() error {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if c.Source == nil {
		c.validateMQTT(bad)
	}
	errs = append(errs, checkBucket(c.Bucket, c.Prefix, c.OSS)...)
	if c.Concurrency < 1 || c.Concurrency > MaxConcurrency {
		bad("Concurrency %d: want 1 to %d", c.Concurrency, MaxConcurrency)
	}
	if c.MaxAttempts < 1 {
		bad("MaxAttempts %d: want at least 1", c.MaxAttempts)
	}
	if c.DedupSize < 1 || c.DedupTTL < 0 {
		bad("DedupSize %d, DedupTTL %v: want positive", c.DedupSize, c.DedupTTL)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"RetryBackoff", c.RetryBackoff}, {"MaxBackoff", c.MaxBackoff}, {"OSSTimeout", c.OSSTimeout},
		{"ConnectTimeout", c.ConnectTimeout}, {"KeepAlive", c.KeepAlive}} {
		if d.v < 0 {
			bad("%s %v: must not be negative", d.name, d.v)
		}
	}
	if c.KeepAlive > 0 && c.KeepAlive < time.Second {
		bad("KeepAlive %v: at least 1s", c.KeepAlive)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, strings.Join(errs, "; "))
	}
	return nil
}

// validateMQTT checks the settings of the consumer's own MQTT client.
func (c *Config) validateMQTT(bad func(format string, args ...any)) {
	if err := mqttclient.CheckURL("BrokerURL", c.BrokerURL); err != nil {
		bad("%v", err)
	}
	if c.Username == "" || c.Password == "" {
		bad("Username and Password (a service account with role consumer) are required")
	}
	switch {
	case c.ClientID == "":
		bad("ClientID is required: a stable ID per instance, e.g. \"consumer:indexer-1\", so that its session survives restarts")
	case len(c.ClientID) > topics.MaxTopicLen || !utf8.ValidString(c.ClientID) || strings.ContainsRune(c.ClientID, 0):
		bad("ClientID %q: want valid UTF-8 without NUL, at most %d bytes", c.ClientID, topics.MaxTopicLen)
	}
	if c.Group != "" && !topics.ValidGroup(c.Group) {
		bad("Group %q: not a valid shared-subscription group (no '/', '+', '#')", c.Group)
	}
}

// checkBucket checks bucket, prefix and the OSS client, shared by both configurations.
func checkBucket(bucket, prefix string, client ObjectStat) []string {
	var errs []string
	if err := policy.ValidateBucket(bucket); err != nil {
		errs = append(errs, "Bucket: "+err.Error())
	}
	if err := policy.ValidatePrefix(prefix); err != nil {
		errs = append(errs, "Prefix: "+err.Error())
	}
	if isNil(client) {
		errs = append(errs, "OSS (a client for the bucket, e.g. *oss.Bucket) is required")
	} else if name := bucketName(client); name != "" && name != bucket {
		errs = append(errs, fmt.Sprintf("OSS is a client for bucket %q, not %q", name, bucket))
	}
	return errs
}
