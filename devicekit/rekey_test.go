package devicekit

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/protocol"
)

// TestApplyRekey: a new key sealed with the device's request key replaces the key in use
// and in the key file (atomically); every garbage rekey leaves both as they were.
func TestApplyRekey(t *testing.T) {
	t.Parallel()
	fleet, err := identity.NewFleetKeyring()
	if err != nil {
		t.Fatal(err)
	}
	cfg := validConfig(t)
	cfg.DeviceKey = fleetDeviceKey(t, fleet, cfg.DeviceID)
	cfg.DeviceKeyFile = filepath.Join(t.TempDir(), "device.key")
	if err := identity.WriteDeviceKey(cfg.DeviceKeyFile, cfg.DeviceKey.internal()); err != nil {
		t.Fatal(err)
	}
	k, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	old := k.deviceKey()
	keys, _ := fleet.Rotate(time.Now(), time.Hour)
	if err := fleet.Set(keys); err != nil {
		t.Fatal(err)
	}
	next, _ := identity.NewDeviceKey(fleet, cfg.DeviceID)
	nonce := bytes.Repeat([]byte{7}, protocol.NonceSize)
	sealRekey := func(key []byte, id string, v any) string {
		plain, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		sealed, err := identity.Seal(key, nonce, plain, rekeyAAD(cfg.DeviceID, id))
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(sealed)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	good := protocol.Rekey{KID: next.KeyID, Connect: b64(next.Connect), Request: b64(next.Request)}
	fileBefore, _ := os.ReadFile(cfg.DeviceKeyFile)
	for name, rekey := range map[string]string{
		"not base64url":         "!!!!",
		"sealed with other key": sealRekey(next.Request, "r1", good),
		"for another request":   sealRekey(old.Request, "r2", good),
		"not JSON":              sealRekey(old.Request, "r1", "just a string"),
		"bad key ID":            sealRekey(old.Request, "r1", protocol.Rekey{KID: "k.2", Connect: good.Connect, Request: good.Request}),
		"short key":             sealRekey(old.Request, "r1", protocol.Rekey{KID: "k2", Connect: b64(next.Connect[:16]), Request: good.Request}),
		"unknown field":         sealRekey(old.Request, "r1", map[string]string{"kid": "k2", "connect": good.Connect, "request": good.Request, "fleet": "x"}),
	} {
		k.applyRekey(&protocol.AuthReply{ID: "r1", OK: true, Rekey: rekey}, old, nonce)
		if k.deviceKey() != old {
			t.Fatalf("%s: the key was replaced", name)
		}
		if after, _ := os.ReadFile(cfg.DeviceKeyFile); !bytes.Equal(after, fileBefore) {
			t.Fatalf("%s: the key file changed", name)
		}
	}
	// Two replies carrying the new key at once: applied once, the file holds it.
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			k.applyRekey(&protocol.AuthReply{ID: "r1", OK: true, Rekey: sealRekey(old.Request, "r1", good)}, old, nonce)
		})
	}
	wg.Wait()
	got := k.deviceKey()
	if got.KeyID != next.KeyID || !bytes.Equal(got.Connect, next.Connect) || !bytes.Equal(got.Request, next.Request) {
		t.Fatalf("key in use %+v, want %+v", got, next)
	}
	fk, err := identity.LoadDeviceKey(cfg.DeviceKeyFile)
	if err != nil || fk.KeyID != next.KeyID || !bytes.Equal(fk.Request, next.Request) {
		t.Fatalf("key file holds %+v, %v", fk, err)
	}
	// A stale rekey (made for the old key) after the rotation changes nothing.
	k.applyRekey(&protocol.AuthReply{ID: "r1", OK: true, Rekey: sealRekey(old.Request, "r1", good)}, old, nonce)
	if k.deviceKey() != got {
		t.Fatal("a stale rekey replaced the key again")
	}

	// A key that cannot be saved is not used: after a restart the file must still match.
	cfg2 := validConfig(t)
	cfg2.DeviceKey = (*DeviceKey)(old.Clone())
	cfg2.DeviceKeyFile = filepath.Join(t.TempDir(), "missing-dir", "device.key")
	k2, err := New(cfg2)
	if err != nil {
		t.Fatal(err)
	}
	defer k2.Close()
	old2 := k2.deviceKey()
	k2.applyRekey(&protocol.AuthReply{ID: "r1", OK: true, Rekey: sealRekey(old.Request, "r1", good)}, old2, nonce)
	if k2.deviceKey() != old2 {
		t.Fatal("an unsaved key was put in use")
	}
}

// TestEventIDOutlivesKeyRotation: a clip's derived event ID depends on the state
// directory, not on the device key, so the next Upload after a crash announces it under the
// same ID even if the device was rekeyed in between; another state directory gets others.
func TestEventIDOutlivesKeyRotation(t *testing.T) {
	t.Parallel()
	fleet, err := identity.NewFleetKeyring()
	if err != nil {
		t.Fatal(err)
	}
	cfg := validConfig(t)
	p := &prepared{size: 1234, mtime: time.Unix(1_700_000_000, 5)}
	ids := map[string]bool{}
	for range 2 {
		cfg.DeviceKey = fleetDeviceKey(t, fleet, cfg.DeviceID)
		k, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ids[k.eventID("clips/cam-0001/a.mp4", p)] = true
		k.Close()
		keys, _ := fleet.Rotate(time.Now(), time.Hour)
		if err := fleet.Set(keys); err != nil {
			t.Fatal(err)
		}
	}
	if len(ids) != 1 {
		t.Fatalf("event IDs %v: the rotation changed the ID", ids)
	}
	other := validConfig(t) // another state directory
	k, err := New(other)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if ids[k.eventID("clips/cam-0001/a.mp4", p)] {
		t.Fatal("two state directories give the same event ID")
	}
}
