// Package mqttclient builds every MQTT client of clipgate: the device kit's, the token
// worker's, the events consumer's, the console's and the tools'. It is paho.mqtt.golang
// v1.5.1 set up once, the way each of them needs it:
//
//   - MQTT 3.1.1, asked for explicitly (else paho retries a refused login as MQTT 3.1: a
//     second login attempt at the broker);
//   - each message handled in a goroutine of its own unless Config.OrderMatters (paho's
//     in-order default runs handlers in its reader, where a slow one stalls the pings);
//   - a session store that works around paho's reconnect data race (Store, paho issue
//     #703);
//   - the broker URL checked up front with errors that name the setting (CheckURL), and
//     TLS from PEM files through one CA loader (TLSFiles, LoadCA);
//   - a first connection that tries again with backoff until its context ends, but fails
//     at once when the broker refuses the login or its certificate is not trusted
//     (Client.Connect); reconnections paced by the same jittered backoff (Backoff), with
//     a fresh password at every attempt when Config.Credentials makes them;
//   - the subscriptions made again after every connection, and their SUBACK codes
//     checked (Config.Subscriptions);
//   - lost and restored connections logged.
//
// A second transport plugs in here (a NATS one, for the scale-out work): the backend
// services describe their connection with Config and handle Message values, and use only
// Client's Connect, Publish, Unsubscribe, Reconnect, Connected and Close. A NATS client
// offering the same methods, chosen by the broker URL's scheme in CheckURL and New, can
// then serve them. Paho stays reachable through Client.Paho for the device kit, which
// speaks MQTT to either, and for tests.
package mqttclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/rs/zerolog"
)

// Defaults of Config.
const (
	DefaultKeepAlive      = 30 * time.Second
	DefaultConnectTimeout = 10 * time.Second
)

const (
	// quiesce is how long Close and Reconnect wait for pending acknowledgements to go
	// out before they disconnect, in milliseconds.
	quiesce = 250
	// pahoPause is paho's own pause between reconnection attempts, kept short: Backoff,
	// applied before each attempt (onNotification), is what paces them.
	pahoPause = 10 * time.Millisecond
	// subscribeAttempts bounds the SUBSCRIBE retries on ErrPacketIDInUse.
	subscribeAttempts = 20
)

// Errors of a Client.
var (
	// ErrRefused is wrapped by Connect's error when the broker refused the login (CONNACK
	// codes 1, 2, 4 and 5: protocol version, client ID, user name or password, not
	// authorized). "Server unavailable" (3) is tried again.
	ErrRefused = errors.New("the broker refused the connection")
	// ErrUntrusted is wrapped by Connect's error when the broker's TLS certificate does
	// not verify (unknown authority, expired, another name).
	ErrUntrusted = errors.New("the broker's certificate is not trusted")
	// ErrClosed is returned by the calls of a closed Client.
	ErrClosed = errors.New("mqttclient: closed")
	// ErrPacketIDInUse: mochi-mqtt v2.7.9 answers a SUBSCRIBE whose packet ID equals one of
	// its own unacknowledged PUBLISHes to the client with 0x91 (packet identifier in use),
	// although the two directions have separate ID spaces. It happens when a persistent
	// session resumes with messages in flight. paho takes a new ID for each SUBSCRIBE and
	// the client acknowledges the resent messages meanwhile, so the subscription is tried
	// again (up to 20 times), and a resumed session keeps its subscriptions anyway.
	ErrPacketIDInUse = errors.New("the broker reports the subscription's packet identifier in use (0x91)")
)

// SubscribeError is a subscription the broker refused (SUBACK code 0x80, or another
// failure code): usually the account's role does not allow the filter.
type SubscribeError struct {
	Filter string
	Code   byte
}

func (e *SubscribeError) Error() string {
	return fmt.Sprintf("the broker refused the subscription to %s (SUBACK %#x): check the account's role", e.Filter, e.Code)
}

// Message is a received message. paho's messages satisfy it.
type Message interface {
	Topic() string
	Payload() []byte
	// Duplicate reports the DUP flag: the broker may have sent the message before.
	Duplicate() bool
	// Ack acknowledges a QoS 1 message when Config.ManualAck is set (else paho already
	// did, and Ack does nothing).
	Ack()
}

// Handler handles a received message.
type Handler func(Message)

