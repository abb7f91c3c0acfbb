// Package natsauth is clipgate's NATS auth-callout service: it answers the cluster's
// authorization requests ($SYS.REQ.USER.AUTH) for MQTT devices and native service clients
// with the MQTT broker's own decision (broker.Broker.Decide: device passwords, service
// accounts, revocation) and a user JWT carrying the principal's permissions
// (Permissions), so that the NATS cluster enforces the same matrix as the mochi broker.
// Run two or more instances: they form a queue group.
//
// Revocation: a revoked device is refused at connect by the decision, and a connected one
// is kicked ($SYS.REQ.SERVER.<id>.KICK) by the instance that admitted it, within
// Config.Sweep. With Config.RevocationsKey each instance follows the console's signed
// revocation list itself (natsbus.Follow), on a connection it admits with a proof that
// only holders of the issuer seed can make (ReaderUsername).
package natsauth

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/rs/zerolog"

	"github.com/clipgate/clipgate/internal/broker"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/natsbus"
	"github.com/clipgate/clipgate/topics"
)

// Defaults of Config.
const (
	DefaultAccount = "APP"
	DefaultQueue   = "clipgate-callout"
	DefaultSweep   = time.Second
	// AuthSubject is where the server sends authorization requests.
	AuthSubject = "$SYS.REQ.USER.AUTH"
	// ReaderUsername is the user of the callout's own revocation-list reader: it is
	// admitted, before any service account of that name, with the password readerPassword
	// (the issuer's signature of readerProof), and may only read the revocation list.
	ReaderUsername = "clipgate-callout-reader"
	readerProof    = "clipgate natsauth revocation reader v1"
)

// Config configures a Service.
type Config struct {
	// URLs are the cluster's client URLs (nats:// or tls://). Required.
	URLs []string
	// Username and Password are the callout's own user, listed in the server's
	// auth_callout auth_users (account AUTH). Required.
	Username, Password string
	// SysUsername and SysPassword are a user of the system account, used to kick revoked
	// devices. Without them revoked devices are refused at connect only.
	SysUsername, SysPassword string
	// IssuerSeed is the account nkey seed ("SA...") whose public key is the server's
	// auth_callout issuer. Required.
	IssuerSeed []byte
	// Account is the account clients are placed in; default DefaultAccount.
	Account string
	// Queue is the callout instances' queue group; default DefaultQueue.
	Queue string
	// WorkerGroup is the token workers' queue group, named in their permission; default
	// topics.DefaultWorkerGroup.
	WorkerGroup string
	// Topics is the topic scheme; it must be the broker's.
	Topics topics.Scheme
	// Broker makes the decisions (broker.New with the fleet key, service accounts and
	// revocations; it is never started). Required.
	Broker *broker.Broker
	// RevocationsKey, when set, is the console's revocation list verification key: each
	// instance follows the signed list the console publishes, retained, on the revocation
	// topic, into Revocations, which must be Broker's list. A refused list is logged and
	// the list in force stays.
	RevocationsKey ed25519.PublicKey
	// Revocations is the Broker's revocation list (with RevocationsKey).
	Revocations *identity.Revocations
	// Sweep is how often admitted devices are checked against the revocation list.
	Sweep time.Duration
	// JWTExpiry, when positive, bounds each user JWT: the server disconnects the client
	// when it expires, and it must authenticate again.
	JWTExpiry time.Duration
	// Name names the instance's connections.
	Name string
	// TLS configures tls:// connections.
	TLS    *tls.Config
	Logger zerolog.Logger
	// Now is the clock of JWT expiry; nil means time.Now.
	Now func() time.Time
	// Metrics, when set, counts this instance in the process's metrics (NewMetrics).
	Metrics *Metrics
}

// Service is one running callout instance.
type Service struct {
	cfg    Config
	issuer nkeys.KeyPair
	log    zerolog.Logger

	nc, sys *nats.Conn
	reader  *natsbus.Follower
	cancel  context.CancelFunc
	done    chan struct{}

	mu       sync.Mutex
	admitted map[string]conn  // device ID -> its latest connection admitted here
	refusals map[string]int64 // by broker.Refusal reason

	allowed, refused, invalid, failed, kicked, kickErrors atomic.Int64
	lists, listsRefused                                   atomic.Int64
}

// conn identifies a client connection in the cluster.
type conn struct {
	server string
	cid    uint64
}

