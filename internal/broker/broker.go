// Package broker is clipgate's MQTT broker: mochi-mqtt with device and service
// authentication, the topic ACL of package topics, persistent sessions, a fair
// shared-subscription picker, per-client publish rate limits, health and statistics over
// HTTP, and the same authentication and ACL decisions served as EMQX's HTTP authn/authz
// contract for clustered deployments.
//
// Identities:
//   - A device connects with client ID = username = its device ID and the password
//     identity.MQTTPassword(connect key, key ID, ID, now), the connect key being derived
//     from the connect root of the key ID (the broker holds connect roots only, never what
//     opens a sealed reply: see package identity); or, on a TLS listener with client CAs, with a certificate whose CN is its
//     ID (then no password is needed). Revoked devices are refused, and disconnected when
//     the revocation list revokes them.
//   - A service (token worker, consumer, admin) connects with a username and password
//     from the service accounts file. Its client ID must not have the form of a device ID
//     (use ServiceClientID: "USERNAME:INSTANCE") or be empty (assigned by the broker, clean
//     session), so that services and devices can never take over each other's sessions.
//     A password of the device form ("v1.…") is always checked as a device password.
//   - A session (client ID) can only be taken over by a connection with the same username.
//
// CONNACK codes (MQTT 3.1.1): 2 client ID rejected, 4 bad username or password (also
// expired or malformed device passwords), 5 not authorized (revoked device, certificate
// CN mismatch, will topic not allowed).
//
// Beyond mochi: a denied QoS 1 publish (also to $SYS) ends the connection; a connection
// taken over by a new one with the same client ID loses its will (so a late "offline" does
// not follow the new "online"); publishes beyond a client's rate are paced (QoS 1) or end
// the connection (QoS 0 floods); a connection must send CONNECT within HandshakeTimeout;
// refused subscriptions are never persisted; each device password connects once, devices
// retain only their status, and failed logins, bcrypt CPU, connection rates, sockets before
// CONNACK and subscriptions are limited per client, username or source (LimitsConfig,
// limits.go); shared-subscription groups take turns among
// connected members (or, with WorkerRouting "device", token workers get each device's
// requests by a rendezvous hash of its ID over the connected members).
package broker

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	pebbledb "github.com/cockroachdb/pebble"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/hooks/storage/pebble"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/rs/zerolog"

	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/mqttclient"
	"github.com/clipgate/clipgate/topics"
)

