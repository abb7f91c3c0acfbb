package policy

import (
	"errors"
	"net/netip"
	"time"
)

// Version is the only RAM policy language version.
const Version = "1"

// Limits on a policy document, so that a hostile one cannot make parsing or evaluation
// expensive. RAM's own limits are far lower (a few thousand characters for a custom
// policy, MaxSessionPolicyLen for a session policy). Matching is linear in the request's
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

// Document is a parsed RAM policy. Documents returned by Parse are compiled for fast
// evaluation and safe for concurrent use; do not modify them afterwards. A Document built
// by hand is checked and compiled at every Evaluate (slower, allocating); if it is not
// valid it denies everything.
type Document struct {
	Version    string
	Statements []Statement

	prog *program // compiled by Parse; nil for a hand-built document
}

// Statement is one statement of a policy. Exactly one of Actions and NotActions is
// non-empty, and exactly one of Resources and NotResources.
type Statement struct {
	Effect                  Effect // Allow or Deny
	Actions, NotActions     []string
	Resources, NotResources []string
	Conditions              []Condition // all must hold (AND)
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
