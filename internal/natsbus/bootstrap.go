package natsbus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/clipgate/clipgate/internal/mqttclient"
)

// Bootstrap connects to the MQTT gateway at mqttURL with the service account of c until
// one connection succeeds, or ctx ends. The first MQTT connection of an account on a node
// is the one that makes the gateway create (or look up) its JetStream streams; on a
// cluster that has just started, that can fail at once (the meta leader does not know
// every peer yet: insufficient resources for replicas 3) or take seconds, and the
// gateway then closes the connection without CONNACK. Connecting once to every node
// before devices come makes the cluster ready for them; nats-server's maintainers give
// the same advice (nats-io/nats-server#3450).
func Bootstrap(ctx context.Context, c Conn, mqttURL string) error {
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := bootstrapOnce(ctx, c, mqttURL, attempt)
		if err == nil || errors.Is(err, errBootstrapConfig) {
			return err
		}
		c.Logger.Info().Err(err).Str("broker", mqttURL).Msg("MQTT gateway not ready for the account yet; trying again")
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("natsbus: connecting to the MQTT gateway %s to have it create %s: %w (last error: %v)", mqttURL, MQTTStream, ctx.Err(), err)
		case <-t.C:
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// errBootstrapConfig wraps a configuration Bootstrap cannot connect with: not retried.
var errBootstrapConfig = errors.New("natsbus: MQTT bootstrap")

func bootstrapOnce(ctx context.Context, c Conn, mqttURL string, attempt int) error {
	mc, err := mqttclient.New(mqttclient.Config{
		BrokerURL:   mqttURL,
		TLS:         c.TLS,
		ClientID:    fmt.Sprintf("%s:bootstrap-%d", c.Username, attempt),
		Username:    c.Username,
		Password:    c.Password,
		NoReconnect: true,
		Logger:      c.Logger,
	})
	if err != nil {
		return fmt.Errorf("%w: %w", errBootstrapConfig, err)
	}
	defer mc.Close()
	return mc.Connect(ctx)
}
