package broker

import (
	"crypto/tls"
	"crypto/x509"
	"testing"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/clipgate/clipgate/internal/testpki"
)

// TestMutualTLS: on the TLS listener a device may authenticate with a certificate whose
// CN is its ID; a CN that differs from the client ID is refused; password logins still work.
func TestMutualTLS(t *testing.T) {
	serverCA := testpki.NewCA(t, "server CA")
	clientCA := testpki.NewCA(t, "device CA")
	rogueCA := testpki.NewCA(t, "rogue CA")
	dir := t.TempDir()
	certFile, keyFile := testpki.WritePair(t, dir, "server", serverCA.Issue(t, "broker", true))
	caFile := clientCA.WriteCA(t, dir)
	for _, require := range []bool{false, true} {
		e := newEnv(t, func(c *Config) {
			c.TLS = TLSConfig{Addr: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile, RequireClientCert: require}
		})
		roots := x509.NewCertPool()
		roots.AddCert(serverCA.Cert)
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
				tweak: tlsOpts(clientCA.Issue(t, "cam-tls", false))}, 0},
			"certificate and password": {clientOpts{clientID: "cam-tls2", username: "cam-tls2", password: e.devicePassword("cam-tls2"),
				tweak: tlsOpts(clientCA.Issue(t, "cam-tls2", false))}, 0},
			"certificate, wrong password": {clientOpts{clientID: "cam-tls3", username: "cam-tls3", password: e.devicePassword("cam-x"),
				tweak: tlsOpts(clientCA.Issue(t, "cam-tls3", false))}, 4},
			"CN is not the client ID": {clientOpts{clientID: "cam-x", username: "cam-x", password: e.devicePassword("cam-x"),
				tweak: tlsOpts(clientCA.Issue(t, "cam-tls", false))}, 5},
			"service with certificate": {clientOpts{clientID: "worker:tls", username: "worker", password: passwordOf("worker"),
				tweak: tlsOpts(clientCA.Issue(t, "worker:tls", false))}, 0},
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
		}{clientOpts{clientID: "cam-tls", username: "cam-tls", tweak: tlsOpts(rogueCA.Issue(t, "cam-tls", false))}, rogue}
		forced := rogueCA.Issue(t, "cam-tls", false)
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
