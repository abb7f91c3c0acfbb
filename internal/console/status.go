package console

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/clipgate/clipgate/internal/mqttdial"
	"github.com/clipgate/clipgate/internal/mqttstore"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/topics"
)

// maxStatusSize bounds a status message (devicekit's are about 100 bytes).
const maxStatusSize = 1024

// statusSubscriber follows every device's status topic. devicekit publishes
// {"v":1,"device":ID,"status":"online","ts":...} retained when it connects, and sets the
// same with "offline" as its will, which the broker publishes when the connection drops
// (and the kit publishes when it closes). The subscription is plain (not shared: every
// console wants every status) with a clean session, since the retained messages give the
// current state at each connect.
type statusSubscriber struct {
	c      *Console
	filter string
	client mqtt.Client
	first  chan error
}

func newStatusSubscriber(c *Console) (*statusSubscriber, error) {
	cfg := &c.cfg
	s := &statusSubscriber{c: c, filter: cfg.Topics.StatusFilter(""), first: make(chan error, 1)}
	opts := mqtt.NewClientOptions().
		SetStore(mqttstore.New()). // a copy per resend: paho issue #703
		AddBroker(cfg.BrokerURL).
		SetClientID(cfg.ClientID + "-status").
		SetUsername(cfg.Username).
		SetPassword(cfg.Password).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetOrderMatters(true). // statuses of one device must apply in order
		SetAutoReconnect(true).
		SetConnectRetry(false).
		SetMaxReconnectInterval(10 * time.Second).
		SetConnectTimeout(10 * time.Second).
		SetKeepAlive(30 * time.Second).
		SetOnConnectHandler(s.onConnect).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			c.log.Warn().Err(err).Msg("status subscription: connection lost; reconnecting")
		})
	if cfg.TLS != nil {
		opts.SetTLSConfig(cfg.TLS)
	}
	s.client = mqtt.NewClient(opts)
	return s, nil
}

// start connects (trying again until ctx ends while the broker cannot be reached) and
// waits for the first subscription.
func (s *statusSubscriber) start(ctx context.Context) error {
	if _, err := mqttdial.Connect(ctx, s.client, s.c.log); err != nil {
		return fmt.Errorf("status subscription: %w", err)
	}
	select {
	case err := <-s.first:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *statusSubscriber) onConnect(client mqtt.Client) {
	tok := client.Subscribe(s.filter, 1, s.onMessage)
	var err error
	switch {
	case !tok.WaitTimeout(10 * time.Second):
		err = errors.New("status subscription not acknowledged in time")
	case tok.Error() != nil:
		err = tok.Error()
	default:
		for _, code := range tok.(*mqtt.SubscribeToken).Result() {
			if code > 2 {
				err = fmt.Errorf("the broker refused the subscription to %s (SUBACK %#x): check the account's role", s.filter, code)
			}
		}
	}
	if err != nil {
		s.c.log.Error().Err(err).Msg("status subscription")
	}
	select {
	case s.first <- err:
	default:
	}
}

func (s *statusSubscriber) onMessage(_ mqtt.Client, m mqtt.Message) {
	device, online, err := parseStatus(s.c.cfg.Topics, m.Topic(), m.Payload())
	if err != nil {
		s.c.statusErrors.Add(1)
		s.c.log.Warn().Err(err).Str("topic", m.Topic()).Int("bytes", len(m.Payload())).Msg("status message dropped")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.c.store.SetStatus(ctx, device, online, s.c.cfg.Now()); err != nil {
		s.c.statusErrors.Add(1)
		s.c.log.Error().Err(err).Str("device", device).Msg("recording a status")
	}
}

func (s *statusSubscriber) close() {
	s.client.Disconnect(250)
}

// statusMessage is devicekit's status payload.
type statusMessage struct {
	V      int       `json:"v"`
	Device string    `json:"device"`
	Status string    `json:"status"`
	TS     time.Time `json:"ts"`
}

// parseStatus decodes a status message strictly: a status topic of the scheme, a
// payload of at most maxStatusSize bytes, one JSON object with known fields only,
// version 1, the topic's device, status "online" or "offline". An empty payload (a
// retained status being cleared) is an error too: it says nothing.
func parseStatus(scheme topics.Scheme, topic string, payload []byte) (device string, online bool, err error) {
	kind, device, ok := scheme.Parse(topic)
	if !ok || kind != topics.KindStatus {
		return "", false, fmt.Errorf("topic %q is not a device status topic", topic)
	}
	if len(payload) == 0 || len(payload) > maxStatusSize {
		return "", false, fmt.Errorf("status message of %d bytes (want 1 to %d)", len(payload), maxStatusSize)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	var msg statusMessage
	if err := dec.Decode(&msg); err != nil {
		return "", false, fmt.Errorf("status message: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return "", false, errors.New("status message: data after the JSON object")
	}
	switch {
	case msg.V != protocol.Version:
		return "", false, fmt.Errorf("status message version %d, want %d", msg.V, protocol.Version)
	case msg.Device != device:
		return "", false, fmt.Errorf("status message for device %q on the topic of %q", msg.Device, device)
	case msg.Status == "online":
		return device, true, nil
	case msg.Status == "offline":
		return device, false, nil
	}
	return "", false, fmt.Errorf("status %q: want online or offline", msg.Status)
}
