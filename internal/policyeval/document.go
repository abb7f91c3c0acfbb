package policyeval

import (
	"errors"
	"net/netip"
	"time"
)

// Limits on a policy document, so that a hostile one cannot make parsing or evaluation
// expensive. RAM's own limits are far lower (a few thousand characters for a custom
// policy, policy.MaxSessionPolicyLen for a session policy). Matching is linear in the request's
// resource for each pattern, so the worst case is bounded by the document size.
const (
	MaxDocumentSize = 64 << 10 // bytes of JSON
	MaxStatements   = 256      // statements in one document
	MaxValues       = 256      // strings in one Action, Resource or condition value list
	MaxConditions   = 64       // operator/key pairs in one statement
	MaxStringLen    = 4096     // bytes in one action, resource or condition value
)

// ErrInvalidPolicy is wrapped by every error Parse and ParseSession return.
var ErrInvalidPolicy = errors.New("invalid policy")

// Effect is the effect of a statement.
type Effect string

// The two effects.
const (
	Allow Effect = "Allow"
	Deny  Effect = "Deny"
)

// Kind is the grammar a document follows.
type Kind uint8

// The kinds of documents.
const (
	// Identity is a RAM permission policy or an STS session policy: no Principal.
	Identity Kind = iota
	// BucketPolicy is an OSS bucket policy: each statement may name a Principal, a list of
	// IDs ("*" for anyone; an empty or missing list also means anyone).
	BucketPolicy
	// TrustPolicy is a RAM role's trust policy: each statement names a Principal by type
	// ({"RAM": [...], "Service": [...], "Federated": [...]}) and has no Resource.
	TrustPolicy
)

// String returns the kind's name.
func (k Kind) String() string {
	switch k {
	case Identity:
		return "identity policy"
	case BucketPolicy:
		return "bucket policy"
	case TrustPolicy:
		return "trust policy"
	}
	return "Kind(invalid)"
}

// Document is a parsed RAM policy. Documents returned by Parse are compiled for fast
// evaluation and safe for concurrent use; do not modify them afterwards. A Document built
// by hand is checked and compiled at every Evaluate (slower, allocating); if it is not
// valid it denies everything.
type Document struct {
	Kind       Kind
	Version    string
	Statements []Statement

	prog *program // compiled by Parse; nil for a hand-built document
}

// Statement is one statement of a policy. Exactly one of Actions and NotActions is
// non-empty, and exactly one of Resources and NotResources (neither in a TrustPolicy).
type Statement struct {
	Effect                  Effect      // Allow or Deny
	Principals              []Principal // BucketPolicy and TrustPolicy only
	Actions, NotActions     []string
	Resources, NotResources []string
	Conditions              []Condition // all must hold (AND)
}

// Principal is one entry of a statement's Principal element: IDs of one Type. In a
// BucketPolicy there is one, with Type "" (an empty IDs list means anyone); in a
// TrustPolicy one per type, "RAM", "Service" or "Federated". IDs may use the wildcards
// '*' and '?'; "*" alone matches anyone, even an anonymous caller.
type Principal struct {
	Type string
	IDs  []string
}

// Caller is who makes a request, as Principal elements name it. Names are the IDs the
// caller goes by: in a bucket policy a RAM user's ID or an STS session's
// "arn:sts::{account}:assumed-role/{role}/{session}"; in a trust policy
// "acs:ram::{account}:root" and "acs:ram::{account}:user/{name}" or
// "acs:ram::{account}:role/{name}". Type is the Principal type the names belong to
// ("RAM" for RAM users and roles; "" in a bucket policy).
type Caller struct {
	Type  string
	Names []string
}

// Condition is one operator/key pair of a statement's Condition block, for example
// {Operator: "IpAddress", Key: "acs:SourceIp", Values: []string{"10.0.0.0/8"}}. The
// condition holds when any value matches (OR), or, for a negated operator such as
// StringNotEquals or NotIpAddress, when no value matches.
type Condition struct {
	Operator, Key string
	Values        []string
}

// Request is what a policy is evaluated against.
type Request struct {
	Action   string // e.g. "oss:PutObject"
	Resource string // e.g. "acs:oss:cn-hangzhou:1234567890:bucket/key" or "acs:oss:*:*:bucket"
	// CurrentTime is acs:CurrentTime; the zero time means the request does not carry it.
	CurrentTime time.Time
	// SourceIP is acs:SourceIp; the zero (invalid) Addr means the request does not carry it.
	SourceIP netip.Addr
	// SecureTransport is acs:SecureTransport (true for HTTPS); every request carries it.
	SecureTransport bool
	// UserAgent is acs:UserAgent, the User-Agent header; "" means the request does not
	// carry it.
	UserAgent string
	// AccessKeyID is acs:AccessId, the access key that signed the request; "" means the
	// request does not carry it (an anonymous request).
	AccessKeyID string
	// Listing says the request lists objects (oss:ListObjects). Only then does it carry
	// oss:Prefix and oss:Delimiter, as Prefix and Delimiter ("" when it names none, so
	// that a policy can allow the top level with the value "").
	Listing           bool
	Prefix, Delimiter string
	// Caller is who makes the request, for statements with a Principal; nil is an
	// anonymous caller, whom only "*" matches. Identity policies ignore it.
	Caller *Caller
}

// Decision is the result of evaluating one document.
type Decision int

// The decisions.
const (
	NotApplicable Decision = iota // no statement matched: implicit deny
	Allowed                       // an Allow statement matched and no Deny did
	Denied                        // a Deny statement matched (explicit deny)
)

// String returns the decision's name.
func (d Decision) String() string {
	switch d {
	case NotApplicable:
		return "NotApplicable"
	case Allowed:
		return "Allowed"
	case Denied:
		return "Denied"
	}
	return "Decision(invalid)"
}
