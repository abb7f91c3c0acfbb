// Package policyeval parses and evaluates Alibaba Cloud RAM policies for OSS, as the
// local cloud (internal/localcloud) enforces them: identity and session policies, OSS
// bucket policies and RAM trust policies. Package policy builds the device policies it
// evaluates.
//
// Parse reads a RAM policy document strictly (see Parse) and compiles its wildcard
// patterns, so that Document.Evaluate decides a Request without allocating. The model is
// RAM's:
//
//   - A statement applies when its Action (or NotAction) matches the request's action,
//     its Resource (or NotResource) the request's resource, and all its conditions hold.
//   - In Action and Resource values '*' matches any run of characters and '?' one
//     character. Actions compare case-insensitively, resources case-sensitively.
//   - An applicable Deny statement wins over any Allow (Denied); otherwise an applicable
//     Allow gives Allowed; otherwise the result is NotApplicable, an implicit deny.
//   - Conditions within a statement are ANDed; the values of one condition are ORed, and
//     a negated operator (StringNotEquals, NotIpAddress, ...) holds when no value matches.
//   - Keys (names case-insensitive) must have the form "<service>:<key>", as RAM's policy
//     check requires. The evaluator supplies acs:CurrentTime (Date* operators, RFC 3339
//     values), acs:SourceIp (IpAddress/NotIpAddress, IPv4 or IPv6 address or CIDR),
//     acs:SecureTransport (Bool, one value), acs:UserAgent, acs:AccessId, and, on a
//     listing only, oss:Prefix and oss:Delimiter ("" when the listing names none): the
//     keys RAM and OSS document for the actions this project grants. String operators
//     (StringEquals, StringNotEquals, StringEqualsIgnoreCase, StringNotEqualsIgnoreCase,
//     StringLike, StringNotLike) apply to every key's text form: the time in UTC to the
//     second ("2025-06-01T12:00:00Z"), the address in canonical form (IPv4-mapped IPv6 as
//     IPv4), "true" or "false". Date operators compare instants exactly.
//   - Any other well-formed key (oss:ExistingObjectTag/..., acs:SourceVpc, ...) is
//     accepted, as RAM accepts it, and is never present in a request here; so are the
//     Numeric* operators, which apply to no key the evaluator supplies. An operator of
//     the wrong type for a supplied key (Date* on acs:SourceIp), a value of the wrong
//     form for its operator, and the ...IfExists forms, which RAM does not document, are
//     refused at parse time.
//   - A key the request does not carry (zero CurrentTime, invalid SourceIP, a key the
//     evaluator does not supply) makes a positive operator fail and a negated operator
//     hold, as in AWS IAM; RAM's documentation is silent on this.
//
// Parse bounds its input (MaxDocumentSize, MaxStatements, MaxValues, MaxConditions,
// MaxStringLen) and matching is linear in the request for each pattern, '?' included,
// so no document can make evaluation blow up.
//
// A request made with STS credentials must be allowed by the role's policy AND by the
// session policy, with no explicit deny in either: that is Authorize.
//
// # Bucket and trust policies
//
// ParseBucketPolicy reads an OSS bucket policy and ParseTrustPolicy a RAM role's trust
// policy (Document.Kind BucketPolicy and TrustPolicy). Their statements name a Principal,
// and apply only to a Request whose Caller it names: in a bucket policy "*" (or an empty
// list, or no Principal) is anyone, even an anonymous caller, and other IDs are RAM user
// IDs or "arn:sts::{uid}:assumed-role/{role}/{session}", with wildcards; in a trust policy
// IDs are grouped by type ("RAM": "acs:ram::{uid}:root", ":user/{name}", ":role/{name}").
// ParseBucketPolicy also applies OSS's limits: MaxBucketPolicySize bytes,
// MaxBucketPolicyField bytes per value, no "**". How a service combines the decisions of
// identity and bucket policies is the service's own (OSS: any explicit Deny refuses, then
// an Allow of either grants).
package policyeval
