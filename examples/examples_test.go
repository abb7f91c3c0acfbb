package examples_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc64"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/clipgatetest"
	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/events"
	"github.com/clipgate/clipgate/examples/backend"
	"github.com/clipgate/clipgate/examples/camera"
	"github.com/clipgate/clipgate/policy"
	"github.com/clipgate/clipgate/topics"
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// startBackend starts the example backend on the stack: an index fed by a consumer in
// the shared-subscription group "indexer".
func startBackend(t *testing.T, ctx context.Context, stack *clipgatetest.Stack) *backend.Index {
	t.Helper()
	client, err := stack.OSSClient()
	if err != nil {
		t.Fatal(err)
	}
	bucket, err := client.Bucket(stack.Bucket())
	if err != nil {
		t.Fatal(err)
	}
	user, password := stack.ServiceAccount(topics.RoleConsumer)
	ix := backend.NewIndex()
	consumer, err := backend.NewConsumer(events.Config{
		BrokerURL: stack.BrokerURL(),
		Username:  user,
		Password:  password,
		ClientID:  "consumer:example-indexer",
		Group:     "indexer",
		Topics:    stack.Topics(),
		Bucket:    stack.Bucket(),
		Prefix:    stack.Prefix(),
		OSS:       bucket,
	}, ix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = consumer.Close() })
	if err := consumer.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return ix
}

// startCamera starts the example camera deviceID on the stack.
func startCamera(t *testing.T, ctx context.Context, stack *clipgatetest.Stack, deviceID string) *camera.Camera {
	t.Helper()
	cfg := stack.DeviceConfig(deviceID)
	cfg.StateDir = t.TempDir()
	cfg.Mode = clipgate.ModeWrite
	cam, err := camera.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cam.Close() })
	if err := cam.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return cam
}

// writeClip writes a clip of n bytes and returns its path and CRC-64 in decimal.
func writeClip(t *testing.T, name string, n int) (string, string) {
	t.Helper()
	data := bytes.Repeat([]byte("frame "), n/6+1)[:n]
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, strconv.FormatUint(crc64.Checksum(data, crc64.MakeTable(crc64.ECMA)), 10)
}

// TestCameraToIndex: a clip the camera uploads reaches the backend's index, verified
// against OSS.
func TestCameraToIndex(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	stack := clipgatetest.New(t, clipgatetest.Options{})
	ix := startBackend(t, ctx, stack)
	cam := startCamera(t, ctx, stack, "cam-01")

	path, crc := writeClip(t, "clip-0001.mp4", 4096)
	ev, err := cam.Upload(ctx, path, time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if ev.Status != clipgate.StatusCompleted || ev.Key != "clips/cam-01/2024/05/01/clip-0001.mp4" || ev.CRC64 != crc {
		t.Fatalf("upload event %+v", ev)
	}
	clip, err := ix.Wait(ctx, ev.Key)
	if err != nil {
		t.Fatalf("waiting for %s in the index: %v", ev.Key, err)
	}
	if clip != (backend.Clip{Device: "cam-01", Key: ev.Key, Size: 4096, CRC64: crc}) {
		t.Errorf("indexed %+v", clip)
	}
	if n, failed, rejected := ix.Counts(); n != 1 || failed != 0 || rejected != 0 {
		t.Errorf("index counts: %d clips, %d failed, %d rejected", n, failed, rejected)
	}
}

// TestRevokedCamera: a camera whose credentials the token workers refuse gets a
// *clipgate.AuthError with CodeRevoked, and stops for good.
func TestRevokedCamera(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	stack := clipgatetest.New(t, clipgatetest.Options{})
	cam := startCamera(t, ctx, stack, "cam-02")
	stack.RevokeAtWorkers("cam-02")

	path, _ := writeClip(t, "clip-0002.mp4", 1024)
	_, err := cam.Upload(ctx, path, time.Now())
	var ae *clipgate.AuthError
	if !errors.As(err, &ae) {
		t.Fatalf("upload of a revoked camera: %v, want a *clipgate.AuthError", err)
	}
	switch ae.Code {
	case clipgate.CodeRevoked:
	default:
		t.Fatalf("auth error code %q, want %q", ae.Code, clipgate.CodeRevoked)
	}
	if step, _ := camera.NextStep(err); step != camera.StopForGood {
		t.Errorf("NextStep = %v, want %v", step, camera.StopForGood)
	}

	stack.Restore("cam-02")
	if _, err := cam.Upload(ctx, path, time.Now()); err != nil {
		t.Errorf("upload after Restore: %v", err)
	}
}

// TestNextStep covers every code of the closed set, wrapped as callers wrap errors.
func TestNextStep(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		err  error
		step camera.Step
		wait time.Duration
	}{
		{&clipgate.AuthError{Code: clipgate.CodeRevoked}, camera.StopForGood, 0},
		{&clipgate.AuthError{Code: clipgate.CodeUnauthenticated}, camera.CheckSetup, 0},
		{&clipgate.AuthError{Code: clipgate.CodeDenied}, camera.CheckSetup, 0},
		{&clipgate.AuthError{Code: clipgate.CodeInvalid}, camera.CheckSetup, 0},
		{&clipgate.AuthError{Code: clipgate.CodeBusy, RetryAfter: time.Second}, camera.RetryLater, time.Second},
		{&clipgate.AuthError{Code: clipgate.CodeRateLimited, RetryAfter: 2 * time.Second}, camera.RetryLater, 2 * time.Second},
		{&clipgate.AuthError{Code: clipgate.CodeUnavailable}, camera.RetryLater, 0},
		{&clipgate.AuthError{Code: clipgate.CodeInternal}, camera.RetryLater, 0},
		{&clipgate.AuthError{Code: clipgate.CodeClockSkew}, camera.RetryLater, 0},
		{&clipgate.AuthError{Code: clipgate.CodeReplay}, camera.RetryLater, 0},
		{devicekit.ErrEmptyClip, camera.SkipClip, 0},
		{errors.New("connection reset"), camera.RetryLater, 0},
	} {
		err := fmt.Errorf("upload clip.mp4: %w", c.err)
		if step, wait := camera.NextStep(err); step != c.step || wait != c.wait {
			t.Errorf("NextStep(%v) = %v, %v; want %v, %v", err, step, wait, c.step, c.wait)
		}
		var ae *clipgate.AuthError
		if errors.As(err, &ae) && ae.Code.Terminal() != (c.step == camera.StopForGood || c.step == camera.CheckSetup) {
			t.Errorf("%s: Terminal() = %v", ae.Code, ae.Code.Terminal())
		}
	}
}

