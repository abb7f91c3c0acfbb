package main

import (
	"context"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"

	"github.com/clipgate/clipgate/internal/deviceconfig"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/testutil"
)

// stack is a whole clipgate on loopback (internal/inproc, the stack of clipgatetest).
// RevokeAtWorkers has credentials refused to a device that the broker still lets in.
type stack struct {
	*inproc.Stack
}

// startStack starts a stack that stops when the test ends.
func startStack(t *testing.T) *stack {
	t.Helper()
	return &stack{Stack: inproc.New(t, inproc.Options{})}
}

// device writes the key and the config file of a device of s, with a relative key path
// and state directory, and returns the config file's path.
func (s *stack) device(t *testing.T, id string) string {
	t.Helper()
	dir := t.TempDir()
	if err := identity.WriteDeviceKey(filepath.Join(dir, "device.key"), (*identity.DeviceKey)(s.DeviceKey(id))); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "device.yaml")
	err := deviceconfig.Write(path, deviceconfig.File{Broker: s.BrokerURL(), DeviceID: id, DeviceKeyFile: "device.key",
		StateDir: "state", TopicRoot: s.Topics().Root()})
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// bucket is an admin handle on the stack's bucket.
func (s *stack) bucket(t *testing.T) *oss.Bucket {
	t.Helper()
	c, err := s.OSSClient()
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Bucket(s.Bucket())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// runCmd runs the command in-process with env as its whole environment.
func runCmd(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return runWith(t, &Main{}, env, args...)
}

func runWith(t *testing.T, m *Main, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return runCtx(t, ctx, m, env, args...)
}

// runCtx runs the command in-process until it ends or ctx does (as SIGINT ends it).
func runCtx(t *testing.T, ctx context.Context, m *Main, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut testutil.SyncBuffer
	m.Stdout, m.Stderr = &out, &errOut
	m.Getenv = func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if m.IsTerminal == nil {
		m.IsTerminal = func(io.Writer) bool { return false }
	}
	if m.WorkDir == "" {
		m.WorkDir = t.TempDir() // no default config file unless a test puts one there
	}
	code = m.Run(ctx, args)
	return code, out.String(), errOut.String()
}

// testTime dates test clips.
var testTime = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

// writeClip writes a file of n random bytes dated mtime.
func writeClip(t *testing.T, dir, name string, n int, mtime time.Time) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	return path
}
