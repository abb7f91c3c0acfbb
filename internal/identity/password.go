package identity

import (
	"errors"
	"strconv"
	"time"

	"github.com/clipgate/clipgate/internal/deviceid"
)

// DefaultPasswordWindow is how far the timestamp of an MQTT password may lie from the
// broker's clock, either side, when VerifyMQTTPassword is given no window. It is generous on
// purpose: a camera with a wrong clock must still be able to connect and learn the server
// time from its first auth reply.
const DefaultPasswordWindow = 24 * time.Hour

const (
	passwordPrefix = "v1."
	passwordTag    = "clipgate-mqtt-v1\n"
	maxUnixDigits  = 19 // int64 seconds
	maxPasswordLen = len(passwordPrefix) + 1 + maxUnixDigits + 1 + sigLen
)

// Errors of VerifyMQTTPassword.
var (
	// ErrMalformedPassword: the password is not of the form v1.<unix seconds>.<mac>.
	ErrMalformedPassword = errors.New("malformed MQTT password")
	// ErrBadPassword: the password is well-formed but not made with this device's key.
	ErrBadPassword = errors.New("wrong MQTT password")
	// ErrPasswordExpired: the password is genuine but its timestamp lies outside the window
	// (the device's clock is far off, or the password was captured and replayed later).
	ErrPasswordExpired = errors.New("MQTT password timestamp outside the accepted window")
)

// MQTTPassword returns the MQTT password of a device at time now:
// "v1.<unix seconds>.<base64url(HMAC-SHA256(deviceKey, "clipgate-mqtt-v1\n"+deviceID+"\n"+unix))>".
func MQTTPassword(deviceKey []byte, deviceID string, now time.Time) string {
	m := getMAC()
	var ts [maxUnixDigits + 1]byte
	unix := strconv.AppendInt(ts[:0], now.Unix(), 10)
	m.buf = append(m.buf[:0], passwordTag...)
	m.buf = append(m.buf, deviceID...)
	m.buf = append(m.buf, '\n')
	m.buf = append(m.buf, unix...)
	var out [maxPasswordLen]byte
	p := append(out[:0], passwordPrefix...)
	p = append(p, unix...)
	p = append(p, '.')
	p = p[:len(p)+sigLen]
	sigEncoding.Encode(p[len(p)-sigLen:], m.mac(deviceKey, m.buf))
	putMAC(m)
	return string(p)
}

// VerifyMQTTPassword checks a device's MQTT password against its key and the clock now.
// The timestamp may lie up to window either side of now (window <= 0 means
// DefaultPasswordWindow). It returns nil, or an error wrapping ErrMalformedPassword,
// ErrBadPassword or ErrPasswordExpired; the MAC is checked before the time, so
// ErrPasswordExpired always concerns a genuine password. It does not allocate on success.
func VerifyMQTTPassword(deviceKey []byte, deviceID, password string, now time.Time, window time.Duration) error {
	if len(password) > maxPasswordLen || len(password) < len(passwordPrefix) ||
		password[:len(passwordPrefix)] != passwordPrefix {
		return ErrMalformedPassword
	}
	rest := password[len(passwordPrefix):]
	dot := -1
	for i := 0; i < len(rest); i++ {
		if rest[i] == '.' {
			dot = i
			break
		}
	}
	if dot < 0 || len(rest)-dot-1 != sigLen {
		return ErrMalformedPassword
	}
	unix, ok := parseUnix(rest[:dot])
	if !ok {
		return ErrMalformedPassword
	}
	if len(deviceKey) == 0 || !deviceid.Valid(deviceID) {
		return ErrBadPassword
	}
	m := getMAC()
	m.buf = append(m.buf[:0], passwordTag...)
	m.buf = append(m.buf, deviceID...)
	m.buf = append(m.buf, '\n')
	m.buf = append(m.buf, rest[:dot]...)
	ok = m.equalSig(m.mac(deviceKey, m.buf), rest[dot+1:])
	putMAC(m)
	if !ok {
		return ErrBadPassword
	}
	if window <= 0 {
		window = DefaultPasswordWindow
	}
	w := uint64(window / time.Second)
	n := now.Unix()
	// |unix - n| > w; the distance of two int64s always fits in a uint64.
	if (unix < n && uint64(n)-uint64(unix) > w) || (unix > n && uint64(unix)-uint64(n) > w) {
		return ErrPasswordExpired
	}
	return nil
}

// parseUnix parses the canonical decimal form of an int64 (what strconv.FormatInt writes:
// optional '-', no '+', no leading zeros), so that each timestamp has one spelling.
func parseUnix(s string) (int64, bool) {
	neg := false
	if len(s) > 0 && s[0] == '-' {
		neg, s = true, s[1:]
	}
	if len(s) == 0 || len(s) > maxUnixDigits || (s[0] == '0' && (len(s) > 1 || neg)) {
		return 0, false
	}
	var u uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		u = u*10 + uint64(c-'0') // 19 digits cannot overflow uint64
	}
	if neg {
		if u > 1<<63 {
			return 0, false
		}
		return -int64(u), true
	}
	if u > 1<<63-1 {
		return 0, false
	}
	return int64(u), true
}
