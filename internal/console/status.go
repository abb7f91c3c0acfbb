package console

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/clipgate/clipgate/internal/mqttclient"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/topics"
)

// maxStatusSize bounds a status message (devicekit's are about 100 bytes).
const maxStatusSize = 1024

// statusSubscriber follows every device's status topic. devicekit publishes
// {"v":1,"device":ID,"status":"online","ts":...} retained when it connects, and sets the
// same with "offline" as its will, which the broker publishes when the connection drops
// (and the kit publishes when it closes). The device's last seen is the message's ts,
// not its arrival: retained statuses arrive again at every console start. The
// subscription is plain (not shared: every console wants every status) with a clean
// session, since the retained messages give the current state at each connect.
type statusSubscriber struct {
	c      *Console
	client StatusSource
}

// StatusSource delivers device status messages (Config.Status) from an engine other
// than the console's own MQTT client.
type StatusSource interface {
	// Start connects and begins calling deliver, in order per device, with each status
	// message's MQTT topic and payload; it returns once messages can arrive.
	Start(ctx context.Context, deliver func(topic string, payload []byte)) error
	// Close disconnects, waiting for deliver calls in flight.
	Close()
}

// mqttStatus is the console's own MQTT status subscription.
type mqttStatus struct{ c *mqttclient.Client }

func (m mqttStatus) Start(ctx context.Context, _ func(string, []byte)) error {
	return m.c.Connect(ctx)
}
func (m mqttStatus) Close() { m.c.Close() }

func newStatusSubscriber(c *Console) (*statusSubscriber, error) {
	cfg := &c.cfg
	s := &statusSubscriber{c: c}
	if cfg.Status != nil {
		s.client = cfg.Status
		return s, nil
	}
	client, err := mqttclient.New(mqttclient.Config{
		BrokerURL:     cfg.BrokerURL,
		TLS:           cfg.TLS,
		ClientID:      cfg.ClientID + "-status",
		Username:      cfg.Username,
		Password:      cfg.Password,
		OrderMatters:  true, // statuses of one device must apply in order
		Subscriptions: []mqttclient.Subscription{{Filter: cfg.Topics.StatusFilter(""), QoS: 1, Handler: func(m mqttclient.Message) { s.onMessage(m.Topic(), m.Payload()) }}},
		Logger:        c.log.With().Str("subscription", "status").Logger(),
	})
	if err != nil {
		return nil, fmt.Errorf("status subscription: %w", err)
	}
	s.client = mqttStatus{client}
	return s, nil
}

// start connects (trying again until ctx ends while the broker cannot be reached) and
// waits for the first subscription.
func (s *statusSubscriber) start(ctx context.Context) error {
	if err := s.client.Start(ctx, s.onMessage); err != nil {
		return fmt.Errorf("status subscription: %w", err)
	}
	return nil
}

func (s *statusSubscriber) onMessage(topic string, payload []byte) {
	st, err := parseStatus(s.c.cfg.Topics, topic, payload)
	if err != nil {
		s.c.statusErrors.Add(1)
		s.c.log.Warn().Err(err).Str("topic", topic).Int("bytes", len(payload)).Msg("status message dropped")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The device was seen at the status's own time: a retained status delivered when the
	// console (re)subscribes is as old as the device made it.
	if err := s.c.store.SetStatus(ctx, st.Device, st.Online, s.c.cfg.Now(), st.TS); err != nil {
		s.c.statusErrors.Add(1)
		s.c.log.Error().Err(err).Str("device", st.Device).Msg("recording a status")
	}
}

func (s *statusSubscriber) close() {
	s.client.Close()
}

// statusMessage is devicekit's status payload. TS is the device's time when it made
// the message: when it connected, for "online"; when it first connected, for its will
// (the "offline" the broker publishes); when it closed, for an "offline" of its own.
type statusMessage struct {
	V      int       `json:"v"`
	Device string    `json:"device"`
	Status string    `json:"status"`
	TS     time.Time `json:"ts"`
}

// deviceStatus is a parsed status message.
type deviceStatus struct {
	Device string
	Online bool
	// TS is the message's time by the device's clock; zero if it has none.
	TS time.Time
}

// parseStatus decodes a status message strictly: a status topic of the scheme, a
// payload of at most maxStatusSize bytes, one JSON object with known fields only,
// version 1, the topic's device, status "online" or "offline", and a ts (RFC 3339) if
// any. An empty payload (a retained status being cleared) is an error too: it says
// nothing.
func parseStatus(scheme topics.Scheme, topic string, payload []byte) (deviceStatus, error) {
	kind, device, ok := scheme.Parse(topic)
	if !ok || kind != topics.KindStatus {
		return deviceStatus{}, fmt.Errorf("topic %q is not a device status topic", topic)
	}
	if len(payload) == 0 || len(payload) > maxStatusSize {
		return deviceStatus{}, fmt.Errorf("status message of %d bytes (want 1 to %d)", len(payload), maxStatusSize)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	var msg statusMessage
	if err := dec.Decode(&msg); err != nil {
		return deviceStatus{}, fmt.Errorf("status message: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return deviceStatus{}, errors.New("status message: data after the JSON object")
	}
	st := deviceStatus{Device: device, TS: msg.TS}
	switch {
	case msg.V != protocol.Version:
		return deviceStatus{}, fmt.Errorf("status message version %d, want %d", msg.V, protocol.Version)
	case msg.Device != device:
		return deviceStatus{}, fmt.Errorf("status message for device %q on the topic of %q", msg.Device, device)
	case msg.TS.Year() < 1 || msg.TS.Year() > 9999:
		return deviceStatus{}, fmt.Errorf("status message time %v out of range", msg.TS)
	case msg.Status == "online":
		st.Online = true
		return st, nil
	case msg.Status == "offline":
		return st, nil
	}
	return deviceStatus{}, fmt.Errorf("status %q: want online or offline", msg.Status)
}
