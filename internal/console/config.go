package console

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	"github.com/rs/zerolog"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/time/rate"

	"github.com/clipgate/clipgate/events"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/policy"
	"github.com/clipgate/clipgate/topics"
)

// Defaults of Config.
const (
	DefaultAddr       = "127.0.0.1:8080"
	DefaultGroup      = "console"
	DefaultURLExpiry  = 5 * time.Minute
	DefaultSessionTTL = 12 * time.Hour
	DefaultSeenTTL    = 7 * 24 * time.Hour
	DefaultPruneEvery = time.Hour
	DefaultAdminName  = "admin"
	// DefaultRetentionEvery is the interval of scheduled retention runs.
	DefaultRetentionEvery = time.Hour
	// DefaultAuditTTL is how long audit entries are kept.
	DefaultAuditTTL = 400 * 24 * time.Hour
	// DefaultLoginRate and DefaultLoginBurst limit login attempts per client address:
	// a burst of 5, then one every 12 seconds.
	DefaultLoginRate  = rate.Limit(1.0 / 12)
	DefaultLoginBurst = 5
	// MaxURLExpiry bounds Config.URLExpiry: a player URL is a bearer credential.
	MaxURLExpiry = time.Hour
	// DefaultCredentialLifetime is the token workers' default STS duration.
	DefaultCredentialLifetime = time.Hour
	// RevocationDelay bounds the time a revocation takes to reach every token worker;
	// an OSS Deny outlives the credentials it blocks by this much.
	RevocationDelay = 5 * time.Minute
	// DefaultDenySync is the default of Config.DenySync.
	DefaultDenySync = time.Minute
)

// ErrInvalidConfig is wrapped by New's errors for a bad configuration.
var ErrInvalidConfig = errors.New("console: invalid configuration")

