package tokenworker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/clipgate/clipgate/internal/mqttclient"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/topics"
)

// MQTT timings.
const (
	publishTimeout     = 10 * time.Second
	unsubscribeTimeout = time.Second
)

// Transport carries a worker's requests and replies over an engine other than the
// worker's own MQTT client (Config.Transport).
type Transport interface {
	// Start connects and begins calling deliver with each request's MQTT topic and payload,
	// returning once requests can arrive. deliver must not block for long.
	Start(ctx context.Context, deliver func(topic string, payload []byte)) error
	// Publish sends a reply to an MQTT topic; the token completes once it is sent.
	Publish(topic string, payload []byte) Token
	// Stop stops the deliveries, so that other members of the group take new requests.
	Stop(ctx context.Context) error
	// Connected reports whether the transport is connected now.
	Connected() bool
	// Close disconnects.
	Close()
}

// A Follower is a Transport that also delivers a topic's retained message, then its later
// publishes: how a worker with Config.RevocationsKey and its own Transport follows the
// signed revocation list (natsbus.Workers is one).
type Follower interface {
	// Follow makes Start apply topic's retained payload before requests arrive, then each
	// later payload, one at a time. It is called before Start.
	Follow(topic string, apply func(payload []byte))
}

// Token is a publish in progress (paho's tokens satisfy it).
type Token interface {
	WaitTimeout(time.Duration) bool
	Error() error
}

// mqttTransport is the worker's own MQTT client in the shared-subscription group.
type mqttTransport struct{ c *mqttclient.Client }

func (t mqttTransport) Start(ctx context.Context, _ func(string, []byte)) error {
	return t.c.Connect(ctx)
}

func (t mqttTransport) Publish(topic string, payload []byte) Token {
	return t.c.Publish(topic, 1, false, payload)
}

func (t mqttTransport) Stop(ctx context.Context) error { return t.c.Unsubscribe(ctx) }
func (t mqttTransport) Close()                         { t.c.Close() }
func (t mqttTransport) Connected() bool                { return t.c.Connected() }

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
// ctx's error, or at once when the broker refuses the service account or the subscription.
// While the broker cannot be reached it tries again with backoff until ctx ends.
// Afterwards the client reconnects and resubscribes by itself until Close.
func (w *Worker) Start(ctx context.Context) error {
	if w.cfg.BrokerURL == "" && w.cfg.Transport == nil {
		return errors.New("tokenworker: BrokerURL or Transport is required to Start")
	}
	w.mu.Lock()
	if w.started || w.closed {
		w.mu.Unlock()
		return ErrStarted
	}
	filter := w.cfg.Topics.WorkerFilter(w.cfg.Group)
	tr, err := w.transport(filter)
	if err != nil {
		w.mu.Unlock()
		return err
	}
	w.started = true
	w.client = tr
	w.runCtx, w.cancel = context.WithCancel(context.Background())
	w.queue = make(chan job, w.cfg.QueueSize)
	// Handlers: pool goroutines take requests off the queue.
	for i := 0; i < w.poolSize; i++ {
		w.wg.Add(1)
		go w.serve()
	}
	w.mu.Unlock()

	if err := tr.Start(ctx, w.onRequest); err != nil {
		if w.cfg.Transport != nil { // BrokerURL is not used: the transport names its peer
			return fmt.Errorf("tokenworker: starting the %T transport: %w", tr, err)
		}
		return fmt.Errorf("tokenworker: connecting to %s: %w", w.cfg.BrokerURL, err)
	}
	if w.cfg.Transport != nil {
		w.log.Info().Str("transport", fmt.Sprintf("%T", tr)).Msg("token worker ready")
	} else {
		w.log.Info().Str("broker", w.cfg.BrokerURL).Str("filter", filter).Msg("token worker ready")
	}
	return nil
}

