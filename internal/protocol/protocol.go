// Package protocol holds clipgate's wire messages (the auth request, the auth reply and
// the upload event of docs/DESIGN.md), their strict decoders and the closed set of error
// codes.
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
	MaxMessageLen     = 1024 // error messages (reply error message, event error)
	MaxMetadata       = 32   // entries in an event's metadata
	MaxMetadataLen    = 256  // bytes in a metadata key or value
	MaxObjectKeyLen   = 1023 // OSS object key limit
	MaxContentTypeLen = 256
	MaxRetryAfterMs   = 24 * 60 * 60 * 1000 // one day
)

// Mode is a credential mode: letters from "r", "w" and "a", each at most once ("w",
// "wa"), as policy.ParseMode checks it.
type Mode = string

// Code is an error code, from a closed set. Each tells the device what to do next.
type Code string

// The error codes.
const (
	// CodeInvalid: the message is malformed. Fix the client; retrying the same message fails again.
	CodeInvalid Code = "invalid"
	// CodeUnauthenticated: the signature did not verify. Check the device key.
	CodeUnauthenticated Code = "unauthenticated"
	// CodeDenied: the device may not have what it asked for (e.g. that mode). Do not retry as is.
	CodeDenied Code = "denied"
	// CodeRevoked: the device is revoked. Stop asking.
	CodeRevoked Code = "revoked"
	// CodeClockSkew: the timestamp is outside the window. Correct the clock from the
	// reply's serverTime, re-sign and retry.
	CodeClockSkew Code = "clock_skew"
	// CodeReplay: the nonce was seen before. Retry with a fresh nonce.
	CodeReplay Code = "replay"
	// CodeRateLimited: the device asks too often. Retry after retryAfterMs.
	CodeRateLimited Code = "rate_limited"
	// CodeBusy: the worker sheds load. Retry after retryAfterMs, with jitter.
	CodeBusy Code = "busy"
	// CodeUnavailable: a dependency (STS) is down. Retry later with backoff.
	CodeUnavailable Code = "unavailable"
	// CodeInternal: a bug or unexpected failure on the server. Retry later with backoff.
	CodeInternal Code = "internal"
)

// Valid reports whether c is one of the codes of the closed set.
func (c Code) Valid() bool {
	switch c {
	case CodeInvalid, CodeUnauthenticated, CodeDenied, CodeRevoked, CodeClockSkew,
		CodeReplay, CodeRateLimited, CodeBusy, CodeUnavailable, CodeInternal:
		return true
	}
	return false
}

// Error is a protocol error: a code and a message fit for the user.
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
	V      int    `json:"v"`
	ID     string `json:"id"`     // request ID, 1..64 of [A-Za-z0-9_-], echoed in the reply
	Device string `json:"device"` // device ID (internal/deviceid)
	TS     string `json:"ts"`     // RFC 3339 time of signing, kept verbatim (it is signed)
	Nonce  string `json:"nonce"`  // base64url, no padding, of 16 random bytes
	Mode   Mode   `json:"mode"`   // requested mode
	Sig    string `json:"sig"`    // base64url, no padding, of HMAC-SHA256 over SigningString
}

// signingTag is the domain tag that starts every auth request signing string.
const signingTag = "clipgate-auth-v1"

// SigningString returns the bytes the request signature covers:
// "clipgate-auth-v1\n"+v+"\n"+id+"\n"+device+"\n"+ts+"\n"+nonce+"\n"+mode, v in decimal.
func (r *AuthRequest) SigningString() []byte {
	b := make([]byte, 0, len(signingTag)+len(r.ID)+len(r.Device)+len(r.TS)+len(r.Nonce)+len(r.Mode)+6+20)
	b = append(b, signingTag...)
	b = append(b, '\n')
	b = appendInt(b, int64(r.V))
	for _, f := range [...]string{r.ID, r.Device, r.TS, r.Nonce, r.Mode} {
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

// Credentials are temporary STS credentials for OSS.
type Credentials struct {
	AccessKeyID     string    `json:"accessKeyId"`
	AccessKeySecret string    `json:"accessKeySecret"`
	SecurityToken   string    `json:"securityToken"`
	Expiration      time.Time `json:"expiration"`
}

// OSSInfo tells the device where to upload.
type OSSInfo struct {
	Endpoint string `json:"endpoint"`
	Region   string `json:"region"`
	Bucket   string `json:"bucket"`
	Prefix   string `json:"prefix"` // key prefix, "" or ending in "/"; keys are {prefix}{deviceID}/...
}

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
	OSS         *OSSInfo     `json:"oss,omitempty"`
	Error       *ReplyError  `json:"error,omitempty"`
}

// Upload event statuses.
const (
	StatusCompleted = "completed"
	StatusFailed    = "failed"
)

// UploadEvent announces a finished (or definitively failed) upload (device -> consumers).
// ID is stable across retries; consumers deduplicate by it.
type UploadEvent struct {
	V           int               `json:"v"`
	ID          string            `json:"id"`     // event ID, 1..64 of [A-Za-z0-9_-]
	Device      string            `json:"device"` // device ID
	Status      string            `json:"status"` // StatusCompleted or StatusFailed
	Bucket      string            `json:"bucket,omitempty"`
	Key         string            `json:"key,omitempty"`
	Size        int64             `json:"size"`            // bytes; required when completed
	CRC64       string            `json:"crc64,omitempty"` // decimal uint64 (OSS CRC-64/ECMA), required when completed
	ContentType string            `json:"contentType,omitempty"`
	RecordedAt  time.Time         `json:"recordedAt,omitzero"`
	UploadedAt  time.Time         `json:"uploadedAt,omitzero"` // required when completed
	Attempts    int               `json:"attempts,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	Error       string            `json:"error,omitempty"` // required when failed
}

// Message is a wire message: *AuthRequest, *AuthReply or *UploadEvent.
type Message interface {
	Validate() error
}

// Encode validates m and returns its JSON wire form. It refuses messages over their size
// limit.
func Encode(m Message) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, invalidf("encoding: %v", err)
	}
	limit := MaxMessageSize
	if _, ok := m.(*AuthRequest); ok {
		limit = MaxAuthRequestSize
	}
	if len(b) > limit {
		return nil, invalidf("message is %d bytes, at most %d allowed", len(b), limit)
	}
	return b, nil
}
