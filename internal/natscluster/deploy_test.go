package natscluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/clipgate/clipgate/internal/natsbus"
	"github.com/clipgate/clipgate/internal/testpki"
	"github.com/clipgate/clipgate/topics"
)

// TestDeployConfigs parses the shipped configuration files (deploy/nats) as nats-server
// does, and checks what clipgate relies on: the cluster of three, MQTT over TLS,
// JetStream, the auth callout with its issuer, and the partition mapping the token
// workers expect (natsbus.Mapping).
func TestDeployConfigs(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "clipgate test CA")
	cert, key := testpki.WritePair(t, dir, "node", ca.Issue(t, "localhost", true))
	kp, _ := nkeys.CreateAccount()
	pub, _ := kp.PublicKey()
	for k, v := range map[string]string{
		"TLS_CERT": cert, "TLS_KEY": key, "TLS_CA": ca.WriteCA(t, dir),
		"NATS_STORE_DIR": filepath.Join(dir, "js"), "CALLOUT_PASSWORD": "callout-secret", "SYS_PASSWORD": "sys-secret",
		"CALLOUT_ISSUER": pub, "NATS_ROUTE_1": "10.0.0.1:6222", "NATS_ROUTE_2": "10.0.0.2:6222", "NATS_ROUTE_3": "10.0.0.3:6222",
	} {
		t.Setenv(k, v)
	}
	src, dst := natsbus.Mapping(topics.Default(), DefaultPartitions)
	text, err := os.ReadFile("../../deploy/nats/cluster.conf")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(text), `"`+src+`": "`+dst+`"`) {
		t.Errorf("cluster.conf does not map %s to %s", src, dst)
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		o, err := server.ProcessConfigFile("../../deploy/nats/" + n + ".conf")
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		switch {
		case o.ServerName != n:
			t.Errorf("%s: server_name %q", n, o.ServerName)
		case o.Cluster.Name != "clipgate" || len(o.Routes) != 3 || o.Cluster.TLSConfig == nil:
			t.Errorf("%s: cluster %q, %d routes, TLS %v", n, o.Cluster.Name, len(o.Routes), o.Cluster.TLSConfig != nil)
		case !o.JetStream || o.StoreDir == "":
			t.Errorf("%s: JetStream %v, store %q", n, o.JetStream, o.StoreDir)
		case o.MQTT.Port != 8883 || o.MQTT.TLSConfig == nil:
			t.Errorf("%s: MQTT port %d, TLS %v", n, o.MQTT.Port, o.MQTT.TLSConfig != nil)
		case o.TLSConfig == nil:
			t.Errorf("%s: no client TLS", n)
		case o.AuthCallout == nil || o.AuthCallout.Issuer != pub || o.AuthCallout.Account != "AUTH":
			t.Errorf("%s: auth_callout %+v", n, o.AuthCallout)
		case o.SystemAccount != "SYS":
			t.Errorf("%s: system account %q", n, o.SystemAccount)
		}
	}
}