// Subscription is a subscription made after every connection.
type Subscription struct {
	Filter string
	QoS    byte
	// Handler takes the subscription's messages; nil hands them to Config.DefaultHandler.
	Handler Handler
	// RetryRefused, when positive, is how long a subscription the broker refuses (SUBACK
	// 0x80) is tried again, with backoff, before the refusal is reported: a NATS cluster
	// refuses subscriptions while it elects a JetStream leader.
	RetryRefused time.Duration
}

// Will is the message the broker publishes when the connection drops without a
// DISCONNECT.
type Will struct {
	Topic    string
	Payload  []byte
	QoS      byte
	Retained bool
}

// Config describes a Client. Zero values take the defaults named per field.
type Config struct {
	// BrokerURL is scheme://host:port (see CheckURL). Required.
	BrokerURL string
	// FailoverURLs are further nodes of a clustered broker (e.g. a NATS cluster's MQTT
	// gateways): each connection attempt tries BrokerURL and then these, in order.
	FailoverURLs []string
	// TLS configures ssl://, tls://, mqtts:// and wss:// connections; nil uses Go's
	// defaults. TLSFiles.Load makes one from PEM files.
	TLS *tls.Config

	// ClientID is the MQTT client identifier. Required.
	ClientID string
	// Username and Password log in.
	Username, Password string
	// Credentials, when set, is called before every connection attempt for the user name
	// and password, instead of Username and Password: a device's password carries a
	// timestamp and must be made fresh each time.
	Credentials func() (username, password string)

	// Persistent asks for a persistent session (clean session false): the broker keeps
	// the subscriptions and queues QoS 1 messages while the client is away. It sends them
	// right after the connection, before the subscriptions are renewed, so DefaultHandler
	// is required.
	Persistent bool
	// ManualAck leaves the acknowledgement of QoS 1 messages to the handlers (Message.Ack).
	ManualAck bool
	// OrderMatters hands messages over one at a time, in arrival order, in paho's reader
	// goroutine: handlers must then be quick and must not wait for the broker. By default
	// each message has a goroutine of its own.
	OrderMatters bool
	// KeepAlive is the MQTT keep-alive (DefaultKeepAlive).
	KeepAlive time.Duration
	// ConnectTimeout bounds each connection attempt and the wait for each SUBACK
	// (DefaultConnectTimeout).
	ConnectTimeout time.Duration
	// WriteTimeout bounds how long a publish or a subscription may wait to be written;
	// zero means no bound.
	WriteTimeout time.Duration
	// Will, when set, is the connection's last will.
	Will *Will

	// Backoff paces the connection attempts (DefaultBackoff).
	Backoff Backoff
	// KeepTrying makes Connect try again after any failure, refused logins and
	// untrusted certificates included, until its context ends (a device whose revocation
	// may be lifted). Reconnections always keep trying.
	KeepTrying bool
	// NoReconnect leaves the client disconnected when its connection drops.
	NoReconnect bool

	// Subscriptions are made after every connection, in order.
	Subscriptions []Subscription
	// DefaultHandler takes the messages no subscription's Handler takes.
	DefaultHandler Handler

	// OnConnect, when set, runs at the start of every connection, before the
	// subscriptions are made; OnSubscribed runs after them, with nil or the reason they
	// failed (not when the connection was lost meanwhile: the next one subscribes again);
	// OnConnectionLost runs when a connection drops. They run in paho's goroutines, never
	// after Close returned, and must not call Close.
	OnConnect        func()
	OnSubscribed     func(err error)
	OnConnectionLost func(err error)
	// OnBackoff, when set, is called before each wait between connection attempts, with
	// the retry's number within its outage (from 0) and the wait.
	OnBackoff func(retry int, wait time.Duration)

	// Logger receives the connection's life: failed attempts, lost and restored
	// connections, refused subscriptions. The zero Logger discards them.
	Logger zerolog.Logger
}

