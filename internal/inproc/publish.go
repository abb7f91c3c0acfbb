package inproc

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/clipgate/clipgate/internal/broker"
	"github.com/clipgate/clipgate/internal/mqttclient"
	"github.com/clipgate/clipgate/topics"
)

// PublishAs publishes payload on topic with QoS 1 as the stack's service account of
// role, through its MQTT broker (or, on NATS, the cluster's MQTT gateway), as that
// service would, and returns once the broker has acknowledged it. It fails t otherwise.
func (s *Stack) PublishAs(t testing.TB, ctx context.Context, role topics.Role, topic string, payload []byte, retain bool) {
	t.Helper()
	user, pw := s.ServiceAccount(role)
	c, err := mqttclient.New(mqttclient.Config{
		BrokerURL:   s.BrokerURL(),
		ClientID:    broker.ServiceClientID(user, fmt.Sprintf("publish-%d", time.Now().UnixNano())),
		Username:    user,
		Password:    pw,
		NoReconnect: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Connect(ctx); err != nil {
		t.Fatalf("PublishAs %s: connect: %v", role, err)
	}
	tok := c.Publish(topic, 1, retain, payload)
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			t.Fatalf("PublishAs %s on %s: %v", role, topic, err)
		}
	case <-ctx.Done():
		t.Fatalf("PublishAs %s on %s: %v", role, topic, ctx.Err())
	}
}