// Stats are a service's counters.
type Stats struct {
	// Allowed and Refused count the answered requests; Refusals splits Refused by
	// reason (broker.Refusal's, or "error" for a decision that failed otherwise).
	Allowed, Refused int64
	Refusals         map[string]int64
	// Invalid counts messages that were no authorization request (unanswered), Errors
	// the requests whose answer could not be signed (unanswered: the server refuses).
	Invalid, Errors int64
	// Kicked counts revoked devices kicked, KickErrors the kicks that failed.
	Kicked, KickErrors int64
	// Admitted is the number of devices admitted here and watched for revocation.
	Admitted int
	// RevocationLists counts the signed revocation lists applied (newer ones and the same
	// again), RevocationListsRefused those refused (Config.RevocationsKey).
	RevocationLists, RevocationListsRefused int64
}

// New checks cfg and returns a service; Start connects it.
func New(cfg Config) (*Service, error) {
	if len(cfg.URLs) == 0 || cfg.Username == "" || cfg.Password == "" || cfg.Broker == nil {
		return nil, errors.New("natsauth: URLs, Username, Password and Broker are required")
	}
	kp, err := nkeys.FromSeed(cfg.IssuerSeed)
	if err != nil {
		return nil, fmt.Errorf("natsauth: IssuerSeed: %w", err)
	}
	if pub, _ := kp.PublicKey(); !nkeys.IsValidPublicAccountKey(pub) {
		return nil, errors.New("natsauth: IssuerSeed is not an account seed (SA...)")
	}
	if cfg.RevocationsKey != nil && (len(cfg.RevocationsKey) != ed25519.PublicKeySize || cfg.Revocations == nil) {
		return nil, errors.New("natsauth: RevocationsKey needs 32 bytes and Revocations (the Broker's list)")
	}
	if cfg.Account == "" {
		cfg.Account = DefaultAccount
	}
	if cfg.Queue == "" {
		cfg.Queue = DefaultQueue
	}
	if cfg.WorkerGroup == "" {
		cfg.WorkerGroup = topics.DefaultWorkerGroup
	}
	if cfg.Sweep <= 0 {
		cfg.Sweep = DefaultSweep
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Service{
		cfg:      cfg,
		issuer:   kp,
		log:      cfg.Logger.With().Str("component", "natsauth").Str("instance", cfg.Name).Logger(),
		admitted: make(map[string]conn),
		refusals: make(map[string]int64),
	}
	if cfg.Metrics != nil {
		cfg.Metrics.add(s)
	}
	return s, nil
}

// IssuerPublicKey returns the public key of an account seed: the auth_callout issuer.
func IssuerPublicKey(seed []byte) (string, error) {
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		return "", err
	}
	return kp.PublicKey()
}

