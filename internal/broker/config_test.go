package broker

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clipgate/clipgate/internal/identity"
)

func writeFile(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNewRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	fleet, _ := identity.NewFleetKeyring()
	keyFile := filepath.Join(dir, "connect.keys")
	if err := identity.WriteKeyring(keyFile, fleet.ConnectRoots()); err != nil {
		t.Fatal(err)
	}
	openKey := writeFile(t, dir, "open.key", "k1 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", 0o644)
	fleetFile := filepath.Join(dir, "fleet.keys")
	if err := identity.WriteKeyring(fleetFile, fleet); err != nil {
		t.Fatal(err)
	}
	rawKey := writeFile(t, dir, "raw.key", "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", 0o600)
	garbageKeys := writeFile(t, dir, "garbage.keys", "\x00\xff k1 k2 k3\n", 0o600)
	badAccounts := writeFile(t, dir, "accounts.yaml", "accounts:\n  - username: x\n    passwordHash: nope\n    role: admin\n", 0o600)
	badRevs := writeFile(t, dir, "revoked.txt", "cam-1\nnot a device id\n", 0o644)
	shortToken := writeFile(t, dir, "token", "short", 0o600)
	ok := func(c *Config) { c.ConnectKeysFile = keyFile }
	cases := map[string]struct {
		mod  func(*Config)
		want string
	}{
		"no connect keys":       {func(c *Config) {}, "connect keys"},
		"keys file open":        {func(c *Config) { c.ConnectKeysFile = openKey }, "group or others"},
		"keys file absent":      {func(c *Config) { c.ConnectKeysFile = filepath.Join(dir, "none") }, "no such file"},
		"old raw key file":      {func(c *Config) { c.ConnectKeysFile = rawKey }, "line 1"},
		"the fleet keys":        {func(c *Config) { c.ConnectKeysFile = fleetFile }, "never the fleet keys"},
		"a fleet keyring":       {func(c *Config) { c.ConnectKeys = fleet }, "never the fleet keys"},
		"keys file garbage":     {func(c *Config) { c.ConnectKeysFile = garbageKeys }, "line 1"},
		"bad accounts":          {func(c *Config) { ok(c); c.ServiceAccountsFile = badAccounts }, "bcrypt"},
		"bad revocations":       {func(c *Config) { ok(c); c.RevocationsFile = badRevs }, ":2"},
		"bad topic root":        {func(c *Config) { ok(c); c.TopicRoot = "a/#" }, "topicRoot"},
		"cert without key":      {func(c *Config) { ok(c); c.TLS.CertFile = "x.pem" }, "together"},
		"client CA without TLS": {func(c *Config) { ok(c); c.TLS.ClientCAFile = "ca.pem" }, "need certFile"},
		"require without CA":    {func(c *Config) { ok(c); c.TLS = TLSConfig{CertFile: "a", KeyFile: "b", RequireClientCert: true} }, "needs clientCAFile"},
		"missing cert files":    {func(c *Config) { ok(c); c.TLS = TLSConfig{CertFile: "/nonexistent/a", KeyFile: "/nonexistent/b"} }, "tls"},
		"no listener":           {func(c *Config) { ok(c); c.Addr = "none" }, "no MQTT listener"},
		"tiny packets":          {func(c *Config) { ok(c); c.MaxPacketSize = 100 }, "maxPacketSize"},
		"short session expiry":  {func(c *Config) { ok(c); c.SessionExpiry = time.Millisecond }, "sessionExpiry"},
		"huge session expiry":   {func(c *Config) { ok(c); c.SessionExpiry = 200 * 365 * 24 * time.Hour }, "sessionExpiry"},
		"negative writes":       {func(c *Config) { ok(c); c.MaxWritesPending = -1 }, "maxWritesPending"},
		"emqx without http":     {func(c *Config) { ok(c); c.EMQX.Enabled = true; c.HTTPAddr = "none" }, "emqx"},
		"short emqx token":      {func(c *Config) { ok(c); c.EMQX = EMQXConfig{Enabled: true, TokenFile: shortToken} }, "shorter"},
		"zero device burst":     {func(c *Config) { ok(c); c.DeviceRate = 1; c.DeviceBurst = -1 }, "deviceBurst"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := Config{}
			c.mod(&cfg)
			b, err := New(cfg)
			if err == nil {
				b.Close()
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not mention %q", err, c.want)
			}
		})
	}
}

func TestLifecycle(t *testing.T) {
	fleet, _ := identity.NewFleetKeyring()
	// A port in use: Start fails and leaves nothing running.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dataDir := filepath.Join(t.TempDir(), "data")
	b, err := New(Config{ConnectKeys: fleet.ConnectRoots(), Addr: busy.Addr().String(), HTTPAddr: "none", DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err == nil {
		t.Fatal("started on a busy port")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// The session store was closed: a new broker can open it.
	b2, err := New(Config{ConnectKeys: fleet.ConnectRoots(), Addr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	if err := b2.Start(); err != nil {
		t.Fatal(err)
	}
	if err := b2.Start(); err == nil {
		t.Fatal("started twice")
	}
	addr := b2.Addr()
	if err := b2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b2.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if err := b2.Start(); err == nil {
		t.Fatal("started after Close")
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatal("listener still open after Close")
	}

	// A data dir that is a file.
	file := writeFile(t, t.TempDir(), "f", "x", 0o600)
	b3, err := New(Config{ConnectKeys: fleet.ConnectRoots(), Addr: "127.0.0.1:0", HTTPAddr: "none", DataDir: file})
	if err != nil {
		t.Fatal(err)
	}
	if err := b3.Start(); err == nil {
		t.Fatal("started with a file as data dir")
	}
	b3.Close()

	// Never started: Close is fine.
	b4, err := New(Config{ConnectKeys: fleet.ConnectRoots()})
	if err != nil {
		t.Fatal(err)
	}
	if err := b4.Close(); err != nil {
		t.Fatal(err)
	}
}
