package console

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	"github.com/rs/zerolog"

	"github.com/clipgate/clipgate/events"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/ossdeny"
)

// Console is the operator console: it indexes upload events into its Store and serves
// the web UI and the JSON API. Its methods are safe for concurrent use.
type Console struct {
	cfg   Config
	log   zerolog.Logger
	store Store

	consumer   *events.Consumer      // nil without a broker
	reconciler *events.Reconciler    // nil without a broker
	status     *statusSubscriber     // nil without a broker
	revPub     *revPublisher         // nil without RevocationKey
	revoked    *identity.Revocations // the store's list, for flagging objects written after a revocation
	deny       *ossdeny.Writer       // nil without DenyRoleARN

	handler     http.Handler
	pages       *pages
	logins      *loginLimiter
	loginKey    []byte // signs the login form's CSRF token
	mediaOrigin string // where the player's URLs point, for the Content-Security-Policy
	secure      bool   // session cookie Secure

	revMu        sync.Mutex // serializes revocation changes and file writes
	multiDelete  atomic.Bool
	indexed      atomic.Int64
	indexErrors  atomic.Int64
	statusErrors atomic.Int64
	denyErrors   atomic.Int64
	auditErrors  atomic.Int64
	// retentionRuns counts the scheduled retention runs (each applies every rule).
	retentionRuns atomic.Int64

	mu      sync.Mutex
	started bool
	closed  bool
	ln      net.Listener
	srv     *http.Server
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// New checks cfg and prepares a console; Start runs it.
func New(cfg Config) (*Console, error) {
	cfg.applyDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Console{
		cfg:      cfg,
		log:      cfg.Logger.With().Str("component", "console").Logger(),
		store:    cfg.Store,
		logins:   newLoginLimiter(cfg.LoginRate, cfg.LoginBurst),
		loginKey: make([]byte, 32),
		secure:   cfg.HTTPTLS != nil || cfg.SecureCookies,
		revoked:  identity.NewRevocations(),
	}
	c.multiDelete.Store(true)
	if _, err := rand.Read(c.loginKey); err != nil {
		return nil, err
	}
	// The media origin is that of a signed URL (path-style or virtual-hosted, whatever
	// the client does).
	probe, err := cfg.SignBucket.SignURL("probe", oss.HTTPGet, 60)
	if err != nil {
		return nil, fmt.Errorf("%w: signing a URL with SignBucket: %v", ErrInvalidConfig, err)
	}
	if u, err := url.Parse(probe); err == nil && u.Host != "" {
		c.mediaOrigin = u.Scheme + "://" + u.Host
	}
	if c.pages, err = loadPages(); err != nil {
		return nil, err
	}
	if _, err := openAPIDoc(); err != nil {
		return nil, err
	}
	if cfg.BrokerURL != "" || cfg.Events != nil {
		if err := c.newIngest(); err != nil {
			return nil, err
		}
	}
	if cfg.RevocationKey != nil {
		if c.revPub, err = newRevPublisher(c); err != nil {
			return nil, err
		}
	}
	if cfg.DenyRoleARN != "" {
		c.deny, err = ossdeny.New(ossdeny.Config{
			Client:   &cfg.Bucket.Client,
			Bucket:   cfg.Bucket.BucketName,
			Prefix:   cfg.Prefix,
			RoleARN:  cfg.DenyRoleARN,
			Lifetime: cfg.CredentialLifetime + RevocationDelay,
			Now:      cfg.Now,
		})
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
		}
	}
	c.handler = c.routes()
	return c, nil
}

