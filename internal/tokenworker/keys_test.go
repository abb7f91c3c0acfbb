package tokenworker

import (
	"encoding/base64"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/protocol"
)

// TestHandleKeyIDs: a request's key ID picks the fleet key its request key derives from;
// unknown, retired and relabelled key IDs, and the broker's connect key used as a request
// key, are refused as unauthenticated with a message saying why.
func TestHandleKeyIDs(t *testing.T) {
	t.Parallel()
	fleet := newFleetKey(t)
	start := time.Now()
	var clock atomic.Int64
	clock.Store(start.UnixNano())
	cfg := offlineConfig(fleet)
	cfg.Now = func() time.Time { return time.Unix(0, clock.Load()) }
	w := newWorker(t, cfg)

	unknown := newRequest(t, fleet, "cam-kid", "w", start)
	unknown.KID = "k9"
	unknown.sign()
	rep := wantError(t, unknown.ID, handle(t, w, unknown), protocol.CodeUnauthenticated)
	if !strings.Contains(rep.Error.Message, "unknown key ID") {
		t.Errorf("unknown key ID: message %q", rep.Error.Message)
	}

	connectKey := newRequest(t, fleet, "cam-kid", "w", start)
	dk, _ := identity.NewDeviceKey(fleet, "cam-kid")
	connectKey.key = dk.Connect
	connectKey.sign()
	wantError(t, connectKey.ID, handle(t, w, connectKey), protocol.CodeUnauthenticated)

	old := newRequest(t, fleet, "cam-kid", "w", start) // k1, signed before the rotation
	keys, err := fleet.Rotate(start, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := fleet.Set(keys); err != nil {
		t.Fatal(err)
	}
	// A k1 request relabelled as k2 does not verify under k2.
	relabelled := newRequest(t, fleet, "cam-kid", "w", start)
	relabelled.key = old.key
	relabelled.sign()
	wantError(t, relabelled.ID, handle(t, w, relabelled), protocol.CodeUnauthenticated)

	// After the cutoff the old key is refused, and says so.
	clock.Store(start.Add(time.Hour).UnixNano())
	late := newRequest(t, fleet, "cam-kid", "w", start.Add(time.Hour))
	late.KID, late.key = "k1", old.key
	late.sign()
	rep = wantError(t, late.ID, handle(t, w, late), protocol.CodeUnauthenticated)
	if !strings.Contains(rep.Error.Message, "retired") {
		t.Errorf("retired key: message %q", rep.Error.Message)
	}
}

// TestHandleRekey: a request signed with a replaced (still accepted) key gets credentials
// and the device's keys under the current fleet key, sealed with its old request key even
// when credentials are not sealed; a request with the current key gets no rekey.
func TestHandleRekey(t *testing.T) {
	t.Parallel()
	c := startCloud(t, nil)
	fleet := newFleetKey(t)
	cfg := c.config(fleet)
	noSeal := false
	cfg.Seal = &noSeal
	w := newWorker(t, cfg)
	const dev = "cam-rekey"
	old := newRequest(t, fleet, dev, "w", time.Now())
	keys, err := fleet.Rotate(time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := fleet.Set(keys); err != nil {
		t.Fatal(err)
	}
	rep := decodeReply(t, old.ID, handle(t, w, old))
	if !rep.OK || rep.Credentials == nil || rep.Rekey == "" {
		t.Fatalf("reply to a request with the old key: %+v", rep)
	}
	sealed, _ := base64.RawURLEncoding.DecodeString(rep.Rekey)
	nonce, _ := base64.RawURLEncoding.DecodeString(old.Nonce)
	plain, err := identity.Open(old.key, nonce, sealed, RekeyAAD(dev, old.ID))
	if err != nil {
		t.Fatalf("the old request key does not open the rekey: %v", err)
	}
	rk, err := protocol.DecodeRekey(plain)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := identity.NewDeviceKey(fleet, dev)
	if rk.KID != "k2" || rk.Connect != base64.RawURLEncoding.EncodeToString(want.Connect) || rk.Request != base64.RawURLEncoding.EncodeToString(want.Request) {
		t.Fatalf("rekey %+v, want the keys of k2", rk)
	}
	if _, err := identity.Open(old.key, nonce, sealed, RekeyAAD("cam-other", old.ID)); err == nil {
		t.Fatal("the rekey opens for another device")
	}
	cur := newRequest(t, fleet, dev, "w", time.Now())
	if rep := decodeReply(t, cur.ID, handle(t, w, cur)); !rep.OK || rep.Rekey != "" {
		t.Fatalf("reply to a request with the current key: %+v", rep)
	}
}
