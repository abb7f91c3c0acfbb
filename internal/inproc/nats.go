package inproc

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/clipgate/clipgate/events"

	"github.com/clipgate/clipgate/internal/broker"
	"github.com/clipgate/clipgate/internal/natsauth"
	"github.com/clipgate/clipgate/internal/natsbus"
	"github.com/clipgate/clipgate/internal/natscluster"
	"github.com/clipgate/clipgate/topics"
)

// Engines of Options.Engine.
const (
	EngineMochi = "mochi"
	EngineNATS  = "nats"
)

// calloutInstances is the number of auth-callout instances of a NATS stack (a queue group).
const calloutInstances = 2

// natsStack is the NATS side of a stack with Engine "nats": the cluster and the callouts.
type natsStack struct {
	cluster  *natscluster.Cluster
	callouts []*natsauth.Service
	seed     []byte
	callout  [2]string // user, password
	sys      [2]string
}

// startNATS starts the cluster and the callout instances; s.broker decides the logins.
func (s *Stack) startNATS(ctx context.Context) error {
	kp, err := nkeys.CreateAccount()
	if err != nil {
		return fmt.Errorf("clipgatetest: %w", err)
	}
	seed, _ := kp.Seed()
	issuer, _ := kp.PublicKey()
	n := &natsStack{seed: seed, callout: [2]string{"callout", mustHex(16)}, sys: [2]string{"sys", mustHex(16)}}
	s.nats = n
	n.cluster, err = natscluster.Start(ctx, natscluster.Options{
		Nodes:       s.opts.NATSNodes,
		Dir:         filepath.Join(s.dir, "nats"),
		Topics:      s.scheme,
		CalloutUser: n.callout[0], CalloutPassword: n.callout[1],
		SysUser: n.sys[0], SysPassword: n.sys[1],
		Issuer: issuer,
		Binary: s.opts.NATSBinary,
	})
	if err != nil {
		return fmt.Errorf("clipgatetest: %w", err)
	}
	for range calloutInstances {
		if _, err := s.StartCallout(ctx, nil); err != nil {
			return err
		}
	}
	if err := n.waitCalloutInterest(ctx); err != nil {
		return err
	}
	// The first MQTT connection of the account on each node makes the gateway set up its
	// streams, and can fail on a cluster that has just started; make it here, not with a
	// test's device (TestRevokedDeviceKickedAndRefused saw EOF on its first connect).
	conn := s.NATSConn(topics.RoleConsumer, "bootstrap")
	for _, node := range n.cluster.Nodes() {
		if err := natsbus.Bootstrap(ctx, conn, node.MQTTURL()); err != nil {
			return fmt.Errorf("clipgatetest: %w", err)
		}
	}
	return nil
}

