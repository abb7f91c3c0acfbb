package devicekit

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"
	"golang.org/x/sync/singleflight"

	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/mqttclient"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/topics"
)

// Errors of the connection life cycle.
var (
	// ErrNotConnected is returned by calls that need the broker before Connect succeeded.
	ErrNotConnected = errors.New("devicekit: not connected (call Connect first)")
	// ErrClosed is returned by every call after Close.
	ErrClosed = errors.New("devicekit: closed")
	// ErrRefused is wrapped by Connect's error when the broker refused the login and
	// Config.StopWhenRefused is set.
	ErrRefused = mqttclient.ErrRefused
)

// Kit is a camera's connection to clipgate: it holds the MQTT session, the credentials
// cache and the OSS client. A Kit is safe for concurrent use.
type Kit struct {
	cfg    Config
	topics topics.Scheme
	log    zerolog.Logger

	replyTopic, requestTopic, eventTopic, statusTopic string
	statusAllowed                                     bool

	// offset is the learned correction of the device clock, in nanoseconds.
	offset atomic.Int64
	// synced is set once the offset comes from a server time: the MQTT passwords are then
	// synced ones (narrow window). attempting marks a connection attempt not yet
	// established (see mqttCredentials).
	synced, attempting atomic.Bool

	// ctx lives until Close; the shared credentials fetch runs under it.
	ctx    context.Context
	cancel context.CancelCauseFunc

	mu      sync.Mutex
	client  *mqttclient.Client
	conn    *connState                          // readiness of the current connection
	waiters map[string]chan *protocol.AuthReply // credentials requests awaiting a reply
	closed  bool

	// gen counts established connections; a publish acknowledged "nil" while gen changed is
	// not trusted (paho can complete tokens across a reconnect without a PUBACK).
	gen atomic.Uint64

	key     atomic.Pointer[identity.DeviceKey] // the current device key (rotation replaces it); nil with a certificate
	rekeyMu sync.Mutex                         // serializes applying a new key (applyRekey)
	// certDER and certKey are the client certificate and its key of a device without a
	// DeviceKey.
	certDER []byte
	certKey crypto.Signer
	// eventKey keys the derived event IDs (eventID); it lives in StateDir, so that it
	// outlives key rotations and exists for certificate devices too.
	eventKey []byte

	sf        singleflight.Group
	cache     atomic.Pointer[Credentials] // Config.Mode
	modeCache sync.Map                    // other modes: mode -> *atomic.Pointer[Credentials]
	credFiles credCache                   // the credentials kept on disk (credcache.go)

	http      *http.Client // OSS requests
	transport *http.Transport

	refreshes  atomic.Int64 // credentials accepted (Stats)
	flushing   atomic.Bool  // an outbox flush is running
	flushFail  atomic.Int32 // outbox flushes failed in a row (retryFlush)
	uploading  sync.Map     // journal paths of the uploads in progress (and of the entries a sweep works on)
	sweeping   atomic.Bool  // a sweep of abandoned uploads is running
	sweepAgain atomic.Bool  // a sweep was asked for
	lastSweep  atomic.Int64 // UnixNano of the start of the last sweep; 0: none yet
	wg         sync.WaitGroup
	lock       *stateLock // held on StateDir until Close (statelock.go)
	throttle   *throttle  // the upload cap (bandwidth.go); nil: none

	// Test hooks (nil in production).
	onRetry       func(err error, wait time.Duration)   // before each backoff wait of a credentials fetch
	onConnectWait func(attempt int, wait time.Duration) // before each connection backoff
	onProgress    func(completed, total int64)          // multipart progress, per part stored
	afterComplete func(cpPath string)                   // CompleteMultipartUpload succeeded, checkpoint not yet removed
	onSweep       func(aborted int, err error)          // a background sweep (sweepSoon) ended
}

// connState tracks one MQTT connection: ready is closed once the reply subscription is
// confirmed (err nil) or refused (err set).
type connState struct {
	ready chan struct{}
	err   error
	once  sync.Once
}

