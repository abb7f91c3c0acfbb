package identity

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestKeyringLookupAndCutoff(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0).UTC()
	k1, k2 := randBytes(t, KeySize), randBytes(t, KeySize)
	r, err := NewKeyring(RingKey{ID: "k1", Key: k1, Until: now.Add(time.Hour)}, RingKey{ID: "k2", Key: k2})
	if err != nil {
		t.Fatal(err)
	}
	if r.CurrentID() != "k2" || !bytes.Equal(r.Current().Key, k2) {
		t.Fatalf("current %q", r.CurrentID())
	}
	for _, c := range []struct {
		id   string
		at   time.Time
		want []byte
		err  error
	}{
		{"k2", now, k2, nil},
		{"k2", now.Add(1000 * time.Hour), k2, nil},
		{"k1", now, k1, nil},
		{"k1", now.Add(time.Hour - time.Nanosecond), k1, nil},
		{"k1", now.Add(time.Hour), nil, ErrKeyRetired},
		{"k3", now, nil, ErrUnknownKeyID},
		{"", now, nil, ErrUnknownKeyID},
		{"K2", now, nil, ErrUnknownKeyID},
		{strings.Repeat("x", 1000), now, nil, ErrUnknownKeyID},
	} {
		k, err := r.Lookup(c.id, c.at)
		if !errors.Is(err, c.err) || (c.err == nil) != (err == nil) || !bytes.Equal(k, c.want) {
			t.Errorf("Lookup(%.20q, %v) = %x, %v; want %x, %v", c.id, c.at, k, err, c.want, c.err)
		}
		if err != nil && len(err.Error()) > 200 {
			t.Errorf("error message of %d bytes", len(err.Error()))
		}
	}
}

