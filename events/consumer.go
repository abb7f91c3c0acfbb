package events

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/internal/mqttclient"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/topics"
)

// ErrClosed is returned by Start on a closed Consumer.
var ErrClosed = errors.New("events: consumer closed")

// Consumer receives upload events from the broker, verifies them against OSS,
// deduplicates them and hands them to a Handler (see the package documentation).
// Its methods are safe for concurrent use.
type Consumer struct {
	cfg    Config
	handle Handler
	log    zerolog.Logger
	filter string
	check  verifier
	seen   *seenSet
	busy   inProgress
	client Source

	queue  chan Message    // the client's handler hands messages to the workers
	ctx    context.Context // the handlers'; cancelled by Close
	cancel context.CancelFunc
	quit   chan struct{} // closed by Close
	wake   chan struct{} // a message was left unacknowledged
	parked atomic.Int64  // unacknowledged since the last resume

	mu      sync.Mutex
	started bool
	closed  bool
	workers sync.WaitGroup // workers and the resumer

	st counters
}

type counters struct {
	received, handled, verified, failed, duplicates atomic.Int64
	retries, unacked, resumes                       atomic.Int64
	handlerErrors, ossErrors, dedupErrors           atomic.Int64
	rejected                                        [len(reasons)]atomic.Int64
	lag                                             lagHistogram
}

// NewConsumer checks cfg and returns a consumer that hands events to h. Start connects it.
func NewConsumer(cfg Config, h Handler) (*Consumer, error) {
	cfg.applyDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if h == nil {
		return nil, fmt.Errorf("%w: a Handler is required", ErrInvalidConfig)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Consumer{
		cfg:    cfg,
		handle: h,
		log:    cfg.Logger.With().Str("component", "events").Str("client", cfg.ClientID).Logger(),
		filter: cfg.Topics.EventFilter(cfg.Group),
		check:  verifier{bucket: cfg.Bucket, prefix: cfg.Prefix, stat: cfg.OSS, timeout: cfg.OSSTimeout, revoked: cfg.Revoked},
		seen:   newSeenSet(cfg.DedupSize, cfg.DedupTTL, time.Now),
		queue:  make(chan Message),
		ctx:    ctx,
		cancel: cancel,
		quit:   make(chan struct{}),
		wake:   make(chan struct{}, 1),
	}
	if cfg.Source != nil {
		c.client = cfg.Source
		return c, nil
	}
	client, err := mqttclient.New(mqttclient.Config{
		BrokerURL:      cfg.BrokerURL,
		TLS:            cfg.TLS,
		ClientID:       cfg.ClientID,
		Username:       cfg.Username,
		Password:       cfg.Password,
		Persistent:     true,
		ManualAck:      true,
		KeepAlive:      cfg.KeepAlive,
		WriteTimeout:   cfg.ConnectTimeout,
		ConnectTimeout: cfg.ConnectTimeout,
		// The subscription registers no handler of its own: the default handler takes its
		// messages, and the ones the broker sends right after CONNACK, before SUBSCRIBE.
		Subscriptions:  []mqttclient.Subscription{{Filter: c.filter, QoS: 1}},
		DefaultHandler: func(m mqttclient.Message) { c.onMessage(m) },
		Logger:         c.log,
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	c.client = mqttSource{client}
	return c, nil
}

// Source delivers a Consumer's messages from an engine other than its own MQTT client
// (Config.Source), for example a JetStream durable consumer (internal/natsbus).
type Source interface {
	// Start connects and begins calling deliver for each message, returning once messages
	// can arrive. A message not acknowledged is delivered again later.
	Start(ctx context.Context, deliver func(Message)) error
	// Redeliver asks for the unacknowledged messages to be delivered again soon.
	Redeliver(ctx context.Context) error
	// Connected reports whether the source is connected now.
	Connected() bool
	// Close disconnects, waiting for deliver calls in flight.
	Close()
}

// Message is one delivered message (paho's messages satisfy it).
type Message interface {
	// Topic is the MQTT topic the device published on.
	Topic() string
	Payload() []byte
	// Duplicate reports that the message may have been delivered before.
	Duplicate() bool
	// Ack acknowledges the message: it is not delivered again.
	Ack()
}

// mqttSource is the consumer's own MQTT client with a persistent session.
type mqttSource struct{ c *mqttclient.Client }

func (s mqttSource) Start(ctx context.Context, _ func(Message)) error { return s.c.Connect(ctx) }

// Redeliver resumes the session: a broker sends unacknowledged messages again only then
// (MQTT 3.1.1, 4.4).
func (s mqttSource) Redeliver(ctx context.Context) error { return s.c.Reconnect(ctx) }
func (s mqttSource) Connected() bool                     { return s.c.Connected() }
func (s mqttSource) Close()                              { s.c.Close() }

// Start starts the workers, connects to the broker and subscribes, returning once the
// subscription is acknowledged. While the broker cannot be reached, it tries again with
// backoff until ctx ends (a context without deadline: until the broker is back); a
// refused login fails at once. ctx bounds the start only. The consumer then runs,
// reconnecting as needed, until Close. Start may be called once; if it fails, the
// consumer is closed.
func (c *Consumer) Start(ctx context.Context) error {
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		return ErrClosed
	case c.started:
		c.mu.Unlock()
		return errors.New("events: consumer already started")
	}
	c.started = true
	c.workers.Add(c.cfg.Concurrency + 1)
	c.mu.Unlock()
	for range c.cfg.Concurrency {
		go c.worker()
	}
	go c.resumer()

	// The broker may be restarting: keep trying until ctx ends (a refused login fails
	// at once).
	if err := c.client.Start(ctx, c.onMessage); err != nil {
		_ = c.Close()
		if c.cfg.Source != nil { // BrokerURL and ClientID are unused: the source says where
			return fmt.Errorf("events: starting the source: %w", err)
		}
		return fmt.Errorf("events: connecting to %s as %s: %w", c.cfg.BrokerURL, c.cfg.ClientID, err)
	}
	c.log.Info().Str("filter", c.filter).Msg("consumer started")
	return nil
}

// Close stops taking messages, cancels the context of running handlers, waits for them
// and disconnects. Messages not acknowledged by then stay in the session at the broker
// and are delivered again at the next start with the same ClientID. It is safe to call
// more than once.
func (c *Consumer) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.quit)
	c.mu.Unlock()

	c.cancel()
	c.workers.Wait()
	c.client.Close() // waits for the handler's calls in flight
	c.log.Info().Msg("consumer closed")
	return nil
}

