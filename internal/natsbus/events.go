package natsbus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/clipgate/clipgate/events"
	"github.com/clipgate/clipgate/topics"
)

// Defaults of EventsConfig.
const (
	DefaultDurable  = "clipgate-events"
	DefaultAckWait  = 30 * time.Second
	DefaultReplicas = 3
)

// EventsConfig configures Events.
type EventsConfig struct {
	Conn
	// Topics is the topic scheme; the zero value is topics.Default().
	Topics topics.Scheme
	// Durable is the JetStream durable consumer's name, shared by every process of one
	// backend service (each event goes to one of them); give each service its own
	// (indexer, transcoder, ...). Default DefaultDurable.
	Durable string
	// Replicas of the durable consumer: 3 in a cluster of 3 (default), 1 on one node.
	Replicas int
	// AckWait is how long a delivered event may stay unacknowledged before JetStream
	// delivers it again (a handler that failed, a process that died). Default 30s.
	AckWait time.Duration
	// MaxAckPending bounds the events delivered and not yet acknowledged, across the
	// processes; default 1024.
	MaxAckPending int
	// MQTTURL, when set, is the gateway's MQTT URL: if $MQTT_msgs does not exist yet
	// (no MQTT client has connected to the account since the cluster was created), the
	// service account connects there once so that the gateway creates it.
	MQTTURL string
}

// ErrNoMQTTStream is returned by Events.Start on a cluster whose MQTT gateway has not
// created its stream yet (no MQTT client has connected to the account) when
// EventsConfig.MQTTURL is empty.
var ErrNoMQTTStream = errors.New("natsbus: the MQTT gateway has not created " + MQTTStream +
	" yet (a new cluster): give the URL of a node's MQTT gateway (EventsConfig.MQTTURL), so that the durable consumer exists before the first device publishes")

// Events is an events.Source: a durable JetStream consumer on $MQTT_msgs filtered to the
// event subjects. The durable consumer is what holds the events (the stream keeps a
// message while a consumer with interest has not acknowledged it), so start it before the
// devices publish: events published while no such consumer exists are not kept.
type Events struct {
	cfg EventsConfig

	mu sync.Mutex
	nc *nats.Conn
	cc jetstream.ConsumeContext
}

var _ events.Source = (*Events)(nil)

// NewEvents checks cfg and returns the source; Start connects it.
func NewEvents(cfg EventsConfig) (*Events, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.Durable == "" {
		cfg.Durable = DefaultDurable
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = DefaultReplicas
	}
	if cfg.AckWait == 0 {
		cfg.AckWait = DefaultAckWait
	}
	if cfg.MaxAckPending == 0 {
		cfg.MaxAckPending = 1024
	}
	if err := jetstreamName(cfg.Durable); err != nil {
		return nil, err
	}
	if cfg.Replicas < 1 || cfg.AckWait < time.Second || cfg.MaxAckPending < 1 {
		return nil, fmt.Errorf("%w: Replicas %d, AckWait %v, MaxAckPending %d: want at least 1, 1s, 1",
			ErrConfig, cfg.Replicas, cfg.AckWait, cfg.MaxAckPending)
	}
	return &Events{cfg: cfg}, nil
}

func jetstreamName(n string) error {
	for _, c := range n {
		if c <= ' ' || c == '.' || c == '*' || c == '>' || c == '/' || c == '\\' || c == 0x7f {
			return fmt.Errorf("%w: Durable %q: no '.', '*', '>', '/', '\\' or whitespace", ErrConfig, n)
		}
	}
	return nil
}

// ConsumerConfig returns the durable consumer's configuration.
func (e *Events) ConsumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       e.cfg.Durable,
		FilterSubject: MQTTStreamPrefix + EventSubject(e.cfg.Topics),
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckWait:       e.cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: e.cfg.MaxAckPending,
		Replicas:      e.cfg.Replicas,
	}
}

