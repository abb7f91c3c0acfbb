package identity

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"
)

func testRevocationKey(t *testing.T) ([]byte, ed25519.PublicKey) {
	t.Helper()
	seed, err := NewRevocationKey()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := RevocationPublicKey(seed)
	if err != nil {
		t.Fatal(err)
	}
	return seed, pub
}

func signList(t *testing.T, seed []byte, issued time.Time, list ...Revocation) []byte {
	t.Helper()
	data, err := SignRevocationList(seed, issued, list)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestSignedRevocations (issue 12 point 3): a list signed by the console's key comes into
// force with its revocation times; newer lists replace it; a restore is a list without
// the device.
func TestSignedRevocations(t *testing.T) {
	t.Parallel()
	seed, pub := testRevocationKey(t)
	now := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	at := now.Add(-time.Minute)
	r := NewRevocations()
	if err := r.ApplySigned(pub, signList(t, seed, now, Revocation{"cam-01", at}, Revocation{"cam-02", time.Time{}}), now); err != nil {
		t.Fatal(err)
	}
	if got, ok := r.RevokedAt("cam-01"); !ok || !got.Equal(at) || !r.Revoked("cam-02") || r.Len() != 2 || !r.Issued().Equal(now) {
		t.Fatalf("after the first list: %v %v %v", got, ok, r.List())
	}
	// The same list again (a reconnect) is fine.
	if err := r.ApplySigned(pub, signList(t, seed, now, Revocation{"cam-01", at}, Revocation{"cam-02", time.Time{}}), now); err != nil {
		t.Fatal(err)
	}
	if err := r.ApplySigned(pub, signList(t, seed, now.Add(time.Second), Revocation{"cam-02", time.Time{}}), now); err != nil {
		t.Fatal(err)
	}
	if r.Revoked("cam-01") || !r.Revoked("cam-02") {
		t.Fatalf("after the restore: %v", r.List())
	}
}

// TestSignedRevocationsRefused: garbage, forged, altered, old and future lists are
// refused with a reason, and the list in force stays.
func TestSignedRevocationsRefused(t *testing.T) {
	t.Parallel()
	seed, pub := testRevocationKey(t)
	otherSeed, _ := testRevocationKey(t)
	now := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	good := signList(t, seed, now, Revocation{"cam-01", now})
	r := NewRevocations()
	if err := r.ApplySigned(pub, good, now); err != nil {
		t.Fatal(err)
	}
	altered := bytes.Replace(good, []byte("cam-01"), []byte("cam-02"), 1)
	restoreForged := signList(t, otherSeed, now.Add(time.Hour))
	noSig := good[:bytes.LastIndex(good, []byte("sig "))]
	// A list signed with a bad device line: the signature is fine, the content is not.
	badLine := signBody(t, seed, revListHeader+"issued "+now.Add(time.Minute).Format(time.RFC3339Nano)+"\ncam/01\n")
	noIssued := signBody(t, seed, revListHeader+"cam-01\n")
	cases := map[string]struct {
		data []byte
		why  string
	}{
		"empty":             {nil, "header"},
		"garbage":           {[]byte("\x00\xff garbage"), "header"},
		"the file format":   {[]byte("cam-01\n"), "header"},
		"forged":            {restoreForged, "bad signature"},
		"altered":           {altered, "bad signature"},
		"no signature":      {noSig, "signature"},
		"bad signature b64": {append(append([]byte{}, noSig...), "sig !!!\n"...), "base64url"},
		"bad device line":   {badLine, "invalid device ID"},
		"no issue time":     {noIssued, "issue time"},
		"old":               {signList(t, seed, now.Add(-time.Second)), "older than the list in force"},
		"from the future":   {signList(t, seed, now.Add(RevocationListSkew+time.Second)), "after this host's time"},
		"oversized":         {bytes.Repeat([]byte("x"), MaxSignedRevocations+1), "more than"},
	}
	for name, c := range cases {
		err := r.ApplySigned(pub, c.data, now)
		if !errors.Is(err, ErrRevocationList) || !strings.Contains(err.Error(), c.why) {
			t.Errorf("%s: %v, want a refusal mentioning %q", name, err, c.why)
		}
		if !r.Revoked("cam-01") || r.Len() != 1 || !r.Issued().Equal(now) {
			t.Fatalf("%s changed the list in force: %v", name, r.List())
		}
	}
	if err := r.ApplySigned(pub[:10], good, now); !errors.Is(err, ErrRevocationList) {
		t.Errorf("short public key: %v", err)
	}
	if _, err := SignRevocationList(seed[:5], now, nil); err == nil {
		t.Error("short seed accepted")
	}
}

// signBody signs body as SignRevocationList does, without checking it.
func signBody(t *testing.T, seed []byte, body string) []byte {
	t.Helper()
	sig := ed25519.Sign(ed25519.NewKeyFromSeed(seed), []byte(body))
	return []byte(body + "sig " + b64url(sig) + "\n")
}
