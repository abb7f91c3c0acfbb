package integration

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/topics"
)

// TestWrongDeviceKey: a device key that is not the one derived from the fleet key gets
// nowhere. The broker refuses its MQTT password (CONNACK "bad user name or password"),
// so a kit with it cannot connect; and a request signed with a wrong key, sent over a
// connection authenticated with the right one, is answered "unauthenticated".
func TestWrongDeviceKey(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, time.Minute)
	stack := inproc.New(t, inproc.Options{})
	const dev = "cam-wrongkey"
	wrong := randomDeviceKey(t, dev) // well-formed, derived from another fleet key

	t.Run("broker", func(t *testing.T) {
		_, err := connectDevice(ctx, stack, dev, wrong)
		if !errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) {
			t.Errorf("raw connect with a wrong key: %v, want %v", err, packets.ErrorRefusedBadUsernameOrPassword)
		}
		cfg := stack.DeviceConfig(dev)
		cfg.DeviceKey = wrong
		kit, err := devicekit.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer kit.Close()
		cctx := testContext(t, 3*time.Second)
		err = kit.Connect(cctx)
		if err == nil || !strings.Contains(err.Error(), packets.ErrorRefusedBadUsernameOrPassword.Error()) {
			t.Errorf("kit Connect with a wrong key: %v, want a refusal naming %q", err, packets.ErrorRefusedBadUsernameOrPassword)
		}
		if _, err := kit.Credentials(ctx); err == nil {
			t.Error("kit got credentials without a connection")
		}
	})

	t.Run("worker", func(t *testing.T) {
		c, err := connectDevice(ctx, stack, dev, stack.DeviceKey(dev))
		if err != nil {
			t.Fatal(err)
		}
		defer c.close()
		scheme := stack.Topics()
		c.mustSubscribe(ctx, t, scheme.AuthReply(dev))
		for _, tc := range []struct {
			name string
			key  *devicekit.DeviceKey
		}{
			{"random key", wrong},
			{"another device's key", stack.DeviceKey("cam-other")},
			{"the device's connect key as its request key", func() *devicekit.DeviceKey {
				k := stack.DeviceKey(dev)
				k.Request = k.Connect
				return k
			}()},
		} {
			req, _, payload, err := signedRequest(tc.key, dev, time.Now(), "w")
			if err != nil {
				t.Fatal(err)
			}
			if err := c.publish(ctx, scheme.AuthRequest(dev), payload); err != nil {
				t.Fatal(err)
			}
			r, _, err := c.reply(ctx, scheme.AuthReply(dev))
			if err != nil {
				t.Fatal(err)
			}
			if r.ID != req.ID {
				t.Errorf("%s: reply to %q, want %q", tc.name, r.ID, req.ID)
			}
			wantReplyError(t, tc.name, r, protocol.CodeUnauthenticated)
		}
		// Control: the right key on the same connection gets credentials.
		req, _, payload, err := signedRequest(stack.DeviceKey(dev), dev, time.Now(), "w")
		if err != nil {
			t.Fatal(err)
		}
		if err := c.publish(ctx, scheme.AuthRequest(dev), payload); err != nil {
			t.Fatal(err)
		}
		r, _, err := c.reply(ctx, scheme.AuthReply(dev))
		if err != nil {
			t.Fatal(err)
		}
		if !r.OK || r.ID != req.ID || r.Sealed == "" {
			t.Errorf("right key: reply %+v, want sealed credentials for %s", r, req.ID)
		}
		if n := workerTotals(stack, 1).Errors[protocol.CodeUnauthenticated]; n != 3 {
			t.Errorf("worker counted %d unauthenticated requests, want 3", n)
		}
	})
}