// applyDefaults fills in the zero keep-alive, connect timeout and backoff.
func (c *Config) applyDefaults() {
	if c.KeepAlive == 0 {
		c.KeepAlive = DefaultKeepAlive
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.Backoff == (Backoff{}) {
		c.Backoff = DefaultBackoff
	}
}

// validate checks c after applyDefaults.
func (c *Config) validate() error {
	for i, u := range c.FailoverURLs {
		if err := CheckURL(fmt.Sprintf("FailoverURLs[%d]", i), u); err != nil {
			return err
		}
	}
	if err := CheckURL("BrokerURL", c.BrokerURL); err != nil {
		return err
	}
	if err := c.validateSession(); err != nil {
		return err
	}
	if err := c.validateTimes(); err != nil {
		return err
	}
	return c.validateMessages()
}

// validateSession checks the client ID and the credentials.
func (c *Config) validateSession() error {
	switch {
	case c.ClientID == "":
		return errors.New("ClientID is required")
	case c.Credentials != nil && (c.Username != "" || c.Password != ""):
		return errors.New("set Username and Password, or Credentials, not both")
	}
	return nil
}

// validateTimes checks the keep-alive, the timeouts and the backoff.
func (c *Config) validateTimes() error {
	switch {
	case c.KeepAlive < time.Second:
		return fmt.Errorf("KeepAlive %v: at least 1s", c.KeepAlive)
	case c.ConnectTimeout < 0 || c.WriteTimeout < 0:
		return fmt.Errorf("ConnectTimeout %v, WriteTimeout %v: must not be negative", c.ConnectTimeout, c.WriteTimeout)
	case c.Backoff.Min <= 0 || c.Backoff.Min > time.Hour || c.Backoff.Max < c.Backoff.Min:
		return fmt.Errorf("Backoff %v to %v: want 0 < Min <= Max, Min at most an hour", c.Backoff.Min, c.Backoff.Max)
	}
	return nil
}

// validateMessages checks the persistent session's default handler, the will and the
// subscriptions.
func (c *Config) validateMessages() error {
	switch {
	case c.Persistent && c.DefaultHandler == nil:
		return errors.New("a Persistent session needs a DefaultHandler: the broker sends the queued messages before the subscriptions are renewed")
	case c.Will != nil && (c.Will.Topic == "" || c.Will.QoS > 2):
		return fmt.Errorf("Will on %q with QoS %d: want a topic and QoS 0 to 2", c.Will.Topic, c.Will.QoS)
	}
	for _, s := range c.Subscriptions {
		if s.Filter == "" || s.QoS > 2 {
			return fmt.Errorf("subscription to %q with QoS %d: want a filter and QoS 0 to 2", s.Filter, s.QoS)
		}
		if s.Handler == nil && c.DefaultHandler == nil {
			return fmt.Errorf("subscription to %s: no Handler and no DefaultHandler", s.Filter)
		}
	}
	return nil
}

// Client is one MQTT client. Its methods are safe for concurrent use.
type Client struct {
	cfg     Config
	paho    paho.Client
	log     zerolog.Logger
	closing chan struct{} // closed by Close
	conns   atomic.Uint64 // connections made

	dialMu sync.Mutex // serialises dialing (Connect, Reconnect) and Close's disconnect

	mu           sync.Mutex
	started      bool
	closed       bool
	waiter       chan error // Connect's: the first subscriptions' outcome
	attempt      paho.Token // the last connection attempt, which Close waits for
	lastErr      error      // the last failed attempt or lost connection
	lostAt       time.Time  // when the connection was lost; zero while connected
	unsubscribed bool
	cbs          sync.WaitGroup // handlers and hooks in flight
}

// New checks cfg and returns a Client that is not yet connected.
func New(cfg Config) (*Client, error) {
	cfg.applyDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("mqttclient: invalid config: %w", err)
	}
	c := &Client{cfg: cfg, log: cfg.Logger, closing: make(chan struct{})}
	opts := paho.NewClientOptions().
		AddBroker(cfg.BrokerURL).
		SetClientID(cfg.ClientID).
		SetUsername(cfg.Username).
		SetPassword(cfg.Password).
		SetProtocolVersion(4).
		SetCleanSession(!cfg.Persistent).
		SetAutoAckDisabled(cfg.ManualAck).
		SetOrderMatters(cfg.OrderMatters).
		SetStore(NewStore()).
		SetKeepAlive(cfg.KeepAlive).
		SetConnectTimeout(cfg.ConnectTimeout).
		SetWriteTimeout(cfg.WriteTimeout).
		SetConnectRetry(false). // Connect retries the first connection itself: not a refused login
		SetAutoReconnect(!cfg.NoReconnect).
		SetMaxReconnectInterval(pahoPause).
		SetOnConnectHandler(c.onConnect).
		SetConnectionLostHandler(c.onConnectionLost).
		SetConnectionNotificationHandler(c.onNotification)
	for _, u := range cfg.FailoverURLs {
		opts.AddBroker(u)
	}
	if cfg.Credentials != nil {
		opts.SetCredentialsProvider(cfg.Credentials) // called for every attempt
	}
	if cfg.TLS != nil {
		opts.SetTLSConfig(cfg.TLS)
	}
	if w := cfg.Will; w != nil {
		opts.SetBinaryWill(w.Topic, w.Payload, w.QoS, w.Retained)
	}
	if cfg.DefaultHandler != nil {
		opts.SetDefaultPublishHandler(c.wrap(cfg.DefaultHandler))
	}
	c.paho = paho.NewClient(opts)
	return c, nil
}