// transport returns Config.Transport, or the worker's own MQTT client subscribed to filter.
func (w *Worker) transport(filter string) (Transport, error) {
	if w.cfg.Transport != nil {
		f, ok := w.cfg.Transport.(Follower)
		if w.cfg.RevocationsKey != nil {
			if !ok {
				return nil, fmt.Errorf("tokenworker: RevocationsKey: the transport %T cannot follow the signed revocation list", w.cfg.Transport)
			}
			f.Follow(w.cfg.Topics.Revocations(), w.applyRevocationList)
		}
		if w.cfg.QuotasKey != nil {
			if !ok {
				return nil, fmt.Errorf("tokenworker: QuotasKey: the transport %T cannot follow the signed quota snapshot", w.cfg.Transport)
			}
			f.Follow(w.cfg.Topics.Quotas(), w.applyQuotaSnapshot)
		}
		return w.cfg.Transport, nil
	}
	// The signed documents first, so that the retained ones are in force before the first
	// request.
	var subs []mqttclient.Subscription
	if w.cfg.RevocationsKey != nil {
		subs = append(subs, mqttclient.Subscription{Filter: w.cfg.Topics.Revocations(), QoS: 1, Handler: w.onRevocationList})
	}
	if w.cfg.QuotasKey != nil {
		subs = append(subs, mqttclient.Subscription{Filter: w.cfg.Topics.Quotas(), QoS: 1, Handler: w.onQuotaSnapshot})
	}
	subs = append(subs, mqttclient.Subscription{Filter: filter, QoS: 1, Handler: w.onMessage})
	client, err := mqttclient.New(mqttclient.Config{
		BrokerURL:     w.cfg.BrokerURL,
		TLS:           w.cfg.TLS,
		ClientID:      w.cfg.ClientID,
		Username:      w.cfg.Username,
		Password:      w.cfg.Password,
		WriteTimeout:  publishTimeout,
		Subscriptions: subs,
		Logger:        w.log,
	})
	if err != nil {
		return nil, fmt.Errorf("tokenworker: %w", err)
	}
	return mqttTransport{client}, nil
}

// onMessage runs in a goroutine per message: it only queues the request, and answers busy
// at once when the queue is full.
func (w *Worker) onMessage(m mqttclient.Message) { w.onRequest(m.Topic(), m.Payload()) }

// onRequest queues one request, from any transport.
func (w *Worker) onRequest(topic string, payload []byte) {
	j := job{topic: topic, payload: payload, received: time.Now()}
	if w.runCtx.Err() != nil {
		w.refuse(j, protocol.CodeUnavailable, retryShutdown, "the token worker is shutting down; retry")
		return
	}
	select {
	case w.queue <- j:
	default:
		w.refuse(j, protocol.CodeBusy, w.busyRetry(), "the token worker's queue is full; retry after retryAfterMs")
	}
}

// onRevocationList applies a signed revocation list from the revocation topic. A refused
// list (garbage, forged, older than the one in force) is logged and counted; the list
// in force stays.
func (w *Worker) onRevocationList(m mqttclient.Message) { w.applyRevocationList(m.Payload()) }

// applyRevocationList applies a signed revocation list, from any transport.
func (w *Worker) applyRevocationList(payload []byte) {
	if err := w.cfg.Revocations.ApplySigned(w.cfg.RevocationsKey, payload, time.Now()); err != nil {
		w.ctr.revocationListsRefused.Add(1)
		w.log.Error().Err(err).Int("bytes", len(payload)).Msg("revocation list refused; the previous list stays in force")
		return
	}
	w.ctr.revocationLists.Add(1)
	w.log.Info().Int("revoked", w.cfg.Revocations.Len()).Time("issued", w.cfg.Revocations.Issued()).Msg("revocation list applied")
}

// onQuotaSnapshot applies a signed quota snapshot from the quota topic. A refused
// snapshot (garbage, forged, older than the one in force) is logged and counted; the
// snapshot in force stays.
func (w *Worker) onQuotaSnapshot(m mqttclient.Message) { w.applyQuotaSnapshot(m.Payload()) }

// applyQuotaSnapshot applies a signed quota snapshot, from any transport.
func (w *Worker) applyQuotaSnapshot(payload []byte) {
	if err := w.cfg.Quotas.Apply(w.cfg.QuotasKey, payload, w.cfg.Now()); err != nil {
		w.ctr.quotaSnapshotsRefused.Add(1)
		w.log.Error().Err(err).Int("bytes", len(payload)).Msg("quota snapshot refused; the previous snapshot stays in force")
		return
	}
	w.ctr.quotaSnapshots.Add(1)
	w.log.Info().Int("devices", w.cfg.Quotas.Len()).Time("issued", w.cfg.Quotas.Issued()).Msg("quota snapshot applied")
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
	w.client.Publish(w.cfg.Topics.AuthReply(device), reply)
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
	tok := w.client.Publish(topic, reply)
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
	started := w.started
	w.mu.Unlock()
	w.unhook()
	if started {
		ctx, cancel := context.WithTimeout(context.Background(), unsubscribeTimeout)
		_ = w.client.Stop(ctx)
		cancel()
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
		w.client.Close() // after an abandoned connection attempt, when it ends
	}
	w.stsWG.Wait()
	w.sts.close()
	return nil
}
