package inproc_test

import (
	"context"
	"testing"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/events"
	"github.com/clipgate/clipgate/internal/inproc"
)

// natsConsumer starts an events consumer on the stack's JetStream durable consumer durable
// that hands every handled event to the returned channel.
func natsConsumer(t *testing.T, ctx context.Context, s *inproc.Stack, durable, instance string) <-chan *events.Event {
	t.Helper()
	src, err := s.EventsSource(durable, instance)
	if err != nil {
		t.Fatal(err)
	}
	client, err := s.OSSClient()
	if err != nil {
		t.Fatal(err)
	}
	bucket, err := client.Bucket(s.Bucket())
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan *events.Event, 1024)
	c, err := events.NewConsumer(events.Config{Source: src, Bucket: s.Bucket(), Prefix: s.Prefix(), OSS: bucket},
		func(_ context.Context, ev *events.Event) error { ch <- ev; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return ch
}

// TestNATSUploadAndEvents runs a device upload through a 3-node NATS cluster: the
// device connects over MQTT through the auth callout, gets credentials from a token
// worker of the NATS queue group, uploads, and the event reaches a JetStream consumer on
// $MQTT_msgs, verified against OSS.
func TestNATSUploadAndEvents(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s := inproc.New(t, inproc.Options{Engine: inproc.EngineNATS, Workers: 2})
	evs := natsConsumer(t, ctx, s, "test", "c1")
	kit := s.Kit(t, ctx, "cam-01", nil)
	p, crc := writeClip(t, t.TempDir(), "a.mp4", 10<<10)
	sent, err := kit.Upload(ctx, devicekit.Clip{Path: p, RecordedAt: recorded})
	if err != nil {
		t.Fatal(err)
	}
	checkObject(t, s, sent.Key, 10<<10, crc)
	select {
	case ev := <-evs:
		if ev.ID != sent.ID || !ev.Verified || ev.Publisher != "cam-01" {
			t.Errorf("consumer got %+v (verified %v, publisher %s), the device sent %+v", ev.UploadEvent, ev.Verified, ev.Publisher, sent)
		}
	case <-ctx.Done():
		t.Fatal("no event")
	}
}
