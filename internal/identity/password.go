package identity

import (
	"crypto/rand"
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
// time from its first auth reply. Such a password is still good for one connection only
// (the broker remembers the passwords it accepted, see PasswordReplayCache).
const DefaultPasswordWindow = 24 * time.Hour

// SyncedPasswordWindow is the window of a synced password (SyncedMQTTPassword): one made
// by a device that has learned the server time, whose clock is then off by no more than
// network delay and drift.
const SyncedPasswordWindow = 5 * time.Minute

const (
	passwordPrefix = "v1."
	passwordTag    = "clipgate-mqtt-v1\n"
	syncedMark     = 's'
	nonceBytes     = 12
	nonceLen       = 16 // base64url of nonceBytes
	maxUnixDigits  = 19 // int64 seconds
	maxPasswordLen = len(passwordPrefix) + MaxKeyIDLen + 1 + 2 + maxUnixDigits + 1 + nonceLen + 1 + sigLen
)

// Errors of VerifyMQTTPassword.
var (
	// ErrMalformedPassword: the password is not of the form v1.<key ID>.[s]<unix seconds>.<nonce>.<mac>.
	ErrMalformedPassword = errors.New("malformed MQTT password")
	// ErrBadPassword: the password is well-formed but not made with this device's key.
	ErrBadPassword = errors.New("wrong MQTT password")
	// ErrPasswordExpired: the password is genuine but its timestamp lies outside the window
	// (the device's clock is far off, or the password was captured and replayed later).
	ErrPasswordExpired = errors.New("MQTT password timestamp outside the accepted window")
)

// MQTTPassword returns a fresh MQTT password of a device at time now, made with its
// connect key of fleet key keyID, for a device that does not know the server time (its
// clock may be far off):
// "v1.<key ID>.<unix seconds>.<nonce>.<base64url(HMAC-SHA256(connectKey,
// "clipgate-mqtt-v1\n"+keyID+"\n"+deviceID+"\n"+<unix seconds>.<nonce>))>",
// the nonce being 12 random bytes in base64url. Every call returns another password; the
// broker accepts each one once, within DefaultPasswordWindow (or its configured window)
// of its clock.
func MQTTPassword(connectKey []byte, keyID, deviceID string, now time.Time) string {
	return mqttPassword(connectKey, keyID, deviceID, now, false)
}

// SyncedMQTTPassword returns a fresh MQTT password of a device whose clock is corrected by
// the server time (serverNow: the device's best guess of the broker's clock). It has the
// form of MQTTPassword's with "s" before the timestamp, and the broker accepts it only
// within SyncedPasswordWindow: a captured one is soon useless even to a broker that has
// not seen it (one with another replay cache).
func SyncedMQTTPassword(connectKey []byte, keyID, deviceID string, serverNow time.Time) string {
	return mqttPassword(connectKey, keyID, deviceID, serverNow, true)
}

func mqttPassword(connectKey []byte, keyID, deviceID string, now time.Time, synced bool) string {
	var out [maxPasswordLen + 64]byte // room for a key ID a caller did not validate
	p := append(out[:0], passwordPrefix...)
	p = append(p, keyID...)
	p = append(p, '.')
	bodyStart := len(p)
	if synced {
		p = append(p, syncedMark)
	}
	p = strconv.AppendInt(p, now.Unix(), 10)
	p = append(p, '.')
	var nonce [nonceBytes]byte
	_, _ = rand.Read(nonce[:]) // never fails (crypto/rand)
	p = p[:len(p)+nonceLen]
	sigEncoding.Encode(p[len(p)-nonceLen:], nonce[:])
	m := getMAC()
	m.buf = appendPasswordMsg(m.buf[:0], keyID, deviceID, p[bodyStart:])
	p = append(p, '.')
	p = append(p, make([]byte, sigLen)...)
	sigEncoding.Encode(p[len(p)-sigLen:], m.mac(connectKey, m.buf))
	putMAC(m)
	return string(p)
}

// appendPasswordMsg appends what a password's MAC covers: the tag, the key ID, the device
// ID and the password's "[s]<unix>.<nonce>" body.
func appendPasswordMsg[T string | []byte](b []byte, keyID, deviceID string, body T) []byte {
	b = append(b, passwordTag...)
	b = append(b, keyID...)
	b = append(b, '\n')
	b = append(b, deviceID...)
	b = append(b, '\n')
	return append(b, body...)
}

// PasswordStamp is what a device password says about itself.
type PasswordStamp struct {
	// KeyID names the fleet key whose connect root the password's key derives from.
	KeyID string
	// Time is the password's timestamp.
	Time time.Time
	// Synced marks a SyncedMQTTPassword.
	Synced bool
	// Nonce is the password's "[s]<unix>.<nonce>" part, a substring of it: what makes it
	// unique, and what the MAC covers besides the device ID.
	Nonce string
}

// ParseMQTTPassword returns the stamp of a well-formed device password, or
// ErrMalformedPassword. It does not check the MAC: use it on passwords that
// VerifyMQTTPassword accepted. It does not allocate.
func ParseMQTTPassword(password string) (PasswordStamp, error) {
	if len(password) > maxPasswordLen || len(password) < len(passwordPrefix)+sigLen+1 ||
		password[:len(passwordPrefix)] != passwordPrefix || password[len(password)-sigLen-1] != '.' {
		return PasswordStamp{}, ErrMalformedPassword
	}
	rest := password[len(passwordPrefix) : len(password)-sigLen-1]
	kd := strings.IndexByte(rest, '.')
	if kd < 0 || !ValidKeyID(rest[:kd]) {
		return PasswordStamp{}, ErrMalformedPassword
	}
	kid, body := rest[:kd], rest[kd+1:]
	dot := strings.IndexByte(body, '.')
	if dot < 0 || len(body)-dot-1 != nonceLen || !base64url(body[dot+1:]) {
		return PasswordStamp{}, ErrMalformedPassword
	}
	ts, synced := body[:dot], false
	if len(ts) > 0 && ts[0] == syncedMark {
		ts, synced = ts[1:], true
	}
	unix, ok := parseUnix(ts)
	if !ok {
		return PasswordStamp{}, ErrMalformedPassword
	}
	return PasswordStamp{KeyID: kid, Time: time.Unix(unix, 0), Synced: synced, Nonce: body}, nil
}

// base64url reports whether s is made of the unpadded base64url alphabet and is the
// canonical encoding of its bytes (only for the lengths of nonces: 16 characters, 12
// bytes, no partial group).
func base64url(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return len(s)%4 == 0
}

// VerifyMQTTPassword checks a device's MQTT password against its connect key (of the fleet
// key the password names) and the clock now.
// The timestamp may lie up to window either side of now (window <= 0 means
// DefaultPasswordWindow), and a synced password's up to SyncedPasswordWindow when that is
// narrower. It returns nil, or an error wrapping ErrMalformedPassword, ErrBadPassword or
// ErrPasswordExpired; the MAC is checked before the time, so ErrPasswordExpired always
// concerns a genuine password. It does not remember the password: the broker's
// PasswordReplayCache refuses a second use. It does not allocate on success.
func VerifyMQTTPassword(connectKey []byte, deviceID, password string, now time.Time, window time.Duration) error {
	st, err := ParseMQTTPassword(password)
	if err != nil {
		return err
	}
	if len(connectKey) == 0 || !deviceid.Valid(deviceID) {
		return ErrBadPassword
	}
	m := getMAC()
	m.buf = appendPasswordMsg(m.buf[:0], st.KeyID, deviceID, st.Nonce)
	ok := m.equalSig(m.mac(connectKey, m.buf), password[len(password)-sigLen:])
	putMAC(m)
	if !ok {
		return ErrBadPassword
	}
	if window <= 0 {
		window = DefaultPasswordWindow
	}
	if st.Synced {
		window = min(window, SyncedPasswordWindow)
	}
	w := uint64(window / time.Second)
	n, unix := now.Unix(), st.Time.Unix()
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
	st, err := ParseMQTTPassword(password)
	if err != nil {
		return err
	}
	root, err := connectRoots.Lookup(st.KeyID, now)
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
