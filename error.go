package clipgate

import "time"

// Code is an error code of the token worker, from a closed set. Each tells the device
// what to do next.
type Code string

// The error codes.
const (
	// CodeInvalid: the message is malformed. Fix the client; retrying the same message
	// fails again.
	CodeInvalid Code = "invalid"
	// CodeUnauthenticated: the signature did not verify. Check the device key.
	CodeUnauthenticated Code = "unauthenticated"
	// CodeDenied: the device may not have what it asked for (e.g. that mode). Do not
	// retry as is.
	CodeDenied Code = "denied"
	// CodeRevoked: the device is revoked. Stop asking.
	CodeRevoked Code = "revoked"
	// CodeClockSkew: the timestamp is outside the window. Correct the clock from the
	// reply's server time, re-sign and retry.
	CodeClockSkew Code = "clock_skew"
	// CodeReplay: the nonce was seen before. Retry with a fresh nonce.
	CodeReplay Code = "replay"
	// CodeRateLimited: the device asks too often. Retry after the given delay.
	CodeRateLimited Code = "rate_limited"
	// CodeBusy: the worker sheds load. Retry after the given delay, with jitter.
	CodeBusy Code = "busy"
	// CodeUnavailable: a dependency (STS) is down. Retry later with backoff.
	CodeUnavailable Code = "unavailable"
	// CodeInternal: a bug or unexpected failure on the server. Retry later with backoff.
	CodeInternal Code = "internal"
	// CodeQuotaExceeded: the device used its upload quota (bytes per day or month) and
	// gets no write or append credentials until the quota resets, in retryAfterMs (at
	// most a day: ask again then). Keep the clips; read credentials are still given.
	CodeQuotaExceeded Code = "quota_exceeded"
)

// Valid reports whether c is one of the codes of the closed set.
func (c Code) Valid() bool {
	switch c {
	case CodeInvalid, CodeUnauthenticated, CodeDenied, CodeRevoked, CodeClockSkew,
		CodeReplay, CodeRateLimited, CodeBusy, CodeUnavailable, CodeInternal, CodeQuotaExceeded:
		return true
	}
	return false
}

// Terminal reports whether a request refused with c cannot succeed when asked again:
// CodeUnauthenticated, CodeRevoked, CodeDenied and CodeInvalid. The other codes are
// worth retrying, as each one's comment says.
func (c Code) Terminal() bool {
	switch c {
	case CodeUnauthenticated, CodeRevoked, CodeDenied, CodeInvalid:
		return true
	}
	return false
}

// AuthError is a refusal by the token worker: Code says what to do next. The device kit
// (devicekit.Kit.Credentials, and every call that needs credentials) returns it at once
// for the terminal codes and after its retries for the others; find it with errors.As:
//
//	var ae *clipgate.AuthError
//	if errors.As(err, &ae) {
//		switch ae.Code {
//		case clipgate.CodeRevoked:
//			// stop asking
//		}
//	}
type AuthError struct {
	Code       Code
	Message    string        // the worker's explanation, fit for a log
	RetryAfter time.Duration // how long the worker asked to wait before retrying, if > 0
}

// Error returns "clipgate: credentials refused: code: message".
func (e *AuthError) Error() string {
	s := "clipgate: credentials refused: " + string(e.Code)
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Terminal reports whether retrying the same request cannot succeed (see Code.Terminal).
func (e *AuthError) Terminal() bool { return e.Code.Terminal() }
