package identity

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"filippo.io/edwards25519"
)

// Devices with a client certificate and no shared secret: the device signs its auth
// request with the certificate's key, the token worker checks the certificate against the
// fleet CA and its CN against the device ID, and seals the reply to the certificate's
// public key with HPKE (RFC 9180, Go's crypto/hpke, base mode):
//
//	ECDSA P-256: DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-256-GCM, to the same key pair;
//	Ed25519:     DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM, to the key pair's
//	             birationally equivalent X25519 key (RFC 7748 section 4.1; the private
//	             scalar is the Ed25519 signing scalar, as libsodium's
//	             crypto_sign_ed25519_sk_to_curve25519), so the device needs no second key.
//
// Using one key for signing and for key agreement is sound for these constructions (the
// signature and the DH share no output), and it is what a camera with a single certificate
// allows.

// ErrCertificate is wrapped by every refusal of VerifyDeviceCertificate.
var ErrCertificate = errors.New("device certificate refused")

// VerifyDeviceCertificate checks a device certificate (DER) at now: it chains to roots with
// client-authentication usage, is valid at now, its subject CN is deviceID, and its key is
// ECDSA P-256 or Ed25519. It returns the certificate's public key.
func VerifyDeviceCertificate(der []byte, roots *x509.CertPool, deviceID string, now time.Time) (crypto.PublicKey, error) {
	if roots == nil {
		return nil, fmt.Errorf("%w: this token worker trusts no fleet CA", ErrCertificate)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: not an X.509 certificate: %v", ErrCertificate, err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCertificate, err)
	}
	if cert.Subject.CommonName != deviceID {
		return nil, fmt.Errorf("%w: its CN %q is not the device ID %q", ErrCertificate, truncateID(cert.Subject.CommonName), deviceID)
	}
	switch pub := cert.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() {
			return nil, fmt.Errorf("%w: ECDSA key on %s; want P-256", ErrCertificate, pub.Curve.Params().Name)
		}
		return pub, nil
	case ed25519.PublicKey:
		return pub, nil
	}
	return nil, fmt.Errorf("%w: %T key; want ECDSA P-256 or Ed25519", ErrCertificate, cert.PublicKey)
}

// SignWithKey signs msg with a device certificate's private key: ECDSA P-256 over
// SHA-256(msg) (ASN.1 DER signature), or Ed25519 over msg.
func SignWithKey(key crypto.Signer, msg []byte) ([]byte, error) {
	switch pub := key.Public().(type) {
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() {
			return nil, errors.New("sign: ECDSA key is not P-256")
		}
		h := sha256.Sum256(msg)
		return key.Sign(rand.Reader, h[:], crypto.SHA256)
	case ed25519.PublicKey:
		return key.Sign(rand.Reader, msg, crypto.Hash(0))
	}
	return nil, fmt.Errorf("sign: %T key; want ECDSA P-256 or Ed25519", key.Public())
}

// VerifyKeySignature reports whether sig is SignWithKey's signature of msg under pub.
func VerifyKeySignature(pub crypto.PublicKey, msg, sig []byte) bool {
	switch pub := pub.(type) {
	case *ecdsa.PublicKey:
		h := sha256.Sum256(msg)
		return ecdsa.VerifyASN1(pub, h[:], sig)
	case ed25519.PublicKey:
		return len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, msg, sig)
	}
	return false
}

// hpkeSuite is the KDF and AEAD of every sealed reply; the KEM follows the key type.
var (
	hpkeKDF  = hpke.HKDFSHA256()
	hpkeAEAD = hpke.AES256GCM()
)

// SealToPublicKey encrypts plaintext to a device certificate's public key with HPKE (see
// above); info binds the context (device and request) and must be given to
// OpenWithPrivateKey unchanged. The output is the encapsulated key and the ciphertext.
func SealToPublicKey(pub crypto.PublicKey, plaintext, info []byte) ([]byte, error) {
	var ek *ecdh.PublicKey
	var err error
	switch pub := pub.(type) {
	case *ecdsa.PublicKey:
		ek, err = pub.ECDH()
	case ed25519.PublicKey:
		ek, err = ed25519ToX25519Public(pub)
	default:
		err = fmt.Errorf("%T key; want ECDSA P-256 or Ed25519", pub)
	}
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	pk, err := hpke.NewDHKEMPublicKey(ek)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return hpke.Seal(pk, hpkeKDF, hpkeAEAD, info, plaintext)
}

// OpenWithPrivateKey decrypts what SealToPublicKey produced, with the certificate's private
// key (*ecdsa.PrivateKey on P-256 or ed25519.PrivateKey). Any mismatch or alteration gives
// ErrOpenFailed.
func OpenWithPrivateKey(priv crypto.PrivateKey, sealed, info []byte) ([]byte, error) {
	var xk *ecdh.PrivateKey
	var err error
	switch priv := priv.(type) {
	case *ecdsa.PrivateKey:
		xk, err = priv.ECDH()
	case ed25519.PrivateKey:
		xk, err = ed25519ToX25519Private(priv)
	default:
		err = fmt.Errorf("%T key; want ECDSA P-256 or Ed25519", priv)
	}
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	k, err := hpke.NewDHKEMPrivateKey(xk)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	pt, err := hpke.Open(k, hpkeKDF, hpkeAEAD, info, sealed)
	if err != nil {
		return nil, ErrOpenFailed
	}
	return pt, nil
}

// ed25519ToX25519Public maps an Ed25519 public key (a point in Edwards form) to its X25519
// (Montgomery u-coordinate) form: u = (1+y)/(1-y) (RFC 7748 section 4.1).
func ed25519ToX25519Public(pub ed25519.PublicKey) (*ecdh.PublicKey, error) {
	p, err := new(edwards25519.Point).SetBytes(pub)
	if err != nil {
		return nil, fmt.Errorf("Ed25519 public key: %w", err)
	}
	return ecdh.X25519().NewPublicKey(p.BytesMontgomery())
}

// ed25519ToX25519Private maps an Ed25519 private key to the X25519 private key of the same
// scalar: the first half of SHA-512(seed) (RFC 8032 section 5.1.5), which X25519 clamps
// as Ed25519 does.
func ed25519ToX25519Private(priv ed25519.PrivateKey) (*ecdh.PrivateKey, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, errors.New("Ed25519 private key: wrong size")
	}
	h := sha512.Sum512(priv.Seed())
	defer clear(h[:])
	return ecdh.X25519().NewPrivateKey(h[:32])
}