// Start connects, creates (or binds to) the durable consumer and begins delivering. While
// the cluster has no JetStream leader, or $MQTT_msgs does not exist yet, it tries again
// until ctx ends.
func (e *Events) Start(ctx context.Context, deliver func(events.Message)) error {
	nc, err := e.cfg.dial(ctx)
	if err != nil {
		return err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return fmt.Errorf("natsbus: %w", err)
	}
	cons, err := e.consumer(ctx, js)
	if err != nil {
		nc.Close()
		return err
	}
	cc, err := cons.Consume(func(m jetstream.Msg) { deliver(message{m}) },
		jetstream.PullMaxMessages(64),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			e.cfg.Logger.Debug().Err(err).Msg("JetStream consume")
		}))
	if err != nil {
		nc.Close()
		return fmt.Errorf("natsbus: consuming events: %w", err)
	}
	e.mu.Lock()
	e.nc, e.cc = nc, cc
	e.mu.Unlock()
	e.cfg.Logger.Info().Str("durable", e.cfg.Durable).Str("filter", e.ConsumerConfig().FilterSubject).Msg("events consumer bound to $MQTT_msgs")
	return nil
}

func (e *Events) consumer(ctx context.Context, js jetstream.JetStream) (jetstream.Consumer, error) {
	wait := 100 * time.Millisecond
	bootstrapped := false
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		cons, err := js.CreateOrUpdateConsumer(cctx, MQTTStream, e.ConsumerConfig())
		cancel()
		if err == nil {
			return cons, nil
		}
		if errors.Is(err, jetstream.ErrStreamNotFound) && !bootstrapped {
			if e.cfg.MQTTURL == "" {
				// Waiting for a device to have the gateway create the stream would let
				// that device's first events pass before the durable consumer exists.
				return nil, ErrNoMQTTStream
			}
			bootstrapped = true
			if berr := e.bootstrap(ctx); berr != nil {
				return nil, berr
			}
			continue
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.Code == 403 || errors.Is(err, nats.ErrPermissionViolation) {
			return nil, fmt.Errorf("natsbus: creating the events consumer: %w", err)
		}
		e.cfg.Logger.Info().Err(err).Msg("creating the events consumer; trying again")
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("natsbus: creating the events consumer on %s: %w (last error: %v)", MQTTStream, ctx.Err(), err)
		case <-t.C:
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// bootstrap has the gateway create its streams for the account (see Bootstrap).
func (e *Events) bootstrap(ctx context.Context) error {
	return Bootstrap(ctx, e.cfg.Conn, e.cfg.MQTTURL)
}

// Redeliver does nothing: JetStream delivers an unacknowledged event again after AckWait.
func (e *Events) Redeliver(context.Context) error { return nil }

// Connected reports whether the NATS connection is up.
func (e *Events) Connected() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.nc != nil && e.nc.IsConnected()
}

// Close stops the deliveries and disconnects. Events delivered and not acknowledged are
// delivered again (to another process) after AckWait.
func (e *Events) Close() {
	e.mu.Lock()
	nc, cc := e.nc, e.cc
	e.mu.Unlock()
	if cc != nil {
		cc.Stop()
		<-cc.Closed()
	}
	if nc != nil {
		_ = nc.FlushTimeout(time.Second) // the acknowledgements sent last
		nc.Close()
	}
}

// message is a JetStream message as an events.Message.
type message struct{ m jetstream.Msg }

func (m message) Topic() string {
	subj := m.m.Subject()
	if len(subj) > len(MQTTStreamPrefix) && subj[:len(MQTTStreamPrefix)] == MQTTStreamPrefix {
		subj = subj[len(MQTTStreamPrefix):]
	}
	return Topic(subj)
}

func (m message) Payload() []byte { return m.m.Data() }

func (m message) Duplicate() bool {
	md, err := m.m.Metadata()
	return err != nil || md.NumDelivered > 1
}

// Ack acknowledges the event; if the acknowledgement is lost, the event comes again and
// the consumer's deduplication drops it.
func (m message) Ack() { _ = m.m.Ack() }