// Broker is a running (or ready to start) MQTT broker.
type Broker struct {
	cfg       Config
	log       zerolog.Logger
	scheme    topics.Scheme
	readKinds readKinds
	connect   *identity.Keyring // connect roots by key ID
	attrKey   []byte            // signs EMQX client attributes
	accounts  *identity.ServiceAccounts
	revs      *identity.Revocations
	revKey    ed25519.PublicKey // follows the signed list when set
	sweepNow  chan struct{}     // asks sweepLoop for a sweep now
	tlsConfig *tls.Config
	emqxToken string
	now       func() time.Time

	srv      *mqtt.Server
	sessions sessions
	picker   *picker
	flow     *flow // auth requests held for a token worker with room (flow.go)
	stats    counters
	met      connMetrics  // connects and refusals, for Collector
	store    *storageHook // nil without a data dir
	carry    takeovers    // messages carried across session takeovers
	lim      *limits      // abuse limits (limits.go)

	mu      sync.Mutex
	started bool
	closed  bool
	mqttLn  net.Listener
	tlsLn   net.Listener
	httpLn  net.Listener
	httpSrv *http.Server
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

type counters struct {
	authFailures           atomic.Int64
	aclDenied              atomic.Int64
	rateLimited            atomic.Int64
	paced                  atomic.Int64
	revokedDisconnects     atomic.Int64
	revocationLists        atomic.Int64
	revocationListsRefused atomic.Int64
	takeovers              atomic.Int64
	takeoverCarried        atomic.Int64
}

// New checks cfg, loads the key, accounts and revocation files it names and prepares a
// broker. It opens no listener and no database: Start does.
func New(cfg Config) (*Broker, error) {
	cfg.applyDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("broker config: %w", err)
	}
	b := &Broker{cfg: cfg, log: cfg.componentLogger("broker"), now: cfg.Now}
	if b.now == nil {
		b.now = time.Now
	}
	b.scheme, _ = topics.New(cfg.TopicRoot) // validated
	b.lim = newLimits(cfg.Limits, cfg.PasswordWindow, b.now)
	b.readKinds = newReadKinds(b.scheme)

	var err error
	switch {
	case cfg.ConnectKeys != nil:
		b.connect = cfg.ConnectKeys
	case cfg.ConnectKeysFile != "":
		if b.connect, err = identity.LoadKeyring(cfg.ConnectKeysFile); err != nil {
			return nil, fmt.Errorf("broker: connect keys: %w", err)
		}
	}
	if b.connect != nil {
		if err := b.connect.CheckKind(identity.KindConnect); err != nil {
			return nil, fmt.Errorf("broker: connect keys: %w; give the broker the file of \"broker connect-keys\", never the fleet keys", err)
		}
		b.attrKey = identity.EMQXAttrKey(b.connect)
	}
	switch {
	case cfg.ServiceAccounts != nil:
		b.accounts = cfg.ServiceAccounts
	case cfg.ServiceAccountsFile != "":
		if b.accounts, err = identity.LoadServiceAccounts(cfg.ServiceAccountsFile); err != nil {
			return nil, fmt.Errorf("broker: %w", err)
		}
	}
	switch {
	case cfg.Revocations != nil:
		b.revs = cfg.Revocations
	case cfg.RevocationsFile != "":
		if b.revs, err = identity.LoadRevocations(cfg.RevocationsFile); err != nil {
			return nil, fmt.Errorf("broker: %w", err)
		}
	default:
		b.revs = identity.NewRevocations()
	}
	switch {
	case cfg.RevocationsKey != nil:
		b.revKey = cfg.RevocationsKey
	case cfg.RevocationsKeyFile != "":
		if b.revKey, err = identity.LoadRevocationPublicKey(cfg.RevocationsKeyFile); err != nil {
			return nil, fmt.Errorf("broker: %w", err)
		}
	}
	b.sweepNow = make(chan struct{}, 1)
	b.warnWeakHashes() // limits.go
	if cfg.TLS.CertFile != "" {
		if b.tlsConfig, err = loadTLS(cfg.TLS); err != nil {
			return nil, fmt.Errorf("broker: tls: %w", err)
		}
	}
	switch {
	case cfg.EMQX.Token != "":
		b.emqxToken, err = checkToken(cfg.EMQX.Token)
	case cfg.EMQX.TokenFile != "":
		b.emqxToken, err = readToken(cfg.EMQX.TokenFile)
	}
	if err != nil {
		return nil, fmt.Errorf("broker: emqx token: %w", err)
	}

	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumClientWritesPending = cfg.MaxWritesPending
	caps.MaximumSessionExpiryInterval = uint32(cfg.SessionExpiry / time.Second)
	caps.MaximumMessageExpiryInterval = int64(cfg.MessageExpiry / time.Second)
	caps.MaximumPacketSize = cfg.MaxPacketSize
	b.srv = mqtt.New(&mqtt.Options{
		Capabilities: caps,
		Logger:       mochiLogger(cfg.componentLogger("mochi")),
		InlineClient: b.revKey != nil, // the broker's own subscription to the revocation list
	})
	b.picker = newPicker(b.srv.Clients)
	b.flow = newFlow(b, int(caps.MaximumInflight))
	b.picker.flow = b.flow
	if cfg.WorkerRouting == WorkerRoutingDevice {
		b.picker.device = newDeviceRouter(b.srv.Clients, b.scheme)
	}
	if cfg.allowAll {
		err = b.srv.AddHook(new(auth.AllowHook), nil)
	} else {
		err = b.srv.AddHook(&hook{b: b}, nil)
	}
	if err == nil {
		// After every hook that may change a will, before the storage hook (see retainGate).
		err = b.srv.AddHook(&retainGate{srv: b.srv}, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	return b, nil
}

func loadTLS(c TLSConfig) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.ClientCAFile != "" {
		pool, err := mqttclient.LoadCA(c.ClientCAFile)
		if err != nil {
			return nil, err
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.VerifyClientCertIfGiven
		if c.RequireClientCert {
			tc.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return tc, nil
}

// Start opens the session store and the listeners and starts serving.
func (b *Broker) Start() (err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errors.New("broker: closed")
	}
	if b.started {
		return errors.New("broker: already started")
	}
	b.started = true
	defer func() {
		if err != nil { // a failed broker cannot be started again: mochi's server is closed
			b.shutdown()
			b.closed = true
		}
	}()

	if b.cfg.DataDir != "" {
		if err := os.MkdirAll(b.cfg.DataDir, 0o700); err != nil {
			return fmt.Errorf("broker: data dir: %w", err)
		}
		st := &storageHook{Hook: new(pebble.Hook)}
		opts := &pebble.Options{
			Path:    filepath.Join(b.cfg.DataDir, "sessions"),
			Mode:    pebble.Sync, // a QoS 1 message is on disk before it is acknowledged
			Options: &pebbledb.Options{Logger: pebbleLogger{b.cfg.componentLogger("pebble")}},
		}
		if err := b.srv.AddHook(st, opts); err != nil {
			return fmt.Errorf("broker: session store: %w", err)
		}
		b.store = st
	} else {
		b.log.Warn().Msg("no data dir: sessions and queued messages are kept in memory only")
	}

	if b.cfg.Addr != "none" {
		ln, err := net.Listen("tcp", b.cfg.Addr)
		if err != nil {
			return fmt.Errorf("broker: %w", err)
		}
		b.mqttLn = newTrackListener(&limitListener{ln, b}, b.cfg.HandshakeTimeout)
		if err := b.srv.AddListener(listeners.NewNet("tcp", b.mqttLn)); err != nil {
			return fmt.Errorf("broker: %w", err)
		}
	}
	if b.tlsConfig != nil {
		ln, err := net.Listen("tcp", b.cfg.TLS.Addr)
		if err != nil {
			return fmt.Errorf("broker: tls: %w", err)
		}
		b.tlsLn = newTrackListener(&limitListener{ln, b}, b.cfg.HandshakeTimeout)
		if err := b.srv.AddListener(listeners.NewNet("tls", tls.NewListener(b.tlsLn, b.tlsConfig))); err != nil {
			return fmt.Errorf("broker: %w", err)
		}
	}
	if b.cfg.HTTPAddr != "none" {
		if b.httpLn, err = net.Listen("tcp", b.cfg.HTTPAddr); err != nil {
			return fmt.Errorf("broker: http: %w", err)
		}
	}

	if err := b.srv.Serve(); err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	if b.revKey != nil {
		// After Serve, which restores the retained messages: the list in force is handed
		// over at once.
		if err := b.srv.Subscribe(b.scheme.Revocations(), 1, b.onRevocationList); err != nil {
			return fmt.Errorf("broker: subscribing to the revocation list: %w", err)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	if b.httpLn != nil {
		b.httpSrv = &http.Server{
			Handler:           b.httpHandler(),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      10 * time.Second,
			ErrorLog:          nil,
		}
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			if err := b.httpSrv.Serve(b.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				b.log.Error().Err(err).Msg("http server stopped")
			}
		}()
	}
	if b.cfg.Revocations == nil && b.cfg.RevocationsFile != "" {
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			err := b.revs.Watch(ctx, b.cfg.RevocationsFile, func(err error) {
				b.log.Error().Err(err).Msg("revocation list")
			})
			if err != nil {
				b.log.Error().Err(err).Msg("revocation list is not watched; restart to reload it")
			}
		}()
	}
	if !b.cfg.allowAll {
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			b.sweepLoop(ctx)
		}()
	}
	b.log.Info().Str("mqtt", b.addrOf(b.mqttLn)).Str("tls", b.addrOf(b.tlsLn)).Str("http", b.addrOf(b.httpLn)).
		Str("data_dir", b.cfg.DataDir).Msg("broker started")
	return nil
}

func (b *Broker) addrOf(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

// Addr returns the address of the plain MQTT listener ("" before Start or when disabled).
func (b *Broker) Addr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.addrOf(b.mqttLn)
}

// TLSAddr returns the address of the MQTT-over-TLS listener ("" when disabled).
func (b *Broker) TLSAddr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.addrOf(b.tlsLn)
}

// HTTPAddr returns the address of the HTTP listener ("" when disabled).
func (b *Broker) HTTPAddr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.addrOf(b.httpLn)
}