func (c *Console) newIngest() error {
	cfg := &c.cfg
	var err error
	c.consumer, err = events.NewConsumer(events.Config{
		Source:      cfg.Events,
		BrokerURL:   cfg.BrokerURL,
		TLS:         cfg.TLS,
		Username:    cfg.Username,
		Password:    cfg.Password,
		ClientID:    cfg.ClientID,
		Group:       cfg.Group,
		Topics:      cfg.Topics,
		Bucket:      cfg.Bucket.BucketName,
		Prefix:      cfg.Prefix,
		OSS:         cfg.Bucket,
		Revoked:     c.revoked.RevokedAt,
		Dedup:       c.store,
		Concurrency: cfg.Concurrency,
		Logger:      cfg.Logger,
	}, c.handle)
	if err != nil {
		return err
	}
	c.reconciler, err = events.NewReconciler(events.ReconcilerConfig{
		Bucket:   cfg.Bucket.BucketName,
		Prefix:   cfg.Prefix,
		OSS:      cfg.Bucket,
		Known:    c.knownOrPoster,
		Revoked:  c.revoked.RevokedAt,
		Handler:  c.handle,
		Dedup:    c.store,
		Interval: cfg.ReconcileInterval,
		MinAge:   cfg.ReconcileMinAge,
		Now:      cfg.Now,
		Logger:   cfg.Logger,
	})
	if err != nil {
		return err
	}
	c.status, err = newStatusSubscriber(c)
	return err
}

// handle indexes one event; it is the Handler of the consumer and the reconciler. The
// event is acknowledged only after this returns nil, so after the index has committed.
func (c *Console) handle(ctx context.Context, ev *events.Event) error {
	m, err := c.inspect(ctx, ev)
	if err != nil {
		c.indexErrors.Add(1)
		return fmt.Errorf("inspecting %s of %s: %w", ev.Key, ev.Device, err)
	}
	outcome, err := c.store.Index(ctx, ev, m, c.cfg.Now())
	if err != nil {
		c.indexErrors.Add(1)
		return fmt.Errorf("indexing event %s of %s: %w", ev.ID, ev.Device, err)
	}
	c.indexed.Add(1)
	c.log.Debug().Str("event", ev.ID).Str("device", ev.Device).Str("key", ev.Key).Bool("verified", ev.Verified).
		Str("reason", string(ev.Reason)).Bool("reconciled", ev.Reconciled).Int("outcome", int(outcome)).Msg("event indexed")
	return nil
}

// Start syncs the revocation list, listens on Addr and starts serving, then connects the
// events consumer and the status subscription (if a broker is configured). While the
// broker cannot be reached it keeps trying, serving the UI meanwhile, until ctx ends (a
// context without deadline: until the broker is back); a refused login fails at once.
// ctx bounds the start only. On error nothing is left running.
func (c *Console) Start(ctx context.Context) (err error) {
	c.mu.Lock()
	if c.started || c.closed {
		c.mu.Unlock()
		return errors.New("console: Start called twice or after Close")
	}
	c.started = true
	runCtx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.mu.Unlock()
	defer func() {
		if err != nil {
			_ = c.Close()
		}
	}()
	if c.revPub != nil {
		// Connected before the first list is made, so that it is published at once.
		if err := c.revPub.start(ctx); err != nil {
			return fmt.Errorf("console: %w", err)
		}
	}
	if err := c.ensureAdmin(ctx); err != nil {
		return err
	}
	if err := c.syncRevocations(ctx); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.cfg.Addr)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	srv := &http.Server{
		Handler:           c.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		TLSConfig:         c.cfg.HTTPTLS,
		ErrorLog:          nil,
	}
	c.mu.Lock()
	c.ln, c.srv = ln, srv
	c.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		var err error
		if c.cfg.HTTPTLS != nil {
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.log.Error().Err(err).Msg("http server stopped")
		}
	}()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.pruneLoop(runCtx)
	}()
	if c.deny != nil {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.denyLoop(runCtx)
		}()
	}
	if c.cfg.RetentionEvery > 0 {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.retentionLoop(runCtx)
		}()
	}
	if c.consumer != nil {
		if err := c.consumer.Start(ctx); err != nil {
			return fmt.Errorf("console: %w", err)
		}
		if err := c.status.start(ctx); err != nil {
			return fmt.Errorf("console: %w", err)
		}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			_ = c.reconciler.Run(runCtx)
		}()
	}
	c.log.Info().Str("url", c.URL()).Bool("ingest", c.consumer != nil).Msg("console running")
	return nil
}

