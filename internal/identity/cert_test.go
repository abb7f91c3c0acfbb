package identity

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/clipgate/clipgate/internal/testpki"
)

func genKeys(t *testing.T) map[string]crypto.Signer {
	t.Helper()
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]crypto.Signer{"P-256": p256, "Ed25519": ed}
}

// TestCertificateSealRoundTrip: for both key types, a request signed with the certificate's
// key verifies, and a reply sealed to its public key opens with the private key only, for
// the same info only.
func TestCertificateSealRoundTrip(t *testing.T) {
	t.Parallel()
	ca := testpki.NewCA(t, "fleet CA")
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	now := time.Now()
	keys := genKeys(t)
	for name, key := range keys {
		t.Run(name, func(t *testing.T) {
			cert := ca.IssueClient(t, "cam-01", testpki.ClientOptions{Key: key})
			pub, err := VerifyDeviceCertificate(cert.Certificate[0], roots, "cam-01", now)
			if err != nil {
				t.Fatal(err)
			}
			msg := []byte("clipgate-auth-cert-v1\nrequest")
			sig, err := SignWithKey(key, msg)
			if err != nil {
				t.Fatal(err)
			}
			if !VerifyKeySignature(pub, msg, sig) {
				t.Fatal("signature does not verify")
			}
			tampered := append([]byte(nil), sig...)
			tampered[len(tampered)/2] ^= 1
			if VerifyKeySignature(pub, msg, tampered) || VerifyKeySignature(pub, append(msg, 'x'), sig) || VerifyKeySignature(pub, msg, nil) {
				t.Fatal("a tampered signature or message verifies")
			}
			info := []byte("clipgate-reply-hpke-v1\ncam-01\nreq-1")
			sealed, err := SealToPublicKey(pub, []byte("credentials"), info)
			if err != nil {
				t.Fatal(err)
			}
			pt, err := OpenWithPrivateKey(key, sealed, info)
			if err != nil || string(pt) != "credentials" {
				t.Fatalf("open: %q, %v", pt, err)
			}
			if _, err := OpenWithPrivateKey(key, sealed, []byte("clipgate-reply-hpke-v1\ncam-02\nreq-1")); !errors.Is(err, ErrOpenFailed) {
				t.Fatalf("open with another info: %v", err)
			}
			other := genKeys(t)[name]
			if _, err := OpenWithPrivateKey(other, sealed, info); !errors.Is(err, ErrOpenFailed) {
				t.Fatalf("open with another key: %v", err)
			}
			for i := range sealed {
				bad := append([]byte(nil), sealed...)
				bad[i] ^= 0x40
				if _, err := OpenWithPrivateKey(key, bad, info); err == nil {
					t.Fatalf("byte %d flipped: opened", i)
				}
			}
			if _, err := OpenWithPrivateKey(key, sealed[:10], info); err == nil {
				t.Fatal("short input opened")
			}
		})
	}
}

// TestEd25519X25519Conversion: the public-key map and the private-key map agree: the X25519
// public key of the converted private key is the converted public key.
func TestEd25519X25519Conversion(t *testing.T) {
	t.Parallel()
	for range 20 {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		xpub, err := ed25519ToX25519Public(pub)
		if err != nil {
			t.Fatal(err)
		}
		xpriv, err := ed25519ToX25519Private(priv)
		if err != nil {
			t.Fatal(err)
		}
		if !xpriv.PublicKey().Equal(xpub) {
			t.Fatal("converted public and private keys do not match")
		}
	}
	if _, err := ed25519ToX25519Public(ed25519.PublicKey(make([]byte, 31))); err == nil {
		t.Fatal("short Ed25519 public key converted")
	}
	var notOnCurve [32]byte
	notOnCurve[0] = 2 // y = 2 is not on the curve
	if _, err := ed25519ToX25519Public(notOnCurve[:]); err == nil {
		t.Fatal("invalid Ed25519 point converted")
	}
}