func (c *Consumer) isClosed() bool {
	select {
	case <-c.quit:
		return true
	default:
		return false
	}
}

// onMessage runs in a goroutine of its own per message (OrderMatters false) and hands
// the message to a worker; waiting here is what bounds the work in progress.
func (c *Consumer) onMessage(m Message) {
	c.st.received.Add(1)
	select {
	case c.queue <- m:
	case <-c.quit:
	}
}

func (c *Consumer) worker() {
	defer c.workers.Done()
	for {
		select {
		case m := <-c.queue:
			c.process(m)
		case <-c.quit:
			return
		}
	}
}

// process takes one message through decoding, deduplication, verification and the
// handler, and acknowledges it or leaves it for redelivery.
func (c *Consumer) process(m Message) {
	topic, payload := m.Topic(), m.Payload()
	kind, publisher, ok := c.cfg.Topics.Parse(topic)
	var ue *clipgate.UploadEvent
	var err error
	if !ok || kind != topics.KindEvent {
		err = fmt.Errorf("topic %q is not a device event topic of this scheme", topic)
	} else {
		ue, err = protocol.DecodeUploadEvent(payload)
	}
	if err != nil {
		c.deadLetter(m, &Malformed{Topic: topic, Publisher: publisher, Payload: payload, Err: err})
		return
	}
	ev := &Event{UploadEvent: *ue, Publisher: publisher, Redelivered: m.Duplicate()}
	if c.deliver(ev) {
		m.Ack()
	} else {
		c.park()
	}
}

func (c *Consumer) deadLetter(m Message, mal *Malformed) {
	if dl := c.cfg.DeadLetter; dl != nil {
		if err := c.retry(func(ctx context.Context) error { return dl(ctx, mal) }); err != nil {
			c.log.Error().Err(err).Str("topic", mal.Topic).Msg("dead letter callback failed; message left for redelivery")
			c.park()
			return
		}
	}
	c.st.rejected[reasonIndex(ReasonMalformed)].Add(1)
	c.log.Warn().Err(mal.Err).Str("topic", mal.Topic).Str("publisher", mal.Publisher).
		Int("bytes", len(mal.Payload)).Str("reason", string(ReasonMalformed)).Msg("malformed upload event acknowledged and dropped")
	m.Ack()
}