// Connect makes the first connection and the subscriptions. While the broker cannot be
// reached it tries again, paced by Backoff, until ctx ends (a context without deadline:
// until the broker is there); a refused login or an untrusted certificate fails at once
// (ErrRefused, ErrUntrusted) unless Config.KeepTrying. It returns once the subscriptions
// are acknowledged, or with the reason they are not (a *SubscribeError for a refused one),
// or with ctx's error joined with the last attempt's. Afterwards the client reconnects
// and subscribes again by itself until Close. Connect may be called once; after an error,
// Close the client.
func (c *Client) Connect(ctx context.Context) error {
	wait := make(chan error, 1)
	c.mu.Lock()
	closed, started := c.closed, c.started
	if !closed && !started {
		c.started, c.waiter = true, wait
	}
	c.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if started {
		return errors.New("mqttclient: Connect called twice")
	}
	defer func() {
		c.mu.Lock()
		if c.waiter == wait {
			c.waiter = nil
		}
		c.mu.Unlock()
	}()

	c.dialMu.Lock()
	present, err := c.dial(ctx, !c.cfg.KeepTrying)
	c.dialMu.Unlock()
	if err != nil {
		return err
	}
	select {
	case err = <-wait:
	case <-ctx.Done():
		return c.ctxErr(ctx)
	case <-c.closing:
		return ErrClosed
	}
	if errors.Is(err, ErrPacketIDInUse) && present {
		// The session was resumed, so it holds the subscriptions made when it was new.
		c.log.Warn().Err(err).Msg("subscription not renewed; relying on the resumed session's")
		return nil
	}
	return err
}

// Reconnect ends the connection and connects again, with the same session: with
// Persistent the broker then sends again every message left unacknowledged (MQTT 3.1.1,
// 4.4). It tries until the connection is made, ctx ends or the client closes, whatever
// the failure, as reconnections do, and returns once the broker accepted the connection
// (the subscriptions are made again after it, as after every connection).
func (c *Client) Reconnect(ctx context.Context) error {
	c.dialMu.Lock()
	defer c.dialMu.Unlock()
	select {
	case <-c.closing:
		return ErrClosed
	default:
	}
	c.paho.Disconnect(quiesce)
	c.setLastErr(nil)
	_, err := c.dial(ctx, false)
	return err
}

// dial connects, trying again after each failed attempt; with failFast a permanent
// failure ends it at once. It returns the CONNACK's session present flag. The caller
// holds dialMu.
func (c *Client) dial(ctx context.Context, failFast bool) (sessionPresent bool, err error) {
	for retry := 0; ; retry++ {
		tok := c.paho.Connect()
		c.mu.Lock()
		c.attempt = tok
		c.mu.Unlock()
		// If ctx ends or the client closes during an attempt, the attempt goes on for up
		// to ConnectTimeout: Close waits for it.
		select {
		case <-tok.Done():
		case <-ctx.Done():
			return false, c.ctxErr(ctx)
		case <-c.closing:
			return false, ErrClosed
		}
		err := tok.Error()
		if err == nil {
			if retry > 0 {
				c.log.Info().Int("attempts", retry+1).Msg("connected to the broker")
			}
			ct, _ := tok.(*paho.ConnectToken)
			return ct != nil && ct.SessionPresent(), nil
		}
		c.setLastErr(err)
		if failFast {
			if perr := permanent(err); perr != nil {
				return false, perr
			}
		}
		wait := c.cfg.Backoff.Delay(retry)
		c.log.Warn().Err(err).Int("attempt", retry+1).Dur("retryIn", wait).Msg("cannot connect to the broker; retrying")
		if err := c.pause(ctx, retry, wait); err != nil {
			return false, err
		}
	}
}

// permanent returns err wrapped in ErrRefused or ErrUntrusted when trying again cannot
// help, else nil.
func permanent(err error) error {
	var cv *tls.CertificateVerificationError
	switch {
	case errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword), errors.Is(err, packets.ErrorRefusedNotAuthorised),
		errors.Is(err, packets.ErrorRefusedIDRejected), errors.Is(err, packets.ErrorRefusedBadProtocolVersion):
		return fmt.Errorf("%w: %w", ErrRefused, err)
	case errors.As(err, &cv):
		return fmt.Errorf("%w: %w", ErrUntrusted, err)
	}
	return nil
}