// Config configures a Console. Zero values mean the defaults above.
type Config struct {
	// BrokerURL is the MQTT broker (tcp://, ssl://, ws://, wss://). Empty means no
	// ingestion: the console serves the index it has, without events, status or
	// reconciliation.
	BrokerURL string
	// TLS configures ssl:// and wss:// broker connections.
	TLS *tls.Config
	// Events and Status, when both set, carry the ingestion instead of MQTT connections to
	// BrokerURL (which may then be empty; Username, Password, ClientID and Group are
	// unused): for example a JetStream durable consumer and a core NATS subscription
	// (internal/natsbus).
	Events events.Source
	Status StatusSource
	// Username and Password are a service account with role "consumer".
	Username, Password string
	// ClientID is the events consumer's persistent session, "USERNAME:INSTANCE"; the
	// status subscription uses ClientID+"-status". Default Username+":console".
	ClientID string
	// Group is the shared-subscription group of the events consumer; default "console".
	Group string
	// Topics is the topic scheme; the zero value is topics.Default().
	Topics topics.Scheme
	// Concurrency is the number of events indexed at once; 0 means events' default.
	Concurrency int

	// Bucket is a client for the clips bucket (aliyun-oss-go-sdk), with a key allowed to
	// head, list, read (for signed URLs) and delete objects. Required.
	Bucket *oss.Bucket
	// SignBucket signs the player's URLs; nil means Bucket. Set it when browsers reach
	// OSS at another endpoint than the console does. Sign with V4 (oss.AuthV4).
	SignBucket *oss.Bucket
	// Prefix is the global key prefix ("" or ending in "/"): devices write under
	// {Prefix}{deviceID}/.
	Prefix string
	// URLExpiry is the lifetime of the player's presigned GET URLs (at most MaxURLExpiry).
	URLExpiry time.Duration

	// Store is the database. Required; the caller closes it after the console.
	Store Store

	// Addr is the HTTP listen address.
	Addr string
	// HTTPTLS, when set, serves HTTPS; the session cookie is then Secure.
	HTTPTLS *tls.Config
	// SecureCookies marks the session cookie Secure without HTTPTLS (behind a proxy that
	// terminates TLS).
	SecureCookies bool
	// PasswordHash is the bcrypt hash (identity.HashPassword, or `broker hash-password`)
	// of the password of the admin named AdminName, whom the console creates (or
	// updates) at start: the first operator, who adds the others in the console. Empty:
	// the database must hold an operator already.
	PasswordHash string
	// AdminName names the operator of PasswordHash; default "admin".
	AdminName string
	// BcryptCost is the cost of the password hashes the console makes (operators added
	// in the console); 0 means bcrypt.DefaultCost.
	BcryptCost int
	// SessionTTL is the lifetime of a login.
	SessionTTL time.Duration
	// LoginRate and LoginBurst limit login attempts per client address.
	LoginRate  rate.Limit
	LoginBurst int

	// RevocationsFile is the revocation list the broker and the token workers watch
	// (their RevocationsFile setting). The console owns it: it writes the whole list,
	// atomically, at every change, and at start merges in IDs found there that the
	// database does not have revoked. Empty: no file.
	RevocationsFile string
	// Revocations, when set, is an in-process revocation list (a broker or token workers
	// in this process) that the console sets to the revoked devices at start and at every
	// change.
	Revocations *identity.Revocations
	// OnRevoke, when set, is called after each change (and at start for each revoked
	// device), e.g. with clipgatetest.Stack's Revoke and Restore.
	OnRevoke func(deviceID string, revoked bool)
	// RevocationKey, when set, is the Ed25519 seed (identity.NewRevocationKey) that
	// signs the revocation list the console publishes, retained, on
	// Topics.Revocations() at start and at every change, so that brokers, token workers
	// and consumers that share no filesystem with it follow its revocations (they hold
	// the public key). It needs BrokerURL, and Username must then be an account of role
	// console, the only role that may publish there.
	RevocationKey []byte
	// DenyRoleARN, when set, makes revocations reach OSS: the console keeps a Deny for
	// each revoked device's STS sessions of this role (the token workers' RoleARN) in the
	// bucket policy, with Bucket's client, whose key then also needs
	// oss:GetBucketPolicy, oss:PutBucketPolicy and oss:DeleteBucketPolicy (package
	// ossdeny). Credentials issued before a revocation then get 403 AccessDenied.
	DenyRoleARN string
	// CredentialLifetime is the longest lifetime of the credentials the token workers
	// issue (their STS duration; DefaultCredentialLifetime). A Deny lasts this long plus
	// RevocationDelay after its revocation, and is then dropped to free room.
	CredentialLifetime time.Duration
	// DenySync is how often the bucket policy is brought in line (expired entries
	// dropped, a failed write tried again); DefaultDenySync.
	DenySync time.Duration
	// EMQX, when set, is EMQX's REST API: a revocation clears the device's authorization
	// cache and kicks it out at once.
	EMQX *EMQXAdmin

	// ReconcileInterval and ReconcileMinAge configure the Reconciler (events' defaults
	// when zero; a negative MinAge means none).
	ReconcileInterval, ReconcileMinAge time.Duration
	// SeenTTL is how long handled event IDs are kept for deduplication, and failed and
	// rejected events for their list.
	SeenTTL time.Duration
	// PruneEvery is the interval of pruning seen events and expired sessions.
	PruneEvery time.Duration
	// AuditTTL is how long audit log entries are kept (default DefaultAuditTTL; negative:
	// for ever).
	AuditTTL time.Duration

	// RetentionEvery is the interval of scheduled retention runs, which apply the
	// retention rules admins set; default DefaultRetentionEvery, negative: none (the
	// rules then run only when an admin asks).
	RetentionEvery time.Duration
	// Lifecycle, when set, mirrors the retention rules as OSS lifecycle rules of the
	// bucket (PutBucketLifecycle; the console's key then needs oss:PutBucketLifecycle and
	// oss:GetBucketLifecycle), so that OSS expires the objects even while the console is
	// down. Rules of the bucket that the console did not make are kept.
	Lifecycle bool

	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives the console's logs; the zero Logger discards them.
	Logger zerolog.Logger
}

