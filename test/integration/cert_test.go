package integration

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/broker"
	"github.com/clipgate/clipgate/internal/console"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/testpki"
	"github.com/clipgate/clipgate/internal/tokenworker"
	"github.com/clipgate/clipgate/topics"
)

// TestCertificateDeviceUploads (issue 12, point 2): a device holding only a client
// certificate and its key (ECDSA P-256 or Ed25519), and no device key, connects over mTLS,
// gets credentials sealed to its certificate, uploads a clip, and the console verifies the
// event against OSS and indexes the clip.
func TestCertificateDeviceUploads(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, 2*time.Minute)
	dir := t.TempDir()
	serverCA, fleetCA := testpki.NewCA(t, "server CA"), testpki.NewCA(t, "fleet CA")
	certFile, keyFile := testpki.WritePair(t, dir, "broker", serverCA.Issue(t, "broker", true))
	fleetPool := x509.NewCertPool()
	fleetPool.AddCert(fleetCA.Cert)
	stack := inproc.New(t, inproc.Options{
		BrokerConfig: func(c *broker.Config) {
			c.TLS = broker.TLSConfig{Addr: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile, ClientCAFile: fleetCA.WriteCA(t, dir)}
		},
		WorkerConfig: func(c *tokenworker.Config) { c.FleetCA = fleetPool },
	})
	db := startConsole(ctx, t, stack)

	serverPool := x509.NewCertPool()
	serverPool.AddCert(serverCA.Cert)
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for dev, key := range map[string]crypto.Signer{"cam-cert-p256": p256, "cam-cert-ed25519": ed} {
		cert := fleetCA.IssueClient(t, dev, testpki.ClientOptions{Key: key})
		kit := newKit(ctx, t, stack, dev, func(c *devicekit.Config) {
			c.BrokerURL = stack.BrokerTLSURL()
			c.DeviceKey = nil
			c.TLS = &tls.Config{RootCAs: serverPool, Certificates: []tls.Certificate{cert}}
		})
		clip, err := writeClip(t.TempDir(), "clip.mp4", 64<<10)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := kit.Upload(ctx, devicekit.Clip{Path: clip.path})
		if err != nil {
			t.Fatalf("%s: Upload: %v", dev, err)
		}
		if err := checkObject(stack.AdminBucket(t), ev.Key, clip.data, "Normal"); err != nil {
			t.Fatalf("%s: %v", dev, err)
		}
		c := waitClip(ctx, t, db, ev.Key)
		if !c.Verified || c.Device != dev || c.Size != int64(len(clip.data)) {
			t.Fatalf("%s: console indexed %+v, want a verified clip of the device", dev, c)
		}
	}
}

// TestCertificateDeviceRefused: without a device key, a certificate the workers do not
// accept gets no credentials: a foreign CA is refused by the broker at the TLS handshake;
// a certificate the broker accepts but the workers' fleet CA does not (here the workers
// trust no CA at all) gets "unauthenticated".
func TestCertificateDeviceRefused(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, time.Minute)
	dir := t.TempDir()
	serverCA, fleetCA, foreign := testpki.NewCA(t, "server CA"), testpki.NewCA(t, "fleet CA"), testpki.NewCA(t, "foreign CA")
	certFile, keyFile := testpki.WritePair(t, dir, "broker", serverCA.Issue(t, "broker", true))
	stack := inproc.New(t, inproc.Options{
		BrokerConfig: func(c *broker.Config) {
			c.TLS = broker.TLSConfig{Addr: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile, ClientCAFile: fleetCA.WriteCA(t, dir)}
		},
	})
	serverPool := x509.NewCertPool()
	serverPool.AddCert(serverCA.Cert)
	cfg := func(dev string, ca *testpki.CA) devicekit.Config {
		c := stack.DeviceConfig(dev)
		c.BrokerURL, c.DeviceKey = stack.BrokerTLSURL(), nil
		c.TLS = &tls.Config{RootCAs: serverPool, Certificates: []tls.Certificate{ca.IssueClient(t, dev, testpki.ClientOptions{})}}
		c.RequestTimeout = 3 * time.Second
		return c
	}

	k, err := devicekit.New(cfg("cam-foreign", foreign))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	cctx := testContext(t, 2*time.Second)
	if err := k.Connect(cctx); err == nil {
		t.Fatal("a certificate of a foreign CA connected")
	}

	k2, err := devicekit.New(cfg("cam-noworkerca", fleetCA))
	if err != nil {
		t.Fatal(err)
	}
	defer k2.Close()
	if err := k2.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = k2.Credentials(ctx)
	var ae *clipgate.AuthError
	if !errors.As(err, &ae) || ae.Code != clipgate.CodeUnauthenticated {
		t.Fatalf("Credentials at workers without a fleet CA: %v, want unauthenticated", err)
	}

	// A certificate whose CN is another device is refused by devicekit.New already.
	bad := stack.DeviceConfig("cam-a")
	bad.BrokerURL, bad.DeviceKey = stack.BrokerTLSURL(), nil
	bad.TLS = &tls.Config{RootCAs: serverPool, Certificates: []tls.Certificate{fleetCA.IssueClient(t, "cam-b", testpki.ClientOptions{})}}
	if _, err := devicekit.New(bad); !errors.Is(err, devicekit.ErrConfig) {
		t.Fatalf("certificate of another device: %v, want ErrConfig", err)
	}
	bad.TLS.Certificates = []tls.Certificate{fleetCA.IssueClient(t, "cam-a", testpki.ClientOptions{})}
	bad.BrokerURL = stack.BrokerURL() // tcp: the certificate would never be presented
	if _, err := devicekit.New(bad); !errors.Is(err, devicekit.ErrConfig) {
		t.Fatalf("certificate with a TCP broker: %v, want ErrConfig", err)
	}
}

// startConsole runs a console on stack that indexes upload events into SQLite.
func startConsole(ctx context.Context, t testing.TB, stack *inproc.Stack) *console.DB {
	t.Helper()
	_, db := startConsoleWith(ctx, t, stack, topics.RoleConsumer, nil)
	return db
}

// startConsoleWith runs a console on stack with the service account of role (mod may
// adjust its configuration) and returns it with its SQLite index.
func startConsoleWith(ctx context.Context, t testing.TB, stack *inproc.Stack, role topics.Role, mod func(*console.Config)) (*console.Console, *console.DB) {
	t.Helper()
	db, err := console.OpenSQLite(ctx, filepath.Join(t.TempDir(), "console.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	client, err := stack.OSSClient()
	if err != nil {
		t.Fatal(err)
	}
	bucket, err := client.Bucket(stack.Bucket())
	if err != nil {
		t.Fatal(err)
	}
	hash, err := identity.HashPassword("operator-password")
	if err != nil {
		t.Fatal(err)
	}
	user, pass := stack.ServiceAccount(role)
	cfg := console.Config{
		BrokerURL: stack.BrokerURL(), Username: user, Password: pass, ClientID: user + ":test-console",
		Topics: stack.Topics(), Bucket: bucket, Prefix: stack.Prefix(), Store: db,
		Addr: "127.0.0.1:0", PasswordHash: hash,
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := console.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, db
}

// waitClip waits until the console has indexed key.
func waitClip(ctx context.Context, t testing.TB, db *console.DB, key string) *console.Clip {
	t.Helper()
	for {
		c, err := db.Clip(ctx, key)
		if err == nil {
			return c
		}
		if !errors.Is(err, console.ErrNotFound) {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the console did not index %s", key)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
