package identity

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
)

func refMAC(key, msg []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(msg)
	return h.Sum(nil)
}

func randBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// The pooled HMAC must equal crypto/hmac for every key length, including keys longer
// than the SHA-256 block, which HMAC hashes first.
func TestMACMatchesCryptoHMAC(t *testing.T) {
	t.Parallel()
	for _, keyLen := range []int{0, 1, 31, 32, 33, 63, 64, 65, 100, 200} {
		for _, msgLen := range []int{0, 1, 55, 56, 64, 1000} {
			key, msg := randBytes(t, keyLen), randBytes(t, msgLen)
			m := getMAC()
			got := append([]byte(nil), m.mac(key, msg)...)
			// A second use of the same state must not be affected by the first.
			again := append([]byte(nil), m.mac(key, msg)...)
			putMAC(m)
			want := refMAC(key, msg)
			if !bytes.Equal(got, want) || !bytes.Equal(again, want) {
				t.Fatalf("key %d msg %d: got %x / %x, want %x", keyLen, msgLen, got, again, want)
			}
		}
	}
}

func TestSignVerify(t *testing.T) {
	t.Parallel()
	key := randBytes(t, KeySize)
	msg := []byte("clipgate-auth-v1\n1\nreq-1\ncam-01\n2024-01-01T00:00:00Z\nnonce\nw")
	sig := Sign(key, msg)
	if want := base64.RawURLEncoding.EncodeToString(refMAC(key, msg)); sig != want {
		t.Fatalf("Sign = %q, want %q", sig, want)
	}
	if !Verify(key, msg, sig) {
		t.Fatal("Verify refused a good signature")
	}
	other := append([]byte(nil), key...)
	other[0] ^= 1
	changed := append([]byte(nil), msg...)
	changed[len(changed)-1] = 'r'
	flipped := []byte(sig)
	flipped[10] ^= 'A' ^ 'B'
	if flipped[10] == sig[10] {
		t.Fatal("test bug")
	}
	padded := base64.URLEncoding.EncodeToString(refMAC(key, msg))
	std := base64.StdEncoding.EncodeToString(refMAC(key, msg))
	// The last character carries 4 spare bits; a non-zero spare bit is a second spelling.
	last := strings.IndexByte("AEIMQUYcgkosw048", sig[len(sig)-1])
	if last < 0 {
		t.Fatalf("unexpected last character %q", sig[len(sig)-1])
	}
	malleable := sig[:len(sig)-1] + string("BFJNRVZdhlptx159"[last])

	cases := []struct {
		name     string
		key, msg []byte
		sig      string
	}{
		{"wrong key", other, msg, sig},
		{"changed message", key, changed, sig},
		{"flipped signature", key, msg, string(flipped)},
		{"empty signature", key, msg, ""},
		{"short", key, msg, sig[:42]},
		{"long", key, msg, sig + "A"},
		{"padded", key, msg, padded},
		{"std alphabet", key, msg, std},
		{"non-canonical spare bits", key, msg, malleable},
		{"spaces", key, msg, " " + sig[1:]},
		{"non-ascii", key, msg, "é" + sig[2:]},
		{"nul bytes", key, msg, strings.Repeat("\x00", 43)},
		{"empty key", nil, msg, Sign(nil, msg)},
		{"hex", key, msg, "0123456789abcdef0123456789abcdef0123456789a"},
	}
	for _, c := range cases {
		if Verify(c.key, c.msg, c.sig) {
			t.Errorf("%s: Verify accepted %q", c.name, c.sig)
		}
	}
}

func TestSignDistinctKeysAndMessages(t *testing.T) {
	t.Parallel()
	k1, k2 := randBytes(t, KeySize), randBytes(t, KeySize)
	if Sign(k1, []byte("a")) == Sign(k2, []byte("a")) || Sign(k1, []byte("a")) == Sign(k1, []byte("b")) {
		t.Fatal("signatures collide")
	}
}

func TestVerifyDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	key := randBytes(t, KeySize)
	msg := []byte("clipgate-auth-v1\n1\nreq\ncam-01\nts\nnonce\nw")
	sig := Sign(key, msg)
	if n := testing.AllocsPerRun(100, func() {
		if !Verify(key, msg, sig) {
			panic("refused")
		}
	}); n != 0 {
		t.Fatalf("Verify allocates %v times per call", n)
	}
}

func BenchmarkVerify(b *testing.B) {
	key := randBytes(b, KeySize)
	msg := []byte("clipgate-auth-v1\n1\n0190a3c4-7b8e-7f00-9a7b-1c2d3e4f5a6b\ncam-000123\n2025-01-01T00:00:00Z\nAAAAAAAAAAAAAAAAAAAAAA\nw")
	sig := Sign(key, msg)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if !Verify(key, msg, sig) {
				b.Fatal("refused")
			}
		}
	})
}

// BenchmarkVerifyCryptoHMAC is the baseline the pooled HMAC is measured against.
func BenchmarkVerifyCryptoHMAC(b *testing.B) {
	key := randBytes(b, KeySize)
	msg := []byte("clipgate-auth-v1\n1\n0190a3c4-7b8e-7f00-9a7b-1c2d3e4f5a6b\ncam-000123\n2025-01-01T00:00:00Z\nAAAAAAAAAAAAAAAAAAAAAA\nw")
	want := refMAC(key, msg)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if !hmac.Equal(refMAC(key, msg), want) {
				b.Fatal("refused")
			}
		}
	})
}
