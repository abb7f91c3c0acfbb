package identity

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"io"
	"testing"

	"golang.org/x/crypto/hkdf"
)

func TestSealOpen(t *testing.T) {
	t.Parallel()
	key := randBytes(t, KeySize)
	nonce := []byte("AAAAAAAAAAAAAAAAAAAAAA")
	aad := []byte("cam-01\x00req-1")
	for _, pt := range [][]byte{nil, []byte("x"), randBytes(t, 1000)} {
		sealed, err := Seal(key, nonce, pt, aad)
		if err != nil {
			t.Fatal(err)
		}
		if len(sealed) != len(pt)+SealOverhead {
			t.Fatalf("sealed %d bytes for %d", len(sealed), len(pt))
		}
		got, err := Open(key, nonce, sealed, aad)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, pt) {
			t.Fatalf("got %q, want %q", got, pt)
		}
	}
	// A random GCM nonce per message: sealing twice gives different ciphertexts.
	a, _ := Seal(key, nonce, []byte("same"), aad)
	b, _ := Seal(key, nonce, []byte("same"), aad)
	if bytes.Equal(a, b) {
		t.Fatal("two seals of the same plaintext are identical")
	}
}

// The construction is the documented one, so that devices in other languages can open it.
func TestSealConstruction(t *testing.T) {
	t.Parallel()
	key, nonce, aad := randBytes(t, KeySize), []byte("n0nce"), []byte("ctx")
	sealed, err := Seal(key, nonce, []byte("credentials"), aad)
	if err != nil {
		t.Fatal(err)
	}
	k := make([]byte, 32)
	if _, err := io.ReadFull(hkdf.New(sha256.New, key, nonce, []byte("clipgate-seal-v1")), k); err != nil {
		t.Fatal(err)
	}
	block, _ := aes.NewCipher(k)
	gcm, _ := cipher.NewGCM(block)
	pt, err := gcm.Open(nil, sealed[:12], sealed[12:], aad)
	if err != nil || string(pt) != "credentials" {
		t.Fatalf("reference open: %q, %v", pt, err)
	}
}

func TestOpenRefuses(t *testing.T) {
	t.Parallel()
	key := randBytes(t, KeySize)
	nonce := []byte("AAAAAAAAAAAAAAAAAAAAAA")
	aad := []byte("cam-01\x00req-1")
	sealed, err := Seal(key, nonce, []byte(`{"accessKeyId":"STS.x"}`), aad)
	if err != nil {
		t.Fatal(err)
	}
	otherKey := append([]byte(nil), key...)
	otherKey[5] ^= 1
	// Every single-bit change anywhere (GCM nonce, ciphertext, tag) is caught.
	for i := range sealed {
		for bit := range 8 {
			tampered := append([]byte(nil), sealed...)
			tampered[i] ^= 1 << bit
			if _, err := Open(key, nonce, tampered, aad); !errors.Is(err, ErrOpenFailed) {
				t.Fatalf("byte %d bit %d flipped: %v", i, bit, err)
			}
		}
	}
	cases := []struct {
		name               string
		key, nonce, in, ad []byte
	}{
		{"wrong key", otherKey, nonce, sealed, aad},
		{"wrong request nonce", key, []byte("BAAAAAAAAAAAAAAAAAAAAA"), sealed, aad},
		{"wrong aad", key, nonce, sealed, []byte("cam-02\x00req-1")},
		{"missing aad", key, nonce, sealed, nil},
		{"truncated", key, nonce, sealed[:len(sealed)-1], aad},
		{"extended", key, nonce, append(append([]byte(nil), sealed...), 0), aad},
		{"overhead only", key, nonce, sealed[:SealOverhead], aad},
		{"short", key, nonce, sealed[:SealOverhead-1], aad},
		{"one byte", key, nonce, []byte{0}, aad},
		{"empty", key, nonce, nil, aad},
		{"garbage", key, nonce, randBytes(t, 100), aad},
	}
	for _, c := range cases {
		if pt, err := Open(c.key, c.nonce, c.in, c.ad); !errors.Is(err, ErrOpenFailed) || pt != nil {
			t.Errorf("%s: got %q, %v; want ErrOpenFailed", c.name, pt, err)
		}
	}
	for _, k := range [][]byte{nil, key[:16], append(key, 0)} {
		if _, err := Seal(k, nonce, []byte("x"), aad); !errors.Is(err, ErrKeySize) {
			t.Errorf("Seal with %d-byte key: %v", len(k), err)
		}
		if _, err := Open(k, nonce, sealed, aad); !errors.Is(err, ErrKeySize) {
			t.Errorf("Open with %d-byte key: %v", len(k), err)
		}
	}
	if _, err := Seal(key, nil, []byte("x"), aad); err == nil {
		t.Error("Seal with an empty request nonce succeeded")
	}
	if _, err := Open(key, nil, sealed, aad); err == nil {
		t.Error("Open with an empty request nonce succeeded")
	}
}

