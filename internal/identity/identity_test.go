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

func TestDeriveDeviceKey(t *testing.T) {
	t.Parallel()
	fleet := randBytes(t, KeySize)
	k := DeriveDeviceKey(fleet, "cam-01")
	if want := refMAC(fleet, []byte("clipgate-device-key-v1\x00cam-01")); !bytes.Equal(k, want) {
		t.Fatalf("got %x, want %x", k, want)
	}
	if len(k) != KeySize {
		t.Fatalf("len %d", len(k))
	}
	if !bytes.Equal(k, DeriveDeviceKey(fleet, "cam-01")) {
		t.Fatal("not deterministic")
	}
	if bytes.Equal(k, DeriveDeviceKey(fleet, "cam-02")) {
		t.Fatal("two devices share a key")
	}
	other := append([]byte(nil), fleet...)
	other[31] ^= 0x80
	if bytes.Equal(k, DeriveDeviceKey(other, "cam-01")) {
		t.Fatal("two fleets give one device the same key")
	}
	// The returned slice is the caller's: it must not alias pooled state.
	k2 := DeriveDeviceKey(fleet, "cam-02")
	_ = DeriveDeviceKey(fleet, "cam-03")
	if bytes.Equal(k2, DeriveDeviceKey(fleet, "cam-03")) {
		t.Fatal("returned key aliases pooled state")
	}
}
