package broker

import (
	"strings"
	"testing"
	"time"

	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/topics"
)

// FuzzDecideLogin: whatever a client presents, the decision does not panic, and it
// accepts only a device whose password verifies or a service whose account
// authenticates, with the client ID rules held.
func FuzzDecideLogin(f *testing.F) {
	fleet, err := identity.NewKeyring(identity.RingKey{ID: "k1", Key: make([]byte, identity.KeySize)})
	if err != nil {
		f.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	b, err := New(Config{ConnectKeys: fleet.ConnectRoots(), Now: func() time.Time { return now }})
	if err != nil {
		f.Fatal(err)
	}
	good := devicePassword(fleet, "cam-1", now)
	f.Add("cam-1", "cam-1", good, "", false, "")
	f.Add("cam-1", "cam-1", good, "", true, "clipgate/v1/devices/cam-1/status")
	f.Add("cam-1", "cam-1", "", "cam-1", false, "")
	f.Add("cam-2", "cam-1", good, "", false, "")
	f.Add("svc:1", "svc", "pw", "", false, "")
	f.Add("", "", "", "", false, "")
	f.Add("cam-1", "cam-1", "v1.1800000000."+good[len(good)-43:], "", false, "")
	f.Add("cam-1", "cam-1", strings.Replace(good, ".k1.", ".k2.", 1), "", false, "")
	f.Fuzz(func(t *testing.T, clientID, username, password, certCN string, hasWill bool, willTopic string) {
		in := login{clientID: clientID, username: username, password: password,
			certCN: certCN, hasCert: certCN != "", hasWill: hasWill, willTopic: willTopic}
		p, r, why := b.decideLogin(&in)
		if r != refuseNone {
			if why == "" {
				t.Fatal("refusal without a reason")
			}
			return
		}
		if p.Role != topics.RoleDevice { // no service accounts are configured
			t.Fatalf("accepted %+v as %v", in, p)
		}
		if clientID != username || p.DeviceID != username {
			t.Fatalf("device %+v accepted with client ID %q", p, clientID)
		}
		if in.hasCert {
			if certCN != clientID {
				t.Fatal("certificate CN mismatch accepted")
			}
		} else if identity.VerifyDevicePassword(fleet.ConnectRoots(), username, password, now, 0) != nil {
			t.Fatalf("accepted a password that does not verify: %q", password)
		}
		if hasWill && !b.scheme.Allowed(topics.RoleDevice, username, willTopic, topics.Publish) {
			t.Fatalf("accepted will topic %q", willTopic)
		}
	})
}
