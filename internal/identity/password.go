package identity

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
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
	maxPasswordLen = len(passwordPrefix) + MaxKeyIDLen + 1 + maxUnixDigits + 1 + sigLen
)

// Errors of VerifyMQTTPassword.
var (
	// ErrMalformedPassword: the password is not of the form v1.<key ID>.<unix seconds>.<mac>.
	ErrMalformedPassword = errors.New("malformed MQTT password")
	// ErrBadPassword: the password is well-formed but not made with this device's key.
	ErrBadPassword = errors.New("wrong MQTT password")
	// ErrPasswordExpired: the password is genuine but its timestamp lies outside the window
	// (the device's clock is far off, or the password was captured and replayed later).
	ErrPasswordExpired = errors.New("MQTT password timestamp outside the accepted window")
)

// MQTTPassword returns the MQTT password of a device at time now, made with its connect
// key of fleet key keyID: "v1.<key ID>.<unix seconds>.<base64url(HMAC-SHA256(connectKey,
// "clipgate-mqtt-v1\n"+keyID+"\n"+deviceID+"\n"+unix))>".
func MQTTPassword(connectKey []byte, keyID, deviceID string, now time.Time) string {
	m := getMAC()
	var ts [maxUnixDigits + 1]byte
	unix := strconv.AppendInt(ts[:0], now.Unix(), 10)
	m.buf = appendPasswordMsg(m.buf[:0], keyID, deviceID, unix)
	var out [maxPasswordLen + 64]byte
	p := append(out[:0], passwordPrefix...)
	p = append(p, keyID...)
	p = append(p, '.')
	p = append(p, unix...)
	p = append(p, '.')
	p = append(p, make([]byte, sigLen)...)
	sigEncoding.Encode(p[len(p)-sigLen:], m.mac(connectKey, m.buf))
	putMAC(m)
	return string(p)
}

func appendPasswordMsg[T string | []byte](b []byte, keyID, deviceID string, unix T) []byte {
	b = append(b, passwordTag...)
	b = append(b, keyID...)
	b = append(b, '\n')
	b = append(b, deviceID...)
	b = append(b, '\n')
	return append(b, unix...)
}

// splitPassword returns the key ID, the timestamp text and the MAC text of a password, or
// ok false if it is malformed.
func splitPassword(password string) (keyID, unix, mac string, ok bool) {
	if len(password) > maxPasswordLen || len(password) < len(passwordPrefix) ||
		password[:len(passwordPrefix)] != passwordPrefix {
		return "", "", "", false
	}
	rest := password[len(passwordPrefix):]
	d1 := strings.IndexByte(rest, '.')
	if d1 < 0 {
		return "", "", "", false
	}
	keyID, rest = rest[:d1], rest[d1+1:]
	d2 := strings.IndexByte(rest, '.')
	if d2 < 0 || len(rest)-d2-1 != sigLen || !ValidKeyID(keyID) {
		return "", "", "", false
	}
	return keyID, rest[:d2], rest[d2+1:], true
}

// PasswordKeyID returns the key ID a well-formed device password names.
func PasswordKeyID(password string) (string, bool) {
	kid, _, _, ok := splitPassword(password)
	return kid, ok
}

// VerifyMQTTPassword checks a device's MQTT password against its connect key (of the
// fleet key the password names) and the clock now. The timestamp may lie up to window
// either side of now (window <= 0 means DefaultPasswordWindow). It returns nil, or an
// error wrapping ErrMalformedPassword, ErrBadPassword or ErrPasswordExpired; the MAC is
// checked before the time, so ErrPasswordExpired always concerns a genuine password. It
// does not allocate on success.
func VerifyMQTTPassword(connectKey []byte, deviceID, password string, now time.Time, window time.Duration) error {
	kid, ts, sig, ok := splitPassword(password)
	if !ok {
		return ErrMalformedPassword
	}
	unix, ok := parseUnix(ts)
	if !ok {
		return ErrMalformedPassword
	}
	if len(connectKey) == 0 || !deviceid.Valid(deviceID) {
		return ErrBadPassword
	}
	m := getMAC()
	m.buf = appendPasswordMsg(m.buf[:0], kid, deviceID, ts)
	ok = m.equalSig(m.mac(connectKey, m.buf), sig)
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

// VerifyDevicePassword checks a device's MQTT password with the broker's keyring of
// connect roots: it looks up the root the password names (a retired or unknown key ID is
// an error wrapping ErrBadPassword and ErrKeyRetired or ErrUnknownKeyID), derives the
// device's connect key and calls VerifyMQTTPassword.
func VerifyDevicePassword(connectRoots *Keyring, deviceID, password string, now time.Time, window time.Duration) error {
	kid, ok := PasswordKeyID(password)
	if !ok {
		return ErrMalformedPassword
	}
	root, err := connectRoots.Lookup(kid, now)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadPassword, err)
	}
	key := derive(root, connectKeyTag, deviceID)
	err = VerifyMQTTPassword(key[:], deviceID, password, now, window)
	clear(key[:])
	return err
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
