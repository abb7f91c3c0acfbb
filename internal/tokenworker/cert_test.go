package tokenworker

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/internal/testpki"
)

// certRequest returns a request of device carrying cert and signed with its key.
func certRequest(t testing.TB, cert tls.Certificate, device string, ts time.Time) *request {
	t.Helper()
	r := newRequest(t, nil, device, "w", ts)
	r.KID, r.key = "", nil
	r.Cert = base64.RawURLEncoding.EncodeToString(cert.Certificate[0])
	signCert(t, r, cert.PrivateKey.(crypto.Signer))
	return r
}

func signCert(t testing.TB, r *request, key crypto.Signer) {
	t.Helper()
	sig, err := identity.SignWithKey(key, r.SigningString())
	if err != nil {
		t.Fatal(err)
	}
	r.Sig = base64.RawURLEncoding.EncodeToString(sig)
}

// TestHandleCertificate: a device with only a certificate (P-256 or Ed25519) from the
// fleet CA gets credentials sealed to its certificate's key, which only its private key
// opens.
func TestHandleCertificate(t *testing.T) {
	t.Parallel()
	c := startCloud(t, nil)
	ca := testpki.NewCA(t, "fleet CA")
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	cfg := c.config(nil)
	cfg.FleetCA = pool
	w := newWorker(t, cfg)
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for name, key := range map[string]crypto.Signer{"P-256": p256, "Ed25519": ed} {
		device := "cam-cert-" + strings.ToLower(strings.ReplaceAll(name, "-", ""))
		cert := ca.IssueClient(t, device, testpki.ClientOptions{Key: key})
		r := certRequest(t, cert, device, time.Now())
		rep := decodeReply(t, r.ID, handle(t, w, r))
		if !rep.OK || rep.Sealed == "" {
			t.Fatalf("%s: reply %+v", name, rep)
		}
		sealed, _ := base64.RawURLEncoding.DecodeString(rep.Sealed)
		plain, err := identity.OpenWithPrivateKey(key, sealed, ReplyInfo(device, r.ID))
		if err != nil {
			t.Fatalf("%s: the certificate's key does not open the reply: %v", name, err)
		}
		cr, err := protocol.DecodeCredentials(plain)
		if err != nil || !strings.HasPrefix(cr.AccessKeyID, "STS.") {
			t.Fatalf("%s: credentials %+v, %v", name, cr, err)
		}
		if _, err := identity.OpenWithPrivateKey(key, sealed, ReplyInfo(device, "other-request")); err == nil {
			t.Fatalf("%s: the reply opens for another request", name)
		}
	}
}

// TestHandleCertificateRefuses: certificates of another CA, for another device, expired or
// not yet valid, for servers only, with unsupported keys, a request signed by another key
// or tampered after signing, and a worker without a fleet CA are all unauthenticated; a
// worker without fleet keys refuses key-ID requests.
func TestHandleCertificateRefuses(t *testing.T) {
	t.Parallel()
	ca, foreign := testpki.NewCA(t, "fleet CA"), testpki.NewCA(t, "foreign CA")
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	cfg := offlineConfig(nil)
	cfg.FleetCA = pool
	w := newWorker(t, cfg)
	const dev = "cam-badcert"
	now := time.Now()
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	good := ca.IssueClient(t, dev, testpki.ClientOptions{})
	other := ca.IssueClient(t, dev, testpki.ClientOptions{})
	cases := map[string]*request{
		"foreign CA":    certRequest(t, foreign.IssueClient(t, dev, testpki.ClientOptions{}), dev, now),
		"wrong CN":      certRequest(t, ca.IssueClient(t, "cam-other", testpki.ClientOptions{}), dev, now),
		"expired":       certRequest(t, ca.IssueClient(t, dev, testpki.ClientOptions{NotBefore: now.Add(-2 * time.Hour), NotAfter: now.Add(-time.Second)}), dev, now),
		"not yet valid": certRequest(t, ca.IssueClient(t, dev, testpki.ClientOptions{NotBefore: now.Add(time.Hour), NotAfter: now.Add(2 * time.Hour)}), dev, now),
		"server usage":  certRequest(t, ca.IssueClient(t, dev, testpki.ClientOptions{ServerAuth: true}), dev, now),
		"CA as device":  certRequest(t, tls.Certificate{Certificate: [][]byte{ca.Cert.Raw}, PrivateKey: ca.Key}, dev, now),
		"garbage cert": func() *request {
			r := certRequest(t, good, dev, now)
			r.Cert = base64.RawURLEncoding.EncodeToString([]byte("not a certificate at all"))
			signCert(t, r, good.PrivateKey.(crypto.Signer))
			return r
		}(),
		"signed by another key": func() *request {
			r := certRequest(t, good, dev, now)
			signCert(t, r, other.PrivateKey.(crypto.Signer))
			return r
		}(),
		"tampered after signing": func() *request {
			r := certRequest(t, good, dev, now)
			r.Mode = "rw"
			return r
		}(),
		"tampered signature": func() *request {
			r := certRequest(t, good, dev, now)
			sig, _ := base64.RawURLEncoding.DecodeString(r.Sig)
			sig[len(sig)/2] ^= 1
			r.Sig = base64.RawURLEncoding.EncodeToString(sig)
			return r
		}(),
		"HMAC signature with a cert": func() *request {
			r := certRequest(t, good, dev, now)
			r.Sig = identity.Sign(make([]byte, 32), r.SigningString())
			return r
		}(),
	}
	// A P-384 device signs as a P-256 one would (SignWithKey refuses the curve).
	p384req := certRequest(t, good, dev, now)
	p384req.Cert = base64.RawURLEncoding.EncodeToString(ca.IssueClient(t, dev, testpki.ClientOptions{Key: p384}).Certificate[0])
	h := sha256.Sum256(p384req.SigningString())
	sig, err := ecdsa.SignASN1(rand.Reader, p384, h[:])
	if err != nil {
		t.Fatal(err)
	}
	p384req.Sig = base64.RawURLEncoding.EncodeToString(sig)
	// Its signature is longer than P-256's: refused as malformed.
	wantError(t, p384req.ID, handle(t, w, p384req), protocol.CodeInvalid)
	// With a signature of P-256 length the certificate itself is refused.
	p384req2 := certRequest(t, good, dev, now)
	p384req2.Cert = p384req.Cert
	cases["P-384 key"] = p384req2
	for name, r := range cases {
		b := handle(t, w, r)
		rep := decodeReply(t, r.ID, b)
		if rep.OK || rep.Error == nil || rep.Error.Code != protocol.CodeUnauthenticated {
			t.Errorf("%s: reply %s, want unauthenticated", name, b)
		}
	}
	// A worker without fleet keys refuses key-ID requests; one without a CA, certificates.
	fleet := newFleetKey(t)
	hmac := newRequest(t, fleet, dev, "w", now)
	rep := wantError(t, hmac.ID, handle(t, w, hmac), protocol.CodeUnauthenticated)
	if !strings.Contains(rep.Error.Message, "no fleet keys") {
		t.Errorf("key-ID request at a certificate-only worker: %q", rep.Error.Message)
	}
	noCA := newWorker(t, offlineConfig(fleet))
	r := certRequest(t, good, dev, now)
	rep = wantError(t, r.ID, handle(t, noCA, r), protocol.CodeUnauthenticated)
	if !strings.Contains(rep.Error.Message, "no fleet CA") {
		t.Errorf("certificate request at a worker without a CA: %q", rep.Error.Message)
	}
	if _, err := New(offlineConfig(nil)); err == nil {
		t.Error("a worker with neither fleet keys nor a CA was accepted")
	}
}