func FuzzOpen(f *testing.F) {
	key := make([]byte, KeySize)
	for i := range key {
		key[i] = byte(i * 7)
	}
	good, err := Seal(key, []byte("nonce"), []byte("plaintext"), []byte("aad"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good, []byte("nonce"), []byte("aad"))
	f.Add([]byte{}, []byte{}, []byte{})
	f.Add(good[:27], []byte("nonce"), []byte("aad"))
	f.Fuzz(func(t *testing.T, sealed, nonce, aad []byte) {
		pt, err := Open(key, nonce, sealed, aad)
		if err != nil && pt != nil {
			t.Fatal("plaintext returned with an error")
		}
		// Forging GCM is infeasible: only a message sealed above may open (the fuzzing
		// workers seal their own, with other random GCM nonces, so compare the contents).
		if err == nil && !(string(pt) == "plaintext" && string(nonce) == "nonce" && string(aad) == "aad") {
			t.Fatalf("opened forged input %x to %q", sealed, pt)
		}
	})
}

func BenchmarkSealOpen(b *testing.B) {
	key := randBytes(b, KeySize)
	nonce, aad := []byte("AAAAAAAAAAAAAAAAAAAAAA"), []byte("cam-01\x00req-1")
	pt := make([]byte, 600) // about a credentials JSON
	b.ReportAllocs()
	for b.Loop() {
		s, err := Seal(key, nonce, pt, aad)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Open(key, nonce, s, aad); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSealKeyMatchesHKDF checks the allocation-free HKDF against x/crypto/hkdf for request
// nonces of every length up to well past the HMAC block size (longer salts are hashed).
func TestSealKeyMatchesHKDF(t *testing.T) {
	t.Parallel()
	for n := 1; n <= 200; n++ {
		key := randBytes(t, KeySize)
		nonce := randBytes(t, n)
		var want [32]byte
		if _, err := io.ReadFull(hkdf.New(sha256.New, key, nonce, []byte(sealInfo)), want[:]); err != nil {
			t.Fatal(err)
		}
		if got := sealKey(key, nonce); got != want {
			t.Fatalf("nonce of %d bytes: sealKey = %x, want %x", n, got, want)
		}
	}
}

// TestHMACSHA256MatchesStdlib checks the fixed-buffer HMAC against crypto/hmac for keys
// shorter than, equal to and longer than the block, and messages up to hmacMaxMsg.
func TestHMACSHA256MatchesStdlib(t *testing.T) {
	t.Parallel()
	for _, kl := range []int{0, 1, 16, 32, 63, 64, 65, 100, 200} {
		for _, ml := range []int{0, 1, 17, 32, hmacMaxMsg} {
			key, msg := randBytes(t, kl), randBytes(t, ml)
			m := hmac.New(sha256.New, key)
			m.Write(msg)
			if got := hmacSHA256(key, msg); !bytes.Equal(got[:], m.Sum(nil)) {
				t.Fatalf("key %d, message %d bytes: mismatch", kl, ml)
			}
		}
	}
}
