// Package protocol holds clipgate's wire messages (the auth request, the auth reply and
// the upload event of docs/ARCHITECTURE.md), their strict decoders, encoder and validation.
// The types users see (the upload event, credentials, OSS info, the error codes and
// statuses) are defined in the root package clipgate and aliased here; the auth request
// and reply, which only the device kit and the token worker exchange, are defined here.
//
// Decoding is strict: the size cap is checked before parsing; the input must be valid
// UTF-8 and exactly one JSON object; field names are matched exactly (case-sensitive),
// unknown, duplicate and null fields are refused, as is an unknown version; required
// fields must be present and every field is checked for its format; nesting deeper than
// 32 levels is refused. Every defect is an *Error with CodeInvalid whose message names the
// field. The decoders use github.com/go-json-experiment/json and check around it what it
// does not (json.go).
//
// Encoding: json.Marshal of a message produces its wire form (the types carry the wire
// field names); Encode does the same after Validate, so that a sender never emits what a
// receiver would refuse.
package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/clipgate/clipgate"
)

// Version is the protocol version this package speaks (the "v" field).
const Version = 1

// Size limits, in bytes, checked before any parsing.
const (
	MaxAuthRequestSize = 4096     // auth requests
	MaxMessageSize     = 64 << 10 // auth replies, upload events and other messages
)

// Field limits.
const (
	MaxIDLen          = 64   // request and event IDs
	MaxKeyIDLen       = 16   // key IDs (identity.MaxKeyIDLen)
	MaxCertSize       = 2048 // a device certificate (DER) in an auth request
	MaxMessageLen     = 1024 // error messages (reply error message, event error)
	MaxMetadata       = 32   // entries in an event's metadata
	MaxMetadataLen    = 256  // bytes in a metadata key or value
	MaxObjectKeyLen   = 1023 // OSS object key limit
	MaxContentTypeLen = 256
	MaxRetryAfterMs   = 24 * 60 * 60 * 1000 // one day
)

// Code is clipgate.Code, the closed set of error codes; the constants below are
// clipgate's, named here for this package's users.
type Code = clipgate.Code

// The error codes (see clipgate.Code).
const (
	CodeInvalid         = clipgate.CodeInvalid
	CodeUnauthenticated = clipgate.CodeUnauthenticated
	CodeDenied          = clipgate.CodeDenied
	CodeRevoked         = clipgate.CodeRevoked
	CodeClockSkew       = clipgate.CodeClockSkew
	CodeReplay          = clipgate.CodeReplay
	CodeRateLimited     = clipgate.CodeRateLimited
	CodeBusy            = clipgate.CodeBusy
	CodeUnavailable     = clipgate.CodeUnavailable
	CodeInternal        = clipgate.CodeInternal
	CodeQuotaExceeded   = clipgate.CodeQuotaExceeded
)

// Error is a protocol error: a code and a message fit for the user. Every decoding and
// validation defect is an *Error with CodeInvalid.
type Error struct {
	Code    Code
	Message string
}

// Error returns "code: message".
func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// ErrorCode returns the code of err if it is (or wraps) an *Error, "" for nil and
// CodeInternal otherwise.
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Code
	}
	return CodeInternal
}

func invalidf(format string, args ...any) *Error {
	return &Error{Code: CodeInvalid, Message: fmt.Sprintf(format, args...)}
}

func fieldErr(field, format string, args ...any) *Error {
	return &Error{Code: CodeInvalid, Message: fmt.Sprintf("field %q: ", field) + fmt.Sprintf(format, args...)}
}

// AuthRequest asks a token worker for credentials (device -> worker), at most
// MaxAuthRequestSize bytes on the wire.
type AuthRequest struct {
	V      int           `json:"v"`
	ID     string        `json:"id"`     // request ID, 1..64 of [A-Za-z0-9_-], echoed in the reply
	Device string        `json:"device"` // device ID (internal/deviceid)
	TS     string        `json:"ts"`     // RFC 3339 time of signing, kept verbatim (it is signed)
	Nonce  string        `json:"nonce"`  // base64url, no padding, of 16 random bytes
	Mode   clipgate.Mode `json:"mode"`   // requested mode
	// KID names the fleet key the device's request key derives from (1 to 16 of
	// [A-Za-z0-9_-]); Sig is then base64url (no padding) of HMAC-SHA256 over SigningString.
	KID string `json:"kid,omitempty"`
	// Cert, instead of KID, is base64url (no padding) of the DER client certificate of a
	// device without a shared secret; Sig is then its key's signature over SigningString
	// (ECDSA P-256 with SHA-256, ASN.1 DER, or Ed25519), and the reply is sealed to it.
	Cert string `json:"cert,omitempty"`
	Sig  string `json:"sig"`
}

// Domain tags that start the signing strings of requests signed with a device key and
// with a certificate's key.
const (
	signingTag     = "clipgate-auth-v1"
	certSigningTag = "clipgate-auth-cert-v1"
)

