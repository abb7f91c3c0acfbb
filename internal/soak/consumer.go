package soak

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/clipgate/clipgate/internal/broker"
	"github.com/clipgate/clipgate/internal/mqttstore"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/topics"
)

// Consumer is a backend consumer with a persistent session (clean session false, QoS 1):
// events published while it is away, or while the broker restarts, are kept for it. It
// records every upload event it receives.
type Consumer struct {
	client mqtt.Client
	filter string
	subErr chan error

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
func NewConsumer(ctx context.Context, c *Cluster, instance string) (*Consumer, error) {
	user, pw := c.ServiceAccount(topics.RoleConsumer)
	k := &Consumer{
		filter:     c.Topics().EventFilter(""),
		subErr:     make(chan error, 1),
		deliveries: make(map[string]int),
		events:     make(map[string]*protocol.UploadEvent),
		changed:    make(chan struct{}),
	}
	opts := mqtt.NewClientOptions().
		SetStore(mqttstore.New()). // a copy per resend: paho issue #703
		AddBroker(c.BrokerURL()).
		SetClientID(broker.ServiceClientID(user, instance)).
		SetUsername(user).
		SetPassword(pw).
		SetProtocolVersion(4).
		SetCleanSession(false).
		SetOrderMatters(false).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(500 * time.Millisecond).
		SetMaxReconnectInterval(2 * time.Second).
		SetConnectTimeout(10 * time.Second).
		SetDefaultPublishHandler(k.onMessage). // queued messages arrive before Subscribe returns
		SetOnConnectHandler(func(cl mqtt.Client) {
			tok := cl.Subscribe(k.filter, 1, k.onMessage)
			var err error
			switch {
			case !tok.WaitTimeout(10 * time.Second):
				err = errors.New("subscription not acknowledged in time")
			case tok.Error() != nil:
				err = tok.Error()
			default:
				if code := tok.(*mqtt.SubscribeToken).Result()[k.filter]; code > 2 {
					err = fmt.Errorf("subscription to %s refused (%#x)", k.filter, code)
				}
			}
			select {
			case k.subErr <- err:
			default:
			}
		})
	k.client = mqtt.NewClient(opts)
	k.client.Connect()
	select {
	case err := <-k.subErr:
		if err != nil {
			k.client.Disconnect(0)
			return nil, fmt.Errorf("soak: consumer: %w", err)
		}
	case <-ctx.Done():
		k.client.Disconnect(0)
		return nil, fmt.Errorf("soak: consumer: %w", ctx.Err())
	}
	return k, nil
}

func (k *Consumer) onMessage(_ mqtt.Client, m mqtt.Message) {
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
func (k *Consumer) Close() { k.client.Disconnect(250) }

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
