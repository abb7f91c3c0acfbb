package natsbus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// Conn says how a backend service connects to the NATS cluster.
type Conn struct {
	// URLs are the cluster's client URLs (nats://host:4222, tls://...); the client fails
	// over between them and learns the others from the cluster. At least one.
	URLs []string
	// Username and Password are the service account (role tokenworker or consumer); the
	// auth callout checks them as the MQTT broker would.
	Username, Password string
	// Name is the connection name (the service's client ID, "USERNAME:INSTANCE").
	Name string
	// TLS configures tls:// connections.
	TLS *tls.Config
	// Logger receives connection events.
	Logger zerolog.Logger
}

// ErrConfig is wrapped by the errors of a bad configuration.
var ErrConfig = errors.New("natsbus: invalid configuration")

func (c *Conn) check() error {
	if len(c.URLs) == 0 {
		return fmt.Errorf("%w: at least one NATS URL is required", ErrConfig)
	}
	for _, u := range c.URLs {
		if !strings.HasPrefix(u, "nats://") && !strings.HasPrefix(u, "tls://") {
			return fmt.Errorf("%w: URL %q: want nats://host:port or tls://host:port", ErrConfig, u)
		}
	}
	if c.Username == "" || c.Password == "" {
		return fmt.Errorf("%w: Username and Password (a service account) are required", ErrConfig)
	}
	return nil
}

// inboxPrefix is a service account's own inbox namespace, so that its permissions can
// allow replies to it alone ("_INBOX.<username>.>").
func inboxPrefix(username string) string { return "_INBOX." + username }

// dial connects, trying every URL again with backoff until ctx ends; afterwards the
// connection reconnects by itself without limit. A refused login fails at once.
func (c *Conn) dial(ctx context.Context) (*nats.Conn, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	log := c.Logger
	opts := []nats.Option{
		nats.UserInfo(c.Username, c.Password),
		nats.Name(c.Name),
		nats.CustomInboxPrefix(inboxPrefix(c.Username)),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn().AnErr("cause", err).Msg("NATS connection lost")
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info().Str("server", nc.ConnectedUrlRedacted()).Msg("NATS reconnected")
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			ev := log.Warn().Err(err)
			if sub != nil {
				ev = ev.Str("subject", sub.Subject)
			}
			ev.Msg("NATS asynchronous error")
		}),
	}
	if c.TLS != nil {
		opts = append(opts, nats.Secure(c.TLS))
	}
	url := strings.Join(c.URLs, ",")
	wait := 100 * time.Millisecond
	for {
		nc, err := nats.Connect(url, opts...)
		if err == nil {
			return nc, nil
		}
		if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || strings.Contains(err.Error(), "Authorization Violation") {
			return nil, fmt.Errorf("natsbus: the cluster refused %s: %w", c.Username, err)
		}
		log.Debug().Err(err).Dur("wait", wait).Msg("NATS connect failed; trying again")
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("natsbus: connecting to %s: %w (last error: %v)", url, ctx.Err(), err)
		case <-t.C:
		}
		wait = min(2*wait, 2*time.Second)
	}
}
