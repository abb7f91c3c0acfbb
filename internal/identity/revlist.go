package identity

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"time"
)

// A signed revocation list (a signed document, SignDocument) is what the console publishes, retained, on the revocation
// topic (topics.Scheme.Revocations), so that components that share no filesystem with it
// follow its revocations. It is text:
//
//	clipgate-revocations-v1
//	issued 2026-12-02T03:04:05.123456789Z
//	cam-01 2026-12-02T03:00:00Z
//	cam-02 2026-12-01T22:10:00Z
//	sig BASE64URL(Ed25519 signature of every byte before this line)
//
// The device lines are those of the file format (ParseRevocations). Only the console
// holds the signing key (an Ed25519 seed); the broker, the token workers and consumers
// hold its public key. A list is applied only if its signature verifies, it parses, and
// it was issued after the list in force (so a replayed older list cannot undo a
// revocation) and not too far in the future.
const revListKind = "clipgate-revocations-v1"

// revListHeader is the list's first line.
const revListHeader = revListKind + "\n"

// MaxSignedRevocations bounds a signed list's size: about 100,000 devices (a retained
// MQTT message this large is still cheap, and the broker's packet limit must allow it).
const MaxSignedRevocations = 8 << 20

// RevocationListSkew is how far in the future a list's issue time may be: a list from
// further ahead is refused, since it would hold off every later list until then.
const RevocationListSkew = SignedDocumentSkew

// ErrRevocationList is wrapped by every refusal of a signed list.
var ErrRevocationList = errors.New("revocation list refused")

// NewRevocationKey returns a new Ed25519 signing key for revocation lists as its 32-byte
// seed (write it with WriteKey; its public key is RevocationPublicKey(seed)).
func NewRevocationKey() ([]byte, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return priv.Seed(), nil
}

// RevocationPublicKey returns the public key of a signing key's seed.
func RevocationPublicKey(seed []byte) (ed25519.PublicKey, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("revocation signing key: %w", ErrKeySize)
	}
	return ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey), nil
}

// LoadRevocationPublicKey reads a revocation list verification key: 32 bytes in hex or
// base64 (ParseKey's formats). The file need not be private.
func LoadRevocationPublicKey(path string) (ed25519.PublicKey, error) {
	data, err := readSmallFile(path, maxKeyFile)
	if err != nil {
		return nil, fmt.Errorf("revocation verification key: %w", err)
	}
	k, err := ParseKey(string(bytes.TrimSpace(data)))
	if err != nil {
		return nil, fmt.Errorf("revocation verification key %s: %w", path, err)
	}
	return ed25519.PublicKey(k), nil
}

// SignRevocationList returns the signed list of list, issued at issued, under the signing
// key's seed.
func SignRevocationList(seed []byte, issued time.Time, list []Revocation) ([]byte, error) {
	var b bytes.Buffer
	FormatRevocations(&b, list)
	data, err := SignDocument(seed, revListKind, issued, b.Bytes(), MaxSignedRevocations)
	if err != nil {
		return nil, fmt.Errorf("revocation list of %d devices: %w", len(list), err)
	}
	return data, nil
}

// VerifyRevocationList checks a signed list against the public key and returns its issue
// time and entries. Every refusal wraps ErrRevocationList and says why.
func VerifyRevocationList(pub ed25519.PublicKey, data []byte) (time.Time, []Revocation, error) {
	issued, body, err := VerifyDocument(pub, revListKind, data, MaxSignedRevocations)
	if err != nil {
		return time.Time{}, nil, fmt.Errorf("%w: %v", ErrRevocationList, err)
	}
	list, err := ParseRevocations("(signed list, from line 3)", body)
	if err != nil {
		return time.Time{}, nil, fmt.Errorf("%w: %v", ErrRevocationList, err)
	}
	return issued, list, nil
}

// ApplySigned verifies a signed list and puts it in force: its signature must verify,
// it must have been issued after the list in force (if that one was signed) and at most
// RevocationListSkew after now. A refused list leaves the list in force; the error says
// why and wraps ErrRevocationList.
func (r *Revocations) ApplySigned(pub ed25519.PublicKey, data []byte, now time.Time) error {
	issued, list, err := VerifyRevocationList(pub, data)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if same, err := CheckNewer("list", issued, r.Issued(), now); err != nil {
		return fmt.Errorf("%w: %v", ErrRevocationList, err)
	} else if same {
		return nil
	}
	r.store(list, issued)
	return nil
}