// pause waits before retry number retry, or until ctx ends or the client closes.
func (c *Client) pause(ctx context.Context, retry int, wait time.Duration) error {
	if c.cfg.OnBackoff != nil {
		c.cfg.OnBackoff(retry, wait)
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return c.ctxErr(ctx)
	case <-c.closing:
		return ErrClosed
	}
}

// ctxErr is ctx's error joined with the last failure, which says why.
func (c *Client) ctxErr(ctx context.Context) error {
	if last := c.lastError(); last != nil {
		return fmt.Errorf("%w (last attempt: %v)", ctx.Err(), last)
	}
	return ctx.Err()
}

func (c *Client) setLastErr(err error) {
	c.mu.Lock()
	c.lastErr = err
	c.mu.Unlock()
}

func (c *Client) lastError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

// onNotification paces reconnections: paho announces each attempt before it makes it,
// in the reconnecting goroutine, which the wait delays.
func (c *Client) onNotification(_ paho.Client, n paho.ConnectionNotification) {
	switch n := n.(type) {
	case paho.ConnectionNotificationConnecting:
		if !n.IsReconnect {
			return // Connect's attempts, which dial paces
		}
		wait := c.cfg.Backoff.Delay(n.Attempt)
		if n.Attempt > 0 {
			c.log.Warn().Err(c.lastError()).Int("attempt", n.Attempt).Dur("retryIn", wait).Msg("cannot reconnect to the broker; retrying")
		}
		_ = c.pause(context.Background(), n.Attempt, wait)
	case paho.ConnectionNotificationFailed:
		c.setLastErr(n.Reason)
	}
}

// enter registers a handler or hook call unless the client is closed.
func (c *Client) enter() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.cbs.Add(1)
	return true
}

// wrap makes a paho handler of h that does not run once the client is closed.
func (c *Client) wrap(h Handler) paho.MessageHandler {
	if h == nil {
		return nil // paho hands the messages to the default handler
	}
	return func(_ paho.Client, m paho.Message) {
		if !c.enter() {
			return // closing: left unacknowledged
		}
		defer c.cbs.Done()
		h(m)
	}
}

// onConnect runs in a goroutine of paho's after every connection: it subscribes and
// reports the outcome.
func (c *Client) onConnect(pc paho.Client) {
	if !c.enter() {
		return
	}
	defer c.cbs.Done()
	n := c.conns.Add(1)
	c.mu.Lock()
	lostAt := c.lostAt
	c.lostAt, c.lastErr = time.Time{}, nil
	c.mu.Unlock()
	if !lostAt.IsZero() {
		c.log.Info().Dur("down", time.Since(lostAt).Round(time.Millisecond)).Msg("connection to the broker restored")
	}
	if c.cfg.OnConnect != nil {
		c.cfg.OnConnect()
	}
	err := c.subscribe(pc)
	if errors.Is(err, ErrClosed) {
		return
	}
	if err != nil && !c.cfg.NoReconnect && (c.conns.Load() != n || !pc.IsConnectionOpen()) {
		c.log.Debug().Err(err).Msg("subscription lost with its connection; the next connection subscribes again")
		return
	}
	if err != nil {
		level := zerolog.ErrorLevel
		if errors.Is(err, ErrPacketIDInUse) {
			level = zerolog.WarnLevel
		}
		c.log.WithLevel(level).Err(err).Msg("subscribe")
	}
	if c.cfg.OnSubscribed != nil {
		c.cfg.OnSubscribed(err)
	}
	c.mu.Lock()
	w := c.waiter
	c.waiter = nil
	c.mu.Unlock()
	if w != nil {
		w <- err // buffered; only Connect waits, for the first outcome
	}
}

func (c *Client) onConnectionLost(_ paho.Client, err error) {
	if !c.enter() {
		return
	}
	defer c.cbs.Done()
	c.mu.Lock()
	c.lastErr, c.lostAt = err, time.Now()
	c.mu.Unlock()
	if c.cfg.NoReconnect {
		c.log.Warn().Err(err).Msg("connection to the broker lost")
	} else {
		c.log.Warn().Err(err).Msg("connection to the broker lost; reconnecting")
	}
	if c.cfg.OnConnectionLost != nil {
		c.cfg.OnConnectionLost(err)
	}
}

