package protocol

import (
	"encoding/base64"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/internal/deviceid"
)

// Encoded lengths of the fixed-size binary fields (base64url without padding).
const (
	NonceSize = 16
	SigSize   = 32 // HMAC-SHA256
	nonceLen  = 22 // base64.RawURLEncoding.EncodedLen(NonceSize)
	sigLen    = 43 // base64.RawURLEncoding.EncodedLen(SigSize)
	// minSealedSize is one byte of plaintext plus the AES-GCM tag.
	minSealedSize = 1 + 16
	// Signatures of certificate requests: ECDSA P-256 in ASN.1 DER (8 to 72 bytes) or
	// Ed25519 (64 bytes).
	minCertSigSize = 8
	maxCertSigSize = 72
)

var b64 = base64.RawURLEncoding.Strict()

// Validate checks every field of the request. Errors are *Error with CodeInvalid.
func (r *AuthRequest) Validate() error {
	if r.V != Version {
		return versionErr(r.V)
	}
	for _, f := range [...]struct{ name, value string }{
		{"id", r.ID}, {"device", r.Device}, {"ts", r.TS}, {"nonce", r.Nonce}, {"mode", string(r.Mode)}, {"sig", r.Sig},
	} {
		if f.value == "" {
			return fieldErr(f.name, "is required")
		}
	}
	switch {
	case !validID(r.ID):
		return fieldErr("id", "must be 1 to %d characters of [A-Za-z0-9_-]", MaxIDLen)
	}
	if err := deviceid.Validate(r.Device); err != nil {
		return fieldErr("device", "%v", err)
	}
	if _, ok := parseTime(r.TS); !ok {
		return fieldErr("ts", "must be an RFC 3339 time such as 2006-01-02T15:04:05Z")
	}
	if !validB64(r.Nonce, nonceLen) {
		return fieldErr("nonce", "must be %d bytes in base64url without padding (%d characters)", NonceSize, nonceLen)
	}
	if _, err := clipgate.ParseMode(string(r.Mode)); err != nil {
		return fieldErr("mode", "%v", err)
	}
	switch {
	case r.KID == "" && r.Cert == "":
		return fieldErr("kid", "is required (or cert, for a device with a certificate)")
	case r.KID != "" && r.Cert != "":
		return fieldErr("cert", "must not be sent together with kid")
	case r.Cert != "":
		if !validB64Range(r.Cert, 1, MaxCertSize) {
			return fieldErr("cert", "must be a DER certificate of at most %d bytes in base64url without padding", MaxCertSize)
		}
		if !validB64Range(r.Sig, minCertSigSize, maxCertSigSize) {
			return fieldErr("sig", "must be a signature of %d to %d bytes in base64url without padding", minCertSigSize, maxCertSigSize)
		}
		return nil
	}
	if !validKeyID(r.KID) {
		return fieldErr("kid", "must be 1 to %d characters of [A-Za-z0-9_-]", MaxKeyIDLen)
	}
	if !validB64(r.Sig, sigLen) {
		return fieldErr("sig", "must be %d bytes in base64url without padding (%d characters)", SigSize, sigLen)
	}
	return nil
}

// Validate checks the reply: a successful reply needs credentials or sealed credentials
// (not both) and oss, and no error; a failed one needs an error with a known code and
// nothing else.
func (r *AuthReply) Validate() error {
	switch {
	case r.V != Version:
		return versionErr(r.V)
	case r.ID == "" && r.OK:
		return fieldErr("id", "is required when ok is true")
	case r.ID != "" && !validID(r.ID):
		return fieldErr("id", "must be 1 to %d characters of [A-Za-z0-9_-]", MaxIDLen)
	case r.ServerTime.IsZero():
		return fieldErr("serverTime", "is required")
	}
	if !r.OK {
		switch {
		case r.Error == nil:
			return fieldErr("error", "is required when ok is false")
		case r.Credentials != nil || r.Sealed != "" || r.Rekey != "" || r.OSS != nil:
			return fieldErr("error", "a failed reply must not carry credentials, sealed, rekey or oss")
		}
		return r.Error.validate()
	}
	switch {
	case r.Error != nil:
		return fieldErr("error", "must be absent when ok is true")
	case r.Credentials == nil && r.Sealed == "":
		return fieldErr("credentials", "credentials or sealed is required when ok is true")
	case r.Credentials != nil && r.Sealed != "":
		return fieldErr("sealed", "must not be sent together with credentials")
	case r.OSS == nil:
		return fieldErr("oss", "is required when ok is true")
	}
	if r.Credentials != nil {
		if err := ValidateCredentials(r.Credentials); err != nil {
			return err
		}
	} else if !validSealed(r.Sealed) {
		return fieldErr("sealed", "must be base64url without padding of at least %d bytes", minSealedSize)
	}
	if r.Rekey != "" && !validSealed(r.Rekey) {
		return fieldErr("rekey", "must be base64url without padding of at least %d bytes", minSealedSize)
	}
	return validateOSS(r.OSS)
}