// StartCallout starts one more auth-callout instance (Options.CalloutConfig, then mod,
// applied) in the queue group; the stack closes it.
func (s *Stack) StartCallout(ctx context.Context, mod func(*natsauth.Config)) (*natsauth.Service, error) {
	n := s.nats
	if n == nil {
		return nil, fmt.Errorf("clipgatetest: StartCallout needs Engine %q", EngineNATS)
	}
	cfg := natsauth.Config{
		URLs:     n.cluster.ClientURLs(),
		Username: n.callout[0], Password: n.callout[1],
		SysUsername: n.sys[0], SysPassword: n.sys[1],
		IssuerSeed: n.seed,
		Topics:     s.scheme,
		Logger:     s.log,
	}
	s.mu.Lock()
	cfg.Broker, cfg.Name = s.broker, fmt.Sprintf("callout-%d", len(n.callouts))
	s.mu.Unlock()
	if s.opts.CalloutConfig != nil {
		s.opts.CalloutConfig(&cfg)
	}
	if mod != nil {
		mod(&cfg)
	}
	svc, err := natsauth.New(cfg)
	if err == nil {
		err = svc.Start(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("clipgatetest: auth callout: %w", err)
	}
	s.mu.Lock()
	n.callouts = append(n.callouts, svc)
	s.mu.Unlock()
	return svc, nil
}

// waitCalloutInterest waits until every in-process node knows of the callout's
// subscription. The instances subscribe through one node, and the interest reaches the
// others over the routes a moment later; a device connecting to another node before that
// was refused (no responder: the server closes the connection, EOF), seen in a full race
// run of TestRevokedDeviceKickedAndRefused. Nodes run as processes (NATSBinary) are not
// checked.
func (n *natsStack) waitCalloutInterest(ctx context.Context) error {
	for _, node := range n.cluster.Nodes() {
		for {
			srv := node.Server()
			if srv == nil {
				break
			}
			if acc, err := srv.LookupAccount(calloutAccount); err == nil && acc.SubscriptionInterest(calloutSubject) {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("clipgatetest: auth callout not known to every NATS node: %w", ctx.Err())
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	return nil
}

// calloutAccount and calloutSubject are where the nodes send auth requests: the callout
// user's account in internal/natscluster's node configuration, and the server's subject.
const (
	calloutAccount = "AUTH"
	calloutSubject = "$SYS.REQ.USER.AUTH"
)

func (n *natsStack) close() {
	for _, c := range n.callouts {
		c.Close()
	}
	if n.cluster != nil {
		n.cluster.Close()
	}
}

// Cluster returns the NATS cluster of a stack with Engine "nats", else nil.
func (s *Stack) Cluster() *natscluster.Cluster {
	if s.nats == nil {
		return nil
	}
	return s.nats.cluster
}

// CalloutStats returns the counters of the auth-callout instances (NATS stacks).
func (s *Stack) CalloutStats() []natsauth.Stats {
	if s.nats == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var st []natsauth.Stats
	for _, c := range s.nats.callouts {
		st = append(st, c.Stats())
	}
	return st
}

// NATSConn returns how a backend service of role connects to the stack's NATS cluster,
// with the service account of that role and connection name name.
func (s *Stack) NATSConn(role topics.Role, name string) natsbus.Conn {
	user, pw := s.ServiceAccount(role)
	c := natsbus.Conn{Username: user, Password: pw, Name: broker.ServiceClientID(user, name), Logger: s.log}
	if s.nats != nil {
		c.URLs = s.nats.cluster.ClientURLs()
	}
	return c
}

// EventsSource returns a JetStream source of upload events for an events consumer or the
// console (NATS stacks), on the durable consumer durable.
func (s *Stack) EventsSource(durable, instance string) (*natsbus.Events, error) {
	if s.nats == nil {
		return nil, fmt.Errorf("clipgatetest: EventsSource needs Engine %q", EngineNATS)
	}
	return natsbus.NewEvents(natsbus.EventsConfig{
		Conn:     s.NATSConn(topics.RoleConsumer, instance),
		Topics:   s.scheme,
		Durable:  durable,
		Replicas: len(s.nats.cluster.Nodes()),
		MQTTURL:  s.nats.cluster.Nodes()[0].MQTTURL(),
	})
}

// StatusSource returns a status source for the console (NATS stacks).
func (s *Stack) StatusSource(instance string) (*natsbus.Status, error) {
	if s.nats == nil {
		return nil, fmt.Errorf("clipgatetest: StatusSource needs Engine %q", EngineNATS)
	}
	return natsbus.NewStatus(natsbus.StatusConfig{Conn: s.NATSConn(topics.RoleConsumer, instance), Topics: s.scheme})
}

// natsWorkerTransport is token worker n's transport on a NATS stack: every partition.
func (s *Stack) natsWorkerTransport(n int) (*natsbus.Workers, error) {
	return natsbus.NewWorkers(natsbus.WorkersConfig{
		Conn:       s.NATSConn(topics.RoleTokenWorker, fmt.Sprintf("w%d-%s", n, mustHex(4))),
		Topics:     s.scheme,
		Partitions: natscluster.DefaultPartitions,
	})
}

// natsConsumer starts c on a JetStream durable consumer: group's, shared by the consumers
// of that group, or one of its own when group is "".
func (s *Stack) natsConsumer(ctx context.Context, c *Consumer, group string) (*Consumer, error) {
	durable := group
	if durable == "" {
		durable = "inproc-" + mustHex(6)
	}
	src, err := s.EventsSource(durable, "inproc-"+mustHex(4))
	if err != nil {
		return nil, err
	}
	c.client = src
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	s.consumers[c] = struct{}{}
	s.mu.Unlock()
	err = src.Start(ctx, func(m events.Message) {
		if c.onMessage(m.Topic(), m.Payload()) {
			m.Ack()
		}
	})
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("clipgatetest: consumer: %w", err)
	}
	return c, nil
}
