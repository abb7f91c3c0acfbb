package identity

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/hkdf"
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
	var k [32]byte
	if _, err := io.ReadFull(hkdf.New(sha256.New, deviceKey, nonce, []byte(sealInfo)), k[:]); err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(k[:])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCMWithRandomNonce(block)
}
