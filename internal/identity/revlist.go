package identity

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
)

// A signed revocation list is what the console publishes, retained, on the revocation
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
const revListHeader = "clipgate-revocations-v1\n"

// MaxSignedRevocations bounds a signed list's size: about 100,000 devices (a retained
// MQTT message this large is still cheap, and the broker's packet limit must allow it).
const MaxSignedRevocations = 8 << 20

// RevocationListSkew is how far in the future a list's issue time may be: a list from
// further ahead is refused, since it would hold off every later list until then.
const RevocationListSkew = 5 * time.Minute

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
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("revocation signing key: %w", ErrKeySize)
	}
	var b bytes.Buffer
	b.WriteString(revListHeader)
	b.WriteString("issued ")
	b.WriteString(issued.UTC().Format(time.RFC3339Nano))
	b.WriteByte('\n')
	FormatRevocations(&b, list)
	sig := ed25519.Sign(ed25519.NewKeyFromSeed(seed), b.Bytes())
	b.WriteString("sig ")
	b.WriteString(b64url(sig))
	b.WriteByte('\n')
	if b.Len() > MaxSignedRevocations {
		return nil, fmt.Errorf("revocation list of %d devices is %d bytes, more than %d", len(list), b.Len(), MaxSignedRevocations)
	}
	return b.Bytes(), nil
}

// VerifyRevocationList checks a signed list against the public key and returns its issue
// time and entries. Every refusal wraps ErrRevocationList and says why.
func VerifyRevocationList(pub ed25519.PublicKey, data []byte) (time.Time, []Revocation, error) {
	refuse := func(format string, args ...any) (time.Time, []Revocation, error) {
		return time.Time{}, nil, fmt.Errorf("%w: %s", ErrRevocationList, fmt.Sprintf(format, args...))
	}
	if len(pub) != ed25519.PublicKeySize {
		return refuse("the verification key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	if len(data) > MaxSignedRevocations {
		return refuse("%d bytes, more than %d", len(data), MaxSignedRevocations)
	}
	if !bytes.HasPrefix(data, []byte(revListHeader)) {
		return refuse("not a clipgate revocation list (no %q header)", strings.TrimSpace(revListHeader))
	}
	// The signature line is the last line.
	body := bytes.TrimSuffix(data, []byte("\n"))
	i := bytes.LastIndexByte(body, '\n')
	if i < 0 {
		return refuse("no signature line")
	}
	signed, sigLine := data[:i+1], string(body[i+1:])
	enc, ok := strings.CutPrefix(sigLine, "sig ")
	if !ok {
		return refuse("the last line is not the signature")
	}
	sig, err := base64.RawURLEncoding.Strict().DecodeString(enc)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return refuse("the signature is not %d bytes of unpadded base64url", ed25519.SignatureSize)
	}
	if !ed25519.Verify(pub, signed, sig) {
		return refuse("bad signature (not signed by the console's key, or altered)")
	}
	rest := signed[len(revListHeader):]
	line, rest, _ := bytes.Cut(rest, []byte("\n"))
	ts, ok := strings.CutPrefix(string(line), "issued ")
	if !ok {
		return refuse("no issue time on line 2")
	}
	issued, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return refuse("issue time %q: %v", truncateText(ts), err)
	}
	list, err := ParseRevocations("(signed list, from line 3)", rest)
	if err != nil {
		return refuse("%v", err)
	}
	return issued.UTC(), list, nil
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
	if issued.After(now.Add(RevocationListSkew)) {
		return fmt.Errorf("%w: issued at %s, more than %v after this host's time %s",
			ErrRevocationList, issued.Format(time.RFC3339), RevocationListSkew, now.UTC().Format(time.RFC3339))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur := r.Issued(); !issued.After(cur) {
		if issued.Equal(cur) {
			return nil // the same list again (a reconnect delivers the retained list anew)
		}
		return fmt.Errorf("%w: issued at %s, older than the list in force (%s)",
			ErrRevocationList, issued.Format(time.RFC3339Nano), cur.Format(time.RFC3339Nano))
	}
	r.store(list, issued)
	return nil
}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
