package identity

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"errors"
	"fmt"
)

const sealInfo = "clipgate-seal-v1"

// SealOverhead is how much longer Seal's output is than its plaintext: the 12-byte GCM
// nonce and the 16-byte tag.
const SealOverhead = 12 + 16

// ErrOpenFailed is returned by Open for input that was not sealed with this key, request
// nonce and context, was altered, or is too short. The causes are not told apart.
var ErrOpenFailed = errors.New("sealed data cannot be opened (wrong key or context, or tampered)")

// Seal encrypts plaintext to the device: AES-256-GCM under the key
// HKDF-SHA256(deviceKey, salt = nonce, info "clipgate-seal-v1"), with a random 12-byte GCM
// nonce prepended to the ciphertext. nonce is the request's nonce (a fresh key per
// request); aad binds the context, for example device ID and request ID, and must be
// passed to Open unchanged.
func Seal(deviceKey, nonce, plaintext, aad []byte) ([]byte, error) {
	aead, err := sealAEAD(deviceKey, nonce)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return aead.Seal(make([]byte, 0, len(plaintext)+SealOverhead), nil, plaintext, aad), nil
}

// Open decrypts what Seal produced with the same deviceKey, nonce and aad. Any mismatch,
// alteration or short input gives ErrOpenFailed; a key of the wrong size or an empty
// nonce gives an error wrapping ErrKeySize or describing the nonce.
func Open(deviceKey, nonce, sealed, aad []byte) ([]byte, error) {
	aead, err := sealAEAD(deviceKey, nonce)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	if len(sealed) < SealOverhead {
		return nil, ErrOpenFailed
	}
	pt, err := aead.Open(nil, nil, sealed, aad)
	if err != nil {
		return nil, ErrOpenFailed
	}
	return pt, nil
}

func sealAEAD(deviceKey, nonce []byte) (cipher.AEAD, error) {
	if len(deviceKey) != KeySize {
		return nil, fmt.Errorf("device %w, got %d", ErrKeySize, len(deviceKey))
	}
	if len(nonce) == 0 {
		return nil, errors.New("empty request nonce")
	}
	k := sealKey(deviceKey, nonce)
	block, err := aes.NewCipher(k[:])
	clear(k[:])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCMWithRandomNonce(block)
}

// sealKey is HKDF-SHA256 (RFC 5869) of deviceKey with salt nonce and info sealInfo, 32 bytes:
// PRK = HMAC(nonce, deviceKey), key = HMAC(PRK, info || 0x01). One output block needs no
// more, and HMAC over fixed-size stack buffers allocates nothing, where hmac.New and
// x/crypto/hkdf allocate 16 times per seal. TestSealKeyMatchesHKDF checks it against
// x/crypto/hkdf.
func sealKey(deviceKey, nonce []byte) [sha256.Size]byte {
	prk := hmacSHA256(nonce, deviceKey)
	var msg [len(sealInfo) + 1]byte
	copy(msg[:], sealInfo)
	msg[len(sealInfo)] = 1
	k := hmacSHA256(prk[:], msg[:])
	clear(prk[:])
	return k
}

// hmacSHA256 is HMAC-SHA256 (RFC 2104) of a message of at most hmacMaxMsg bytes.
func hmacSHA256(key, msg []byte) [sha256.Size]byte {
	const block = 64 // SHA-256 block size
	var hashed [sha256.Size]byte
	if len(key) > block {
		hashed = sha256.Sum256(key)
		key = hashed[:]
	}
	if len(msg) > hmacMaxMsg {
		panic("identity: hmacSHA256 message too long") // only fixed-size internal inputs
	}
	var buf [block + hmacMaxMsg]byte
	for i := range block {
		buf[i] = 0x36
	}
	for i, c := range key {
		buf[i] ^= c
	}
	copy(buf[block:], msg)
	inner := sha256.Sum256(buf[:block+len(msg)])
	for i := range block {
		buf[i] ^= 0x36 ^ 0x5c
	}
	copy(buf[block:], inner[:])
	out := sha256.Sum256(buf[:block+sha256.Size])
	clear(buf[:])
	clear(hashed[:])
	return out
}

// hmacMaxMsg is the longest message hmacSHA256 takes: a device key (KeySize) or the
// expand step's info and counter.
const hmacMaxMsg = 64
