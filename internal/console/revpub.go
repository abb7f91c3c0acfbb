package console

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/clipgate/clipgate/internal/mqttclient"
)

// signedPublisher publishes the console's signed documents, retained, each on its topic:
// the revocation list (Topics.Revocations) and the quota snapshot (Topics.Quotas). It
// has its own connection (ClientID+"-revocations"; the account must have role console).
// Every document is published again at every connection, so a document made while the
// broker was away reaches it when it is back.
type signedPublisher struct {
	c      *Console
	client *mqttclient.Client

	mu   sync.Mutex
	docs map[string]*signedDoc // by topic
}

// signedDoc is the latest document of a topic.
type signedDoc struct {
	payload []byte
	issued  time.Time // each document of a topic is issued strictly after the previous
}

func newSignedPublisher(c *Console) (*signedPublisher, error) {
	cfg := &c.cfg
	p := &signedPublisher{c: c, docs: map[string]*signedDoc{}}
	client, err := mqttclient.New(mqttclient.Config{
		BrokerURL: cfg.BrokerURL,
		TLS:       cfg.TLS,
		ClientID:  cfg.ClientID + "-revocations",
		Username:  cfg.Username,
		Password:  cfg.Password,
		OnConnect: p.republish,
		Logger:    c.log.With().Str("publisher", "signed").Logger(),
	})
	if err != nil {
		return nil, fmt.Errorf("signed-document publisher: %w", err)
	}
	p.client = client
	return p, nil
}

func (p *signedPublisher) start(ctx context.Context) error {
	if err := p.client.Connect(ctx); err != nil {
		return fmt.Errorf("signed-document publisher: %w", err)
	}
	return nil
}

// republish sends the latest documents without waiting (it runs in paho's goroutine).
func (p *signedPublisher) republish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for topic, d := range p.docs {
		p.client.Publish(topic, 1, true, d.payload)
	}
}

// publish signs a document with sign, at an issue time strictly after the topic's
// previous one, and publishes it on topic (what names it in errors), waiting for the
// broker's acknowledgement up to ctx's end or 10 seconds. A document that could not be
// sent now is sent at the next connection.
func (p *signedPublisher) publish(ctx context.Context, topic, what string, sign func(issued time.Time) ([]byte, error)) error {
	p.mu.Lock()
	d := p.docs[topic]
	issued := p.c.cfg.Now().UTC()
	if d != nil && !issued.After(d.issued) {
		issued = d.issued.Add(time.Microsecond) // strictly later, or followers refuse it
	}
	payload, err := sign(issued)
	if err != nil {
		p.mu.Unlock()
		return err
	}
	p.docs[topic] = &signedDoc{payload: payload, issued: issued}
	p.mu.Unlock()
	tok := p.client.Publish(topic, 1, true, payload)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return fmt.Errorf("publishing the %s: %w (it is sent again at the next connection)", what, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("publishing the %s: not acknowledged yet (%w); it is sent again at the next connection", what, ctx.Err())
	}
}

func (p *signedPublisher) close() { p.client.Close() }
