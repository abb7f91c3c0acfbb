package inproc

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/internal/broker"
	"github.com/clipgate/clipgate/internal/mqttclient"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/topics"
)

// consumerBuffer is the capacity of Consumer.Events. A message is acknowledged to the
// broker only once its event is in the channel.
const consumerBuffer = 1024

// Consumer is an MQTT client with the stack's consumer service account, subscribed to
// every device's upload events (clean session, QoS 1), decoding them strictly.
type Consumer struct {
	stack  *Stack
	client interface{ Close() } // *mqttclient.Client, or *natsbus.Events on NATS
	log    zerolog.Logger
	events chan *clipgate.UploadEvent
	done   chan struct{}
	bad    atomic.Int64

	mu     sync.Mutex
	closed bool
}

// Consumer connects a consumer to the broker and subscribes it to the upload events of
// every device: in the shared-subscription group group (each event goes to one member of
// the group), or, when group is "", on its own (it gets every event). It returns once the
// subscription is acknowledged; ctx bounds that. Close it, or the stack's Close does. On
// Engine "nats" it is a JetStream durable consumer on $MQTT_msgs named group (a durable of
// its own when group is ""), acknowledging each event once it is in Events.
func (s *Stack) Consumer(ctx context.Context, group string) (*Consumer, error) {
	if group != "" && !topics.ValidGroup(group) {
		return nil, fmt.Errorf("clipgatetest: %q is not a valid shared-subscription group", group)
	}
	user, pw := s.ServiceAccount(topics.RoleConsumer)
	c := &Consumer{
		stack:  s,
		log:    s.log.With().Str("component", "consumer").Str("group", group).Logger(),
		events: make(chan *clipgate.UploadEvent, consumerBuffer),
		done:   make(chan struct{}),
	}
	if s.nats != nil {
		return s.natsConsumer(ctx, c, group)
	}
	client, err := mqttclient.New(mqttclient.Config{
		BrokerURL:     s.BrokerURL(),
		ClientID:      broker.ServiceClientID(user, mustHex(6)),
		Username:      user,
		Password:      pw,
		Backoff:       mqttclient.Backoff{Min: 100 * time.Millisecond, Max: time.Second},
		Subscriptions: []mqttclient.Subscription{{Filter: s.scheme.EventFilter(group), QoS: 1, Handler: func(m mqttclient.Message) { c.onMessage(m.Topic(), m.Payload()) }}},
		Logger:        c.log,
	})
	if err != nil {
		return nil, fmt.Errorf("clipgatetest: consumer: %w", err)
	}
	c.client = client
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		client.Close()
		return nil, ErrClosed
	}
	s.consumers[c] = struct{}{}
	s.mu.Unlock()

	if err := client.Connect(ctx); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("clipgatetest: consumer: %w", err)
	}
	return c, nil
}

// onMessage decodes one message and hands it on; it reports false if the consumer closed
// first.
func (c *Consumer) onMessage(topic string, payload []byte) bool {
	ev, err := protocol.DecodeUploadEvent(payload)
	if err != nil {
		c.bad.Add(1)
		c.log.Warn().Err(err).Str("topic", topic).Msg("malformed upload event dropped")
		return true
	}
	if _, dev, ok := c.stack.scheme.Parse(topic); !ok || dev != ev.Device {
		c.bad.Add(1)
		c.log.Warn().Str("topic", topic).Str("device", ev.Device).Msg("upload event on another device's topic dropped")
		return true
	}
	select {
	case c.events <- ev:
		return true
	case <-c.done:
		return false
	}
}

// Events returns the decoded upload events, in arrival order per device. The channel is
// closed by Close. Delivery is at least once: the same event ID may arrive again.
func (c *Consumer) Events() <-chan *clipgate.UploadEvent { return c.events }

// Next returns the next event, or ctx's error, or ErrClosed after Close.
func (c *Consumer) Next(ctx context.Context) (*clipgate.UploadEvent, error) {
	select {
	case ev, ok := <-c.events:
		if !ok {
			return nil, ErrClosed
		}
		return ev, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Malformed returns how many received messages were dropped because they were not valid
// upload events or named another device than their topic.
func (c *Consumer) Malformed() int64 { return c.bad.Load() }

// Close disconnects the consumer, waits for its callbacks and closes Events. It is safe to
// call more than once.
func (c *Consumer) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.done)
	c.mu.Unlock()
	c.client.Close() // waits for the handlers: none sends on events afterwards
	close(c.events)
	c.stack.mu.Lock()
	delete(c.stack.consumers, c)
	c.stack.mu.Unlock()
	return nil
}