func (c *Config) applyDefaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.Group == "" {
		c.Group = DefaultGroup
	}
	if c.ClientID == "" && c.Username != "" {
		c.ClientID = c.Username + ":console"
	}
	if c.SignBucket == nil {
		c.SignBucket = c.Bucket
	}
	set(&c.URLExpiry, DefaultURLExpiry)
	set(&c.SessionTTL, DefaultSessionTTL)
	set(&c.SeenTTL, DefaultSeenTTL)
	set(&c.PruneEvery, DefaultPruneEvery)
	set(&c.CredentialLifetime, DefaultCredentialLifetime)
	set(&c.DenySync, DefaultDenySync)

	set(&c.AuditTTL, DefaultAuditTTL)
	set(&c.RetentionEvery, DefaultRetentionEvery)
	if c.AdminName == "" {
		c.AdminName = DefaultAdminName
	}
	if c.BcryptCost == 0 {
		c.BcryptCost = bcrypt.DefaultCost
	}
	set(&c.ReconcileInterval, events.DefaultReconcileInterval)
	set(&c.ReconcileMinAge, events.DefaultMinAge)
	if c.LoginRate == 0 {
		c.LoginRate = DefaultLoginRate
	}
	if c.LoginBurst == 0 {
		c.LoginBurst = DefaultLoginBurst
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

func (c *Config) validate() error {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if c.Bucket == nil {
		bad("Bucket (an OSS client for the clips bucket) is required")
	} else if err := policy.ValidateBucket(c.Bucket.BucketName); err != nil {
		bad("Bucket: %v", err)
	} else if c.SignBucket.BucketName != c.Bucket.BucketName {
		bad("SignBucket is for bucket %q, not %q", c.SignBucket.BucketName, c.Bucket.BucketName)
	}
	if err := policy.ValidatePrefix(c.Prefix); err != nil {
		bad("Prefix: %v", err)
	}
	if c.Store == nil {
		bad("Store is required")
	}
	if c.PasswordHash != "" {
		if _, err := bcrypt.Cost([]byte(c.PasswordHash)); err != nil {
			bad("PasswordHash is not a bcrypt hash: %v", err)
		}
	}
	if err := validName(c.AdminName); err != nil {
		bad("AdminName: %v", err)
	}
	if c.BcryptCost < bcrypt.MinCost || c.BcryptCost > bcrypt.MaxCost {
		bad("BcryptCost %d: want %d to %d", c.BcryptCost, bcrypt.MinCost, bcrypt.MaxCost)
	}
	if c.RetentionEvery > 0 && c.RetentionEvery < 10*time.Millisecond {
		bad("RetentionEvery %v: at least 10ms (or negative: no schedule)", c.RetentionEvery)
	}
	if c.URLExpiry < time.Second || c.URLExpiry > MaxURLExpiry {
		bad("URLExpiry %v: want 1s to %v", c.URLExpiry, MaxURLExpiry)
	}
	if c.SessionTTL < time.Minute {
		bad("SessionTTL %v: at least 1m", c.SessionTTL)
	}
	if c.SeenTTL < time.Hour || c.PruneEvery < time.Second {
		bad("SeenTTL %v (at least 1h), PruneEvery %v (at least 1s)", c.SeenTTL, c.PruneEvery)
	}
	if c.LoginRate < 0 || c.LoginBurst < 1 {
		bad("LoginRate %v, LoginBurst %d: want positive", c.LoginRate, c.LoginBurst)
	}
	if (c.Events == nil) != (c.Status == nil) {
		bad("Events and Status are set together")
	}
	if c.BrokerURL != "" && c.Events == nil {
		if c.Username == "" || c.Password == "" {
			bad("Username and Password (a service account with role consumer) are required with BrokerURL")
		}
		if !topics.ValidGroup(c.Group) {
			bad("Group %q: not a valid shared-subscription group", c.Group)
		}
	}
	if strings.ContainsAny(c.RevocationsFile, "\x00") {
		bad("RevocationsFile contains NUL")
	}
	if c.RevocationKey != nil {
		if _, err := identity.RevocationPublicKey(c.RevocationKey); err != nil {
			bad("RevocationKey: %v", err)
		}
		if c.BrokerURL == "" {
			bad("RevocationKey needs BrokerURL (the list is published on the broker)")
		}
	}
	if c.CredentialLifetime < 15*time.Minute || c.CredentialLifetime > 12*time.Hour {
		bad("CredentialLifetime %v: want 15m to 12h (STS durations)", c.CredentialLifetime)
	}
	if c.DenySync < time.Second {
		bad("DenySync %v: at least 1s", c.DenySync)
	}
	if c.EMQX != nil {
		if err := c.EMQX.check(); err != nil {
			bad("%v", err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, strings.Join(errs, "; "))
	}
	return nil
}