// validate checks the key ID and that both keys are 32 bytes of canonical base64url.
func (k *Rekey) validate() error {
	switch {
	case !validKeyID(k.KID):
		return fieldErr("kid", "must be 1 to %d characters of [A-Za-z0-9_-]", MaxKeyIDLen)
	case !validB64(k.Connect, sigLen):
		return fieldErr("connect", "must be 32 bytes in base64url without padding (%d characters)", sigLen)
	case !validB64(k.Request, sigLen):
		return fieldErr("request", "must be 32 bytes in base64url without padding (%d characters)", sigLen)
	}
	return nil
}

// ValidateCredentials checks that every credential field is present. It is used on the
// plain credentials of a reply and on the opened plaintext of sealed ones. Errors are
// *Error with CodeInvalid.
func ValidateCredentials(c *Credentials) error {
	switch {
	case c.AccessKeyID == "":
		return fieldErr("credentials.accessKeyId", "is required")
	case c.AccessKeySecret == "":
		return fieldErr("credentials.accessKeySecret", "is required")
	case c.SecurityToken == "":
		return fieldErr("credentials.securityToken", "is required")
	case c.Expiration.IsZero():
		return fieldErr("credentials.expiration", "is required")
	}
	return nil
}

func validateOSS(o *OSSInfo) error {
	switch {
	case o.Endpoint == "":
		return fieldErr("oss.endpoint", "is required")
	case o.Region == "":
		return fieldErr("oss.region", "is required")
	case o.Bucket == "":
		return fieldErr("oss.bucket", "is required")
	case !validBucket(o.Bucket):
		return fieldErr("oss.bucket", "must be an OSS bucket name: 3 to 63 characters of [a-z0-9-], not starting or ending with '-'")
	case o.Prefix != "" && (o.Prefix[0] == '/' || o.Prefix[len(o.Prefix)-1] != '/'):
		return fieldErr("oss.prefix", "must be empty or end with '/' and not start with '/'")
	}
	return nil
}

func (e *ReplyError) validate() error {
	switch {
	case e.Code == "":
		return fieldErr("error.code", "is required")
	case !e.Code.Valid():
		return fieldErr("error.code", "unknown code %q", e.Code)
	case len(e.Message) > MaxMessageLen:
		return fieldErr("error.message", "is %d bytes, at most %d allowed", len(e.Message), MaxMessageLen)
	case e.RetryAfterMs < 0 || e.RetryAfterMs > MaxRetryAfterMs:
		return fieldErr("error.retryAfterMs", "must be 0 to %d", MaxRetryAfterMs)
	}
	return nil
}

// ValidateUploadEvent checks the event: a completed event needs bucket, key, size, crc64
// and uploadedAt and no error; a failed one needs error. Errors are *Error with
// CodeInvalid.
func ValidateUploadEvent(e *UploadEvent) error {
	completed := e.Status == StatusCompleted
	switch {
	case e.V != Version:
		return versionErr(e.V)
	case e.ID == "":
		return fieldErr("id", "is required")
	case e.Device == "":
		return fieldErr("device", "is required")
	case e.Status == "":
		return fieldErr("status", "is required")
	case completed && e.Bucket == "":
		return fieldErr("bucket", "is required when status is %q", StatusCompleted)
	case completed && e.Key == "":
		return fieldErr("key", "is required when status is %q", StatusCompleted)
	case completed && e.CRC64 == "":
		return fieldErr("crc64", "is required when status is %q", StatusCompleted)
	case !validID(e.ID):
		return fieldErr("id", "must be 1 to %d characters of [A-Za-z0-9_-]", MaxIDLen)
	}
	if err := deviceid.Validate(e.Device); err != nil {
		return fieldErr("device", "%v", err)
	}
	switch {
	case !completed && e.Status != StatusFailed:
		return fieldErr("status", "must be %q or %q", StatusCompleted, StatusFailed)
	case (completed || e.Bucket != "") && !validBucket(e.Bucket):
		return fieldErr("bucket", "must be an OSS bucket name: 3 to 63 characters of [a-z0-9-], not starting or ending with '-'")
	case (completed || e.Key != "") && !validObjectKey(e.Key):
		return fieldErr("key", "must be 1 to %d bytes of UTF-8 and not start with '/' or '\\'", MaxObjectKeyLen)
	case e.Size < 0:
		return fieldErr("size", "%d is out of range [0, %d]", e.Size, int64(math.MaxInt64))
	case (completed || e.CRC64 != "") && !validCRC64(e.CRC64):
		return fieldErr("crc64", "must be a decimal unsigned 64-bit integer without leading zeros")
	case len(e.ContentType) > MaxContentTypeLen:
		return fieldErr("contentType", "is %d bytes, at most %d allowed", len(e.ContentType), MaxContentTypeLen)
	case completed && e.UploadedAt.IsZero():
		return fieldErr("uploadedAt", "is required when status is %q", StatusCompleted)
	case e.Attempts < 0 || e.Attempts > math.MaxInt32:
		return fieldErr("attempts", "%d is out of range [0, %d]", e.Attempts, math.MaxInt32)
	case completed && e.Error != "":
		return fieldErr("error", "must be absent when status is %q", StatusCompleted)
	case !completed && e.Error == "":
		return fieldErr("error", "is required when status is %q", StatusFailed)
	case len(e.Error) > MaxMessageLen:
		return fieldErr("error", "is %d bytes, at most %d allowed", len(e.Error), MaxMessageLen)
	case len(e.Metadata) > MaxMetadata:
		return fieldErr("metadata", "more than %d entries (%d)", MaxMetadata, len(e.Metadata))
	}
	for k, v := range e.Metadata {
		if k == "" || len(k) > MaxMetadataLen || len(v) > MaxMetadataLen {
			return fieldErr("metadata", "keys must be 1 to %d bytes and values at most %d bytes", MaxMetadataLen, MaxMetadataLen)
		}
		if strings.IndexByte(k, 0) >= 0 {
			return fieldErr("metadata", "key %q: %v", k, errNUL)
		}
	}
	return nil
}