func newConnState() *connState { return &connState{ready: make(chan struct{})} }

// finish records the outcome of the connection's subscription, once.
func (s *connState) finish(err error) {
	s.once.Do(func() {
		s.err = err
		close(s.ready)
	})
}

// New validates cfg, creates the state directories, locks StateDir and returns a Kit
// that is not yet connected. Errors for a bad cfg wrap ErrConfig; while another Kit (in
// this process or another) holds StateDir, the error is a *StateInUseError naming it.
func New(cfg Config) (*Kit, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	lock, err := lockState(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	var certDER []byte
	var certKey crypto.Signer
	if cfg.DeviceKey != nil {
		cfg.DeviceKey = (*DeviceKey)(cfg.DeviceKey.internal().Clone())
	} else if certDER, certKey, err = cfg.certIdentity(); err != nil { // checked by withDefaults
		lock.release()
		return nil, err
	}
	eventKey, err := loadEventKey(cfg.StateDir)
	if err != nil {
		lock.release()
		return nil, err
	}
	scheme := cfg.Topics
	ctx, cancel := context.WithCancelCause(context.Background())
	k := &Kit{
		cfg:          cfg,
		topics:       scheme,
		log:          cfg.Logger.With().Str("device", cfg.DeviceID).Logger(),
		replyTopic:   scheme.AuthReply(cfg.DeviceID),
		requestTopic: scheme.AuthRequest(cfg.DeviceID),
		eventTopic:   scheme.UploadEvent(cfg.DeviceID),
		statusTopic:  scheme.Status(cfg.DeviceID),
		ctx:          ctx,
		cancel:       cancel,
		conn:         newConnState(),
		waiters:      make(map[string]chan *protocol.AuthReply),
		lock:         lock,
	}
	k.key.Store(cfg.DeviceKey.internal())
	k.certDER, k.certKey, k.eventKey = certDER, certKey, eventKey
	k.http, k.transport = newHTTPClient(nil)
	if k.throttle = newThrottle(cfg); k.throttle != nil {
		k.throttle.install(k.transport)
	}
	k.statusAllowed = scheme.Allowed(topics.RoleDevice, cfg.DeviceID, k.statusTopic, topics.Publish)
	k.sweepTemp()
	return k, nil
}

// enter registers a goroutine that Close waits for; false after Close.
func (k *Kit) enter() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return false
	}
	k.wg.Add(1)
	return true
}

// now is the device clock corrected by the learned offset: the kit's best guess of the
// server time.
func (k *Kit) now() time.Time {
	return k.cfg.Now().Add(time.Duration(k.offset.Load()))
}

// learnTime records the server time of a reply as the clock offset.
func (k *Kit) learnTime(server time.Time) {
	if server.IsZero() {
		return
	}
	off := server.Sub(k.cfg.Now())
	k.synced.Store(true)
	if old := time.Duration(k.offset.Swap(int64(off))); (old - off).Abs() > time.Minute {
		// OSS requests are signed with the corrected clock too (dateHeader).
		k.log.Info().Dur("offset", off).Msg("device clock corrected by the server time")
	}
}

// mqttCredentials is called before every connection attempt, paho's reconnections
// included: each password is fresh (the broker accepts each one once). Once the kit knows
// the server time, the password is a synced one, which the broker accepts only within
// minutes of its clock; if an attempt did not connect (the clock may have jumped since the
// offset was learned, or the broker was unreachable), the next one uses a wide password
// again, which a clock hours off still passes.
func (k *Kit) mqttCredentials() (string, string) {
	if k.attempting.Swap(true) {
		k.synced.Store(false) // the previous attempt failed
	}
	key := k.deviceKey()
	if key == nil {
		return k.cfg.DeviceID, "" // the client certificate authenticates the device
	}
	if k.synced.Load() {
		return k.cfg.DeviceID, key.SyncedPassword(k.now())
	}
	return k.cfg.DeviceID, key.Password(k.now())
}