func TestKeyringRefuses(t *testing.T) {
	t.Parallel()
	k := randBytes(t, KeySize)
	later := time.Now().Add(time.Hour)
	for name, keys := range map[string][]RingKey{
		"none":           nil,
		"no current":     {{ID: "k1", Key: k, Until: later}},
		"two current":    {{ID: "k1", Key: k}, {ID: "k2", Key: k}},
		"duplicate ID":   {{ID: "k1", Key: k}, {ID: "k1", Key: k, Until: later}},
		"empty ID":       {{ID: "", Key: k}},
		"ID with dot":    {{ID: "k.1", Key: k}},
		"ID with space":  {{ID: "k 1", Key: k}},
		"long ID":        {{ID: strings.Repeat("k", MaxKeyIDLen+1), Key: k}},
		"short key":      {{ID: "k1", Key: k[:31]}},
		"long key":       {{ID: "k1", Key: append(bytes.Clone(k), 0)}},
		"nil key":        {{ID: "k1"}},
		"non-ASCII ID":   {{ID: "ké", Key: k}},
		"NUL in ID":      {{ID: "k\x00", Key: k}},
		"newline in ID":  {{ID: "k\n", Key: k}},
		"second bad key": {{ID: "k1", Key: k}, {ID: "k2", Key: k[:3], Until: later}},
	} {
		if _, err := NewKeyring(keys...); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// A failed Set leaves the keyring as it was.
	r, err := NewKeyring(RingKey{ID: "k1", Key: k})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Set([]RingKey{{ID: "k2", Key: k[:1]}}); err == nil || r.CurrentID() != "k1" {
		t.Fatalf("Set of a bad key: %v, current %q", err, r.CurrentID())
	}
}

func TestKeyringRotate(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0).UTC()
	r, err := NewFleetKeyring()
	if err != nil {
		t.Fatal(err)
	}
	k1 := r.Current().Key
	keys, err := r.Rotate(now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if r.CurrentID() != "k1" {
		t.Fatal("Rotate changed the keyring")
	}
	if err := r.Set(keys); err != nil {
		t.Fatal(err)
	}
	if r.CurrentID() != "k2" || bytes.Equal(r.Current().Key, k1) {
		t.Fatalf("after rotation: current %q", r.CurrentID())
	}
	if k, err := r.Lookup("k1", now.Add(23*time.Hour)); err != nil || !bytes.Equal(k, k1) {
		t.Fatalf("k1 within grace: %v", err)
	}
	if _, err := r.Lookup("k1", now.Add(24*time.Hour)); !errors.Is(err, ErrKeyRetired) {
		t.Fatalf("k1 after cutoff: %v", err)
	}
	// A second rotation a day later drops k1 (retired) and keeps k2 until its cutoff.
	keys, err = r.Rotate(now.Add(25*time.Hour), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].ID != "k3" || keys[1].ID != "k2" || !keys[1].Until.Equal(now.Add(26*time.Hour)) {
		t.Fatalf("second rotation: %+v", keys)
	}
	if _, err := r.Rotate(now, 0); err == nil {
		t.Fatal("rotation without grace accepted")
	}
	// IDs not of the form kN do not disturb the numbering.
	r2, _ := NewKeyring(RingKey{ID: "spring", Key: k1}, RingKey{ID: "k9x", Key: k1, Until: now.Add(time.Hour)})
	if keys, err := r2.Rotate(now, time.Hour); err != nil || keys[0].ID != "k1" {
		t.Fatalf("rotation of non-kN IDs: %+v, %v", keys, err)
	}
}

func TestKeyringFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	now := time.Unix(1_700_000_000, 0).UTC()
	r, _ := NewKeyring(RingKey{ID: "k2", Key: randBytes(t, KeySize)}, RingKey{ID: "k1", Key: randBytes(t, KeySize), Until: now})
	path := filepath.Join(dir, "fleet.keys")
	if err := WriteKeyring(path, r); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", fi.Mode(), err)
	}
	got, err := LoadKeyring(path)
	if err != nil {
		t.Fatal(err)
	}
	a, b := r.Keys(), got.Keys()
	if len(a) != len(b) {
		t.Fatalf("%d keys read back, want %d", len(b), len(a))
	}
	for i := range a {
		if a[i].ID != b[i].ID || !bytes.Equal(a[i].Key, b[i].Key) || !a[i].Until.Equal(b[i].Until) {
			t.Fatalf("key %d: %+v, want %+v", i, b[i], a[i])
		}
	}
	// The broker's file holds connect roots: none of its keys is a fleet key or a request root.
	cr := r.ConnectRoots()
	for i, k := range cr.Keys() {
		if k.ID != a[i].ID || !k.Until.Equal(a[i].Until) || bytes.Equal(k.Key, a[i].Key) ||
			!bytes.Equal(k.Key, ConnectRoot(a[i].Key)) || bytes.Equal(k.Key, RequestRoot(a[i].Key)) {
			t.Fatalf("connect root %d wrong", i)
		}
	}

	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyring(path); !errors.Is(err, ErrInsecurePermissions) {
		t.Fatalf("world-readable keyring: %v", err)
	}
	key := "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	for name, text := range map[string]string{
		"empty":           "",
		"comment only":    "# nothing\n",
		"one field":       "k1\n",
		"bad key":         "k1 notakey\n",
		"short key":       "k1 AAEC\n",
		"three fields":    "k1 " + key + " until\n",
		"bad keyword":     "k1 " + key + " after 2026-01-01T00:00:00Z\n",
		"bad time":        "k1 " + key + "\nk0 " + key + " until tomorrow\n",
		"bad ID":          "k.1 " + key + "\n",
		"two current":     "k1 " + key + "\nk2 " + key + "\n",
		"no current":      "k1 " + key + " until 2026-01-01T00:00:00Z\n",
		"duplicate":       "k1 " + key + "\nk1 " + key + " until 2026-01-01T00:00:00Z\n",
		"five fields":     "k1 " + key + " until 2026-01-01T00:00:00Z x\n",
		"binary garbage":  "\x00\xff\xfe" + key,
		"unknown kind":    "kind broker\nk1 " + key + "\n",
		"kind twice":      "kind fleet\nkind fleet\nk1 " + key + "\n",
		"kind after keys": "k1 " + key + "\nkind fleet\n",
	} {
		if _, err := ParseKeyring([]byte(text)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// The kind survives the file, and says what the keyring may be used for.
	if err := WriteKeyring(path, cr); err != nil {
		t.Fatal(err)
	}
	if back, err := LoadKeyring(path); err != nil || back.Kind != KindConnect || back.CheckKind(KindFleet) == nil || back.CheckKind(KindConnect) != nil {
		t.Fatalf("connect keyring read back: kind %q, %v", back.Kind, err)
	}
	fleet, _ := NewFleetKeyring()
	if err := WriteKeyring(path, fleet); err != nil {
		t.Fatal(err)
	}
	if back, err := LoadKeyring(path); err != nil || back.Kind != KindFleet || back.CheckKind(KindConnect) == nil {
		t.Fatalf("fleet keyring read back: kind %q, %v", back.Kind, err)
	}
	if r, err := ParseKeyring([]byte("# c\r\n\r\n  k7 " + key + "  # the key\r\nold " + key + " until 2026-01-01T00:00:00+08:00\n")); err != nil || r.CurrentID() != "k7" {
		t.Fatalf("valid file with comments and CRLF: %v", err)
	}
}

func TestDeviceKeyFile(t *testing.T) {
	t.Parallel()
	fleet, err := NewFleetKeyring()
	if err != nil {
		t.Fatal(err)
	}
	k, err := NewDeviceKey(fleet, "cam-01")
	if err != nil {
		t.Fatal(err)
	}
	fk := fleet.Current().Key
	if k.KeyID != "k1" || !bytes.Equal(k.Connect, DeriveConnectKey(ConnectRoot(fk), "cam-01")) ||
		!bytes.Equal(k.Request, DeriveRequestKey(RequestRoot(fk), "cam-01")) {
		t.Fatalf("device key %+v", k)
	}
	if rk, err := fleet.RequestKey("k1", "cam-01", time.Now()); err != nil || !bytes.Equal(rk, k.Request) {
		t.Fatalf("RequestKey: %v", err)
	}
	if _, err := fleet.RequestKey("k9", "cam-01", time.Now()); !errors.Is(err, ErrUnknownKeyID) {
		t.Fatalf("RequestKey of an unknown ID: %v", err)
	}
	if _, err := NewDeviceKey(fleet, "cam/01"); err == nil {
		t.Fatal("invalid device ID accepted")
	}
	path := filepath.Join(t.TempDir(), "cam-01.key")
	if err := WriteDeviceKey(path, k); err != nil {
		t.Fatal(err)
	}
	got, err := LoadDeviceKey(path)
	if err != nil || got.Device != "cam-01" || got.KeyID != "k1" || !bytes.Equal(got.Connect, k.Connect) || !bytes.Equal(got.Request, k.Request) {
		t.Fatalf("read back %+v, %v", got, err)
	}
	text, _ := k.MarshalText()
	lines := strings.Split(strings.TrimSpace(string(text)), "\n")[1:] // without the comment
	without := func(i int) string {
		return strings.Join(append(append([]string(nil), lines[:i]...), lines[i+1:]...), "\n")
	}
	for name, in := range map[string]string{
		"empty":            "",
		"missing device":   without(0),
		"missing key-id":   without(1),
		"missing connect":  without(2),
		"missing request":  without(3),
		"twice":            string(text) + lines[0] + "\n",
		"unknown name":     string(text) + "fleet AAAA\n",
		"three fields":     strings.Replace(string(text), "device cam-01", "device cam-01 x", 1),
		"bad device":       strings.Replace(string(text), "device cam-01", "device cam/01", 1),
		"bad key ID":       strings.Replace(string(text), "key-id k1", "key-id k.1", 1),
		"short connect":    strings.Replace(string(text), lines[2], "connect AAECAw==", 1),
		"request not key":  strings.Replace(string(text), lines[3], "request !!!!", 1),
		"a keyring":        "k1 AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
		"old raw key file": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
	} {
		if _, err := ParseDeviceKey([]byte(in)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadDeviceKey(path); !errors.Is(err, ErrInsecurePermissions) {
		t.Fatalf("group-readable device key: %v", err)
	}
}

func TestVerifyDevicePassword(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	fleet, _ := NewFleetKeyring()
	old, _ := NewDeviceKey(fleet, "cam-01")
	keys, _ := fleet.Rotate(now, time.Hour)
	if err := fleet.Set(keys); err != nil {
		t.Fatal(err)
	}
	cur, _ := NewDeviceKey(fleet, "cam-01")
	roots := fleet.ConnectRoots()
	if err := VerifyDevicePassword(roots, "cam-01", cur.Password(now), now, 0); err != nil {
		t.Fatalf("current key: %v", err)
	}
	if err := VerifyDevicePassword(roots, "cam-01", old.Password(now), now, 0); err != nil {
		t.Fatalf("previous key before its cutoff: %v", err)
	}
	later := now.Add(time.Hour)
	if err := VerifyDevicePassword(roots, "cam-01", old.Password(later), later, 0); !errors.Is(err, ErrBadPassword) || !errors.Is(err, ErrKeyRetired) {
		t.Fatalf("previous key after its cutoff: %v", err)
	}
	// The password of one key ID relabelled with another does not verify.
	forged := strings.Replace(old.Password(now), ".k1.", ".k2.", 1)
	if err := VerifyDevicePassword(roots, "cam-01", forged, now, 0); !errors.Is(err, ErrBadPassword) {
		t.Fatalf("relabelled password: %v", err)
	}
	if err := VerifyDevicePassword(roots, "cam-01", strings.Replace(cur.Password(now), ".k2.", ".k3.", 1), now, 0); !errors.Is(err, ErrUnknownKeyID) {
		t.Fatalf("unknown key ID: %v", err)
	}
	if err := VerifyDevicePassword(roots, "cam-02", cur.Password(now), now, 0); !errors.Is(err, ErrBadPassword) {
		t.Fatalf("another device: %v", err)
	}
	if err := VerifyDevicePassword(roots, "cam-01", "v1.1700000000."+strings.Repeat("A", 43), now, 0); !errors.Is(err, ErrMalformedPassword) {
		t.Fatalf("password without key ID: %v", err)
	}
}
