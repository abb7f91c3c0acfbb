package clipgatetest_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/clipgatetest"
	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/topics"
)

// The engine of the stack (internal/inproc) has its own tests; these go through the
// public wrapper, as a user of the package does.

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// newKit starts a connected device kit on the stack, closed when the test ends.
func newKit(t *testing.T, ctx context.Context, s *clipgatetest.Stack, id string) *devicekit.Kit {
	t.Helper()
	cfg := s.DeviceConfig(id)
	cfg.StateDir = t.TempDir()
	kit, err := devicekit.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kit.Close() })
	if err := kit.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	return kit
}

// TestUploadThroughWrapper uploads a clip on a stack with a custom topic root and no
// prefix, and reads the event and the object back.
func TestUploadThroughWrapper(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	root, err := topics.New("acme/cams")
	if err != nil {
		t.Fatal(err)
	}
	s := clipgatetest.New(t, clipgatetest.Options{Bucket: "wrapped", NoPrefix: true, Topics: root})
	if s.Bucket() != "wrapped" || s.Prefix() != "" || s.Topics().Root() != "acme/cams" || s.Workers() != 1 {
		t.Fatalf("stack: bucket %q prefix %q root %q workers %d", s.Bucket(), s.Prefix(), s.Topics().Root(), s.Workers())
	}
	consumer, err := s.Consumer(ctx, "backend")
	if err != nil {
		t.Fatal(err)
	}
	kit := newKit(t, ctx, s, "cam-w1")
	clip := filepath.Join(t.TempDir(), "clip.mp4")
	data := bytes.Repeat([]byte("frame"), 200)
	if err := os.WriteFile(clip, data, 0o600); err != nil {
		t.Fatal(err)
	}
	sent, err := kit.Upload(ctx, devicekit.Clip{Path: clip, RecordedAt: time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	got, err := consumer.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != sent.ID || got.Status != clipgate.StatusCompleted || got.Key != "cam-w1/2024/05/01/clip.mp4" || got.Size != int64(len(data)) {
		t.Errorf("event %+v, sent %+v", got, sent)
	}
	if consumer.Malformed() != 0 {
		t.Errorf("Malformed = %d", consumer.Malformed())
	}
	client, err := s.OSSClient()
	if err != nil {
		t.Fatal(err)
	}
	bucket, err := client.Bucket(s.Bucket())
	if err != nil {
		t.Fatal(err)
	}
	if h, err := bucket.GetObjectDetailedMeta(got.Key); err != nil || h.Get("Content-Length") != "1000" {
		t.Errorf("object: %v, %v", h, err)
	}
	if err := consumer.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-consumer.Events(); ok {
		t.Error("Events open after Close")
	}
	if _, err := consumer.Next(ctx); !errors.Is(err, clipgatetest.ErrClosed) {
		t.Errorf("Next after Close: %v, want ErrClosed", err)
	}
}

// TestRevokeAtWorkers: the workers refuse a device the broker lets in with a
// *clipgate.AuthError of CodeRevoked, until Restore.
func TestRevokeAtWorkers(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s := clipgatetest.New(t, clipgatetest.Options{})
	kit := newKit(t, ctx, s, "cam-w2")
	s.RevokeAtWorkers("cam-w2")
	_, err := kit.Credentials(ctx)
	var ae *clipgate.AuthError
	if !errors.As(err, &ae) || ae.Code != clipgate.CodeRevoked || !ae.Terminal() {
		t.Fatalf("Credentials of a device revoked at the workers: %v, want an AuthError with CodeRevoked", err)
	}
	s.Restore("cam-w2")
	if _, err := kit.Credentials(ctx); err != nil {
		t.Fatalf("after Restore: %v", err)
	}
	// Revoke reaches the broker too: the device cannot connect any more.
	s.Revoke("cam-w2")
	cfg := s.DeviceConfig("cam-w2")
	cfg.StateDir = t.TempDir()
	second, err := devicekit.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	short, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	if err := second.Connect(short); err == nil {
		t.Error("a revoked device connected")
	}
}

// TestWorkersAndAccessors changes the worker group and reads the accessors.
func TestWorkersAndAccessors(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s := clipgatetest.New(t, clipgatetest.Options{Workers: 2})
	if err := s.StopWorker(0); err != nil {
		t.Fatal(err)
	}
	if err := s.StopWorker(0); err == nil {
		t.Error("stopping a stopped worker: no error")
	}
	if i, err := s.StartWorker(); err != nil || i != 2 || s.Workers() != 2 {
		t.Fatalf("StartWorker = %d, %v; workers %d", i, err, s.Workers())
	}
	if _, err := newKit(t, ctx, s, "cam-w3").Credentials(ctx); err != nil {
		t.Fatal(err)
	}
	if u, p := s.ServiceAccount(topics.RoleConsumer); u != "consumer" || len(p) < 16 {
		t.Errorf("ServiceAccount(consumer) = %q, %q", u, p)
	}
	if u, p := s.ServiceAccount(topics.RoleDevice); u != "" || p != "" {
		t.Errorf("ServiceAccount(device) = %q, %q", u, p)
	}
	id, secret := s.AdminKey()
	if id == "" || secret == "" || s.DeviceKey("cam-w3") == nil || s.DeviceKey("cam-w3").Validate() != nil || s.DeviceKey("cam/w3") != nil ||
		!strings.HasPrefix(s.BrokerURL(), "tcp://127.0.0.1:") || !strings.HasPrefix(s.OSSEndpoint(), "http://127.0.0.1:") ||
		!strings.HasPrefix(s.STSEndpoint(), "127.0.0.1:") || !strings.HasPrefix(s.BrokerHTTPAddr(), "127.0.0.1:") ||
		!strings.HasSuffix(s.RoleARN(), ":role/"+clipgatetest.RoleName) || s.Region() == "" || s.Dir() == "" {
		t.Errorf("accessors: admin %q broker %q oss %q sts %q http %q role %q region %q dir %q",
			id, s.BrokerURL(), s.OSSEndpoint(), s.STSEndpoint(), s.BrokerHTTPAddr(), s.RoleARN(), s.Region(), s.Dir())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Consumer(ctx, ""); !errors.Is(err, clipgatetest.ErrClosed) {
		t.Errorf("Consumer after Close: %v, want ErrClosed", err)
	}
}

// TestStartError: Start reports a bad option and leaves nothing running.
func TestStartError(t *testing.T) {
	t.Parallel()
	s, err := clipgatetest.Start(testContext(t), clipgatetest.Options{Prefix: "no-slash"})
	if err == nil || s != nil || !strings.Contains(err.Error(), "prefix") {
		t.Fatalf("Start with a bad prefix = %v, %v", s, err)
	}
}