// status is the retained message on the device's status topic.
type status struct {
	V      int       `json:"v"`
	Device string    `json:"device"`
	Status string    `json:"status"` // "online" or "offline"
	TS     time.Time `json:"ts"`
}

func (k *Kit) statusPayload(s string) []byte {
	b, _ := json.Marshal(status{V: protocol.Version, Device: k.cfg.DeviceID, Status: s, TS: k.now().UTC()})
	return b
}

// replySubscribeRetry is how long a refused reply subscription is tried again: a NATS
// cluster's JetStream leader election took up to 30 s under load.
const replySubscribeRetry = time.Minute

// Connect connects to the broker and subscribes to the device's reply topic. It returns
// once the subscription is confirmed, or with ctx's error (and the last connection failure)
// if that does not happen in time. After a successful Connect the kit reconnects by
// itself, with a fresh password each time, and resubscribes.
func (k *Kit) Connect(ctx context.Context) error {
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return ErrClosed
	}
	if k.client != nil {
		k.mu.Unlock()
		return errors.New("devicekit: Connect called twice")
	}
	var client *mqttclient.Client
	cfg := mqttclient.Config{
		BrokerURL:      k.cfg.BrokerURL,
		FailoverURLs:   k.cfg.FailoverURLs,
		TLS:            k.cfg.TLS,
		Dialer:         k.cfg.Dialer,
		ClientID:       k.cfg.DeviceID,
		Credentials:    k.mqttCredentials,
		ConnectTimeout: k.cfg.RequestTimeout,
		KeepAlive:      30 * time.Second,
		Backoff:        connectBackoff,
		KeepTrying:     !k.cfg.StopWhenRefused, // a refused device may be let in again (revocation lifted)
		// QoS 0: a reply is part of a request the kit retries, and on a NATS cluster a QoS 1
		// subscription is a replicated JetStream consumer per device (about 14 times the
		// memory, a ninth of the connect rate; issue 13). A NATS cluster refuses
		// subscriptions while it elects a JetStream leader: they are tried again.
		Subscriptions: []mqttclient.Subscription{{Filter: k.replyTopic, QoS: 0, Handler: k.onReply,
			RetryRefused: replySubscribeRetry}},
		DefaultHandler: func(m mqttclient.Message) {
			k.log.Debug().Str("topic", m.Topic()).Msg("unexpected message dropped")
		},
		OnConnect:        func() { k.onConnect(client) },
		OnSubscribed:     func(err error) { k.onSubscribed(client, err) },
		OnConnectionLost: func(err error) { k.onConnectionLost(client) },
		OnBackoff:        k.onConnectWait,
		Logger:           k.log,
	}
	if k.statusAllowed {
		cfg.Will = &mqttclient.Will{Topic: k.statusTopic, Payload: k.statusPayload("offline"), QoS: 1, Retained: true}
	}
	client, err := mqttclient.New(cfg)
	if err != nil {
		k.mu.Unlock()
		return fmt.Errorf("devicekit: %w", err)
	}
	k.client = client
	k.mu.Unlock()

	if err := client.Connect(ctx); err != nil {
		k.abandon(client)
		if errors.Is(err, mqttclient.ErrClosed) {
			return ErrClosed
		}
		return fmt.Errorf("devicekit: connect to %s: %w", k.cfg.BrokerURL, err)
	}
	return nil
}

// abandon closes a client whose Connect failed, so that Connect can be called again.
func (k *Kit) abandon(client *mqttclient.Client) {
	client.Close()
	k.mu.Lock()
	if k.client == client {
		k.client = nil
		k.conn = newConnState()
	}
	k.mu.Unlock()
}

// onConnect runs at the start of every connection, before the reply subscription: the
// publications of the previous connection are no longer trusted (gen), and readiness
// starts over.
func (k *Kit) onConnect(c *mqttclient.Client) {
	k.gen.Add(1)
	k.attempting.Store(false)
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.client != c || k.closed {
		return
	}
	select {
	case <-k.conn.ready: // the state of an earlier connection: start a new one
		k.conn = newConnState()
	default:
	}
}

