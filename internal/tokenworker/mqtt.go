package tokenworker

import (
	"context"
	"errors"
	"fmt"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/clipgate/clipgate/internal/mqttstore"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/topics"
)

// MQTT timings.
const (
	publishTimeout     = 10 * time.Second
	subscribeTimeout   = 10 * time.Second
	unsubscribeTimeout = time.Second
	connectTimeout     = 10 * time.Second
	connectBackoffMin  = 200 * time.Millisecond
	connectBackoffMax  = 10 * time.Second
)

// job is one request received over MQTT.
type job struct {
	topic    string
	payload  []byte
	received time.Time
}

// queueWait is how long after its arrival a request received over MQTT may wait for an STS
// slot or for the STS rate before it is answered busy. It is well below the device kit's
// request timeout (10 s), so that a device is told to come back rather than left waiting.
const queueWait = 3 * time.Second

// ErrStarted is returned by Start on a worker that was already started or closed.
var ErrStarted = errors.New("tokenworker: already started or closed")

// Start connects the worker's MQTT client (clean session, protocol 3.1.1) and subscribes to
// the shared worker filter. It returns once the first subscription is acknowledged, or with
// ctx's error, or at once when the broker refuses the service account or the subscription. Afterwards the
// client reconnects and resubscribes by itself until Close.
func (w *Worker) Start(ctx context.Context) error {
	if w.cfg.BrokerURL == "" {
		return errors.New("tokenworker: BrokerURL is required to Start")
	}
	w.mu.Lock()
	if w.started || w.closed {
		w.mu.Unlock()
		return ErrStarted
	}
	w.started = true
	w.runCtx, w.cancel = context.WithCancel(context.Background())
	w.queue = make(chan job, w.cfg.QueueSize)
	filter := w.cfg.Topics.WorkerFilter(w.cfg.Group)
	opts := mqtt.NewClientOptions().
		SetStore(mqttstore.New()). // a copy per resend: paho issue #703
		AddBroker(w.cfg.BrokerURL).
		SetClientID(w.cfg.ClientID).
		SetUsername(w.cfg.Username).
		SetPassword(w.cfg.Password).
		SetCleanSession(true).
		SetOrderMatters(false).
		SetProtocolVersion(4).
		SetAutoReconnect(true).
		SetConnectRetry(false).
		SetMaxReconnectInterval(connectBackoffMax).
		SetConnectTimeout(connectTimeout).
		SetKeepAlive(30 * time.Second).
		SetWriteTimeout(publishTimeout).
		SetOnConnectHandler(func(c mqtt.Client) { w.subscribe(c, filter) }).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			w.log.Warn().Err(err).Msg("broker connection lost; reconnecting")
		}).
		SetReconnectingHandler(func(mqtt.Client, *mqtt.ClientOptions) {
			w.log.Info().Msg("reconnecting to broker")
		})
	if w.cfg.TLS != nil {
		opts.SetTLSConfig(w.cfg.TLS)
	}
	w.client = mqtt.NewClient(opts)
	// Handlers: pool goroutines take requests off the queue.
	for i := 0; i < w.poolSize; i++ {
		w.wg.Add(1)
		go w.serve()
	}
	w.mu.Unlock()

	if err := w.connect(ctx); err != nil {
		return err
	}
	select {
	case <-w.subbed:
		w.log.Info().Str("broker", w.cfg.BrokerURL).Str("filter", filter).Msg("token worker ready")
		return nil
	case err := <-w.subErr:
		return fmt.Errorf("tokenworker: subscribing to %s: %w", filter, err)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// connect makes the first connection, retrying network failures with backoff until ctx ends.
// A refused service account fails at once: retrying would not help.
func (w *Worker) connect(ctx context.Context) error {
	backoff := connectBackoffMin
	for {
		tok := w.client.Connect()
		select {
		case <-tok.Done():
		case <-ctx.Done():
			// The attempt ends by itself within the connect timeout; Close waits for it.
			w.mu.Lock()
			w.abandoned = tok
			w.mu.Unlock()
			return ctx.Err()
		}
		err := tok.Error()
		if err == nil {
			return nil
		}
		if errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) || errors.Is(err, packets.ErrorRefusedNotAuthorised) ||
			errors.Is(err, packets.ErrorRefusedIDRejected) || errors.Is(err, packets.ErrorRefusedBadProtocolVersion) {
			return fmt.Errorf("tokenworker: broker %s refused the connection: %w", w.cfg.BrokerURL, err)
		}
		w.log.Warn().Err(err).Dur("retry_in", backoff).Msg("cannot connect to broker")
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		backoff = min(2*backoff, connectBackoffMax)
	}
}

