// Package localcloud is clipgate's embedded default cloud: an OSS- and STS-compatible pair of
// HTTP servers on loopback that the official Alibaba Cloud SDKs cannot tell from the real
// services for the calls clipgate makes. Unlike other emulators it verifies V1 and V4
// signatures, issues STS security tokens that expire, and enforces role and session policies
// (internal/policyeval), so a test that passes against it proves that credentials are
// scoped.
package localcloud

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// AccessKey is a long-term access key, as of a RAM user.
type AccessKey struct {
	ID     string `yaml:"id" json:"id"`
	Secret string `yaml:"secret" json:"secret"`
	// Policy is the user's permission policy (JSON); empty grants full access.
	Policy string `yaml:"policy,omitempty" json:"policy,omitempty"`
	// User is the name of the RAM user the key belongs to, as trust policies and
	// GetCallerIdentity name it ("acs:ram::{AccountID}:user/{User}"); empty means the key ID.
	User string `yaml:"user,omitempty" json:"user,omitempty"`
}

// Role is a RAM role that AssumeRole can issue temporary credentials for.
type Role struct {
	// Name is the role name; its ARN is "acs:ram::{AccountID}:role/{Name}".
	Name string `yaml:"name" json:"name"`
	// Policy is the role's permission policy (JSON). Required.
	Policy string `yaml:"policy" json:"policy"`
	// MaxSessionDuration bounds DurationSeconds: 1h to 12h, default 1h.
	MaxSessionDuration time.Duration `yaml:"maxSessionDuration,omitempty" json:"maxSessionDuration,omitempty"`
	// Trust is the role's trust policy (JSON): who may assume it, RAM users and roles
	// named by "acs:ram::{AccountID}:root", ":user/{name}" or ":role/{name}". Empty trusts
	// the account, {"RAM":["acs:ram::{AccountID}:root"]}: any of its RAM users and role
	// sessions whose own policies allow sts:AssumeRole on the role.
	Trust string `yaml:"trust,omitempty" json:"trust,omitempty"`
}

// Config configures both servers. Zero values take the documented defaults.
type Config struct {
	OSSAddr string // OSS listen address; default "127.0.0.1:0"
	STSAddr string // STS listen address; default "127.0.0.1:0"
	DataDir string // required: objects, metadata, multipart state, token key
	Region  string // default "cn-hangzhou"
	// EndpointDomain is the domain under which buckets are addressed virtual-hosted style:
	// a request with Host bucket.EndpointDomain[:port] is for that bucket. Any other Host
	// means path style (/bucket/key). Default "localhost"; "-" turns virtual hosting off.
	EndpointDomain string
	AccountID      string      // default "1000000000000000"
	Keys           []AccessKey // long-term keys
	Roles          []Role      // roles for AssumeRole
	Buckets        []string    // the buckets that exist; others are NoSuchBucket
	// STSRate is the number of AssumeRole calls per second allowed (burst equal to the rate,
	// at least 1); 0 means unlimited. Over it, STS answers Throttling.User.
	STSRate float64
	// Now is the clock used for signatures, tokens, policy conditions and lifecycle rules;
	// nil means time.Now.
	Now func() time.Time
	// LifecycleCheck is how often (in real time) the OSS server looks at Now for the daily
	// lifecycle run, which otherwise happens before the first request after midnight UTC;
	// 0 means DefaultLifecycleCheck, negative never.
	LifecycleCheck time.Duration
	Logger         zerolog.Logger

	lifecycleRan func(time.Time) // tests: called after each lifecycle run
	metrics      *cloudMetrics   // set by Start
}

// Defaults for Config.
const (
	DefaultRegion             = "cn-hangzhou"
	DefaultAccountID          = "1000000000000000"
	DefaultMaxSessionDuration = time.Hour
	MinSessionDuration        = 900 * time.Second
	MaxMaxSessionDuration     = 12 * time.Hour
)

// applyDefaults fills in the zero values and spells the endpoint domain in lower case
// without a final dot ("-" means none). Roles becomes a copy, so that the caller's slice is
// not changed.
func (c *Config) applyDefaults() {
	if c.OSSAddr == "" {
		c.OSSAddr = "127.0.0.1:0"
	}
	if c.STSAddr == "" {
		c.STSAddr = "127.0.0.1:0"
	}
	if c.Region == "" {
		c.Region = DefaultRegion
	}
	switch c.EndpointDomain = strings.TrimSuffix(strings.ToLower(c.EndpointDomain), "."); c.EndpointDomain {
	case "":
		c.EndpointDomain = DefaultEndpointDomain
	case "-":
		c.EndpointDomain = ""
	}
	if c.AccountID == "" {
		c.AccountID = DefaultAccountID
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.LifecycleCheck == 0 {
		c.LifecycleCheck = DefaultLifecycleCheck
	}
	roles := make([]Role, len(c.Roles))
	for i, r := range c.Roles {
		if r.MaxSessionDuration == 0 {
			r.MaxSessionDuration = DefaultMaxSessionDuration
		}
		roles[i] = r
	}
	c.Roles = roles
}

// validate refuses, after applyDefaults, a config that cannot work.
func (c *Config) validate() error {
	if c.EndpointDomain != "" && !validDomain(c.EndpointDomain) {
		return fmt.Errorf("localcloud: endpoint domain %q must be a DNS name (letters, digits, '-' and '.')", c.EndpointDomain)
	}
	if c.DataDir == "" {
		return errors.New("localcloud: DataDir is required")
	}
	if c.STSRate < 0 {
		return fmt.Errorf("localcloud: STSRate %v is negative", c.STSRate)
	}
	for _, r := range c.Roles {
		if r.MaxSessionDuration < time.Hour || r.MaxSessionDuration > MaxMaxSessionDuration {
			return fmt.Errorf("localcloud: role %q: MaxSessionDuration %v is outside 1h..12h", r.Name, r.MaxSessionDuration)
		}
	}
	return nil
}

// withDefaults returns a copy of c with its defaults applied, or validate's error.
func (c Config) withDefaults() (Config, error) {
	c.applyDefaults()
	return c, c.validate()
}

// Error is an OSS or STS error carrying Alibaba Cloud's code, as the SDKs parse it.
type Error struct {
	Status  int    // HTTP status
	Code    string // e.g. "SignatureDoesNotMatch", "InvalidSecurityToken"
	Message string
	EC      string // OSS error code detail, e.g. "0002-00000007"; may be empty
}

// Error returns the code and the message, e.g. "AccessDenied: ...".
func (e *Error) Error() string { return e.Code + ": " + e.Message }

// validDomain reports whether d is a DNS name: dot-separated labels of 1 to 63 of
// [a-z0-9-], not starting or ending with '-', 253 characters at most.
func validDomain(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	for _, l := range strings.Split(d, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			if c := l[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
				return false
			}
		}
	}
	return true
}
