package identity

import (
	"bytes"
	"testing"
)

func TestNewFleetKey(t *testing.T) {
	t.Parallel()
	a, err := NewFleetKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewFleetKey()
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != KeySize || len(b) != KeySize {
		t.Fatalf("sizes %d, %d", len(a), len(b))
	}
	if bytes.Equal(a, b) {
		t.Fatal("two fleet keys are equal")
	}
}

func TestDerivation(t *testing.T) {
	t.Parallel()
	fleet := randBytes(t, KeySize)
	c, r := ConnectRoot(fleet), RequestRoot(fleet)
	if want := refMAC(fleet, []byte("clipgate-connect-root-v1")); !bytes.Equal(c, want) {
		t.Fatalf("connect root %x, want %x", c, want)
	}
	if want := refMAC(fleet, []byte("clipgate-request-root-v1")); !bytes.Equal(r, want) {
		t.Fatalf("request root %x, want %x", r, want)
	}
	ck, rk := DeriveConnectKey(c, "cam-01"), DeriveRequestKey(r, "cam-01")
	if want := refMAC(c, []byte("clipgate-connect-key-v1\x00cam-01")); !bytes.Equal(ck, want) {
		t.Fatalf("connect key %x, want %x", ck, want)
	}
	if want := refMAC(r, []byte("clipgate-request-key-v1\x00cam-01")); !bytes.Equal(rk, want) {
		t.Fatalf("request key %x, want %x", rk, want)
	}
	// Every pair of roots and keys differs, also across devices and fleets.
	other := bytes.Clone(fleet)
	other[31] ^= 0x80
	all := [][]byte{fleet, c, r, ck, rk, DeriveConnectKey(c, "cam-02"), DeriveRequestKey(r, "cam-02"),
		DeriveConnectKey(ConnectRoot(other), "cam-01"), DeriveRequestKey(RequestRoot(other), "cam-01"),
		// The broker's root used as if it were the request root: a different key.
		DeriveRequestKey(c, "cam-01"), DeriveConnectKey(r, "cam-01")}
	for i := range all {
		if len(all[i]) != KeySize {
			t.Fatalf("key %d has %d bytes", i, len(all[i]))
		}
		for j := range i {
			if bytes.Equal(all[i], all[j]) {
				t.Fatalf("keys %d and %d are equal", i, j)
			}
		}
	}
	// The returned slices are the caller's: they do not alias pooled state.
	k2 := DeriveConnectKey(c, "cam-02")
	_ = DeriveConnectKey(c, "cam-03")
	if bytes.Equal(k2, DeriveConnectKey(c, "cam-03")) {
		t.Fatal("returned key aliases pooled state")
	}
}
