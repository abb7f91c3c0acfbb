package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	"github.com/rs/zerolog"

	"github.com/clipgate/clipgate/internal/broker"
	"github.com/clipgate/clipgate/internal/deviceconfig"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/localcloud"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/internal/tokenworker"
)

// The stack below is started by hand (local cloud, broker, one token worker), as the
// token worker's tests do; clipgatetest will replace it once it is on main.
const (
	testBucket = "clips-bucket"
	testPrefix = "clips/"
	testRole   = "device-uploader"
	rolePolicy = `{"Version":"1","Statement":[{"Effect":"Allow","Action":["oss:*"],"Resource":["acs:oss:*:*:clips-bucket","acs:oss:*:*:clips-bucket/*"]}]}`
)

// stack is a running clipgate on loopback.
type stack struct {
	fleet     []byte
	brokerURL string
	cloud     *localcloud.Server
	adminID   string
	adminKey  string
	revoked   *identity.Revocations
	dir       string
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// startStack starts the local cloud, the broker and a token worker; they stop when the
// test ends.
func startStack(t *testing.T) *stack {
	t.Helper()
	fleet, err := identity.NewFleetKey()
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{fleet: fleet, dir: t.TempDir(), revoked: identity.NewRevocations(),
		adminID: "LTAIadmin" + randomHex(t, 6), adminKey: randomHex(t, 15)}
	workerID, workerSecret := "LTAIworker"+randomHex(t, 6), randomHex(t, 15)

	cloudCfg := localcloud.Config{
		DataDir: filepath.Join(s.dir, "cloud"),
		Keys:    []localcloud.AccessKey{{ID: s.adminID, Secret: s.adminKey}, {ID: workerID, Secret: workerSecret}},
		Roles:   []localcloud.Role{{Name: testRole, Policy: rolePolicy}},
		Buckets: []string{testBucket},
		Logger:  zerolog.Nop(),
	}
	if err := os.Mkdir(cloudCfg.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if s.cloud, err = localcloud.Start(cloudCfg); err != nil {
		t.Fatalf("localcloud: %v", err)
	}
	t.Cleanup(func() { _ = s.cloud.Close() })

	password := randomHex(t, 12)
	hash, err := identity.HashPassword(password)
	if err != nil {
		t.Fatal(err)
	}
	accountsFile := filepath.Join(s.dir, "accounts.yaml")
	text := "accounts:\n  - username: tokenworker\n    passwordHash: \"" + hash + "\"\n    role: tokenworker\n"
	if err := os.WriteFile(accountsFile, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	accounts, err := identity.LoadServiceAccounts(accountsFile)
	if err != nil {
		t.Fatal(err)
	}
	nop := zerolog.Nop()
	b, err := broker.New(broker.Config{Addr: "127.0.0.1:0", HTTPAddr: "none", FleetKey: fleet, ServiceAccounts: accounts, Logger: &nop})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	s.brokerURL = "tcp://" + b.Addr()

	w, err := tokenworker.New(tokenworker.Config{
		BrokerURL:   s.brokerURL,
		Username:    "tokenworker",
		Password:    password,
		FleetKey:    fleet,
		Revocations: s.revoked,
		STS: tokenworker.STSConfig{
			Endpoint:        s.cloud.STSEndpoint(),
			Scheme:          "http",
			Region:          "cn-hangzhou",
			AccessKeyID:     workerID,
			AccessKeySecret: workerSecret,
			RoleARN:         "acs:ram::" + localcloud.DefaultAccountID + ":role/" + testRole,
		},
		OSS:    protocol.OSSInfo{Endpoint: s.cloud.OSSEndpoint(), Region: "cn-hangzhou", Bucket: testBucket, Prefix: testPrefix},
		Logger: zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Start(ctx); err != nil {
		t.Fatalf("tokenworker: %v", err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return s
}

// device writes the key and the config file of a device of s (as devstack does) and
// returns the config file's path.
func (s *stack) device(t *testing.T, id string) string {
	t.Helper()
	dir := t.TempDir()
	if err := identity.WriteKey(filepath.Join(dir, "device.key"), identity.DeriveDeviceKey(s.fleet, id)); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "device.yaml")
	err := deviceconfig.Write(path, deviceconfig.File{Broker: s.brokerURL, DeviceID: id, DeviceKeyFile: "device.key", StateDir: "state"})
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// bucket is an admin handle on the test bucket.
func (s *stack) bucket(t *testing.T) *oss.Bucket {
	t.Helper()
	c, err := oss.New(s.cloud.OSSEndpoint(), s.adminID, s.adminKey, oss.ForcePathStyle(true), oss.AuthVersion(oss.AuthV4), oss.Region("cn-hangzhou"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Bucket(testBucket)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// run runs the command in-process with env as its whole environment.
func run(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return runWith(t, &Main{}, env, args...)
}

func runWith(t *testing.T, m *Main, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut syncBuffer
	m.Stdout, m.Stderr = &out, &errOut
	m.Getenv = func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if m.IsTerminal == nil {
		m.IsTerminal = func(io.Writer) bool { return false }
	}
	if m.WorkDir == "" {
		m.WorkDir = t.TempDir() // no default config file unless a test puts one there
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
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