// SigningString returns the bytes the request signature covers:
// "clipgate-auth-v1\n"+v+"\n"+id+"\n"+device+"\n"+ts+"\n"+nonce+"\n"+mode+"\n"+kid,
// v in decimal; for a certificate request the tag is "clipgate-auth-cert-v1" and the last
// field is cert.
func (r *AuthRequest) SigningString() []byte {
	tag, last := signingTag, r.KID
	if r.Cert != "" {
		tag, last = certSigningTag, r.Cert
	}
	b := make([]byte, 0, len(tag)+len(r.ID)+len(r.Device)+len(r.TS)+len(r.Nonce)+len(r.Mode)+len(last)+7+20)
	b = append(b, tag...)
	b = append(b, '\n')
	b = appendInt(b, int64(r.V))
	for _, f := range [...]string{r.ID, r.Device, r.TS, r.Nonce, string(r.Mode), last} {
		b = append(b, '\n')
		b = append(b, f...)
	}
	return b
}

// Time returns the request's timestamp. It is zero if TS is not a valid RFC 3339 time
// (which a decoded request always is).
func (r *AuthRequest) Time() time.Time {
	t, _ := parseTime(r.TS)
	return t
}

// Credentials are the temporary STS credentials of a reply (clipgate.Credentials).
type Credentials = clipgate.Credentials

// OSSInfo tells the device where to upload (clipgate.OSSInfo).
type OSSInfo = clipgate.OSSInfo

// ReplyError is the error of a failed auth reply.
type ReplyError struct {
	Code         Code   `json:"code"`
	Message      string `json:"message,omitempty"`
	RetryAfterMs int64  `json:"retryAfterMs,omitempty"` // how long to wait before retrying, if > 0
}

// Error returns "code: message", so that a ReplyError can be returned as an error.
func (e *ReplyError) Error() string {
	if e.Message == "" {
		return string(e.Code)
	}
	return string(e.Code) + ": " + e.Message
}

// RetryAfter returns RetryAfterMs as a duration.
func (e *ReplyError) RetryAfter() time.Duration {
	return time.Duration(e.RetryAfterMs) * time.Millisecond
}

// AuthReply answers an AuthRequest (worker -> device). A successful reply (OK) carries
// either Credentials or Sealed, and OSS; a failed one carries Error. ID echoes the
// request's ID; it may be empty only in a failed reply to a request whose ID could not
// be read.
type AuthReply struct {
	V           int          `json:"v"`
	ID          string       `json:"id"`
	OK          bool         `json:"ok"`
	ServerTime  time.Time    `json:"serverTime"`
	Credentials *Credentials `json:"credentials,omitempty"` // plain (when not sealed)
	Sealed      string       `json:"sealed,omitempty"`      // base64url (no padding) of AES-GCM ciphertext of the Credentials JSON
	// Rekey, in a successful reply to a request that named a replaced key, is base64url
	// (no padding) of the device's new keys (Rekey JSON), sealed with its request key.
	Rekey string      `json:"rekey,omitempty"`
	OSS   *OSSInfo    `json:"oss,omitempty"`
	Error *ReplyError `json:"error,omitempty"`
}

// Rekey is the opened plaintext of AuthReply.Rekey: the device's keys under the current
// fleet key, each base64url without padding of 32 bytes.
type Rekey struct {
	KID     string `json:"kid"`
	Connect string `json:"connect"`
	Request string `json:"request"`
}

// Status is an upload event's status (clipgate.Status).
type Status = clipgate.Status

// Upload event statuses (see clipgate.Status).
const (
	StatusCompleted = clipgate.StatusCompleted
	StatusFailed    = clipgate.StatusFailed
)

// UploadEvent announces a finished (or definitively failed) upload (device -> consumers):
// clipgate.UploadEvent. ID is stable across retries; consumers deduplicate by it.
type UploadEvent = clipgate.UploadEvent

// Message is a wire message: *AuthRequest, *AuthReply or *UploadEvent.
type Message interface {
	*AuthRequest | *AuthReply | *UploadEvent
}

// Validate checks every field of m: AuthRequest.Validate, AuthReply.Validate or
// ValidateUploadEvent. Errors are *Error with CodeInvalid.
func Validate[M Message](m M) error { return validate(m) }

func validate(m any) error {
	switch m := m.(type) {
	case *AuthRequest:
		return m.Validate()
	case *AuthReply:
		return m.Validate()
	case *UploadEvent:
		return ValidateUploadEvent(m)
	}
	return invalidf("%T is not a message", m)
}

// Encode validates m and returns its JSON wire form. It refuses messages over their size
// limit.
func Encode[M Message](m M) ([]byte, error) {
	if err := validate(m); err != nil {
		return nil, err
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, invalidf("encoding: %v", err)
	}
	limit := MaxMessageSize
	if _, ok := any(m).(*AuthRequest); ok {
		limit = MaxAuthRequestSize
	}
	if len(b) > limit {
		return nil, invalidf("message is %d bytes, at most %d allowed", len(b), limit)
	}
	return b, nil
}
