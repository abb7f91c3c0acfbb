package console

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/mqttclient"
)

// revPublisher publishes the signed revocation list, retained, on the revocation topic,
// with its own connection (ClientID+"-revocations"; the account must have role console).
// The list is published again at every connection, so a list made while the broker was
// away reaches it when it is back.
type revPublisher struct {
	c      *Console
	client *mqttclient.Client

	mu      sync.Mutex
	payload []byte    // the latest signed list
	issued  time.Time // its issue time; each list is issued strictly after the previous
}

func newRevPublisher(c *Console) (*revPublisher, error) {
	cfg := &c.cfg
	p := &revPublisher{c: c}
	client, err := mqttclient.New(mqttclient.Config{
		BrokerURL: cfg.BrokerURL,
		TLS:       cfg.TLS,
		ClientID:  cfg.ClientID + "-revocations",
		Username:  cfg.Username,
		Password:  cfg.Password,
		OnConnect: p.republish,
		Logger:    c.log.With().Str("publisher", "revocations").Logger(),
	})
	if err != nil {
		return nil, fmt.Errorf("revocation publisher: %w", err)
	}
	p.client = client
	return p, nil
}

func (p *revPublisher) start(ctx context.Context) error {
	if err := p.client.Connect(ctx); err != nil {
		return fmt.Errorf("revocation publisher: %w", err)
	}
	return nil
}

// republish sends the latest list without waiting (it runs in paho's goroutine).
func (p *revPublisher) republish() {
	p.mu.Lock()
	payload := p.payload
	p.mu.Unlock()
	if payload != nil {
		p.client.Publish(p.c.cfg.Topics.Revocations(), 1, true, payload)
	}
}

// publish signs list and publishes it, waiting for the broker's acknowledgement up to
// ctx's end or 10 seconds. A list that could not be sent now is sent at the next
// connection.
func (p *revPublisher) publish(ctx context.Context, list []identity.Revocation) error {
	p.mu.Lock()
	issued := p.c.cfg.Now().UTC()
	if !issued.After(p.issued) {
		issued = p.issued.Add(time.Microsecond) // strictly later, or followers refuse it
	}
	payload, err := identity.SignRevocationList(p.c.cfg.RevocationKey, issued, list)
	if err != nil {
		p.mu.Unlock()
		return err
	}
	p.payload, p.issued = payload, issued
	p.mu.Unlock()
	tok := p.client.Publish(p.c.cfg.Topics.Revocations(), 1, true, payload)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return fmt.Errorf("publishing the revocation list: %w (it is sent again at the next connection)", err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("publishing the revocation list: not acknowledged yet (%w); it is sent again at the next connection", ctx.Err())
	}
}

func (p *revPublisher) close() { p.client.Close() }
