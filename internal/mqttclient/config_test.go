package mqttclient_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clipgate/clipgate/internal/mqttclient"
	"github.com/clipgate/clipgate/internal/testpki"
)

func TestCheckURL(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{
		"tcp://127.0.0.1:1883", "mqtt://broker.example:1883", "ssl://broker:8883", "tls://[::1]:8883",
		"mqtts://broker:8883/", "ws://broker/mqtt", "wss://broker:443/mqtt?x=1", "tcp://localhost:65535",
	} {
		if err := mqttclient.CheckURL("BrokerURL", ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for url, want := range map[string]string{
		"":                          "BrokerURL is required",
		"127.0.0.1:1883":            "want scheme://host:port with scheme tcp, mqtt,",
		"broker":                    "want scheme://host:port",
		"://broker:1883":            "missing protocol scheme",
		"http://127.0.0.1:1883":     `scheme "http" is not one of`,
		"unix:///tmp/mqtt.sock":     `scheme "unix"`,
		"tcp://":                    "has no host",
		"tcp://:1883":               "has no host",
		"tcp://broker":              "has no port",
		"ssl://broker:":             "has no port",
		"tcp://broker:0":            "port 0 is not 1 to 65535",
		"tcp://broker:65536":        "port 65536",
		"tcp://broker:x":            "invalid port",
		"tcp://[::1":                "missing ']'",
		"tcp://user:pw@broker:1883": "holds credentials",
		"tcp://broker:1883?x=1":     "query or fragment",
		"tcp://broker:1883#f":       "query or fragment",
		"tcp://broker:1883/path":    "a path means nothing",
		"tcp:broker:1883":           "want scheme://host:port",
		" tcp://broker:1883":        "first path segment",
		"tcp://bro ker:1883":        "invalid character",
		"tcp://broker:1883\n":       "invalid control character",
		"tcp://bro\x00ker:1883":     "invalid control character",
	} {
		err := mqttclient.CheckURL("BrokerURL", url)
		var ue *mqttclient.URLError
		if !errors.As(err, &ue) || ue.Field != "BrokerURL" || !strings.HasPrefix(err.Error(), "BrokerURL ") || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want a *URLError naming BrokerURL and saying %q", url, err, want)
		}
	}
	// The field is the caller's name for the setting.
	if err := mqttclient.CheckURL("--broker", "http://h:1"); err == nil || !strings.HasPrefix(err.Error(), `--broker "http://h:1": scheme`) {
		t.Errorf("field name: %v", err)
	}
}

func TestUsesTLS(t *testing.T) {
	t.Parallel()
	for url, want := range map[string]bool{
		"ssl://h:1": true, "tls://h:1": true, "mqtts://h:1": true, "wss://h": true,
		"tcp://h:1": false, "mqtt://h:1": false, "ws://h": false, "": false, "tcp://[::1": false,
	} {
		if got := mqttclient.UsesTLS(url); got != want {
			t.Errorf("UsesTLS(%q) = %v", url, got)
		}
	}
}

func TestNewRejectsGarbage(t *testing.T) {
	t.Parallel()
	handler := func(mqttclient.Message) {}
	good := mqttclient.Config{BrokerURL: "tcp://127.0.0.1:1883", ClientID: "svc:1",
		Subscriptions: []mqttclient.Subscription{{Filter: "a/+", QoS: 1, Handler: handler}}}
	for name, tc := range map[string]struct {
		mod  func(*mqttclient.Config)
		want string
	}{
		"no URL":       {func(c *mqttclient.Config) { c.BrokerURL = "" }, "BrokerURL is required"},
		"bad URL":      {func(c *mqttclient.Config) { c.BrokerURL = "http://h:1" }, "BrokerURL"},
		"no client ID": {func(c *mqttclient.Config) { c.ClientID = "" }, "ClientID is required"},
		"both credentials": {func(c *mqttclient.Config) {
			c.Username = "u"
			c.Credentials = func() (string, string) { return "", "" }
		}, "not both"},
		"short keep-alive":       {func(c *mqttclient.Config) { c.KeepAlive = time.Millisecond }, "KeepAlive"},
		"negative keep-alive":    {func(c *mqttclient.Config) { c.KeepAlive = -time.Second }, "KeepAlive"},
		"negative timeout":       {func(c *mqttclient.Config) { c.ConnectTimeout = -1 }, "ConnectTimeout"},
		"negative write":         {func(c *mqttclient.Config) { c.WriteTimeout = -1 }, "WriteTimeout"},
		"backoff min > max":      {func(c *mqttclient.Config) { c.Backoff = mqttclient.Backoff{Min: time.Second, Max: time.Millisecond} }, "Backoff"},
		"backoff no min":         {func(c *mqttclient.Config) { c.Backoff = mqttclient.Backoff{Max: time.Second} }, "Backoff"},
		"backoff huge":           {func(c *mqttclient.Config) { c.Backoff = mqttclient.Backoff{Min: 2 * time.Hour, Max: 3 * time.Hour} }, "Backoff"},
		"persistent, no default": {func(c *mqttclient.Config) { c.Persistent = true }, "DefaultHandler"},
		"will without topic":     {func(c *mqttclient.Config) { c.Will = &mqttclient.Will{QoS: 1} }, "Will"},
		"will QoS 3":             {func(c *mqttclient.Config) { c.Will = &mqttclient.Will{Topic: "a", QoS: 3} }, "Will"},
		"empty filter":           {func(c *mqttclient.Config) { c.Subscriptions[0].Filter = "" }, "subscription"},
		"subscription QoS 3":     {func(c *mqttclient.Config) { c.Subscriptions[0].QoS = 3 }, "QoS 3"},
		"no handler at all":      {func(c *mqttclient.Config) { c.Subscriptions[0].Handler = nil }, "no Handler"},
	} {
		cfg := good
		cfg.Subscriptions = append([]mqttclient.Subscription(nil), good.Subscriptions...)
		tc.mod(&cfg)
		if _, err := mqttclient.New(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New = %v, want an error saying %q", name, err, tc.want)
		}
	}
	if _, err := mqttclient.New(good); err != nil {
		t.Fatalf("good config: %v", err)
	}
}

// The options every client gets: protocol 3.1.1 asked for, concurrent handlers, the
// session kind asked for, no paho connect retry (Connect's own), the timeouts.
func TestOptions(t *testing.T) {
	t.Parallel()
	c := newClient(t, mqttclient.Config{BrokerURL: "tcp://127.0.0.1:1883", ClientID: "svc:1", Username: "svc", Password: "pw",
		Persistent: true, DefaultHandler: func(mqttclient.Message) {}, KeepAlive: 45 * time.Second, WriteTimeout: 3 * time.Second,
		Will: &mqttclient.Will{Topic: "w", Payload: []byte("gone"), QoS: 1, Retained: true}})
	o := c.Paho().OptionsReader()
	if o.ProtocolVersion() != 4 || o.Order() || o.CleanSession() || o.ConnectRetry() || !o.AutoReconnect() ||
		o.KeepAlive() != 45*time.Second || o.WriteTimeout() != 3*time.Second || o.ConnectTimeout() != mqttclient.DefaultConnectTimeout ||
		o.ClientID() != "svc:1" || o.Username() != "svc" || !o.WillEnabled() || o.WillTopic() != "w" || !o.WillRetained() {
		t.Fatalf("options: protocol %d, order %v, clean %v, retry %v, reconnect %v, keepalive %v, write %v, connect %v, id %q, will %v",
			o.ProtocolVersion(), o.Order(), o.CleanSession(), o.ConnectRetry(), o.AutoReconnect(), o.KeepAlive(), o.WriteTimeout(),
			o.ConnectTimeout(), o.ClientID(), o.WillEnabled())
	}
	d := newClient(t, mqttclient.Config{BrokerURL: "tcp://127.0.0.1:1883", ClientID: "svc:2", OrderMatters: true, NoReconnect: true})
	if o := d.Paho().OptionsReader(); !o.CleanSession() || !o.Order() || o.AutoReconnect() || o.KeepAlive() != mqttclient.DefaultKeepAlive {
		t.Fatalf("clean session %v, order %v, reconnect %v, keepalive %v", o.CleanSession(), o.Order(), o.AutoReconnect(), o.KeepAlive())
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	b := mqttclient.Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	for n, want := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second} {
		if w := b.Window(n); w != want {
			t.Errorf("Window(%d) = %v, want %v", n, w, want)
		}
	}
	for _, n := range []int{-1, 0, 3, 40, 1 << 30} {
		w := b.Window(n)
		for range 100 {
			if d := b.Delay(n); d < w/2 || d > w {
				t.Fatalf("Delay(%d) = %v, outside [%v, %v]", n, d, w/2, w)
			}
		}
	}
	if w := (mqttclient.Backoff{Min: time.Hour, Max: 24 * time.Hour}).Window(1 << 20); w != 24*time.Hour {
		t.Errorf("large retry: window %v", w)
	}
}

func TestTLSFilesGarbage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := testpki.NewCA(t, "CA")
	caFile := ca.WriteCA(t, dir)
	certFile, keyFile := testpki.WritePair(t, dir, "cam-1", ca.Issue(t, "cam-1", false))
	_, otherKey := testpki.WritePair(t, dir, "cam-2", ca.Issue(t, "cam-2", false))
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	for name, tc := range map[string]struct {
		files mqttclient.TLSFiles
		field string
		want  string
	}{
		"missing CA file":      {mqttclient.TLSFiles{CAFile: missing}, "CAFile", "no such file"},
		"CA file not PEM":      {mqttclient.TLSFiles{CAFile: garbage}, "CAFile", "no PEM certificate found"},
		"CA file a directory":  {mqttclient.TLSFiles{CAFile: dir}, "CAFile", "is a directory"},
		"cert without key":     {mqttclient.TLSFiles{CertFile: certFile}, "KeyFile", "without its key file"},
		"key without cert":     {mqttclient.TLSFiles{KeyFile: keyFile}, "CertFile", "without its certificate file"},
		"key of another cert":  {mqttclient.TLSFiles{CertFile: certFile, KeyFile: otherKey}, "CertFile", "does not match"},
		"cert file not PEM":    {mqttclient.TLSFiles{CertFile: garbage, KeyFile: keyFile}, "CertFile", "failed to find any PEM data"},
		"missing cert file":    {mqttclient.TLSFiles{CertFile: missing, KeyFile: keyFile}, "CertFile", "no such file"},
		"CA file as key file":  {mqttclient.TLSFiles{CertFile: certFile, KeyFile: caFile}, "CertFile", "key"},
		"missing CA with cert": {mqttclient.TLSFiles{CAFile: missing, CertFile: certFile, KeyFile: keyFile}, "CAFile", "no such file"},
	} {
		_, err := tc.files.Load()
		var fe *mqttclient.FileError
		if !errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want a *FileError on %s saying %q", name, err, tc.field, tc.want)
		}
	}
	if _, err := mqttclient.LoadCA(missing); !errors.Is(err, fs.ErrNotExist) || strings.Count(err.Error(), missing) != 1 {
		t.Errorf("LoadCA of a missing file: %v, want fs.ErrNotExist naming the file once", err)
	}
	c, err := mqttclient.TLSFiles{CAFile: caFile, CertFile: certFile, KeyFile: keyFile, ServerName: "broker"}.Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.RootCAs == nil || len(c.Certificates) != 1 || c.ServerName != "broker" || c.MinVersion == 0 {
		t.Fatalf("config: roots %v, %d certificates, server name %q, min version %#x", c.RootCAs != nil, len(c.Certificates), c.ServerName, c.MinVersion)
	}
}