// deliver runs deduplication, verification and the handler; it reports whether the
// message may be acknowledged.
func (c *Consumer) deliver(ev *Event) bool {
	// Keyed by the publisher, which the broker authenticated, not by the device the
	// event claims: a forged event in another device's name must not shadow the real one.
	source := ev.Publisher
	key := dedupKey(source, ev.ID)
	held, ok := c.busy.acquire(key, c.quit)
	if !ok {
		return false
	}
	defer c.busy.release(key, held)
	// Loggers are built per message only when a line is written: With() would allocate.
	log := func(e *zerolog.Event) *zerolog.Event { return e.Str("event", ev.ID).Str("device", ev.Device) }
	if c.seen.has(key) {
		c.st.duplicates.Add(1)
		log(c.log.Debug()).Msg("duplicate event acknowledged")
		return true
	}
	if d := c.cfg.Dedup; d != nil {
		var dup bool
		err := c.retry(func(ctx context.Context) error {
			var err error
			if dup, err = d.Seen(ctx, source, ev.ID); err != nil {
				c.st.dedupErrors.Add(1)
			}
			return err
		})
		if err != nil {
			log(c.log.Error()).Err(err).Msg("deduplication lookup failed; event left for redelivery")
			return false
		}
		if dup {
			c.seen.add(key)
			c.st.duplicates.Add(1)
			log(c.log.Debug()).Msg("duplicate event (Dedup) acknowledged")
			return true
		}
	}
	err := c.retry(func(ctx context.Context) error {
		err := c.check.verify(ctx, ev)
		if err != nil {
			c.st.ossErrors.Add(1)
		}
		return err
	})
	if err != nil {
		log(c.log.Error()).Err(err).Str("key", ev.Key).Msg("verification failed; event left for redelivery")
		return false
	}
	if ev.Rejected() {
		log(c.log.Warn()).Str("reason", string(ev.Reason)).Str("detail", ev.Detail).Str("publisher", ev.Publisher).
			Str("key", ev.Key).Msg("upload event rejected")
	}
	attempt := 0
	err = c.retry(func(ctx context.Context) error {
		if attempt++; attempt > 1 {
			ev.Redelivered = true
		}
		err := c.callHandler(ctx, ev)
		if err != nil {
			c.st.handlerErrors.Add(1)
		}
		return err
	})
	if err != nil {
		log(c.log.Warn()).Err(err).Msg("handler failed; event left for redelivery")
		return false
	}
	c.seen.add(key)
	if d := c.cfg.Dedup; d != nil {
		if err := d.Mark(c.ctx, source, ev.ID); err != nil {
			c.st.dedupErrors.Add(1)
			log(c.log.Error()).Err(err).Msg("recording the handled event failed (it may be handed over again)")
		}
	}
	c.count(ev)
	return true
}

// count counts a handled event: its kind first, then handled, so that a reader who sees
// the handled count sees the kinds of those events counted too.
func (c *Consumer) count(ev *Event) {
	switch {
	case ev.Verified:
		c.st.verified.Add(1)
		c.st.lag.observe(time.Since(ev.UploadedAt))
	case ev.Rejected():
		c.st.rejected[reasonIndex(ev.Reason)].Add(1)
	case ev.Status == clipgate.StatusFailed:
		c.st.failed.Add(1)
	}
	c.st.handled.Add(1)
}

// callHandler calls the handler, turning a panic into an error (the event is then
// redelivered like after any handler error).
func (c *Consumer) callHandler(ctx context.Context, ev *Event) (err error) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error().Str("event", ev.ID).Interface("panic", r).Bytes("stack", debug.Stack()).Msg("handler panicked")
			err = fmt.Errorf("events: handler panicked: %v", r)
		}
	}()
	return c.handle(ctx, ev)
}