// Close disconnects every client, stops the listeners and closes the session store. It
// waits for everything it started and may be called more than once.
func (b *Broker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	if b.started {
		b.shutdown()
	}
	return nil
}

// shutdown stops what Start started; b.mu is held.
func (b *Broker) shutdown() {
	b.flow.stop()
	if b.cancel != nil {
		b.cancel()
	}
	if b.httpSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = b.httpSrv.Shutdown(ctx)
		cancel()
	} else if b.httpLn != nil {
		_ = b.httpLn.Close()
	}
	b.stopAccepting()
	// mochi's own way to disconnect a listener's clients at Close, Clients.GetByListener,
	// read-locks the clients twice and deadlocks when a client connects or disconnects in
	// between (mochi-mqtt/server#488, unfixed in v2.7.9). Close the listeners first with
	// closeClients, which locks once; Server.Close then finds them closed.
	b.srv.Listeners.CloseAll(b.closeClients)
	// mochi closes each listener (our trackListener also closes connections still in
	// their CONNECT phase), waits for every client goroutine, then stops the hooks.
	_ = b.srv.Close()
	b.wg.Wait()
	b.log.Info().Msg("broker stopped")
}

// stopAccepting closes the MQTT listeners (and the connections they accepted) and waits,
// at most 10 s, until mochi serves every connection they handed out (see claimedAll), so
// that waiting for mochi's client goroutines cannot race with one still starting.
func (b *Broker) stopAccepting() {
	var lns []*trackListener
	for _, ln := range []net.Listener{b.mqttLn, b.tlsLn} {
		if tl, ok := ln.(*trackListener); ok {
			_ = tl.Close()
			lns = append(lns, tl)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, tl := range lns {
		for !tl.claimedAll() && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
}

// closeClients disconnects the clients of a listener that is closing (see shutdown).
func (b *Broker) closeClients(listener string) {
	for _, cl := range b.srv.Clients.GetAll() {
		if cl.Net.Listener == listener && !cl.Closed() {
			_ = b.srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	}
}

// sweepLoop disconnects connected devices that the revocation list revokes, and drops
// sessions whose connection ended without mochi calling OnDisconnect (it skips the hook
// when the CONNACK cannot be written).
func (b *Broker) sweepLoop(ctx context.Context) {
	t := time.NewTicker(b.cfg.RevocationSweep)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			b.DisconnectRevoked()
			b.pruneSessions()
		case <-b.sweepNow:
			b.DisconnectRevoked()
		}
	}
}

// onRevocationList applies a signed revocation list published on the revocation topic
// (only the console's account may publish there; the signature is checked all the same)
// and has the revoked devices disconnected at once. A refused list is logged and
// counted, and the list in force stays.
func (b *Broker) onRevocationList(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
	if err := b.revs.ApplySigned(b.revKey, pk.Payload, b.now()); err != nil {
		b.stats.revocationListsRefused.Add(1)
		b.log.Error().Err(err).Int("bytes", len(pk.Payload)).Msg("revocation list refused; the previous list stays in force")
		return
	}
	b.stats.revocationLists.Add(1)
	b.log.Info().Int("revoked", b.revs.Len()).Time("issued", b.revs.Issued()).Msg("revocation list applied")
	select {
	case b.sweepNow <- struct{}{}:
	default:
	}
}

// DisconnectRevoked disconnects every connected device the revocation list revokes and
// returns how many it disconnected. The broker calls it periodically
// (Config.RevocationSweep).
func (b *Broker) DisconnectRevoked() int {
	n := 0
	b.sessions.rangeAll(func(cl *mqtt.Client, s *session) bool {
		if s.Role == topics.RoleDevice && b.revs.Revoked(s.DeviceID) && !cl.Closed() {
			b.log.Info().Str("client", cl.ID).Msg("device revoked, disconnecting")
			_ = b.srv.DisconnectClient(cl, packets.ErrNotAuthorized)
			b.stats.revokedDisconnects.Add(1)
			n++
		}
		return true
	})
	return n
}

// orphanAge is how long a closed client's session may linger before pruneSessions drops it.
const orphanAge = 60

func (b *Broker) pruneSessions() {
	now := time.Now().Unix()
	b.sessions.rangeAll(func(cl *mqtt.Client, _ *session) bool {
		if t := cl.StopTime(); cl.Closed() && t > 0 && now-t > orphanAge {
			b.sessions.remove(cl)
		}
		return true
	})
}

// Stats are the broker's counters: mochi's $SYS figures and clipgate's own.
type Stats struct {
	Version          string `json:"version"` // mochi's
	Uptime           int64  `json:"uptime"`  // seconds
	ClientsConnected int64  `json:"clients_connected"`
	ClientsMaximum   int64  `json:"clients_maximum"`
	ClientsTotal     int64  `json:"clients_total"`
	Subscriptions    int64  `json:"subscriptions"`
	MessagesReceived int64  `json:"messages_received"`
	MessagesSent     int64  `json:"messages_sent"`
	// MessagesDropped counts messages dropped because a subscriber's outbound queue was
	// full (Config.MaxWritesPending); InflightDropped those dropped because its inflight
	// window or packet IDs were exhausted. mochi acknowledges the publisher before
	// fan-out, so these are losses the publisher never hears about.
	MessagesDropped int64 `json:"messages_dropped"`
	InflightDropped int64 `json:"inflight_dropped"`
	Inflight        int64 `json:"inflight"`
	Retained        int64 `json:"retained"`
	BytesReceived   int64 `json:"bytes_received"`
	BytesSent       int64 `json:"bytes_sent"`
	PacketsReceived int64 `json:"packets_received"`
	PacketsSent     int64 `json:"packets_sent"`

	Sessions           int64 `json:"sessions"` // authenticated live connections
	AuthFailures       int64 `json:"auth_failures"`
	ACLDenied          int64 `json:"acl_denied"`
	RateLimited        int64 `json:"rate_limited"` // clients disconnected for their publish rate
	Paced              int64 `json:"paced"`        // QoS 1/2 publishes held back to the client's rate
	RevokedDisconnects int64 `json:"revoked_disconnects"`
	// RevocationLists counts the signed revocation lists applied, RevocationListsRefused
	// those refused (garbage, forged, older than the list in force).
	RevocationLists        int64 `json:"revocation_lists"`
	RevocationListsRefused int64 `json:"revocation_lists_refused"`
	Takeovers              int64 `json:"takeovers"`       // live connections replaced by one with the same client ID
	TakeoverCarried        int64 `json:"takeoverCarried"` // messages carried from a taken-over session to the new one
	// FlowHeld is the auth requests held now until a token worker's outbound queue has
	// room; FlowTimeouts counts holds that ran out (maxFlowHold) and sent the request on
	// to a full queue (flow.go).
	FlowHeld     int64 `json:"flow_held"`
	FlowTimeouts int64 `json:"flow_timeouts"`
	AbuseStats
}

// Stats returns a snapshot of the counters.
func (b *Broker) Stats() Stats {
	i := b.srv.Info.Clone()
	return Stats{
		Version:                i.Version,
		Uptime:                 time.Now().Unix() - i.Started,
		ClientsConnected:       i.ClientsConnected,
		ClientsMaximum:         i.ClientsMaximum,
		BytesReceived:          i.BytesReceived,
		BytesSent:              i.BytesSent,
		PacketsReceived:        i.PacketsReceived,
		PacketsSent:            i.PacketsSent,
		ClientsTotal:           int64(b.srv.Clients.Len()),
		Subscriptions:          i.Subscriptions,
		MessagesReceived:       i.MessagesReceived,
		MessagesSent:           i.MessagesSent,
		MessagesDropped:        i.MessagesDropped,
		InflightDropped:        i.InflightDropped,
		Inflight:               i.Inflight,
		Retained:               i.Retained,
		Sessions:               b.sessions.n.Load(),
		AuthFailures:           b.stats.authFailures.Load(),
		ACLDenied:              b.stats.aclDenied.Load(),
		RateLimited:            b.stats.rateLimited.Load(),
		Paced:                  b.stats.paced.Load(),
		RevokedDisconnects:     b.stats.revokedDisconnects.Load(),
		RevocationLists:        b.stats.revocationLists.Load(),
		RevocationListsRefused: b.stats.revocationListsRefused.Load(),
		Takeovers:              b.stats.takeovers.Load(),
		FlowHeld:               b.flow.held.Load(),
		FlowTimeouts:           b.flow.timeouts.Load(),
		TakeoverCarried:        b.stats.takeoverCarried.Load(),
		AbuseStats:             b.lim.stats(),
	}
}

// Connected reports whether a client with this ID is connected, and as whom.
func (b *Broker) Connected(clientID string) (Principal, bool) {
	cl, ok := b.srv.Clients.Get(clientID)
	if !ok || cl.Closed() {
		return Principal{}, false
	}
	s := b.sessions.get(cl)
	if s == nil {
		return Principal{}, false
	}
	return s.Principal, true
}

// trackListener wraps a TCP listener: it sets a deadline on each new connection for its
// handshake and CONNECT (mochi replaces it with the keepalive deadline once the client is
// accepted), and on Close it also closes every connection it accepted, so that a client
// stuck before CONNECT cannot keep the broker from shutting down.
//
// It also counts the connections it hands out and those mochi has started to serve (the
// first Read), so that shutdown can wait until every accepted connection is counted in
// mochi's client WaitGroup before anything waits on it (see claimedAll).
type trackListener struct {
	net.Listener
	timeout time.Duration
	mu      sync.Mutex
	conns   map[*trackConn]struct{}
	closed  bool

	accepted, claimed atomic.Int64
}

func newTrackListener(ln net.Listener, timeout time.Duration) *trackListener {
	return &trackListener{Listener: ln, timeout: timeout, conns: make(map[*trackConn]struct{})}
}

func (l *trackListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(l.timeout))
	tc := &trackConn{Conn: c, l: l}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		_ = c.Close()
		return nil, net.ErrClosed
	}
	l.conns[tc] = struct{}{}
	l.accepted.Add(1)
	l.mu.Unlock()
	return tc, nil
}

// claimedAll reports whether mochi has started to serve every connection the listener
// handed out. mochi adds a connection to its client WaitGroup in the goroutine that serves
// it, just before its first Read; a Wait that begins before that Add is a WaitGroup misuse
// (the race detector reported it in TestCloseWhileClientsChurn). Once the listener is
// closed, no connection is handed out any more, and when this holds every Add has happened.
func (l *trackListener) claimedAll() bool { return l.claimed.Load() == l.accepted.Load() }

func (l *trackListener) Close() error {
	err := l.Listener.Close()
	l.mu.Lock()
	l.closed = true
	conns := l.conns
	l.conns = make(map[*trackConn]struct{})
	l.mu.Unlock()
	for c := range conns {
		_ = c.Conn.Close()
	}
	return err
}

type trackConn struct {
	net.Conn
	l       *trackListener
	once    sync.Once
	readOne sync.Once
}

func (c *trackConn) Read(b []byte) (int, error) {
	c.readOne.Do(func() { c.l.claimed.Add(1) })
	return c.Conn.Read(b)
}

func (c *trackConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}
