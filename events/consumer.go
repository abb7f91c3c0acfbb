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

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"

	"github.com/clipgate/clipgate"
	"github.com/clipgate/clipgate/internal/mqttdial"
	"github.com/clipgate/clipgate/internal/mqttstore"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/topics"
)

// ErrClosed is returned by Start on a closed Consumer.
var ErrClosed = errors.New("events: consumer closed")

// disconnectQuiesce is how long a disconnect waits for pending acknowledgements to go out.
const disconnectQuiesce = 250 // ms

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
	client mqtt.Client

	queue  chan mqtt.Message // paho's callbacks hand messages to the workers
	ctx    context.Context   // the handlers'; cancelled by Close
	cancel context.CancelFunc
	quit   chan struct{} // closed by Close
	first  chan error    // the first subscription's outcome, for Start
	wake   chan struct{} // a message was left unacknowledged
	connMu sync.Mutex    // serializes session resumes and Close's disconnect
	parked atomic.Int64  // unacknowledged since the last resume

	mu      sync.Mutex
	started bool
	closed  bool
	workers sync.WaitGroup // workers and the resumer
	cbs     sync.WaitGroup // paho callbacks in flight

	st counters
}

type counters struct {
	received, handled, verified, failed, duplicates atomic.Int64
	retries, unacked, resumes                       atomic.Int64
	handlerErrors, ossErrors, dedupErrors           atomic.Int64
	rejected                                        [len(reasons)]atomic.Int64
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
		check:  verifier{bucket: cfg.Bucket, prefix: cfg.Prefix, stat: cfg.OSS, timeout: cfg.OSSTimeout},
		seen:   newSeenSet(cfg.DedupSize, cfg.DedupTTL, time.Now),
		queue:  make(chan mqtt.Message),
		ctx:    ctx,
		cancel: cancel,
		quit:   make(chan struct{}),
		first:  make(chan error, 1),
		wake:   make(chan struct{}, 1),
	}
	opts := mqtt.NewClientOptions().
		SetStore(mqttstore.New()). // a copy per resend: paho issue #703
		AddBroker(cfg.BrokerURL).
		SetClientID(cfg.ClientID).
		SetUsername(cfg.Username).
		SetPassword(cfg.Password).
		SetProtocolVersion(4). // else paho retries as 3.1, a second login attempt
		SetCleanSession(false).
		SetOrderMatters(false). // handlers must not block paho's reader
		SetAutoAckDisabled(true).
		SetAutoReconnect(true).
		SetConnectRetry(false). // Start retries the first connection itself (mqttdial), not a refused login
		SetMaxReconnectInterval(10 * time.Second).
		SetConnectTimeout(cfg.ConnectTimeout).
		SetWriteTimeout(cfg.ConnectTimeout).
		SetKeepAlive(cfg.KeepAlive).
		SetOnConnectHandler(c.onConnect).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			c.log.Warn().Err(err).Msg("connection lost; reconnecting")
		}).
		// With a persistent session the broker sends queued messages right after CONNACK,
		// before any SUBSCRIBE: the default handler takes them (and every other message,
		// since the subscription registers no handler of its own).
		SetDefaultPublishHandler(c.onMessage)
	if cfg.TLS != nil {
		opts.SetTLSConfig(cfg.TLS)
	}
	c.client = mqtt.NewClient(opts)
	return c, nil
}

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
	tok, err := mqttdial.Connect(ctx, c.client, c.log)
	if err == nil {
		select {
		case err = <-c.first:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	if errors.Is(err, errPacketIDInUse) && tok != nil && tok.SessionPresent() {
		// The session was resumed, so it holds the subscription made when it was new.
		c.log.Warn().Err(err).Msg("subscription not renewed; relying on the resumed session's")
		err = nil
	}
	if err != nil {
		_ = c.Close()
		return fmt.Errorf("events: connecting to %s as %s: %w", c.cfg.BrokerURL, c.cfg.ClientID, err)
	}
	c.log.Info().Str("filter", c.filter).Msg("consumer started")
	return nil
}

func waitToken(ctx context.Context, tok mqtt.Token) error {
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
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
	c.connMu.Lock()
	c.client.Disconnect(disconnectQuiesce)
	c.connMu.Unlock()
	c.cbs.Wait()
	c.log.Info().Msg("consumer closed")
	return nil
}

// enter registers a paho callback unless the consumer is closed.
func (c *Consumer) enter() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.cbs.Add(1)
	return true
}