// retry runs op up to MaxAttempts times with jittered exponential backoff, stopping
// early when the consumer closes. It returns op's last error.
func (c *Consumer) retry(op func(context.Context) error) error {
	return retry(c.ctx, c.cfg.MaxAttempts, c.cfg.RetryBackoff, c.cfg.MaxBackoff, &c.st.retries, op)
}

func retry(ctx context.Context, attempts int, backoff, maxBackoff time.Duration, retries *atomic.Int64, op func(context.Context) error) error {
	for attempt := 1; ; attempt++ {
		err := op(ctx)
		if err == nil || attempt >= attempts || ctx.Err() != nil {
			return err
		}
		retries.Add(1)
		// Half fixed, half random, so that workers hit by one outage spread out.
		wait := backoff/2 + rand.N(backoff/2+1)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// park counts a message left unacknowledged and wakes the resumer.
func (c *Consumer) park() {
	c.parked.Add(1)
	c.st.unacked.Add(1)
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// resumer resumes the session RedeliveryDelay after messages were left unacknowledged,
// since a broker sends unacknowledged messages again only when a session resumes
// (MQTT 3.1.1, 4.4).
func (c *Consumer) resumer() {
	defer c.workers.Done()
	for {
		select {
		case <-c.quit:
			return
		case <-c.wake:
		}
		if c.cfg.RedeliveryDelay < 0 {
			continue
		}
		t := time.NewTimer(c.cfg.RedeliveryDelay)
		select {
		case <-c.quit:
			t.Stop()
			return
		case <-t.C:
		}
		c.resume()
	}
}

// resume disconnects and connects again with the same persistent session. The broker
// then sends every unacknowledged message again, with the DUP flag. Acknowledgements of
// messages still in the workers are lost with the old connection; those messages come
// back too and are dropped as duplicates once handled.
func (c *Consumer) resume() {
	n := c.parked.Swap(0)
	if n == 0 || c.isClosed() {
		return
	}
	c.st.resumes.Add(1)
	c.log.Info().Int64("unacknowledged", n).Msg("resuming the session to have unacknowledged events sent again")
	if err := c.client.Redeliver(c.ctx); err != nil && !c.isClosed() {
		c.log.Warn().Err(err).Msg("reconnect after resume failed")
	}
}

// Stats are a consumer's counters since NewConsumer.
type Stats struct {
	// Received counts messages received from the broker, redeliveries included.
	Received int64
	// Handled counts events the handler accepted (returned nil); of those, Verified were
	// verified, Failed were failed-upload events, and the rest are in Rejected.
	Handled, Verified, Failed int64
	// Rejected counts rejected events by reason; ReasonMalformed counts malformed
	// messages, which never reach the handler.
	Rejected map[Reason]int64
	// Duplicates counts events acknowledged without the handler because they had been
	// handled before.
	Duplicates int64
	// Retries counts attempts after the first, of any step.
	Retries int64
	// Unacked counts deliveries left unacknowledged after their attempts; Resumes the
	// session resumptions that had them sent again.
	Unacked, Resumes int64
	// HandlerErrors, OSSErrors and DedupErrors count failed attempts of each kind
	// (OSSErrors: transient ones only; not-found is a verdict, not an error).
	HandlerErrors, OSSErrors, DedupErrors int64
	// Connected reports whether the consumer is connected to the broker now.
	Connected bool
	// Lag is the ingest lag of the verified events handled.
	Lag LagHistogram
}

// Stats returns the consumer's counters.
func (c *Consumer) Stats() Stats {
	s := Stats{
		Received:      c.st.received.Load(),
		Handled:       c.st.handled.Load(),
		Verified:      c.st.verified.Load(),
		Failed:        c.st.failed.Load(),
		Duplicates:    c.st.duplicates.Load(),
		Retries:       c.st.retries.Load(),
		Unacked:       c.st.unacked.Load(),
		Resumes:       c.st.resumes.Load(),
		HandlerErrors: c.st.handlerErrors.Load(),
		OSSErrors:     c.st.ossErrors.Load(),
		DedupErrors:   c.st.dedupErrors.Load(),
		Connected:     c.client.Connected(),
		Rejected:      make(map[Reason]int64, len(reasons)),
		Lag:           c.st.lag.snapshot(),
	}
	for i, r := range reasons {
		if n := c.st.rejected[i].Load(); n > 0 {
			s.Rejected[r] = n
		}
	}
	return s
}
