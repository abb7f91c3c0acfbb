package integration

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/broker"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/internal/tokenworker"
)

// TestKeyRotationWhileUploading (issue 12, point 9): the fleet keys are rotated while 10
// devices upload, each run as a camera CLI is (a new kit per clip, its key read from its
// key file). No upload fails; every device receives its new key in an auth reply and its
// key file holds it; after the cutoff the old key is refused by the broker and the workers,
// and the new one still works.
func TestKeyRotationWhileUploading(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 3*time.Minute)
	clk := newClock(0) // the broker's and workers' clock; the cutoff is crossed by moving it
	stack := inproc.New(t, inproc.Options{
		BrokerConfig: func(c *broker.Config) { c.Now = clk.Now },
		WorkerConfig: func(c *tokenworker.Config) { c.Now = clk.Now },
	})
	const devices, afterRotation = 10, 2
	const grace = time.Hour
	dir := t.TempDir()
	oldKeys := make([]*devicekit.DeviceKey, devices)
	for i := range devices {
		id := fmt.Sprintf("cam-rot-%02d", i)
		oldKeys[i] = stack.DeviceKey(id)
		if err := identity.WriteDeviceKey(filepath.Join(dir, id+".key"), (*identity.DeviceKey)(oldKeys[i])); err != nil {
			t.Fatal(err)
		}
	}
	var uploads atomic.Int64
	rotated := make(chan struct{})
	var failures []error
	var mu sync.Mutex
	fail := func(err error) {
		mu.Lock()
		failures = append(failures, err)
		mu.Unlock()
	}
	// upload runs one camera invocation: a kit with the key from the file, one clip.
	upload := func(id string, n int) error {
		keyFile := filepath.Join(dir, id+".key")
		key, err := devicekit.LoadDeviceKey(keyFile)
		if err != nil {
			return err
		}
		// Each invocation asks for credentials: with the ones the last invocation kept on
		// disk it would learn the new key only at their refresh (the grace covers that).
		if err := forgetKeptCredentials(stack, id); err != nil {
			return err
		}
		k, err := startKit(ctx, stack, id, func(c *devicekit.Config) { c.DeviceKey, c.DeviceKeyFile = key, keyFile })
		if err != nil {
			return err
		}
		defer k.Close()
		clip, err := writeClip(t.TempDir(), fmt.Sprintf("clip-%d.mp4", n), 8<<10)
		if err != nil {
			return err
		}
		if _, err := k.Upload(ctx, devicekit.Clip{Path: clip.path}); err != nil {
			return fmt.Errorf("%s clip %d (key %s): %w", id, n, key.KeyID, err)
		}
		uploads.Add(1)
		return nil
	}
	var wg sync.WaitGroup
	for i := range devices {
		id := fmt.Sprintf("cam-rot-%02d", i)
		wg.Go(func() {
			// Upload until afterRotation clips were started after the rotation.
			after := 0
			for n := 0; after < afterRotation; n++ {
				select {
				case <-rotated:
					after++
				default:
				}
				if err := upload(id, n); err != nil {
					fail(err)
					return
				}
			}
		})
	}
	// Rotate once the fleet has uploaded some clips, while it keeps uploading.
	for uploads.Load() < devices {
		select {
		case <-ctx.Done():
			t.Fatal("no uploads before the rotation")
		case <-time.After(5 * time.Millisecond):
		}
	}
	if err := stack.RotateKeys(clk.Now(), grace); err != nil {
		t.Fatal(err)
	}
	close(rotated)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d uploads failed during the rotation: %v", len(failures), errors.Join(failures...))
	}
	cur := stack.FleetKeys().CurrentID()
	if cur == oldKeys[0].KeyID {
		t.Fatal("the fleet key did not change")
	}
	for i := range devices {
		id := fmt.Sprintf("cam-rot-%02d", i)
		k, err := devicekit.LoadDeviceKey(filepath.Join(dir, id+".key"))
		if err != nil {
			t.Fatal(err)
		}
		want := stack.DeviceKey(id)
		if k.KeyID != cur || !bytes.Equal(k.Connect, want.Connect) || !bytes.Equal(k.Request, want.Request) {
			t.Errorf("%s: key file holds key %s, want the new key %s", id, k.KeyID, cur)
		}
	}

	// After the cutoff the old key is refused, at CONNECT and in requests.
	clk.Set(grace + time.Second)
	const dev = "cam-rot-00"
	old := oldKeys[0]
	_, err := connectMQTT(ctx, stack.BrokerURL(), dev, dev, old.Password(clk.Now()))
	if !errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) {
		t.Fatalf("connect with the retired key: %v, want %v", err, packets.ErrorRefusedBadUsernameOrPassword)
	}
	c, err := connectMQTT(ctx, stack.BrokerURL(), dev, dev, stack.DeviceKey(dev).Password(clk.Now()))
	if err != nil {
		t.Fatalf("connect with the new key: %v", err)
	}
	defer c.close()
	scheme := stack.Topics()
	c.mustSubscribe(ctx, t, scheme.AuthReply(dev))
	for name, key := range map[string]*devicekit.DeviceKey{"retired": old, "current": stack.DeviceKey(dev)} {
		req, _, payload, err := signedRequest(key, dev, clk.Now(), "w")
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
		switch {
		case r.ID != req.ID:
			t.Errorf("%s key: reply to %s, want %s", name, r.ID, req.ID)
		case name == "retired":
			wantReplyError(t, "retired key", r, protocol.CodeUnauthenticated)
		case !r.OK || r.Rekey != "":
			t.Errorf("current key: reply %+v, want credentials without a rekey", r)
		}
	}
}