// TestRevokedDevice: revocation acts at both ends. The broker disconnects a connected
// device when it is revoked and refuses it at CONNECT from then on ("not authorized"). A
// revoked device's request can still reach a token worker through a relay (here the admin
// service account, which may publish anywhere under the root, stands in for a gateway that
// forwards for cameras); the worker, sharing the revocation list, answers "revoked".
// After Restore the same path gives credentials again.
func TestRevokedDevice(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, time.Minute)
	stack := inproc.New(t, inproc.Options{})
	const dev = "cam-revoked"
	key := stack.DeviceKey(dev)
	scheme := stack.Topics()

	c, err := connectDevice(ctx, stack, dev, key)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	c.mustSubscribe(ctx, t, scheme.AuthReply(dev))
	_, _, payload, err := signedRequest(key, dev, time.Now(), "w")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.publish(ctx, scheme.AuthRequest(dev), payload); err != nil {
		t.Fatal(err)
	}
	if r, _, err := c.reply(ctx, scheme.AuthReply(dev)); err != nil || !r.OK {
		t.Fatalf("before revocation: reply %+v, %v; want credentials", r, err)
	}

	admin, err := connectService(ctx, stack, topics.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.close()
	admin.mustSubscribe(ctx, t, scheme.AuthReply(dev))

	stack.Revoke(dev)

	t.Run("broker disconnects", func(t *testing.T) {
		select {
		case <-c.lost:
		case <-ctx.Done():
			t.Fatal("the revoked device is still connected")
		}
	})
	t.Run("broker refuses CONNECT", func(t *testing.T) {
		_, err := connectDevice(ctx, stack, dev, key)
		if !errors.Is(err, packets.ErrorRefusedNotAuthorised) {
			t.Errorf("raw connect of a revoked device: %v, want %v", err, packets.ErrorRefusedNotAuthorised)
		}
		cfg := stack.DeviceConfig(dev)
		kit, err := devicekit.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer kit.Close()
		err = kit.Connect(testContext(t, 3*time.Second))
		if err == nil || !strings.Contains(err.Error(), packets.ErrorRefusedNotAuthorised.Error()) {
			t.Errorf("kit Connect of a revoked device: %v, want a refusal naming %q", err, packets.ErrorRefusedNotAuthorised)
		}
	})
	relay := func(t *testing.T) *protocol.AuthReply {
		t.Helper()
		req, _, payload, err := signedRequest(key, dev, time.Now(), "w")
		if err != nil {
			t.Fatal(err)
		}
		if err := admin.publish(ctx, scheme.AuthRequest(dev), payload); err != nil {
			t.Fatal(err)
		}
		r, _, err := admin.reply(ctx, scheme.AuthReply(dev))
		if err != nil {
			t.Fatal(err)
		}
		if r.ID != req.ID {
			t.Fatalf("reply to %q, want %q", r.ID, req.ID)
		}
		return r
	}
	t.Run("worker answers revoked", func(t *testing.T) {
		wantReplyError(t, "relayed request of a revoked device", relay(t), protocol.CodeRevoked)
	})
	t.Run("restored", func(t *testing.T) {
		stack.Restore(dev)
		if r := relay(t); !r.OK || r.Sealed == "" {
			t.Errorf("after Restore: reply %+v, want sealed credentials", r)
		}
		c2, err := connectDevice(ctx, stack, dev, key)
		if err != nil {
			t.Fatalf("after Restore the broker still refuses the device: %v", err)
		}
		c2.close()
	})
}

// TestReplayedRequest: a signed request published a second time (by a client
// authenticated as the device, as an attacker on the device's connection or a duplicate
// delivery would) is answered "replay", even though two workers share the requests.
func TestReplayedRequest(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, time.Minute)
	stack := inproc.New(t, inproc.Options{Workers: 2})
	const dev = "cam-replay"
	scheme := stack.Topics()
	c, err := connectDevice(ctx, stack, dev, stack.DeviceKey(dev))
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	c.mustSubscribe(ctx, t, scheme.AuthReply(dev))

	req, _, payload, err := signedRequest(stack.DeviceKey(dev), dev, time.Now(), "w")
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []protocol.Code{"", protocol.CodeReplay, protocol.CodeReplay} {
		if err := c.publish(ctx, scheme.AuthRequest(dev), payload); err != nil {
			t.Fatal(err)
		}
		r, _, err := c.reply(ctx, scheme.AuthReply(dev))
		if err != nil {
			t.Fatalf("publication %d: %v", i+1, err)
		}
		if r.ID != req.ID {
			t.Errorf("publication %d: reply to %q, want %q", i+1, r.ID, req.ID)
		}
		if want == "" {
			if !r.OK || r.Sealed == "" {
				t.Fatalf("first publication: reply %+v, want sealed credentials", r)
			}
			continue
		}
		wantReplyError(t, "replayed request", r, want)
	}
	st := workerTotals(stack, 2)
	if st.Errors[protocol.CodeReplay] != 2 || st.OK != 1 {
		t.Errorf("workers counted %d ok and %d replays, want 1 and 2", st.OK, st.Errors[protocol.CodeReplay])
	}
}

// TestDeviceClockOff: a camera whose clock is two hours off (either way) signs its first
// request with a timestamp outside the worker's window, is told clock_skew with the server
// time, corrects itself and uploads. Its event carries the corrected upload time.
func TestDeviceClockOff(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 2*time.Minute)
	stack := inproc.New(t, inproc.Options{})
	for _, skew := range []time.Duration{2 * time.Hour, -2 * time.Hour} {
		t.Run(skew.String(), func(t *testing.T) {
			before := workerTotals(stack, 1).Errors[protocol.CodeClockSkew]
			dev := "cam-skew-" + strings.TrimPrefix(strings.ReplaceAll(skew.String(), "-", "minus"), "+")
			kit := newKit(ctx, t, stack, dev, func(c *devicekit.Config) {
				c.Now = func() time.Time { return time.Now().Add(skew) }
			})
			clip, err := writeClip(t.TempDir(), "skewed.mp4", 2000)
			if err != nil {
				t.Fatal(err)
			}
			ev, err := kit.Upload(ctx, devicekit.Clip{Path: clip.path, RecordedAt: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)})
			if err != nil {
				t.Fatalf("Upload with the clock %v off: %v", skew, err)
			}
			if err := checkObject(stack.AdminBucket(t), ev.Key, clip.data, "Normal"); err != nil {
				t.Error(err)
			}
			// The event's time is the corrected clock: nowhere near two hours off.
			if off := time.Since(ev.UploadedAt); off.Abs() > 10*time.Minute {
				t.Errorf("event uploadedAt %v is %v from the real time; the kit did not correct its clock", ev.UploadedAt, off)
			}
			if after := workerTotals(stack, 1).Errors[protocol.CodeClockSkew]; after <= before {
				t.Errorf("the worker answered no clock_skew (%d before, %d after): the skew was not exercised", before, after)
			}
		})
	}
}
