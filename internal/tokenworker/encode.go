package tokenworker

import (
	"encoding/base64"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/clipgate/clipgate/internal/protocol"
)

// Replies are written by hand rather than with encoding/json: this is the hot path of every
// request, and reflection costs about half of its allocations. The output is byte for byte
// what json.Marshal gives (an equivalence test and a fuzz target check it), so receivers
// cannot tell.

// appendReply appends the JSON wire form of rep. When rep.Sealed is empty and sealed is
// not, sealed is written as the sealed field in base64url, without an intermediate string.
func appendReply(b []byte, rep *protocol.AuthReply, sealed []byte) []byte {
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, int64(rep.V), 10)
	b = append(b, `,"id":`...)
	b = appendString(b, rep.ID)
	b = append(b, `,"ok":`...)
	b = strconv.AppendBool(b, rep.OK)
	b = append(b, `,"serverTime":`...)
	b = appendTime(b, rep.ServerTime)
	if rep.Credentials != nil {
		b = append(b, `,"credentials":`...)
		b = appendCredentials(b, rep.Credentials)
	}
	if rep.Sealed != "" {
		b = append(b, `,"sealed":`...)
		b = appendString(b, rep.Sealed)
	} else if len(sealed) > 0 {
		b = append(b, `,"sealed":"`...)
		b = base64.RawURLEncoding.AppendEncode(b, sealed)
		b = append(b, '"')
	}
	if rep.Rekey != "" {
		b = append(b, `,"rekey":`...)
		b = appendString(b, rep.Rekey)
	}
	if o := rep.OSS; o != nil {
		b = append(b, `,"oss":{"endpoint":`...)
		b = appendString(b, o.Endpoint)
		b = append(b, `,"region":`...)
		b = appendString(b, o.Region)
		b = append(b, `,"bucket":`...)
		b = appendString(b, o.Bucket)
		b = append(b, `,"prefix":`...)
		b = appendString(b, o.Prefix)
		b = append(b, '}')
	}
	if e := rep.Error; e != nil {
		b = append(b, `,"error":{"code":`...)
		b = appendString(b, string(e.Code))
		if e.Message != "" {
			b = append(b, `,"message":`...)
			b = appendString(b, e.Message)
		}
		if e.RetryAfterMs != 0 {
			b = append(b, `,"retryAfterMs":`...)
			b = strconv.AppendInt(b, e.RetryAfterMs, 10)
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

// appendCredentials appends the JSON form of c (the plaintext of a sealed reply, too).
func appendCredentials(b []byte, c *protocol.Credentials) []byte {
	b = append(b, `{"accessKeyId":`...)
	b = appendString(b, c.AccessKeyID)
	b = append(b, `,"accessKeySecret":`...)
	b = appendString(b, c.AccessKeySecret)
	b = append(b, `,"securityToken":`...)
	b = appendString(b, c.SecurityToken)
	b = append(b, `,"expiration":`...)
	b = appendTime(b, c.Expiration)
	return append(b, '}')
}

// appendTime appends t as time.Time.MarshalJSON does. Times here come from the clock or
// from STS and always lie within the years 0..9999 that MarshalJSON accepts.
func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string with encoding/json's escaping: '"', '\\' and
// control characters; '<', '>' and '&' (HTML-safe); U+2028 and U+2029; invalid UTF-8 as
// U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