func (s *Service) dial(ctx context.Context, user, pw, name string) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.UserInfo(user, pw), nats.Name(name), nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
	}
	if s.cfg.TLS != nil {
		opts = append(opts, nats.Secure(s.cfg.TLS))
	}
	wait := 100 * time.Millisecond
	for {
		nc, err := nats.Connect(strings.Join(s.cfg.URLs, ","), opts...)
		if err == nil {
			return nc, nil
		}
		if strings.Contains(err.Error(), "Authorization Violation") {
			return nil, fmt.Errorf("natsauth: the cluster refused %s: %w", user, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("natsauth: connecting: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// Start connects and joins the queue group; it returns once the server has the
// subscription.
func (s *Service) Start(ctx context.Context) error {
	nc, err := s.dial(ctx, s.cfg.Username, s.cfg.Password, s.cfg.Name)
	if err != nil {
		return err
	}
	if _, err := nc.QueueSubscribe(AuthSubject, s.cfg.Queue, s.handle); err != nil {
		nc.Close()
		return fmt.Errorf("natsauth: %w", err)
	}
	if err := nc.FlushWithContext(ctx); err != nil {
		nc.Close()
		return fmt.Errorf("natsauth: %w", err)
	}
	s.mu.Lock()
	s.nc = nc
	s.mu.Unlock()
	if s.cfg.RevocationsKey != nil {
		// Our own subscription (or another instance's) admits the reader.
		c := natsbus.Conn{URLs: s.cfg.URLs, Username: ReaderUsername, Password: s.readerPassword(),
			Name: s.cfg.Name + "-revocations", TLS: s.cfg.TLS, Logger: s.log}
		s.reader, err = natsbus.Follow(ctx, c, s.cfg.Topics.Revocations(), s.applyRevocationList, func(err error) {
			s.log.Error().Err(err).Msg("revocation list")
		})
		if err != nil {
			nc.Close()
			return fmt.Errorf("natsauth: following the revocation list: %w", err)
		}
	}
	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.done = make(chan struct{})
	if s.cfg.SysUsername != "" {
		if s.sys, err = s.dial(ctx, s.cfg.SysUsername, s.cfg.SysPassword, s.cfg.Name+"-sys"); err != nil {
			cancel()
			if s.reader != nil {
				s.reader.Close()
			}
			nc.Close()
			return err
		}
		go s.sweep(runCtx)
	} else {
		close(s.done)
	}
	s.log.Info().Str("subject", AuthSubject).Str("queue", s.cfg.Queue).Msg("auth callout ready")
	return nil
}

// Close stops the service.
func (s *Service) Close() {
	if s.cancel != nil {
		s.cancel()
		<-s.done
	}
	if s.reader != nil {
		s.reader.Close()
	}
	if s.nc != nil {
		_ = s.nc.Drain()
		s.nc.Close()
	}
	if s.sys != nil {
		s.sys.Close()
	}
}

// Stats returns the service's counters.
func (s *Service) Stats() Stats {
	st := Stats{Allowed: s.allowed.Load(), Refused: s.refused.Load(), Invalid: s.invalid.Load(), Errors: s.failed.Load(),
		Kicked: s.kicked.Load(), KickErrors: s.kickErrors.Load(), Refusals: map[string]int64{},
		RevocationLists: s.lists.Load(), RevocationListsRefused: s.listsRefused.Load()}
	s.mu.Lock()
	for r, n := range s.refusals {
		st.Refusals[r] = n
	}
	st.Admitted = len(s.admitted)
	s.mu.Unlock()
	return st
}

// Connected reports whether the instance is connected to the cluster.
func (s *Service) Connected() bool {
	s.mu.Lock()
	nc := s.nc
	s.mu.Unlock()
	return nc != nil && nc.IsConnected()
}

// applyRevocationList applies a signed list from the revocation topic; the sweep kicks
// the devices it revokes.
func (s *Service) applyRevocationList(payload []byte) {
	if err := s.cfg.Revocations.ApplySigned(s.cfg.RevocationsKey, payload, s.cfg.Now()); err != nil {
		s.listsRefused.Add(1)
		s.log.Error().Err(err).Int("bytes", len(payload)).Msg("revocation list refused; the previous list stays in force")
		return
	}
	s.lists.Add(1)
	s.log.Info().Int("revoked", s.cfg.Revocations.Len()).Time("issued", s.cfg.Revocations.Issued()).Msg("revocation list applied")
}

// readerPassword is the reader's password: the issuer's signature of readerProof (every
// instance, in any process, holds the issuer seed and can check it). It lets its holder
// read the retained messages only.
func (s *Service) readerPassword() string {
	sig, _ := s.issuer.Sign([]byte(readerProof))
	return base64.RawURLEncoding.EncodeToString(sig)
}

// handle answers one authorization request.
func (s *Service) handle(m *nats.Msg) {
	start := time.Now()
	req, err := jwt.DecodeAuthorizationRequestClaims(string(m.Data))
	if err != nil {
		s.invalid.Add(1)
		s.log.Warn().Err(err).Msg("undecodable authorization request dropped")
		return
	}
	resp := jwt.NewAuthorizationResponseClaims(req.UserNkey)
	resp.Audience = req.Server.ID
	outcome := OutcomeAllowed
	user, err := s.authorize(req)
	if err != nil {
		outcome = OutcomeError
		if r := (*broker.Refusal)(nil); errors.As(err, &r) {
			outcome = r.Reason
		}
		s.log.Info().Str("username", bounded(req.ConnectOptions.Username)).Str("type", req.ClientInformation.Type).
			Str("host", req.ClientInformation.Host).Str("reason", err.Error()).Msg("connection refused")
		resp.Error = err.Error()
	} else {
		resp.Jwt = user
	}
	token, err := resp.Encode(s.issuer)
	if err != nil {
		s.failed.Add(1)
		s.log.Error().Err(err).Msg("encoding the authorization response")
		return
	}
	// Counted before the answer leaves, so that a client that has its answer finds it
	// counted.
	if outcome == OutcomeAllowed {
		s.allowed.Add(1)
	} else {
		s.count(outcome)
	}
	s.cfg.Metrics.observe(time.Since(start))
	_ = m.Respond([]byte(token))
}

// count counts a refusal for reason.
func (s *Service) count(reason string) {
	s.mu.Lock()
	s.refusals[reason]++
	s.mu.Unlock()
	s.refused.Add(1)
}

func bounded(u string) string {
	if len(u) > 128 {
		return u[:128]
	}
	return u
}

// authorize decides and returns the user JWT.
func (s *Service) authorize(req *jwt.AuthorizationRequestClaims) (string, error) {
	ci := req.ClientInformation
	in := broker.Login{Username: req.ConnectOptions.Username, Password: req.ConnectOptions.Password}
	if ci.Type == "mqtt" {
		in.ClientID = ci.MQTT
	} else {
		in.ClientID = req.ConnectOptions.Name
		in.AssignedID = in.ClientID == ""
	}
	var p broker.Principal
	var pub, sub []string
	if in.Username == ReaderUsername {
		sig, err := base64.RawURLEncoding.DecodeString(in.Password)
		if err != nil || s.issuer.Verify([]byte(readerProof), sig) != nil {
			return "", errors.New("bad revocation reader proof")
		}
		p.Username = ReaderUsername
		pub, sub = readerPermissions(s.cfg.Topics)
	} else {
		var err error
		if p, err = s.cfg.Broker.Decide(in); err != nil {
			return "", err
		}
		pub, sub = Permissions(s.cfg.Topics, p, s.cfg.WorkerGroup)
	}
	uc := jwt.NewUserClaims(req.UserNkey)
	uc.Name = p.Username
	uc.Audience = s.cfg.Account
	uc.Pub.Allow.Add(pub...)
	uc.Sub.Allow.Add(sub...)
	if s.cfg.JWTExpiry > 0 {
		uc.Expires = s.cfg.Now().Add(s.cfg.JWTExpiry).Unix()
	}
	token, err := uc.Encode(s.issuer)
	if err != nil {
		return "", fmt.Errorf("encoding the user JWT: %w", err)
	}
	if p.Role == topics.RoleDevice {
		s.mu.Lock()
		s.admitted[p.DeviceID] = conn{server: req.Server.ID, cid: ci.ID}
		s.mu.Unlock()
	}
	return token, nil
}

// sweep kicks the admitted devices that were revoked since.
func (s *Service) sweep(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(s.cfg.Sweep)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.sweepOnce(ctx)
	}
}

// sweepOnce kicks the admitted devices that are revoked now.
func (s *Service) sweepOnce(ctx context.Context) {
	var kick []conn
	var ids []string
	s.mu.Lock()
	for id, c := range s.admitted {
		if s.cfg.Broker.Revoked(id) {
			kick = append(kick, c)
			ids = append(ids, id)
			delete(s.admitted, id)
		}
	}
	s.mu.Unlock()
	for i, c := range kick {
		gone, err := s.kick(ctx, c)
		if err != nil {
			s.kickErrors.Add(1)
			s.log.Warn().Err(err).Str("device", ids[i]).Msg("kicking a revoked device; trying again at the next sweep")
			s.mu.Lock()
			if _, again := s.admitted[ids[i]]; !again { // a revoked device is not admitted again
				s.admitted[ids[i]] = c
			}
			s.mu.Unlock()
			continue
		}
		if gone {
			s.log.Debug().Str("device", ids[i]).Str("server", c.server).Uint64("cid", c.cid).Msg("revoked device's connection had gone")
			continue
		}
		s.kicked.Add(1)
		s.log.Info().Str("device", ids[i]).Str("server", c.server).Uint64("cid", c.cid).Msg("revoked device kicked")
	}
}

// kick disconnects one connection through the system API. A connection that has
// already gone is not an error: it returns gone.
func (s *Service) kick(ctx context.Context, c conn) (gone bool, err error) {
	body, _ := json.Marshal(struct {
		CID uint64 `json:"cid"`
	}{c.cid})
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	msg, err := s.sys.RequestWithContext(rctx, "$SYS.REQ.SERVER."+c.server+".KICK", body)
	if err != nil {
		return false, err
	}
	var resp struct {
		Error *struct {
			Code        int    `json:"code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return false, fmt.Errorf("kick response: %w", err)
	}
	// A connection that has gone (the device reconnected, or was admitted again by
	// another instance and is kicked by it) is answered "no such client or leafnode id"
	// (nats-server v2.15.3, Server.DisconnectClientByID).
	switch {
	case resp.Error == nil:
		return false, nil
	case strings.Contains(resp.Error.Description, "no such client"):
		return true, nil
	}
	return false, fmt.Errorf("kick: %s", resp.Error.Description)
}
