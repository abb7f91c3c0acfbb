package identity

import (
	"bytes"

	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/clipgate/clipgate/internal/atomicfile"
)

// MaxKeyIDLen bounds a key ID: 1 to 16 characters of [A-Za-z0-9_-].
const MaxKeyIDLen = 16

// Errors of Keyring.Lookup. Both mean the device must use (or be given) the current key.
var (
	// ErrUnknownKeyID: no key of this ID is in the keyring.
	ErrUnknownKeyID = errors.New("unknown key ID")
	// ErrKeyRetired: the key was replaced and its cutoff has passed.
	ErrKeyRetired = errors.New("key retired")
)

// ValidKeyID reports whether id is a well-formed key ID: 1 to MaxKeyIDLen characters of
// [A-Za-z0-9_-] (so that it never contains the '.' of a password or a space of a file).
func ValidKeyID(id string) bool {
	if id == "" || len(id) > MaxKeyIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// RingKey is one key of a Keyring.
type RingKey struct {
	ID  string
	Key []byte // KeySize bytes
	// Until is the cutoff of a replaced key: it is accepted before Until and refused from
	// then on. The current key has none (zero).
	Until time.Time
}

// Keyring is a set of keys by ID: exactly one current key, which makes new passwords,
// requests and device keys, and the keys it replaced, each accepted until its cutoff.
// The fleet keys of the token workers and the connect roots of the broker are keyrings.
// Its methods are safe for concurrent use; Set replaces the whole set atomically, so a
// keyring shared by a broker and its tests can be rotated in place.
type Keyring struct {
	keys atomic.Pointer[[]RingKey] // keys[0] is the current key
	// Kind is KindFleet or KindConnect when known (its file says so), else "". The broker
	// refuses a fleet keyring, so that the token workers' secret is never handed to it.
	Kind string
}

// Keyring kinds, written in a keyring file's "kind" line.
const (
	KindFleet   = "fleet"   // fleet keys: the token workers' and provisioning's secret
	KindConnect = "connect" // connect roots: the broker's
)

// NewKeyring checks keys and returns a keyring of them: IDs well-formed and distinct,
// keys of KeySize bytes, exactly one without a cutoff (the current one).
func NewKeyring(keys ...RingKey) (*Keyring, error) {
	r := &Keyring{}
	if err := r.Set(keys); err != nil {
		return nil, err
	}
	return r, nil
}

// NewFleetKeyring returns a keyring of one fresh random key named "k1".
func NewFleetKeyring() (*Keyring, error) {
	k, err := NewFleetKey()
	if err != nil {
		return nil, err
	}
	r, err := NewKeyring(RingKey{ID: "k1", Key: k})
	if err != nil {
		return nil, err
	}
	r.Kind = KindFleet
	return r, nil
}

// Set replaces the keys after the checks of NewKeyring; on error nothing changes.
func (r *Keyring) Set(keys []RingKey) error {
	if len(keys) == 0 {
		return errors.New("keyring: no key")
	}
	out := make([]RingKey, 0, len(keys))
	cur := -1
	seen := make(map[string]bool, len(keys))
	for i, k := range keys {
		switch {
		case !ValidKeyID(k.ID):
			return fmt.Errorf("keyring: key %d: ID %q is not 1 to %d characters of [A-Za-z0-9_-]", i+1, k.ID, MaxKeyIDLen)
		case seen[k.ID]:
			return fmt.Errorf("keyring: key ID %q appears twice", k.ID)
		case len(k.Key) != KeySize:
			return fmt.Errorf("keyring: key %q: %w, got %d", k.ID, ErrKeySize, len(k.Key))
		case k.Until.IsZero() && cur >= 0:
			return fmt.Errorf("keyring: keys %q and %q both have no cutoff; exactly one key is current", out[cur].ID, k.ID)
		}
		seen[k.ID] = true
		if k.Until.IsZero() {
			cur = i
		}
		out = append(out, RingKey{ID: k.ID, Key: bytes.Clone(k.Key), Until: k.Until.UTC()})
	}
	if cur < 0 {
		return errors.New("keyring: every key has a cutoff; exactly one key must be current (no until)")
	}
	out[0], out[cur] = out[cur], out[0]
	r.keys.Store(&out)
	return nil
}

// Keys returns a copy of the keys, the current one first.
func (r *Keyring) Keys() []RingKey {
	ks := *r.keys.Load()
	out := make([]RingKey, len(ks))
	for i, k := range ks {
		out[i] = RingKey{ID: k.ID, Key: bytes.Clone(k.Key), Until: k.Until}
	}
	return out
}

// Current returns the current key (a copy).
func (r *Keyring) Current() RingKey {
	k := (*r.keys.Load())[0]
	return RingKey{ID: k.ID, Key: bytes.Clone(k.Key)}
}

// CurrentID returns the ID of the current key.
func (r *Keyring) CurrentID() string { return (*r.keys.Load())[0].ID }

// Lookup returns the key of id if it is accepted at now: the current key, or a replaced
// one before its cutoff. Otherwise the error wraps ErrUnknownKeyID or ErrKeyRetired and
// names the current ID. The returned slice must not be modified.
func (r *Keyring) Lookup(id string, now time.Time) ([]byte, error) {
	ks := *r.keys.Load()
	for i := range ks {
		if ks[i].ID != id {
			continue
		}
		if !ks[i].Until.IsZero() && !now.Before(ks[i].Until) {
			return nil, fmt.Errorf("%w: key %q was replaced by %q and retired at %s",
				ErrKeyRetired, id, ks[0].ID, ks[i].Until.Format(time.RFC3339))
		}
		return ks[i].Key, nil
	}
	return nil, fmt.Errorf("%w %q (the current key is %q)", ErrUnknownKeyID, truncateID(id), ks[0].ID)
}

// truncateID keeps an error message short whatever a client sent.
func truncateID(id string) string {
	if len(id) > 2*MaxKeyIDLen {
		return id[:2*MaxKeyIDLen] + "..."
	}
	return id
}

// Derive returns a keyring of the same IDs and cutoffs whose keys are f(key): for
// example ConnectRoots, the broker's keyring, from the fleet keyring.
func (r *Keyring) Derive(f func(key []byte) []byte) *Keyring {
	ks := r.Keys()
	for i := range ks {
		ks[i].Key = f(ks[i].Key)
	}
	out := &Keyring{}
	out.keys.Store(&ks)
	return out
}

// CheckKind returns an error if r is known to be of another kind than want.
func (r *Keyring) CheckKind(want string) error {
	if r.Kind != "" && r.Kind != want {
		return fmt.Errorf("keyring: this is a %s keyring, want %s keys", r.Kind, want)
	}
	return nil
}

// ConnectRoots returns the broker's keyring: the connect root of each fleet key.
func (r *Keyring) ConnectRoots() *Keyring {
	c := r.Derive(ConnectRoot)
	c.Kind = KindConnect
	return c
}

// Rotate returns the keys of a rotation at now: a fresh random current key whose ID is
// the next "kN", the current key replaced with the cutoff now+grace, earlier replaced
// keys kept until their own cutoffs, and keys already retired at now dropped. It does not
// change r; Set the result to apply it.
func (r *Keyring) Rotate(now time.Time, grace time.Duration) ([]RingKey, error) {
	if grace <= 0 {
		return nil, fmt.Errorf("keyring: grace %v must be positive (devices need time to receive the new key)", grace)
	}
	k, err := NewFleetKey()
	if err != nil {
		return nil, err
	}
	old := r.Keys()
	next := 0
	for _, o := range old {
		if n, err := strconv.Atoi(strings.TrimPrefix(o.ID, "k")); err == nil && strings.HasPrefix(o.ID, "k") && n > next {
			next = n
		}
	}
	out := []RingKey{{ID: "k" + strconv.Itoa(next+1), Key: k}}
	for i, o := range old {
		if i == 0 {
			o.Until = now.Add(grace)
		}
		if o.Until.After(now) {
			out = append(out, o)
		}
	}
	return out, nil
}

// maxKeyringFile bounds a keyring file (a few lines of about 80 bytes).
const maxKeyringFile = 64 << 10

// LoadKeyring reads a keyring file (see ParseKeyring), refusing one that is not private to
// its owner (mode & 0o077 != 0).
func LoadKeyring(path string) (*Keyring, error) {
	data, err := readPrivateFile(path, maxKeyringFile)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	r, err := ParseKeyring(data)
	if err != nil {
		return nil, fmt.Errorf("keyring %s: %w", path, err)
	}
	return r, nil
}

// ParseKeyring reads the text form of a keyring, one key a line:
//
//	ID KEY [until RFC3339]
//
// KEY is KeySize bytes in hex or base64 (ParseKey); '#' starts a comment; blank lines are
// ignored. Exactly one key has no "until": the current one. An optional first line
// "kind fleet" or "kind connect" sets Kind.
func ParseKeyring(data []byte) (*Keyring, error) {
	var keys []RingKey
	kind := ""
	for _, fl := range fieldLines(data) {
		line, f := fl.n, fl.fields
		if f[0] == "kind" && len(f) == 2 && kind == "" && len(keys) == 0 {
			if f[1] != KindFleet && f[1] != KindConnect {
				return nil, fmt.Errorf("line %d: kind %q: want %q or %q", line, truncateID(f[1]), KindFleet, KindConnect)
			}
			kind = f[1]
			continue
		}
		if len(f) != 2 && (len(f) != 4 || f[2] != "until") {
			return nil, fmt.Errorf("line %d: want \"ID KEY\" or \"ID KEY until RFC3339-TIME\"", line)
		}
		if !ValidKeyID(f[0]) {
			return nil, fmt.Errorf("line %d: key ID %q is not 1 to %d characters of [A-Za-z0-9_-]", line, truncateID(f[0]), MaxKeyIDLen)
		}
		k, err := ParseKey(f[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		rk := RingKey{ID: f[0], Key: k}
		if len(f) == 4 {
			if rk.Until, err = time.Parse(time.RFC3339, f[3]); err != nil {
				return nil, fmt.Errorf("line %d: until: %w", line, err)
			}
		}
		keys = append(keys, rk)
	}
	if len(keys) == 0 {
		return nil, errors.New("no key in the file")
	}
	r, err := NewKeyring(keys...)
	if err != nil {
		return nil, err
	}
	r.Kind = kind
	return r, nil
}

// MarshalText returns the file form of the keyring (ParseKeyring reads it back).
func (r *Keyring) MarshalText() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("# clipgate keyring: ID KEY [until CUTOFF]; the key without a cutoff is current. Secret: mode 0600.\n")
	if r.Kind != "" {
		b.WriteString("kind " + r.Kind + "\n")
	}
	for _, k := range *r.keys.Load() {
		b.WriteString(k.ID + " " + base64.StdEncoding.EncodeToString(k.Key))
		if !k.Until.IsZero() {
			b.WriteString(" until " + k.Until.Format(time.RFC3339))
		}
		b.WriteByte('\n')
	}
	return b.Bytes(), nil
}

// WriteKeyring writes r to path (mode 0600) atomically: readers see the old file or the
// new one, never a partial one.
func WriteKeyring(path string, r *Keyring) error {
	data, _ := r.MarshalText()
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return fmt.Errorf("write keyring: %w", err)
	}
	return nil
}

// EMQXAttrKey returns the key the broker signs EMQX client attributes with: an HMAC of the
// current connect root, so that every broker sharing the connect keys agrees on it.
func EMQXAttrKey(connectRoots *Keyring) []byte {
	k := hmacSHA256(connectRoots.Current().Key, []byte("clipgate-emqx-attrs-key-v1"))
	return k[:]
}

// fieldLine is a line of a key file split into fields, with its number (from 1).
type fieldLine struct {
	n      int
	fields []string
}

// fieldLines splits a line-based file (key files, revocation lists) into lines of
// fields, numbered from 1: '#' starts a comment, blank lines are left out, and the '\r'
// of CRLF files goes with the white space.
func fieldLines(data []byte) []fieldLine {
	var out []fieldLine
	for n := 1; len(data) > 0; n++ {
		l := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			l, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if i := bytes.IndexByte(l, '#'); i >= 0 {
			l = l[:i]
		}
		if f := strings.Fields(string(l)); len(f) > 0 {
			out = append(out, fieldLine{n, f})
		}
	}
	return out
}
