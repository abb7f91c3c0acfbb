package identity

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"hash"
	"sync"
)

// sigEncoding is the encoding of MACs on the wire: base64url without padding, strict, so
// that each MAC has exactly one accepted spelling.
var sigEncoding = base64.RawURLEncoding.Strict()

// sigLen is the encoded length of a 32-byte MAC.
const sigLen = 43

// macState computes HMAC-SHA256 (RFC 2104) with reusable state. crypto/hmac cannot be
// re-keyed, so hmac.New would allocate its state on every MQTT CONNECT and every auth
// request; the pool keeps the SHA-256 state and the scratch buffers instead.
// The tests check the result against crypto/hmac.
type macState struct {
	h   hash.Hash
	pad [sha256.BlockSize]byte
	sum [sha256.Size]byte
	dec [sha256.Size + 3]byte // decoded signature (+3: base64 decoders may need room)
	in  [sigLen]byte          // signature text copied out of a string without allocating
	buf []byte                // message scratch
}

var macPool = sync.Pool{New: func() any {
	return &macState{h: sha256.New(), buf: make([]byte, 0, 256)}
}}

func getMAC() *macState { return macPool.Get().(*macState) }

func putMAC(m *macState) {
	if cap(m.buf) > 4096 { // do not keep a huge scratch buffer alive in the pool
		m.buf = make([]byte, 0, 256)
	}
	macPool.Put(m)
}

// mac returns HMAC-SHA256(key, msg) in m.sum; the result is valid until m's next use.
func (m *macState) mac(key, msg []byte) []byte {
	k := key
	if len(k) > sha256.BlockSize {
		m.h.Reset()
		m.h.Write(k)
		k = m.h.Sum(m.sum[:0])
	}
	for i := range m.pad {
		m.pad[i] = 0x36
	}
	for i, b := range k {
		m.pad[i] ^= b
	}
	m.h.Reset()
	m.h.Write(m.pad[:])
	m.h.Write(msg)
	inner := m.h.Sum(m.sum[:0])
	for i := range m.pad { // ipad -> opad
		m.pad[i] ^= 0x36 ^ 0x5c
	}
	m.h.Reset()
	m.h.Write(m.pad[:])
	m.h.Write(inner)
	return m.h.Sum(m.sum[:0])
}

// equalSig reports, in constant time, whether sig is the base64url encoding of mac.
// Signatures of the wrong length or with any invalid character are refused.
func (m *macState) equalSig(mac []byte, sig string) bool {
	if len(sig) != sigLen {
		return false
	}
	copy(m.in[:], sig)
	n, err := sigEncoding.Decode(m.dec[:], m.in[:])
	if err != nil || n != sha256.Size {
		return false
	}
	return subtle.ConstantTimeCompare(mac, m.dec[:n]) == 1
}

// Sign returns the signature of msg under deviceKey: base64url(HMAC-SHA256), no padding.
func Sign(deviceKey, msg []byte) string {
	m := getMAC()
	var out [sigLen]byte
	sigEncoding.Encode(out[:], m.mac(deviceKey, msg))
	putMAC(m)
	return string(out[:])
}

// Verify reports whether sig is the signature of msg under deviceKey. The comparison is
// constant-time; signatures of the wrong length or encoding, and empty keys, are refused.
func Verify(deviceKey, msg []byte, sig string) bool {
	if len(deviceKey) == 0 || len(sig) != sigLen {
		return false
	}
	m := getMAC()
	ok := m.equalSig(m.mac(deviceKey, msg), sig)
	putMAC(m)
	return ok
}
