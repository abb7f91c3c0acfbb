package broker

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// testCA is a certificate authority generated for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a certificate for cn (a server certificate for 127.0.0.1 when server).
func (ca *testCA) issue(t *testing.T, cn string, server bool) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func writePEM(t *testing.T, dir string, c tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	keyDER, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestMutualTLS: on the TLS listener a device may authenticate with a certificate whose
// CN is its ID; a CN that differs from the client ID is refused; password logins still work.
func TestMutualTLS(t *testing.T) {
	serverCA := newCA(t, "server CA")
	clientCA := newCA(t, "device CA")
	rogueCA := newCA(t, "rogue CA")
	dir := t.TempDir()
	certFile, keyFile := writePEM(t, dir, serverCA.issue(t, "broker", true))
	caFile := filepath.Join(dir, "clients.pem")
	if err := os.WriteFile(caFile, clientCA.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, require := range []bool{false, true} {
		e := newEnv(t, func(c *Config) {
			c.TLS = TLSConfig{Addr: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile, RequireClientCert: require}
		})
		roots := x509.NewCertPool()
		roots.AddCert(serverCA.cert)
		tlsOpts := func(certs ...tls.Certificate) func(*paho.ClientOptions) {
			return func(o *paho.ClientOptions) {
				o.Servers = nil
				o.AddBroker("ssl://" + e.b.TLSAddr())
				o.SetTLSConfig(&tls.Config{RootCAs: roots, Certificates: certs, MinVersion: tls.VersionTLS12})
			}
		}
		cases := map[string]struct {
			o    clientOpts
			want byte // 0xff: the TLS handshake fails (paho: network error 0xfe)
		}{
			"certificate, no password": {clientOpts{clientID: "cam-tls", username: "cam-tls",
				tweak: tlsOpts(clientCA.issue(t, "cam-tls", false))}, 0},
			"certificate and password": {clientOpts{clientID: "cam-tls2", username: "cam-tls2", password: e.devicePassword("cam-tls2"),
				tweak: tlsOpts(clientCA.issue(t, "cam-tls2", false))}, 0},
			"certificate, wrong password": {clientOpts{clientID: "cam-tls3", username: "cam-tls3", password: e.devicePassword("cam-x"),
				tweak: tlsOpts(clientCA.issue(t, "cam-tls3", false))}, 4},
			"CN is not the client ID": {clientOpts{clientID: "cam-x", username: "cam-x", password: e.devicePassword("cam-x"),
				tweak: tlsOpts(clientCA.issue(t, "cam-tls", false))}, 5},
			"service with certificate": {clientOpts{clientID: "worker:tls", username: "worker", password: passwordOf("worker"),
				tweak: tlsOpts(clientCA.issue(t, "worker:tls", false))}, 0},
		}
		// Go's TLS client withholds a certificate that the server's CA list does not name:
		// with optional certificates the device then has neither certificate nor password.
		rogue := byte(4)
		if require {
			rogue = 0xff
		}
		cases["rogue CA"] = struct {
			o    clientOpts
			want byte
		}{clientOpts{clientID: "cam-tls", username: "cam-tls", tweak: tlsOpts(rogueCA.issue(t, "cam-tls", false))}, rogue}
		forced := rogueCA.issue(t, "cam-tls", false)
		cases["rogue CA certificate sent anyway"] = struct {
			o    clientOpts
			want byte
		}{clientOpts{clientID: "cam-tls", username: "cam-tls", password: e.devicePassword("cam-tls"),
			tweak: func(o *paho.ClientOptions) {
				o.Servers = nil
				o.AddBroker("ssl://" + e.b.TLSAddr())
				o.SetTLSConfig(&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12,
					GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &forced, nil }})
			}}, 0xff}
		if require {
			cases["password, no certificate"] = struct {
				o    clientOpts
				want byte
			}{clientOpts{clientID: "cam-pw", username: "cam-pw", password: e.devicePassword("cam-pw"), tweak: tlsOpts()}, 0xff}
		} else {
			cases["password, no certificate"] = struct {
				o    clientOpts
				want byte
			}{clientOpts{clientID: "cam-pw", username: "cam-pw", password: e.devicePassword("cam-pw"), tweak: tlsOpts()}, 0}
			// Without TLS there is no certificate, so a password is needed.
			cases["plain TCP, no password"] = struct {
				o    clientOpts
				want byte
			}{clientOpts{clientID: "cam-tls", username: "cam-tls"}, 4}
		}
		name := "optional client certificate"
		if require {
			name = "required client certificate"
		}
		t.Run(name, func(t *testing.T) {
			for name, c := range cases {
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					cl, code, err := e.tryConnect(c.o)
					if c.want == 0xff {
						if err == nil {
							t.Fatal("connected")
						}
						if code != 0xfe && code != 0xff {
							t.Fatalf("got a CONNACK %d, want a failed handshake", code)
						}
						return
					}
					if code != c.want {
						t.Fatalf("CONNACK %d (%v), want %d", code, err, c.want)
					}
					if c.want == 0 {
						cl.publish(t, "clipgate/v1/devices/"+c.o.clientID+"/status", 0, "up")
					}
				})
			}
		})
	}
}
