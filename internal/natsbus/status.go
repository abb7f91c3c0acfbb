package natsbus

import (
	"context"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/clipgate/clipgate/topics"
)

// StatusConfig configures Status.
type StatusConfig struct {
	Conn
	// Topics is the topic scheme; the zero value is topics.Default().
	Topics topics.Scheme
}

// Status is the console's status source on NATS: a core subscription to every device's
// status subject. Retained statuses are not replayed: a console started after a device
// learns its status at the device's next change.
type Status struct {
	cfg StatusConfig

	mu       sync.Mutex
	nc       *nats.Conn
	closed   bool
	inflight sync.WaitGroup
}

// NewStatus checks cfg and returns the source; Start connects it.
func NewStatus(cfg StatusConfig) (*Status, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	return &Status{cfg: cfg}, nil
}

// Start connects and subscribes; messages arrive in order.
func (s *Status) Start(ctx context.Context, deliver func(topic string, payload []byte)) error {
	nc, err := s.cfg.dial(ctx)
	if err != nil {
		return err
	}
	subj := Subject(s.cfg.Topics.StatusFilter(""))
	if _, err := nc.Subscribe(subj, func(m *nats.Msg) {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return
		}
		s.inflight.Add(1)
		s.mu.Unlock()
		defer s.inflight.Done()
		deliver(Topic(m.Subject), m.Data)
	}); err != nil {
		nc.Close()
		return fmt.Errorf("natsbus: subscribing to %s: %w", subj, err)
	}
	if err := nc.FlushWithContext(ctx); err != nil {
		nc.Close()
		return fmt.Errorf("natsbus: subscribing to %s: %w", subj, err)
	}
	s.mu.Lock()
	s.nc = nc
	s.mu.Unlock()
	return nil
}

// Close disconnects, waiting for the handler in flight.
func (s *Status) Close() {
	s.mu.Lock()
	nc := s.nc
	s.closed = true
	s.mu.Unlock()
	if nc != nil {
		nc.Close()
	}
	s.inflight.Wait()
}
