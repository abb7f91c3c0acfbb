package natsevents_test

import (
	"context"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/events"
	"github.com/clipgate/clipgate/events/natsevents"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/topics"
)

// TestConsumerOnNATS runs an events consumer on a source from New against a 3-node
// NATS JetStream cluster: a device's upload, announced over the MQTT gateway, reaches
// the handler verified (its size and key are those the device uploaded).
func TestConsumerOnNATS(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := inproc.New(t, inproc.Options{Engine: inproc.EngineNATS})
	user, pw := s.ServiceAccount(topics.RoleConsumer)
	cl := s.Cluster()
	src, err := natsevents.New(natsevents.Config{
		URLs: cl.ClientURLs(), Username: user, Password: pw, Name: user + ":indexer-1",
		Topics: s.Topics(), Durable: "indexer", Replicas: len(cl.Nodes()),
		MQTTURL: cl.Nodes()[0].MQTTURL(),
	})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan events.Event, 4)
	c, err := events.NewConsumer(events.Config{
		Source: src, Topics: s.Topics(), Bucket: s.Bucket(), Prefix: s.Prefix(),
		OSS: s.AdminBucket(t),
	}, func(_ context.Context, ev *events.Event) error {
		got <- *ev
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}

	kit, err := devicekit.New(s.DeviceConfig("cam-nats"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kit.Close() })
	if err := kit.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	clip := make([]byte, 4096+int(randByte(t)))
	_, _ = rand.Read(clip)
	path := filepath.Join(t.TempDir(), "clip.mp4")
	if err := os.WriteFile(path, clip, 0o600); err != nil {
		t.Fatal(err)
	}
	up, err := kit.Upload(ctx, devicekit.Clip{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-got:
		if ev.Publisher != "cam-nats" || ev.Device != "cam-nats" || ev.Key != up.Key || ev.ID != up.ID {
			t.Fatalf("handled %s/%s %s %s, want cam-nats %s %s", ev.Publisher, ev.Device, ev.Key, ev.ID, up.Key, up.ID)
		}
		if !ev.Verified || ev.Rejected() || ev.Size != int64(len(clip)) || ev.ETag == "" {
			t.Fatalf("not verified: %+v, want size %d", ev, len(clip))
		}
	case <-ctx.Done():
		t.Fatalf("the upload never reached the handler: %+v", c.Stats())
	}
}

func randByte(t *testing.T) byte {
	t.Helper()
	var b [1]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return b[0]
}

// TestNewRefusesBadConfig: each bad configuration is refused by New with
// ErrInvalidConfig and a message naming what is wrong.
func TestNewRefusesBadConfig(t *testing.T) {
	t.Parallel()
	good := natsevents.Config{URLs: []string{"nats://127.0.0.1:4222"}, Username: "consumer", Password: "pw"}
	if _, err := natsevents.New(good); err != nil {
		t.Fatalf("good config refused: %v", err)
	}
	for name, tc := range map[string]struct {
		edit func(*natsevents.Config)
		want string
	}{
		"no URL":        {func(c *natsevents.Config) { c.URLs = nil }, "at least one NATS URL"},
		"MQTT URL":      {func(c *natsevents.Config) { c.URLs = []string{"tcp://127.0.0.1:1883"} }, `"tcp://127.0.0.1:1883"`},
		"garbage URL":   {func(c *natsevents.Config) { c.URLs = []string{"\x00::"} }, "want nats://host:port"},
		"no user":       {func(c *natsevents.Config) { c.Username = "" }, "Username and Password"},
		"no password":   {func(c *natsevents.Config) { c.Password = "" }, "Username and Password"},
		"dotted name":   {func(c *natsevents.Config) { c.Durable = "a.b" }, `Durable "a.b"`},
		"wildcard name": {func(c *natsevents.Config) { c.Durable = "a>" }, `Durable "a>"`},
		"space in name": {func(c *natsevents.Config) { c.Durable = "a b" }, `Durable "a b"`},
		"tiny AckWait":  {func(c *natsevents.Config) { c.AckWait = time.Millisecond }, "AckWait 1ms"},
		"neg AckWait":   {func(c *natsevents.Config) { c.AckWait = -time.Second }, "negative"},
		"neg Replicas":  {func(c *natsevents.Config) { c.Replicas = -1 }, "negative"},
		"neg pending":   {func(c *natsevents.Config) { c.MaxAckPending = -1 }, "negative"},
		"bad MQTT URL":  {func(c *natsevents.Config) { c.MQTTURL = "http://127.0.0.1:1883" }, `scheme "http"`},
		"MQTT no port":  {func(c *natsevents.Config) { c.MQTTURL = "tcp://broker" }, "has no port"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg := good
			tc.edit(&cfg)
			src, err := natsevents.New(cfg)
			if !errors.Is(err, natsevents.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, %v; want ErrInvalidConfig with %q", src, err, tc.want)
			}
		})
	}
}

// TestStartErrorNamesTheCluster: a consumer whose NATS cluster cannot be reached fails
// Start with an error naming the NATS URL, not the unused MQTT BrokerURL and ClientID.
func TestStartErrorNamesTheCluster(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "nats://" + ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	src, err := natsevents.New(natsevents.Config{URLs: []string{url}, Username: "consumer", Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	// A real SDK bucket, never called: Start fails before any event arrives.
	client, err := oss.New("http://127.0.0.1:1", "unused", "unused")
	if err != nil {
		t.Fatal(err)
	}
	bucket, err := client.Bucket("clips")
	if err != nil {
		t.Fatal(err)
	}
	c, err := events.NewConsumer(events.Config{
		Source: src, Bucket: "clips", OSS: bucket,
	}, func(context.Context, *events.Event) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err = c.Start(ctx)
	if err == nil || !strings.Contains(err.Error(), url) || strings.Contains(err.Error(), "connecting to  as") {
		t.Fatalf("Start = %v; want an error naming %s and not the unused BrokerURL", err, url)
	}
}