// TestVerifyDeviceCertificateRefuses: wrong CA, wrong CN, expired or not yet valid,
// server-only usage, unsupported key types, garbage and no CA are refused.
func TestVerifyDeviceCertificateRefuses(t *testing.T) {
	t.Parallel()
	ca, foreign := testpki.NewCA(t, "fleet CA"), testpki.NewCA(t, "foreign CA")
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	now := time.Now()
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	good := ca.IssueClient(t, "cam-01", testpki.ClientOptions{}).Certificate[0]
	for name, c := range map[string]struct {
		der   []byte
		roots *x509.CertPool
		want  string
	}{
		"foreign CA":    {foreign.IssueClient(t, "cam-01", testpki.ClientOptions{}).Certificate[0], roots, "unknown authority"},
		"wrong CN":      {ca.IssueClient(t, "cam-02", testpki.ClientOptions{}).Certificate[0], roots, `CN "cam-02"`},
		"expired":       {ca.IssueClient(t, "cam-01", testpki.ClientOptions{NotBefore: now.Add(-2 * time.Hour), NotAfter: now.Add(-time.Minute)}).Certificate[0], roots, "expired"},
		"not yet valid": {ca.IssueClient(t, "cam-01", testpki.ClientOptions{NotBefore: now.Add(time.Hour), NotAfter: now.Add(2 * time.Hour)}).Certificate[0], roots, "not yet valid"},
		"server usage":  {ca.IssueClient(t, "cam-01", testpki.ClientOptions{ServerAuth: true}).Certificate[0], roots, "usage"},
		"P-384 key":     {ca.IssueClient(t, "cam-01", testpki.ClientOptions{Key: p384}).Certificate[0], roots, "P-384"},
		"RSA key":       {ca.IssueClient(t, "cam-01", testpki.ClientOptions{Key: rsaKey}).Certificate[0], roots, "rsa"},
		"CA itself":     {ca.Cert.Raw, roots, "CN"},
		"garbage":       {[]byte("not a certificate"), roots, "not an X.509"},
		"empty":         {nil, roots, "not an X.509"},
		"truncated":     {good[:len(good)/2], roots, "not an X.509"},
		"no fleet CA":   {good, nil, "no fleet CA"},
	} {
		_, err := VerifyDeviceCertificate(c.der, c.roots, "cam-01", now)
		if !errors.Is(err, ErrCertificate) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrCertificate mentioning %q", name, err, c.want)
		}
	}
	if _, err := VerifyDeviceCertificate(good, roots, "cam-01", now); err != nil {
		t.Fatalf("control: %v", err)
	}
	// Sealing and signing refuse unsupported keys.
	if _, err := SealToPublicKey(&rsaKey.PublicKey, []byte("x"), nil); err == nil {
		t.Error("sealed to an RSA key")
	}
	if _, err := SignWithKey(rsaKey, []byte("x")); err == nil {
		t.Error("signed with an RSA key")
	}
	if _, err := SignWithKey(p384, []byte("x")); err == nil {
		t.Error("signed with a P-384 key")
	}
	if VerifyKeySignature(&rsaKey.PublicKey, []byte("x"), []byte("y")) {
		t.Error("verified with an RSA key")
	}
	if _, err := OpenWithPrivateKey(rsaKey, []byte("x"), nil); err == nil {
		t.Error("opened with an RSA key")
	}
}

// BenchmarkSealReply compares what a token worker spends sealing one reply's credentials
// (about 600 bytes) and what a device spends opening them: AES-256-GCM under the request
// key (the device-key path) against HPKE to a P-256 and to an Ed25519 certificate.
func BenchmarkSealReply(b *testing.B) {
	plain := bytes.Repeat([]byte("c"), 600)
	info := []byte("clipgate-reply-hpke-v1\ncam-01\nreq-1")
	key := bytes.Repeat([]byte{1}, KeySize)
	nonce := bytes.Repeat([]byte{2}, 16)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	b.Run("seal/aes-gcm", func(b *testing.B) {
		for b.Loop() {
			if _, err := Seal(key, nonce, plain, info); err != nil {
				b.Fatal(err)
			}
		}
	})
	for name, k := range map[string]crypto.Signer{"hpke-p256": p256, "hpke-x25519": ed} {
		b.Run("seal/"+name, func(b *testing.B) {
			for b.Loop() {
				if _, err := SealToPublicKey(k.Public(), plain, info); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	sealed, _ := Seal(key, nonce, plain, info)
	b.Run("open/aes-gcm", func(b *testing.B) {
		for b.Loop() {
			if _, err := Open(key, nonce, sealed, info); err != nil {
				b.Fatal(err)
			}
		}
	})
	for name, k := range map[string]crypto.Signer{"hpke-p256": p256, "hpke-x25519": ed} {
		s, _ := SealToPublicKey(k.Public(), plain, info)
		b.Run("open/"+name, func(b *testing.B) {
			for b.Loop() {
				if _, err := OpenWithPrivateKey(k, s, info); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