// onSubscribed runs after the reply subscription of every connection, confirmed (err nil)
// or refused: it settles the connection's readiness, announces the device online and
// flushes the event outbox.
func (k *Kit) onSubscribed(c *mqttclient.Client, err error) {
	k.mu.Lock()
	if k.client != c || k.closed {
		k.mu.Unlock()
		return
	}
	state := k.conn
	k.mu.Unlock()
	state.finish(err)
	if err != nil {
		return // logged by the client
	}
	k.log.Info().Msg("connected")
	if k.statusAllowed {
		c.Publish(k.statusTopic, 1, true, k.statusPayload("online")) // best effort
	}
	k.flushOutbox()
}

func (k *Kit) onConnectionLost(c *mqttclient.Client) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.client != c {
		return
	}
	select {
	case <-k.conn.ready:
		k.conn = newConnState()
	default:
	}
}

// ready waits until the current connection's reply subscription is confirmed.
func (k *Kit) ready(ctx context.Context) (*mqttclient.Client, error) {
	k.mu.Lock()
	client, state, closed := k.client, k.conn, k.closed
	k.mu.Unlock()
	switch {
	case closed:
		return nil, ErrClosed
	case client == nil:
		return nil, ErrNotConnected
	}
	select {
	case <-state.ready:
		return client, state.err
	case <-ctx.Done():
		return nil, fmt.Errorf("devicekit: waiting for the broker connection: %w", ctx.Err())
	case <-k.ctx.Done():
		return nil, ErrClosed
	}
}

// waitToken waits for an MQTT token up to timeout, ctx or Close.
func waitToken(ctx context.Context, tok mqtt.Token, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-t.C:
		return fmt.Errorf("devicekit: no acknowledgement from the broker within %v", timeout)
	case <-ctx.Done():
		if errors.Is(context.Cause(ctx), errKitClosed) {
			return ErrClosed
		}
		return ctx.Err()
	}
}

var errKitClosed = errors.New("kit closed")

// publish publishes payload with QoS 1 and waits for the PUBACK. A token that completes
// without error after the connection changed is not trusted: the message is published
// again (consumers deduplicate), up to three times.
func (k *Kit) publish(ctx context.Context, topic string, payload []byte) error {
	var err error
	for try := range 3 {
		if try > 0 {
			if err := k.sleep(ctx, publishBackoff.Delay(try-1, 0)); err != nil {
				return err
			}
		}
		var client *mqttclient.Client
		if client, err = k.ready(ctx); err != nil {
			return err
		}
		gen := k.gen.Load()
		err = waitToken(ctx, client.Publish(topic, 1, false, payload), k.cfg.RequestTimeout)
		if err != nil {
			return err
		}
		if k.gen.Load() == gen && client.Paho().IsConnected() {
			return nil
		}
		err = errors.New("devicekit: the connection changed before the broker acknowledged")
		k.log.Debug().Str("topic", topic).Msg("publish completed across a reconnect; publishing again")
	}
	return err
}

// Close announces the device offline, disconnects from the broker, stops the kit's
// goroutines and releases StateDir. Unacknowledged events, the upload journal and
// multipart checkpoints stay in StateDir for the next Kit.
func (k *Kit) Close() error {
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return nil
	}
	k.closed = true
	client := k.client
	for id, ch := range k.waiters {
		close(ch)
		delete(k.waiters, id)
	}
	k.mu.Unlock()
	k.cancel(errKitClosed)
	if client != nil {
		if client.Paho().IsConnected() && k.statusAllowed {
			// A clean disconnect does not fire the will: say offline ourselves.
			_ = waitToken(context.Background(), client.Publish(k.statusTopic, 1, true, k.statusPayload("offline")), time.Second)
		}
		client.Close()
	}
	k.wg.Wait()
	k.transport.CloseIdleConnections()
	k.lock.release()
	return nil
}