func versionErr(v int) *Error {
	return fieldErr("v", "unsupported protocol version %d (this build speaks version %d)", v, Version)
}

// validKeyID reports whether s is a key ID: 1 to MaxKeyIDLen of [A-Za-z0-9_-]
// (the rule of identity.ValidKeyID).
func validKeyID(s string) bool { return len(s) <= MaxKeyIDLen && validID(s) }

// validID reports whether s is a request or event ID: 1 to 64 of [A-Za-z0-9_-].
func validID(s string) bool {
	if s == "" || len(s) > MaxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// validB64 reports whether s is exactly n characters of canonical base64url without
// padding. The alphabet is checked first because the decoder skips '\r' and '\n'.
func validB64(s string, n int) bool {
	if len(s) != n || !b64Alphabet(s) {
		return false
	}
	// Fixed arrays keep the check off the heap (a []byte(s) conversion would allocate).
	var src [sigLen]byte
	var dst [SigSize]byte
	n = copy(src[:], s)
	_, err := b64.Decode(dst[:], src[:n])
	return err == nil
}

// validB64Range reports whether s is canonical base64url without padding of min to max
// bytes.
func validB64Range(s string, min, max int) bool {
	if len(s) < base64.RawURLEncoding.EncodedLen(min) || len(s) > base64.RawURLEncoding.EncodedLen(max) || !b64Alphabet(s) {
		return false
	}
	b, err := b64.DecodeString(s)
	return err == nil && len(b) >= min && len(b) <= max
}

func validSealed(s string) bool {
	if len(s) < base64.RawURLEncoding.EncodedLen(minSealedSize) || !b64Alphabet(s) {
		return false
	}
	_, err := b64.DecodeString(s)
	return err == nil
}

func b64Alphabet(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// validBucket checks OSS bucket naming: 3 to 63 of [a-z0-9-], no leading or trailing '-'.
func validBucket(b string) bool {
	if len(b) < 3 || len(b) > 63 || b[0] == '-' || b[len(b)-1] == '-' {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// validObjectKey checks OSS's object naming rules: 1 to 1,023 bytes of UTF-8, not
// starting with '/' or '\'. Any other character is valid, Unicode included
// (https://www.alibabacloud.com/help/en/oss/user-guide/object-naming-conventions).
func validObjectKey(k string) bool {
	return k != "" && len(k) <= MaxObjectKeyLen && k[0] != '/' && k[0] != '\\' && utf8.ValidString(k)
}

// validCRC64 requires the canonical decimal form, so that equal checksums compare equal
// as strings.
func validCRC64(s string) bool {
	if s == "" || len(s) > 1 && s[0] == '0' {
		return false
	}
	_, err := strconv.ParseUint(s, 10, 64)
	return err == nil
}

// parseTime parses a strict RFC 3339 time: YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM),
// upper-case T and Z, 1 to 9 fraction digits. time.Parse alone is more lenient.
func parseTime(s string) (time.Time, bool) {
	const base = len("2006-01-02T15:04:05")
	if len(s) < base+1 || len(s) > base+10+6 {
		return time.Time{}, false
	}
	for i := 0; i < base; i++ {
		c := s[i]
		switch i {
		case 4, 7:
			if c != '-' {
				return time.Time{}, false
			}
		case 10:
			if c != 'T' {
				return time.Time{}, false
			}
		case 13, 16:
			if c != ':' {
				return time.Time{}, false
			}
		default:
			if c < '0' || c > '9' {
				return time.Time{}, false
			}
		}
	}
	rest := s[base:]
	if rest[0] == '.' {
		n := 1
		for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
			n++
		}
		if n == 1 || n > 10 {
			return time.Time{}, false
		}
		rest = rest[n:]
	}
	switch {
	case rest == "Z":
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':' &&
		digits(rest[1:3]) && digits(rest[4:6]) && rest[1:3] <= "23" && rest[4:6] <= "59":
	default:
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, s)
	return t, err == nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func appendInt(b []byte, v int64) []byte { return strconv.AppendInt(b, v, 10) }
