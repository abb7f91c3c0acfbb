package integration

import (
	"encoding/base64"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/natsbus"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/internal/tokenworker"
	"github.com/clipgate/clipgate/topics"
	"github.com/nats-io/nats.go"
)

// TestRepliesAreSealed: credentials in auth replies are sealed to the device. Another
// device may not even subscribe to the reply topic (SUBACK 0x80). A subscriber that does
// see replies (the admin service account, standing in for a mis-set ACL or a broker
// operator) and also sees the request with its nonce finds no credentials in clear, and
// cannot open the sealed ones with another device's key, nor re-target them to another
// device; only the device's own key opens them.
func TestRepliesAreSealed(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, time.Minute)
	stack := inproc.New(t, inproc.Options{})
	const dev, other = "cam-sealed", "cam-nosy"
	scheme := stack.Topics()
	root := scheme.Root()

	nosy, err := connectDevice(ctx, stack, other, stack.DeviceKey(other))
	if err != nil {
		t.Fatal(err)
	}
	defer nosy.close()
	for _, filter := range []string{scheme.AuthReply(dev), root + "/devices/+/auth/reply", root + "/#"} {
		code, err := nosy.subscribe(ctx, filter)
		if err != nil {
			t.Fatal(err)
		}
		if code != 0x80 {
			t.Errorf("device %s subscribing to %s: SUBACK %#x, want 0x80", other, filter, code)
		}
	}

	admin, err := connectService(ctx, stack, topics.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.close()
	admin.mustSubscribe(ctx, t, root+"/devices/+/auth/request")
	admin.mustSubscribe(ctx, t, root+"/devices/+/auth/reply")

	kit := newKit(ctx, t, stack, dev, nil)
	creds, err := kit.Credentials(ctx)
	if err != nil {
		t.Fatal(err)
	}

	m, err := admin.next(ctx, scheme.AuthRequest(dev))
	if err != nil {
		t.Fatal(err)
	}
	r, err := admin.next(ctx, scheme.AuthReply(dev))
	if err != nil {
		t.Fatal(err)
	}
	checkCapturedReply(t, stack, dev, other, m.payload, r.payload, creds)
}

// TestRepliesAreSealedNATS is TestRepliesAreSealed on a NATS cluster: an admin NATS
// client subscribed to the partitioned requests and to the reply subject captures a
// device's request and its reply. The reply holds no credentials in clear and does not
// open with the auth callout's key file (its connect roots, the same the broker holds),
// nor with another device's key; the workers' fleet keys open it (issue 12, point 1).
func TestRepliesAreSealedNATS(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 2*time.Minute)
	stack := inproc.New(t, inproc.Options{Engine: inproc.EngineNATS})
	const dev, other = "cam-sealed-nats", "cam-nosy-nats"
	scheme := stack.Topics()

	conn := stack.NATSConn(topics.RoleAdmin, "sealed-"+randomHex(4))
	nc, err := nats.Connect(strings.Join(conn.URLs, ","), nats.UserInfo(conn.Username, conn.Password), nats.Name(conn.Name))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	requests, replies := make(chan *nats.Msg, 16), make(chan *nats.Msg, 16)
	if _, err := nc.ChanSubscribe(natsbus.PartitionPrefix+"*."+natsbus.Subject(scheme.AuthRequest(dev)), requests); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.ChanSubscribe(natsbus.Subject(scheme.AuthReply(dev)), replies); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	kit := newKit(ctx, t, stack, dev, nil)
	creds, err := kit.Credentials(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var req, reply []byte
	for req == nil || reply == nil {
		select {
		case m := <-requests:
			req = m.Data
		case m := <-replies:
			reply = m.Data
		case <-ctx.Done():
			t.Fatalf("captured request %q, reply %q: %v", req, reply, ctx.Err())
		}
	}
	checkCapturedReply(t, stack, dev, other, req, reply, creds)
}