func (c *Consumer) isClosed() bool {
	select {
	case <-c.quit:
		return true
	default:
		return false
	}
}

// onConnect subscribes after every connect. The persistent session keeps the
// subscription anyway; subscribing again costs little and covers a session the broker
// expired.
func (c *Consumer) onConnect(client mqtt.Client) {
	if !c.enter() {
		return
	}
	defer c.cbs.Done()
	err := c.subscribe(client)
	if err != nil && !errors.Is(err, errPacketIDInUse) {
		c.log.Error().Err(err).Str("filter", c.filter).Msg("subscribe")
	}
	select {
	case c.first <- err:
	default: // only Start waits, for the first
	}
}

// errPacketIDInUse: mochi-mqtt v2.7.9 answers a SUBSCRIBE whose packet ID equals one of
// its own unacknowledged PUBLISHes to the client with 0x91 (packet identifier in use),
// although the two directions have separate ID spaces. It happens when a persistent
// session resumes with messages in flight. paho takes a new ID for each SUBSCRIBE, and
// the consumer acknowledges the resent messages meanwhile, so trying again succeeds.
var errPacketIDInUse = errors.New("the broker reports the subscription's packet identifier in use (0x91)")

// subscribeAttempts bounds the SUBSCRIBE retries on errPacketIDInUse.
const subscribeAttempts = 20

func (c *Consumer) subscribe(client mqtt.Client) error {
	wait := 10 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := c.subscribeOnce(client)
		if !errors.Is(err, errPacketIDInUse) || attempt == subscribeAttempts {
			return err
		}
		c.log.Debug().Int("attempt", attempt).Msg("subscription's packet identifier in use at the broker; subscribing again")
		select {
		case <-time.After(wait):
		case <-c.quit:
			return err
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
}

func (c *Consumer) subscribeOnce(client mqtt.Client) error {
	tok := client.Subscribe(c.filter, 1, nil)
	switch {
	case !tok.WaitTimeout(c.cfg.ConnectTimeout):
		return errors.New("subscription not acknowledged in time")
	case tok.Error() != nil:
		return tok.Error()
	}
	// One filter, one result (paho keys it by the filter without "$share/{group}/").
	for _, code := range tok.(*mqtt.SubscribeToken).Result() {
		switch {
		case code == 0x91:
			return errPacketIDInUse
		case code > 2:
			return fmt.Errorf("the broker refused the subscription to %s (SUBACK %#x): check the account's role", c.filter, code)
		}
	}
	return nil
}

// onMessage runs in a goroutine of its own per message (OrderMatters false) and hands
// the message to a worker; waiting here is what bounds the work in progress.
func (c *Consumer) onMessage(_ mqtt.Client, m mqtt.Message) {
	if !c.enter() {
		return // closing: left unacknowledged, delivered again after the next start
	}
	defer c.cbs.Done()
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
func (c *Consumer) process(m mqtt.Message) {
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

func (c *Consumer) deadLetter(m mqtt.Message, mal *Malformed) {
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
	c.connMu.Lock()
	defer c.connMu.Unlock()
	n := c.parked.Swap(0)
	if n == 0 || c.isClosed() {
		return
	}
	c.st.resumes.Add(1)
	c.log.Info().Int64("unacknowledged", n).Msg("resuming the session to have unacknowledged events sent again")
	c.client.Disconnect(disconnectQuiesce)
	backoff := c.cfg.RetryBackoff
	for {
		ctx, cancel := context.WithTimeout(c.ctx, c.cfg.ConnectTimeout)
		err := waitToken(ctx, c.client.Connect())
		cancel()
		if err == nil || c.client.IsConnected() {
			return
		}
		c.log.Warn().Err(err).Msg("reconnect after resume failed; retrying")
		t := time.NewTimer(backoff)
		select {
		case <-c.quit:
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, max(c.cfg.MaxBackoff, time.Second))
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
		Connected:     c.client.IsConnectionOpen(),
		Rejected:      make(map[Reason]int64, len(reasons)),
	}
	for i, r := range reasons {
		if n := c.st.rejected[i].Load(); n > 0 {
			s.Rejected[r] = n
		}
	}
	return s
}