// subscribe runs in paho's OnConnect goroutine (not the router), after every (re)connect.
func (w *Worker) subscribe(c mqtt.Client, filter string) {
	tok := c.Subscribe(filter, 1, w.onMessage)
	fail := func(err error) {
		w.log.Error().Err(err).Str("filter", filter).Msg("subscribe failed")
		select {
		case w.subErr <- err: // for Start, if it is still waiting
		default:
		}
	}
	if !tok.WaitTimeout(subscribeTimeout) {
		fail(errors.New("no SUBACK in time"))
		return
	}
	if err := tok.Error(); err != nil {
		fail(err)
		return
	}
	// One filter, one return code (paho keys it by the filter without "$share/group/").
	if st, ok := tok.(*mqtt.SubscribeToken); ok {
		for _, rc := range st.Result() {
			if rc > 2 {
				fail(fmt.Errorf("broker refused the subscription (SUBACK 0x%02x); does the account have the tokenworker role?", rc))
				return
			}
		}
	}
	w.subOnce.Do(func() { close(w.subbed) })
}

// onMessage runs in a paho goroutine per message: it only queues the request, and answers
// busy at once when the queue is full.
func (w *Worker) onMessage(_ mqtt.Client, m mqtt.Message) {
	j := job{topic: m.Topic(), payload: m.Payload(), received: time.Now()}
	if w.runCtx.Err() != nil {
		w.refuse(j, protocol.CodeUnavailable, retryShutdown, "the token worker is shutting down; retry")
		return
	}
	select {
	case w.queue <- j:
	default:
		w.refuse(j, protocol.CodeBusy, retryBusy, "the token worker's queue is full; retry after retryAfterMs")
	}
}

// refuse answers a request without handling it (queue full, shutting down). The publish is
// not waited for: under overload a goroutine per waiting reply is what must not pile up.
func (w *Worker) refuse(j job, code protocol.Code, retry time.Duration, msg string) {
	w.ctr.requests.Add(1)
	kind, device, ok := w.cfg.Topics.Parse(j.topic)
	if !ok || kind != topics.KindAuthRequest {
		w.drop(j.topic, len(j.payload), "not a device auth-request topic")
		return
	}
	var id string
	if len(j.payload) <= protocol.MaxAuthRequestSize {
		id, _ = salvage(j.payload)
	}
	if id == "" {
		w.drop(j.topic, len(j.payload), "refused request without a usable ID")
		return
	}
	d := decision{device: device, id: id, start: time.Now()}
	d.fail(code, retry, msg)
	reply := w.failure(&d, w.cfg.Now())
	w.audit(&d)
	w.client.Publish(w.cfg.Topics.AuthReply(device), 1, false, reply)
}

// serve is one pool goroutine.
func (w *Worker) serve() {
	defer w.wg.Done()
	for {
		select {
		case j := <-w.queue:
			w.handleJob(j)
		case <-w.runCtx.Done():
			return
		}
	}
}

func (w *Worker) handleJob(j job) {
	topic, reply, ok := w.handle(w.runCtx, j.topic, j.payload, j.received.Add(queueWait))
	if !ok {
		return
	}
	// Waited for here, in a pool goroutine, never in a paho handler.
	tok := w.client.Publish(topic, 1, false, reply)
	if !tok.WaitTimeout(publishTimeout) {
		w.log.Warn().Str("topic", topic).Msg("reply publish not acknowledged in time")
	} else if err := tok.Error(); err != nil {
		w.log.Warn().Err(err).Str("topic", topic).Msg("reply publish failed")
	}
}

// Close unsubscribes (so that the group's other workers get new requests), answers what is
// queued with unavailable, waits for the pool and for STS calls in flight, and disconnects.
// It is safe to call more than once and on a worker that was never started.
func (w *Worker) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	started, abandoned := w.started, w.abandoned
	w.mu.Unlock()
	if started {
		if w.client.IsConnectionOpen() {
			w.client.Unsubscribe(w.cfg.Topics.WorkerFilter(w.cfg.Group)).WaitTimeout(unsubscribeTimeout)
		}
		w.cancel()
		w.wg.Wait()
		// Tell what is still queued to retry (another worker of the group takes it), rather
		// than leave the devices to time out.
		for drained := false; !drained; {
			select {
			case j := <-w.queue:
				w.refuse(j, protocol.CodeUnavailable, retryShutdown, "the token worker is shutting down; retry")
			default:
				drained = true
			}
		}
		if abandoned != nil {
			abandoned.WaitTimeout(2 * connectTimeout)
		}
		w.client.Disconnect(250)
	}
	w.stsWG.Wait()
	w.sts.close()
	return nil
}