// checkCapturedReply checks a request and its reply captured on the bus: the reply holds
// creds sealed, opens with dev's key only (not other's, not addressed to other), and not
// with the broker's (or the NATS callout's) key file.
func checkCapturedReply(t *testing.T, stack *inproc.Stack, dev, other string, reqPayload, replyPayload []byte, creds *devicekit.Credentials) {
	t.Helper()
	req, err := protocol.DecodeAuthRequest(reqPayload)
	if err != nil {
		t.Fatal(err)
	}
	nonce, err := base64.RawURLEncoding.DecodeString(req.Nonce)
	if err != nil {
		t.Fatal(err)
	}
	reply, err := protocol.DecodeAuthReply(replyPayload)
	if err != nil {
		t.Fatal(err)
	}
	if !reply.OK || reply.ID != req.ID {
		t.Fatalf("observed reply %+v for request %s", reply, req.ID)
	}
	if reply.Credentials != nil || reply.Sealed == "" {
		t.Fatalf("reply carries plain credentials %+v (sealed %q)", reply.Credentials, reply.Sealed)
	}
	for name, secret := range map[string]string{
		"access key ID": creds.AccessKeyID, "secret": creds.AccessKeySecret, "security token": creds.SecurityToken,
	} {
		if strings.Contains(string(replyPayload), secret) {
			t.Errorf("the observed reply contains the %s in clear", name)
		}
	}

	sealed, err := base64.RawURLEncoding.DecodeString(reply.Sealed)
	if err != nil {
		t.Fatal(err)
	}
	aad := tokenworker.ReplyAAD(dev, req.ID)
	if _, err := identity.Open(stack.DeviceKey(other).Request, nonce, sealed, aad); err == nil {
		t.Error("another device's key opened the sealed credentials")
	}
	if _, err := identity.Open(stack.DeviceKey(dev).Request, nonce, sealed, tokenworker.ReplyAAD(other, req.ID)); err == nil {
		t.Error("the sealed credentials opened as if addressed to another device")
	}
	// Control: the device's key opens them, and they are what the kit got.
	plain, err := identity.Open(stack.DeviceKey(dev).Request, nonce, sealed, aad)
	if err != nil {
		t.Fatalf("the device's own key does not open the reply: %v", err)
	}
	got, err := protocol.DecodeCredentials(plain)
	if err != nil {
		t.Fatal(err)
	}
	if got.AccessKeyID != creds.AccessKeyID || got.AccessKeySecret != creds.AccessKeySecret ||
		got.SecurityToken != creds.SecurityToken || !got.Expiration.Equal(creds.Expiration) {
		t.Errorf("opened credentials differ from the kit's")
	}

	brokerCannotOpen(t, stack, dev, req, nonce, sealed, aad, plain)
}

// brokerCannotOpen: with only the broker's key file (its connect roots; on NATS, the auth
// callout's), a captured sealed reply does not open, by any derivation the broker could make; with the token
// workers' fleet keys it does (issue 12, point 1).
func brokerCannotOpen(t *testing.T, stack *inproc.Stack, dev string, req *protocol.AuthRequest, nonce, sealed, aad, want []byte) {
	t.Helper()
	brokerKeys, err := identity.LoadKeyring(stack.ConnectKeysFile())
	if err != nil {
		t.Fatal(err)
	}
	fleet, err := identity.LoadKeyring(stack.FleetKeysFile())
	if err != nil {
		t.Fatal(err)
	}
	brokerFile, err := os.ReadFile(stack.ConnectKeysFile())
	if err != nil {
		t.Fatal(err)
	}
	for _, fk := range fleet.Keys() {
		for _, secret := range [][]byte{fk.Key, identity.RequestRoot(fk.Key)} {
			if strings.Contains(string(brokerFile), base64.StdEncoding.EncodeToString(secret)) {
				t.Errorf("the broker's key file holds a fleet key or request root of %s", fk.ID)
			}
		}
	}
	for _, ck := range brokerKeys.Keys() {
		for name, k := range map[string][]byte{
			"connect root":                       ck.Key,
			"device connect key":                 identity.DeriveConnectKey(ck.Key, dev),
			"connect root used as request root":  identity.DeriveRequestKey(ck.Key, dev),
			"connect root used as fleet key":     identity.DeriveRequestKey(identity.RequestRoot(ck.Key), dev),
			"device connect key used as a fleet": identity.DeriveRequestKey(identity.RequestRoot(identity.DeriveConnectKey(ck.Key, dev)), dev),
		} {
			if _, err := identity.Open(k, nonce, sealed, aad); err == nil {
				t.Errorf("the broker's %s (key %s) opens the sealed reply", name, ck.ID)
			}
		}
	}
	// Control: the workers' fleet keys open it.
	rk, err := fleet.RequestKey(req.KID, dev, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	plain, err := identity.Open(rk, nonce, sealed, aad)
	if err != nil || string(plain) != string(want) {
		t.Fatalf("the workers' fleet keys do not open the reply: %v", err)
	}
}
