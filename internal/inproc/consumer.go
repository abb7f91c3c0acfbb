package inproc

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/internal/broker"
	"github.com/clipgate/clipgate/internal/mqttstore"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/topics"
)

// consumerBuffer is the capacity of Consumer.Events. A message is acknowledged to the
// broker only once its event is in the channel.
const consumerBuffer = 1024

// subscribeTimeout bounds one SUBSCRIBE of a consumer.
const subscribeTimeout = 10 * time.Second

// Consumer is an MQTT client with the stack's consumer service account, subscribed to
// every device's upload events (clean session, QoS 1), decoding them strictly.
type Consumer struct {
	stack  *Stack
	client mqtt.Client
	filter string
	log    zerolog.Logger
	events chan *clipgate.UploadEvent
	done   chan struct{}
	first  chan error // result of the first subscription
	bad    atomic.Int64

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup // message handlers and subscriptions in flight
}

// Consumer connects a consumer to the broker and subscribes it to the upload events of
// every device: in the shared-subscription group group (each event goes to one member of
// the group), or, when group is "", on its own (it gets every event). It returns once the
// subscription is acknowledged; ctx bounds that. Close it, or the stack's Close does.
func (s *Stack) Consumer(ctx context.Context, group string) (*Consumer, error) {
	if group != "" && !topics.ValidGroup(group) {
		return nil, fmt.Errorf("clipgatetest: %q is not a valid shared-subscription group", group)
	}
	user, pw := s.ServiceAccount(topics.RoleConsumer)
	c := &Consumer{
		stack:  s,
		filter: s.scheme.EventFilter(group),
		log:    s.log.With().Str("component", "consumer").Str("group", group).Logger(),
		events: make(chan *clipgate.UploadEvent, consumerBuffer),
		done:   make(chan struct{}),
		first:  make(chan error, 1),
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	s.consumers[c] = struct{}{}
	s.mu.Unlock()

	opts := mqtt.NewClientOptions().
		SetStore(mqttstore.New()). // a copy per resend: paho issue #703
		AddBroker(s.BrokerURL()).
		SetClientID(broker.ServiceClientID(user, mustHex(6))).
		SetUsername(user).
		SetPassword(pw).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetOrderMatters(false).
		SetAutoReconnect(true).
		SetConnectRetry(false).
		SetMaxReconnectInterval(time.Second).
		SetConnectTimeout(10 * time.Second).
		SetOnConnectHandler(c.subscribe). // also after every reconnect: the session is clean
		SetDefaultPublishHandler(c.onMessage)
	c.client = mqtt.NewClient(opts)

	err := wait(ctx, c.client.Connect())
	if err == nil {
		select {
		case err = <-c.first:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("clipgatetest: consumer: %w", err)
	}
	return c, nil
}

// wait waits for a paho token or ctx.
func wait(ctx context.Context, tok mqtt.Token) error {
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Consumer) subscribe(client mqtt.Client) {
	if !c.enter() {
		return
	}
	defer c.wg.Done()
	tok := client.Subscribe(c.filter, 1, c.onMessage)
	var err error
	switch {
	case !tok.WaitTimeout(subscribeTimeout):
		err = errors.New("subscription not acknowledged in time")
	case tok.Error() != nil:
		err = tok.Error()
	default:
		// One filter, one result; paho keys it by the filter without "$share/{group}/".
		for _, code := range tok.(*mqtt.SubscribeToken).Result() {
			if code > 2 {
				err = fmt.Errorf("the broker refused the subscription to %s (code %#x)", c.filter, code)
			}
		}
	}
	if err != nil {
		c.log.Error().Err(err).Msg("subscribe")
	}
	select {
	case c.first <- err:
	default: // only the first result is waited for
	}
}

// enter registers a callback unless the consumer is closed.
func (c *Consumer) enter() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.wg.Add(1)
	return true
}

func (c *Consumer) onMessage(_ mqtt.Client, m mqtt.Message) {
	if !c.enter() {
		return
	}
	defer c.wg.Done()
	ev, err := protocol.DecodeUploadEvent(m.Payload())
	if err != nil {
		c.bad.Add(1)
		c.log.Warn().Err(err).Str("topic", m.Topic()).Msg("malformed upload event dropped")
		return
	}
	if _, dev, ok := c.stack.scheme.Parse(m.Topic()); !ok || dev != ev.Device {
		c.bad.Add(1)
		c.log.Warn().Str("topic", m.Topic()).Str("device", ev.Device).Msg("upload event on another device's topic dropped")
		return
	}
	select {
	case c.events <- ev:
	case <-c.done:
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
	c.client.Disconnect(250)
	c.wg.Wait()
	close(c.events)
	c.stack.mu.Lock()
	delete(c.stack.consumers, c)
	c.stack.mu.Unlock()
	return nil
}
