package soak

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/clipgate/clipgate/internal/broker"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/internal/mqttclient"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/topics"
)

// Consumer is a backend consumer with a persistent session (clean session false, QoS 1):
// events published while it is away, or while the broker restarts, are kept for it. It
// records every upload event it receives.
type Consumer struct {
	client *mqttclient.Client
	filter string

	mu         sync.Mutex
	deliveries map[string]int                   // event ID -> times received
	events     map[string]*protocol.UploadEvent // first delivery of each ID
	malformed  int
	changed    chan struct{} // closed and replaced at every new event ID
}

// NewConsumer connects a consumer with the cluster's consumer account and client ID
// broker.ServiceClientID("consumer", instance), subscribed to every device's upload
// events. The same instance name resumes the same session. ctx bounds the first
// connection and subscription.
func NewConsumer(ctx context.Context, c *inproc.Stack, instance string) (*Consumer, error) {
	user, pw := c.ServiceAccount(topics.RoleConsumer)
	k := &Consumer{
		filter:     c.Topics().EventFilter(""),
		deliveries: make(map[string]int),
		events:     make(map[string]*protocol.UploadEvent),
		changed:    make(chan struct{}),
	}
	client, err := mqttclient.New(mqttclient.Config{
		BrokerURL:      c.BrokerURL(),
		ClientID:       broker.ServiceClientID(user, instance),
		Username:       user,
		Password:       pw,
		Persistent:     true,
		Backoff:        mqttclient.Backoff{Min: 500 * time.Millisecond, Max: 2 * time.Second},
		Subscriptions:  []mqttclient.Subscription{{Filter: k.filter, QoS: 1, Handler: k.onMessage}},
		DefaultHandler: k.onMessage, // queued messages arrive before the subscription is renewed
	})
	if err != nil {
		return nil, fmt.Errorf("soak: consumer: %w", err)
	}
	k.client = client
	if err := client.Connect(ctx); err != nil {
		client.Close()
		return nil, fmt.Errorf("soak: consumer: %w", err)
	}
	return k, nil
}

func (k *Consumer) onMessage(m mqttclient.Message) {
	ev, err := protocol.DecodeUploadEvent(m.Payload())
	k.mu.Lock()
	defer k.mu.Unlock()
	if err != nil {
		k.malformed++
		return
	}
	k.deliveries[ev.ID]++
	if k.deliveries[ev.ID] == 1 {
		k.events[ev.ID] = ev
		close(k.changed)
		k.changed = make(chan struct{})
	}
}

// Close disconnects the consumer; its session stays on the broker.
func (k *Consumer) Close() { k.client.Close() }

// Seen reports how many times event id was received.
func (k *Consumer) Seen(id string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.deliveries[id]
}

// WaitAll waits until every ID in ids has been received at least once, or ctx ends; it
// returns how many are still missing.
func (k *Consumer) WaitAll(ctx context.Context, ids []string) int {
	for {
		k.mu.Lock()
		missing := 0
		for _, id := range ids {
			if k.deliveries[id] == 0 {
				missing++
			}
		}
		changed := k.changed
		k.mu.Unlock()
		if missing == 0 {
			return 0
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return missing
		}
	}
}

// Snapshot returns a copy of the deliveries per event ID, the events (first delivery of
// each ID) and the count of malformed messages.
func (k *Consumer) Snapshot() (deliveries map[string]int, events map[string]*protocol.UploadEvent, malformed int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	deliveries = make(map[string]int, len(k.deliveries))
	for id, n := range k.deliveries {
		deliveries[id] = n
	}
	events = make(map[string]*protocol.UploadEvent, len(k.events))
	for id, ev := range k.events {
		events[id] = ev
	}
	return deliveries, events, k.malformed
}