// TestDevicePolicy: what the token workers grant a camera of mode "w", built with the
// public policy package.
func TestDevicePolicy(t *testing.T) {
	t.Parallel()
	text, err := policy.DevicePolicy("clips", "clips/", "cam-01", clipgate.ModeWrite)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"Version":"1","Statement":[{"Effect":"Allow","Action":["oss:PutObject","oss:AbortMultipartUpload","oss:ListParts"],"Resource":["acs:oss:*:*:clips/clips/cam-01/*"]}]}`
	if text != want {
		t.Errorf("DevicePolicy =\n%s\nwant\n%s", text, want)
	}
	if _, err := policy.DevicePolicy("clips", "clips/", "cam-01", "x"); !errors.Is(err, clipgate.ErrInvalidMode) {
		t.Errorf("mode x: %v, want ErrInvalidMode", err)
	}
}

// TestDeviceKeyFile provisions a camera as a fleet would: its key written to a private
// file (the form `broker device-key` writes), loaded back with devicekit.LoadDeviceKey,
// and used to get credentials.
func TestDeviceKeyFile(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	stack := clipgatetest.New(t, clipgatetest.Options{})
	var key *devicekit.DeviceKey = stack.DeviceKey("cam-05")
	text, err := key.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "cam-05.key")
	if err := os.WriteFile(path, text, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := devicekit.LoadDeviceKey(path); err == nil {
		t.Fatal("LoadDeviceKey accepted a key file that others can read")
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	loaded, err := devicekit.LoadDeviceKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Device != "cam-05" || loaded.KeyID != key.KeyID || !bytes.Equal(loaded.Connect, key.Connect) || !bytes.Equal(loaded.Request, key.Request) {
		t.Fatalf("loaded key %s/%s differs from the written one %s/%s", loaded.Device, loaded.KeyID, key.Device, key.KeyID)
	}
	if err := loaded.Validate(); err != nil {
		t.Fatal(err)
	}
	if loaded.Password(time.Now()) == "" {
		t.Fatal("empty MQTT password")
	}

	cfg := stack.DeviceConfig("cam-05")
	cfg.DeviceKey = loaded
	cfg.StateDir = t.TempDir()
	kit, err := devicekit.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kit.Close() })
	if err := kit.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	creds, err := kit.Credentials(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if creds.AccessKeyID == "" {
		t.Fatal("credentials without an access key ID")
	}
}
