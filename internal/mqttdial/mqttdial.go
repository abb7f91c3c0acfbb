// Package mqttdial makes the first connection of a paho MQTT client, retrying while the
// broker cannot be reached: a service started while its broker restarts waits for it
// instead of exiting. (paho's own ConnectRetry retries refused logins too, and forever;
// after the first connection, paho's AutoReconnect takes over.)
package mqttdial

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/rs/zerolog"
)

// The waits between attempts: jittered, doubling from MinBackoff up to MaxBackoff.
const (
	MinBackoff = 200 * time.Millisecond
	MaxBackoff = 10 * time.Second
)

// ErrRefused is wrapped by Connect's error when the broker refused the connection
// (CONNACK codes 1 to 5: protocol version, client ID, unavailable, bad user name or
// password, not authorized).
var ErrRefused = errors.New("the broker refused the connection")

// Connect connects client (made with ConnectRetry false), trying again after each failed
// attempt until ctx ends; each attempt is bounded by the client's connect timeout. A
// refusal of the credentials, the client ID or the protocol version fails at once, since
// trying again would not help; "server unavailable" is retried. It returns the
// successful attempt's token (for ConnectToken.SessionPresent).
//
// If ctx ends during an attempt, that attempt goes on for up to the connect timeout:
// the caller's Disconnect waits for it.
func Connect(ctx context.Context, client mqtt.Client, log zerolog.Logger) (*mqtt.ConnectToken, error) {
	backoff := MinBackoff
	var last error
	for attempt := 1; ; attempt++ {
		tok := client.Connect()
		select {
		case <-tok.Done():
		case <-ctx.Done():
			return nil, lastErr(ctx.Err(), last)
		}
		err := tok.Error()
		if err == nil {
			ct, _ := tok.(*mqtt.ConnectToken)
			if attempt > 1 {
				log.Info().Int("attempts", attempt).Msg("connected to the broker")
			}
			return ct, nil
		}
		if permanent(err) {
			return nil, fmt.Errorf("%w: %w", ErrRefused, err)
		}
		last = err
		// Half fixed, half random, so that services restarted together spread out.
		wait := backoff/2 + rand.N(backoff/2+1)
		log.Warn().Err(err).Int("attempt", attempt).Dur("retryIn", wait).Msg("cannot connect to the broker; retrying")
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, lastErr(ctx.Err(), last)
		}
		backoff = min(2*backoff, MaxBackoff)
	}
}

func permanent(err error) bool {
	return errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) || errors.Is(err, packets.ErrorRefusedNotAuthorised) ||
		errors.Is(err, packets.ErrorRefusedIDRejected) || errors.Is(err, packets.ErrorRefusedBadProtocolVersion)
}

// lastErr joins the context's error with the last attempt's failure, which says why.
func lastErr(ctxErr, last error) error {
	if last == nil {
		return ctxErr
	}
	return fmt.Errorf("%w (last attempt: %v)", ctxErr, last)
}