func (c *Console) pruneLoop(ctx context.Context) {
	t := time.NewTicker(c.cfg.PruneEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := c.cfg.Now()
		r, err := c.store.Prune(ctx, now.Add(-c.cfg.SeenTTL), now)
		if err != nil && ctx.Err() == nil {
			c.log.Error().Err(err).Msg("pruning seen events and sessions")
		} else if r.Seen+r.Sessions > 0 {
			c.log.Info().Int64("seen", r.Seen).Int64("sessions", r.Sessions).Msg("pruned")
		}
		if c.cfg.AuditTTL > 0 {
			if n, err := c.store.PruneAudit(ctx, now.Add(-c.cfg.AuditTTL)); err != nil && ctx.Err() == nil {
				c.log.Error().Err(err).Msg("pruning the audit log")
			} else if n > 0 {
				c.log.Info().Int64("entries", n).Msg("audit log pruned")
			}
		}
	}
}

// Addr returns the HTTP listen address (after Start), e.g. "127.0.0.1:8080".
func (c *Console) Addr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ln == nil {
		return ""
	}
	return c.ln.Addr().String()
}

// URL returns the console's base URL (after Start), e.g. "http://127.0.0.1:8080".
func (c *Console) URL() string {
	addr := c.Addr()
	if addr == "" {
		return ""
	}
	host, port, err := net.SplitHostPort(addr)
	if err == nil {
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			addr = net.JoinHostPort("127.0.0.1", port)
		}
	}
	scheme := "http"
	if c.cfg.HTTPTLS != nil {
		scheme = "https"
	}
	return scheme + "://" + addr
}

// Handler returns the console's HTTP handler (what Start serves), for tests and for
// embedding in another server.
func (c *Console) Handler() http.Handler { return c.handler }

// Reconcile runs one reconciler pass now and returns the number of clips it indexed.
func (c *Console) Reconcile(ctx context.Context) (int, error) {
	if c.reconciler == nil {
		return 0, errors.New("console: no broker configured, so no reconciler")
	}
	return c.reconciler.Pass(ctx)
}

// Stats are the console's counters.
type Stats struct {
	// Indexed counts events the index accepted (duplicates included); IndexErrors the
	// failed attempts; StatusErrors the status messages that could not be recorded.
	Indexed      int64 `json:"indexed"`
	IndexErrors  int64 `json:"indexErrors"`
	StatusErrors int64 `json:"statusErrors"`
	// AuditErrors counts audit entries that could not be written; RetentionRuns the
	// scheduled retention runs.
	AuditErrors   int64 `json:"auditErrors"`
	RetentionRuns int64 `json:"retentionRuns"`
	// Consumer and Reconciler are the events library's counters (zero without a broker).
	Consumer   events.Stats           `json:"consumer"`
	Reconciler events.ReconcilerStats `json:"reconciler"`
}

// Stats returns the console's counters.
func (c *Console) Stats() Stats {
	s := Stats{Indexed: c.indexed.Load(), IndexErrors: c.indexErrors.Load(), StatusErrors: c.statusErrors.Load(),
		AuditErrors: c.auditErrors.Load(), RetentionRuns: c.retentionRuns.Load()}
	if c.consumer != nil {
		s.Consumer = c.consumer.Stats()
		s.Reconciler = c.reconciler.Stats()
	}
	return s
}

// Close stops the HTTP server (letting requests in flight finish for a few seconds), the
// consumer, the status subscription and the background loops. It does not close the
// Store. It is safe to call more than once.
func (c *Console) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	srv, cancel := c.srv, c.cancel
	c.mu.Unlock()
	var errs []error
	if srv != nil {
		ctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, srv.Close())
		}
		stop()
	}
	if cancel != nil {
		cancel()
	}
	if c.consumer != nil {
		errs = append(errs, c.consumer.Close())
	}
	if c.status != nil {
		c.status.close()
	}
	if c.revPub != nil {
		c.revPub.close()
	}
	c.wg.Wait()
	c.log.Info().Msg("console stopped")
	return errors.Join(errs...)
}
