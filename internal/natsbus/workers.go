package natsbus

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/clipgate/clipgate/internal/tokenworker"
	"github.com/clipgate/clipgate/topics"
)

// Workers is a token worker's transport on NATS (tokenworker.Transport): a member of a
// queue group on the auth-request subjects of the partitions it owns.
type Workers struct {
	cfg WorkersConfig

	mu       sync.Mutex
	nc       *nats.Conn
	subs     []*nats.Subscription
	follow   []followed
	unfollow []func()
}

// followed is a topic given to Follow.
type followed struct {
	topic string
	apply func([]byte)
}

// WorkersConfig configures Workers.
type WorkersConfig struct {
	Conn
	// Topics is the topic scheme; the zero value is topics.Default().
	Topics topics.Scheme
	// Group is the queue group; empty means topics.DefaultWorkerGroup.
	Group string
	// Partitions is the number of partitions of the server's mapping (Mapping); 0 means
	// the cluster has no mapping and the worker takes every device's requests.
	Partitions int
	// Owned lists the partitions this worker takes (0 to Partitions-1); empty means all.
	// Give each partition one worker for strict affinity (one STS call per device and
	// credential lifetime), or two for redundancy (then at most two).
	Owned []int
}

var (
	_ tokenworker.Transport = (*Workers)(nil)
	_ tokenworker.Follower  = (*Workers)(nil)
)

// NewWorkers checks cfg and returns the transport; Start connects it.
func NewWorkers(cfg WorkersConfig) (*Workers, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.Group == "" {
		cfg.Group = topics.DefaultWorkerGroup
	}
	if !topics.ValidGroup(cfg.Group) {
		return nil, fmt.Errorf("%w: Group %q", ErrConfig, cfg.Group)
	}
	if cfg.Partitions < 0 {
		return nil, fmt.Errorf("%w: Partitions %d is negative", ErrConfig, cfg.Partitions)
	}
	for _, p := range cfg.Owned {
		if p < 0 || p >= cfg.Partitions {
			return nil, fmt.Errorf("%w: partition %d is not in 0..%d", ErrConfig, p, cfg.Partitions-1)
		}
	}
	return &Workers{cfg: cfg}, nil
}

// Subjects returns the subjects the worker subscribes to.
func (w *Workers) Subjects() []string {
	if w.cfg.Partitions == 0 {
		return []string{requestSubject(w.cfg.Topics)}
	}
	owned := w.cfg.Owned
	if len(owned) == 0 {
		for p := range w.cfg.Partitions {
			owned = append(owned, p)
		}
	}
	subjects := make([]string, len(owned))
	for i, p := range owned {
		subjects[i] = PartitionSubject(w.cfg.Topics, p)
	}
	return subjects
}

// Follow makes Start apply topic's retained MQTT message (a signed document the console
// publishes, retained) before it takes requests, then every later publish on topic
// (tokenworker.Follower). Call it before Start.
func (w *Workers) Follow(topic string, apply func(payload []byte)) {
	w.mu.Lock()
	w.follow = append(w.follow, followed{topic, apply})
	w.mu.Unlock()
}

// Start connects and subscribes; it returns once the server has the subscriptions.
func (w *Workers) Start(ctx context.Context, deliver func(topic string, payload []byte)) error {
	nc, err := w.cfg.dial(ctx)
	if err != nil {
		return err
	}
	w.mu.Lock()
	follow := w.follow
	w.mu.Unlock()
	var unfollow []func()
	// fail undoes what Start did so far.
	fail := func(err error) error {
		for _, s := range unfollow {
			s()
		}
		nc.Close()
		return err
	}
	for _, f := range follow {
		stop, err := followRetained(ctx, nc, f.topic, f.apply, func(err error) {
			w.cfg.Logger.Error().Err(err).Str("topic", f.topic).Msg("reading the retained document again after a reconnect")
		})
		if err != nil {
			return fail(err)
		}
		unfollow = append(unfollow, stop)
	}
	var subs []*nats.Subscription
	for _, subj := range w.Subjects() {
		sub, err := nc.QueueSubscribe(subj, w.cfg.Group, func(m *nats.Msg) {
			deliver(requestTopic(m.Subject), m.Data)
		})
		if err != nil {
			return fail(fmt.Errorf("natsbus: subscribing to %s: %w", subj, err))
		}
		subs = append(subs, sub)
	}
	// A permission violation comes back asynchronously; the flush surfaces it.
	if err := nc.FlushWithContext(ctx); err != nil {
		return fail(fmt.Errorf("natsbus: subscribing: %w", err))
	}
	if err := nc.LastError(); err != nil {
		return fail(fmt.Errorf("natsbus: subscribing: %w", err))
	}
	w.mu.Lock()
	w.nc, w.subs, w.unfollow = nc, subs, unfollow
	w.mu.Unlock()
	return nil
}

// Publish sends a reply on core NATS; the device's MQTT subscription receives it.
func (w *Workers) Publish(topic string, payload []byte) tokenworker.Token {
	w.mu.Lock()
	nc := w.nc
	w.mu.Unlock()
	if nc == nil {
		return doneToken{nats.ErrConnectionClosed}
	}
	return doneToken{nc.Publish(Subject(topic), payload)}
}

// Stop unsubscribes, so that the group's other members take new requests.
func (w *Workers) Stop(ctx context.Context) error {
	w.mu.Lock()
	subs := w.subs
	w.subs = nil
	nc := w.nc
	w.mu.Unlock()
	for _, s := range subs {
		_ = s.Unsubscribe()
	}
	if nc != nil {
		return nc.FlushWithContext(ctx)
	}
	return nil
}

// Connected reports whether the NATS connection is up.
func (w *Workers) Connected() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.nc != nil && w.nc.IsConnected()
}

// Close disconnects.
func (w *Workers) Close() {
	w.mu.Lock()
	nc, unfollow := w.nc, w.unfollow
	w.unfollow = nil
	w.mu.Unlock()
	for _, s := range unfollow {
		s()
	}
	if nc != nil {
		_ = nc.FlushTimeout(time.Second) // the replies published last
		nc.Close()
	}
}

// doneToken is a publish that completed when it was made: core NATS confirms nothing.
type doneToken struct{ err error }

func (t doneToken) WaitTimeout(time.Duration) bool { return true }
func (t doneToken) Error() error                   { return t.err }
