package identity

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"strings"
	"time"
)

// A signed document is what the console publishes, retained, for components that share
// no filesystem with it: the revocation list (SignRevocationList) and the quota snapshot
// (package quota). It is text:
//
//	HEADER                    (names the kind and version, e.g. clipgate-revocations-v1)
//	issued 2026-12-02T03:04:05.123456789Z
//	BODY LINES                (the kind's own format)
//	sig BASE64URL(Ed25519 signature of every byte before this line)
//
// The header is signed with the rest, so a document of one kind never passes for
// another under the same key. Only the console holds the signing key (an Ed25519 seed,
// NewRevocationKey); followers hold its public key.

// SignDocument returns the signed document of kind header (one line, without its
// newline), issued at issued, with body (whole lines), under the signing key's seed. It
// refuses a result longer than limit bytes.
func SignDocument(seed []byte, header string, issued time.Time, body []byte, limit int) ([]byte, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("signing key: %w", ErrKeySize)
	}
	var b bytes.Buffer
	b.WriteString(header)
	b.WriteString("\nissued ")
	b.WriteString(issued.UTC().Format(time.RFC3339Nano))
	b.WriteByte('\n')
	b.Write(body)
	sig := ed25519.Sign(ed25519.NewKeyFromSeed(seed), b.Bytes())
	b.WriteString("sig ")
	b.WriteString(b64url(sig))
	b.WriteByte('\n')
	if b.Len() > limit {
		return nil, fmt.Errorf("%s document is %d bytes, more than %d", header, b.Len(), limit)
	}
	return b.Bytes(), nil
}

// VerifyDocument checks a signed document of kind header (at most limit bytes) against
// the public key and returns its issue time and body. A refusal says why; the caller
// wraps it in its kind's error (ErrRevocationList, for example).
func VerifyDocument(pub ed25519.PublicKey, header string, data []byte, limit int) (time.Time, []byte, error) {
	refuse := func(format string, args ...any) (time.Time, []byte, error) {
		return time.Time{}, nil, fmt.Errorf(format, args...)
	}
	if len(pub) != ed25519.PublicKeySize {
		return refuse("the verification key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	if len(data) > limit {
		return refuse("%d bytes, more than %d", len(data), limit)
	}
	if !bytes.HasPrefix(data, []byte(header+"\n")) {
		return refuse("not a %s document (no %q header)", header, header)
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
	rest := signed[len(header)+1:]
	line, rest, _ := bytes.Cut(rest, []byte("\n"))
	ts, ok := strings.CutPrefix(string(line), "issued ")
	if !ok {
		return refuse("no issue time on line 2")
	}
	issued, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return refuse("issue time %q: %v", truncateText(ts), err)
	}
	return issued.UTC(), rest, nil
}

// SignedDocumentSkew is how far in the future a signed document's issue time may be: a
// document from further ahead is refused, since it would hold off every later one until
// then.
const SignedDocumentSkew = 5 * time.Minute

// CheckNewer decides whether a verified document of kind (a noun, as "list") issued at
// issued may replace the one in force, issued at current (zero: none), at this host's
// time now: it must be newer (so a replayed older one cannot undo a change) and at most
// SignedDocumentSkew ahead of now. same reports the document in force again (a
// reconnection delivers the retained document anew), which needs no apply. A refusal
// says why; the caller wraps it.
func CheckNewer(kind string, issued, current, now time.Time) (same bool, err error) {
	if issued.After(now.Add(SignedDocumentSkew)) {
		return false, fmt.Errorf("issued at %s, more than %v after this host's time %s",
			issued.Format(time.RFC3339), SignedDocumentSkew, now.UTC().Format(time.RFC3339))
	}
	if !issued.After(current) {
		if issued.Equal(current) {
			return true, nil
		}
		return false, fmt.Errorf("issued at %s, older than the %s in force (%s)",
			issued.Format(time.RFC3339Nano), kind, current.Format(time.RFC3339Nano))
	}
	return false, nil
}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
