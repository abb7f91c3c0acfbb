// Package natsevents delivers clipgate's upload events from a NATS JetStream cluster to an
// events consumer: set events.Config.Source to the Source that New returns.
//
// The source is a JetStream durable consumer on the MQTT gateway's own stream
// ($MQTT_msgs), filtered to the upload-event subjects: the devices publish their events
// over MQTT as usual, and each event goes to one of the processes sharing the durable
// consumer's name. Start the consumer before the devices publish: the stream keeps an
// event only while a durable consumer with interest in it exists.
package natsevents

import (
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/clipgate/clipgate/events"
	"github.com/clipgate/clipgate/internal/mqttclient"
	"github.com/clipgate/clipgate/internal/natsbus"
	"github.com/clipgate/clipgate/topics"
)

// Defaults of Config.
const (
	DefaultDurable  = natsbus.DefaultDurable
	DefaultReplicas = natsbus.DefaultReplicas
	DefaultAckWait  = natsbus.DefaultAckWait
)

// ErrInvalidConfig is wrapped by the errors New returns for a bad configuration.
var ErrInvalidConfig = errors.New("natsevents: invalid configuration")

// ErrNoMQTTStream is returned by the source's Start on a cluster whose MQTT gateway has
// not created its stream yet (no MQTT client has connected to the account since the
// cluster was created) when Config.MQTTURL is empty.
var ErrNoMQTTStream = natsbus.ErrNoMQTTStream

// Config says how to reach the NATS cluster and which durable consumer to use. Zero
// values mean the defaults above.
type Config struct {
	// URLs are the cluster's client URLs (nats://host:4222 or tls://host:4222); the
	// client fails over between them and learns the others from the cluster. At least
	// one is required.
	URLs []string
	// Username and Password are a service account with role "consumer"; the cluster's
	// auth callout checks them as the MQTT broker would. Required.
	Username, Password string
	// Name is the NATS connection name, e.g. "consumer:indexer-1" (optional).
	Name string
	// TLS configures tls:// connections.
	TLS *tls.Config
	// Topics is the topic scheme; the zero value is topics.Default(). Give the same
	// scheme as events.Config.Topics.
	Topics topics.Scheme
	// Durable is the JetStream durable consumer's name, shared by every process of one
	// backend service (each event goes to one of them); give each service its own
	// (indexer, transcoder, ...). No '.', '*', '>', '/', '\' or whitespace.
	Durable string
	// Replicas of the durable consumer: 3 in a cluster of 3 (the default), 1 on one node.
	Replicas int
	// AckWait is how long a delivered event may stay unacknowledged before JetStream
	// delivers it again; at least one second.
	AckWait time.Duration
	// MaxAckPending bounds the events delivered and not yet acknowledged, across the
	// processes; default 1024.
	MaxAckPending int
	// MQTTURL, when set, is a node's MQTT gateway URL (tcp://host:1883): on a new
	// cluster whose gateway has not created $MQTT_msgs yet, the source connects there
	// once so that it does. Without it Start fails with ErrNoMQTTStream on such a cluster.
	MQTTURL string
	// Logger receives the source's logs; the zero Logger discards them.
	Logger zerolog.Logger
}

// New checks cfg and returns the source for events.Config.Source; the events consumer
// starts and closes it.
func New(cfg Config) (events.Source, error) {
	if cfg.Replicas < 0 || cfg.AckWait < 0 || cfg.MaxAckPending < 0 {
		return nil, fmt.Errorf("%w: Replicas %d, AckWait %v, MaxAckPending %d: negative",
			ErrInvalidConfig, cfg.Replicas, cfg.AckWait, cfg.MaxAckPending)
	}
	if cfg.MQTTURL != "" {
		if err := mqttclient.CheckURL("MQTTURL", cfg.MQTTURL); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
	}
	src, err := natsbus.NewEvents(natsbus.EventsConfig{
		Conn: natsbus.Conn{
			URLs: cfg.URLs, Username: cfg.Username, Password: cfg.Password,
			Name: cfg.Name, TLS: cfg.TLS, Logger: cfg.Logger,
		},
		Topics:        cfg.Topics,
		Durable:       cfg.Durable,
		Replicas:      cfg.Replicas,
		AckWait:       cfg.AckWait,
		MaxAckPending: cfg.MaxAckPending,
		MQTTURL:       cfg.MQTTURL,
	})
	if err != nil {
		if errors.Is(err, natsbus.ErrConfig) {
			return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		return nil, err
	}
	return src, nil
}