// subscribe makes the subscriptions, unless Unsubscribe ended them.
func (c *Client) subscribe(pc paho.Client) error {
	c.mu.Lock()
	off := c.unsubscribed
	c.mu.Unlock()
	if off {
		return nil
	}
	for _, s := range c.cfg.Subscriptions {
		if err := c.subscribeOne(pc, s); err != nil {
			return err
		}
	}
	return nil
}

// subscribeOne subscribes, trying again while the broker reports ErrPacketIDInUse, or
// refuses the subscription within its RetryRefused.
func (c *Client) subscribeOne(pc paho.Client, s Subscription) error {
	wait := 10 * time.Millisecond
	start := time.Now()
	for attempt := 1; ; attempt++ {
		err := c.subscribeOnce(pc, s)
		var refused *SubscribeError
		switch {
		case errors.As(err, &refused) && s.RetryRefused > 0 && time.Since(start) < s.RetryRefused && pc.IsConnectionOpen():
			c.log.Info().Int("attempt", attempt).Str("filter", s.Filter).Msg("subscription refused; subscribing again")
			wait = max(wait, 100*time.Millisecond)
		case !errors.Is(err, ErrPacketIDInUse) || attempt == subscribeAttempts:
			return err
		default:
			c.log.Debug().Int("attempt", attempt).Str("filter", s.Filter).Msg("subscription's packet identifier in use at the broker; subscribing again")
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-c.closing:
			t.Stop()
			return ErrClosed
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
}

func (c *Client) subscribeOnce(pc paho.Client, s Subscription) error {
	tok := pc.Subscribe(s.Filter, s.QoS, c.wrap(s.Handler))
	t := time.NewTimer(c.cfg.ConnectTimeout)
	defer t.Stop()
	select {
	case <-tok.Done():
	case <-t.C:
		return fmt.Errorf("the subscription to %s was not acknowledged within %v", s.Filter, c.cfg.ConnectTimeout)
	case <-c.closing:
		return ErrClosed
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("subscribing to %s: %w", s.Filter, err)
	}
	// One filter, one code; paho keys it by the filter without "$share/{group}/".
	for _, code := range tok.(*paho.SubscribeToken).Result() {
		switch {
		case code == 0x91:
			return fmt.Errorf("subscribing to %s: %w", s.Filter, ErrPacketIDInUse)
		case code > 2:
			return &SubscribeError{Filter: s.Filter, Code: code}
		}
	}
	return nil
}

// Publish publishes payload on topic. It does not wait: the token completes when the
// broker acknowledged a QoS 1 message (or at once for QoS 0), or with the failure. Do
// not wait for it in a handler with Config.OrderMatters.
func (c *Client) Publish(topic string, qos byte, retained bool, payload []byte) paho.Token {
	return c.paho.Publish(topic, qos, retained, payload)
}

// Unsubscribe ends the subscriptions, so that the other members of a shared group take
// the new messages, and stops their renewal at reconnections. It waits for the broker's
// acknowledgement, ctx or Close. Without a connection it only stops the renewal.
func (c *Client) Unsubscribe(ctx context.Context) error {
	c.mu.Lock()
	c.unsubscribed = true
	c.mu.Unlock()
	if len(c.cfg.Subscriptions) == 0 || !c.paho.IsConnectionOpen() {
		return nil
	}
	filters := make([]string, len(c.cfg.Subscriptions))
	for i, s := range c.cfg.Subscriptions {
		filters[i] = s.Filter
	}
	tok := c.paho.Unsubscribe(filters...)
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-c.closing:
		return ErrClosed
	}
}

// Connected reports whether the connection is up now.
func (c *Client) Connected() bool { return c.paho.IsConnectionOpen() }

// Paho returns the paho client, for the device kit and for tests. Connect, Disconnect
// and the handlers belong to the Client: use its methods for them.
func (c *Client) Paho() paho.Client { return c.paho }

// Close disconnects, waiting up to 250 ms for pending acknowledgements to go out, and
// returns once no handler or hook runs any more; none runs afterwards. A connection
// attempt in progress is waited for first (up to twice ConnectTimeout). Messages not
// acknowledged stay with a persistent session at the broker. Close must not be called
// from a handler or hook; it is safe to call more than once.
func (c *Client) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	close(c.closing)
	c.mu.Unlock()
	c.dialMu.Lock()
	defer c.dialMu.Unlock()
	c.mu.Lock()
	attempt := c.attempt
	c.mu.Unlock()
	if attempt != nil {
		attempt.WaitTimeout(2 * c.cfg.ConnectTimeout)
	}
	c.paho.Disconnect(quiesce)
	c.cbs.Wait()
}
