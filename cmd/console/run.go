package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/alecthomas/kong"
	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	"github.com/rs/zerolog"

	"github.com/clipgate/clipgate/events"
	"github.com/clipgate/clipgate/internal/cli"
	"github.com/clipgate/clipgate/internal/console"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/mqttclient"
	"github.com/clipgate/clipgate/internal/natsbus"
	"github.com/clipgate/clipgate/internal/ops"
	"github.com/clipgate/clipgate/policy"
	"github.com/clipgate/clipgate/topics"
)

// spec is the command's description to the command-line plumbing.
var spec = cli.Spec{
	Name:        "console",
	Description: "clipgate's operator console: indexes upload events and serves the web UI and API.",
	EnvPrefix:   "CLIPGATE",
	Vars: kong.Vars{
		"defaultAddr":      console.DefaultAddr,
		"defaultGroup":     console.DefaultGroup,
		"defaultRoot":      topics.DefaultRoot,
		"defaultReconcile": events.DefaultReconcileInterval.String(),
		"defaultMinAge":    events.DefaultMinAge.String(),
		"defaultPrefix":    policy.DefaultPrefix,
		"defaultAdmin":     console.DefaultAdminName,
		"defaultAuditTTL":  console.DefaultAuditTTL.String(),
		"defaultRetention": console.DefaultRetentionEvery.String(),
	},
}

// CLI is the command line; see package cli for how flags, variables and the
// configuration file set it.
type CLI struct {
	cli.Common
	cli.Ops

	Listen           string        `help:"HTTP listen address." default:"${defaultAddr}"`
	TLSCert          string        `name:"tls-cert" help:"PEM certificate chain: serve HTTPS (session cookies are then Secure)." type:"path" placeholder:"FILE"`
	TLSKey           string        `name:"tls-key" help:"PEM private key of --tls-cert." type:"path" placeholder:"FILE"`
	SecureCookies    bool          `help:"Mark the session cookie Secure without --tls-cert (behind a proxy that terminates TLS)."`
	PasswordHashFile string        `help:"File holding the bcrypt hash of the password of the admin named --admin-name (make one with 'broker hash-password'); the admin adds other operators in the console. Optional once the database has an operator." type:"path" placeholder:"FILE" secret:""`
	AdminName        string        `help:"Name of the admin whose password hash is configured." default:"${defaultAdmin}"`
	SessionTTL       time.Duration `name:"session-ttl" help:"Lifetime of a login." default:"12h"`
	AuditTTL         time.Duration `name:"audit-ttl" help:"How long audit log entries are kept (negative: for ever)." default:"${defaultAuditTTL}"`

	RetentionEvery time.Duration `help:"Interval of the scheduled runs of the retention rules set in the console (negative: none)." default:"${defaultRetention}"`
	Lifecycle      bool          `help:"Also write the retention rules as the bucket's OSS lifecycle rules (the key then needs oss:PutBucketLifecycle and oss:GetBucketLifecycle)."`

	Database string `help:"SQLite database file, or PostgreSQL: a postgres:// URL or host=... dbname=... string (a URL with a password belongs in the variable, not on the command line)." default:"console.db"`

	Broker       string   `help:"MQTT broker URL (tcp://, ssl://, ws://, wss://); empty: serve the index without ingesting." default:"tcp://127.0.0.1:1883"`
	BrokerCA     string   `help:"PEM file of CAs to trust for an ssl:// broker (default: system roots)." type:"path" placeholder:"FILE"`
	Username     string   `help:"Service account user name (role consumer, or console to publish the signed revocation list)." default:"consumer"`
	PasswordFile string   `help:"File holding the service account password." type:"path" placeholder:"FILE" secret:""`
	ClientID     string   `help:"MQTT client ID of the events consumer's persistent session (default USERNAME:console); keep it stable, one per instance."`
	Group        string   `help:"Shared-subscription group of the events consumer." default:"${defaultGroup}"`
	TopicRoot    string   `help:"Topic root." default:"${defaultRoot}"`
	Concurrency  int      `help:"Events indexed at once." default:"16"`
	NATS         []string `name:"nats" placeholder:"URL" help:"NATS cluster URLs (nats://, tls://; repeat or comma-separate): ingest from a JetStream durable consumer on the MQTT gateway's QoS 1 stream instead of the MQTT --broker (then --broker, when set, is a node's MQTT gateway, used to create the gateway's stream on a new cluster)."`
	NATSDurable  string   `name:"nats-durable" default:"console" help:"NATS: the durable consumer, shared by every console instance."`
	NATSReplicas int      `name:"nats-replicas" default:"3" help:"NATS: replicas of the durable consumer (the cluster's size, up to 3)."`

	OSSEndpoint            string        `help:"OSS endpoint, e.g. https://oss-cn-hangzhou.aliyuncs.com or http://127.0.0.1:9100 (localcloud)." required:""`
	OSSPublicEndpoint      string        `help:"OSS endpoint the operators' browsers reach, for the player's signed URLs (default: --oss-endpoint)."`
	OSSRegion              string        `help:"OSS region (V4 signatures)." default:"cn-hangzhou"`
	OSSBucket              string        `help:"Bucket the devices upload to." required:""`
	OSSPrefix              string        `help:"Global key prefix, empty (--oss-prefix='') or ending in '/'; devices write under PREFIX+ID/. The token workers' --oss-prefix must match." default:"${defaultPrefix}"`
	OSSAccessKeyID         string        `name:"oss-access-key-id" help:"Access key allowed to head, list, get and delete the bucket's objects." required:""`
	OSSAccessKeySecretFile string        `help:"File holding the access key secret." type:"path" placeholder:"FILE" secret:""`
	URLExpiry              time.Duration `name:"url-expiry" help:"Lifetime of the player's signed URLs." default:"5m"`

	RevocationsFile   string        `help:"Revocation list shared with the broker and token workers (their --revocations-file); the console rewrites it." type:"path" placeholder:"FILE"`
	RevocationKeyFile string        `help:"Revocation list signing key (mode 0600; make it with 'broker revocation-key'): the console publishes the signed list, retained, on the broker for brokers, token workers and consumers that follow it (their --revocations-key-file holds the public key). It also signs the quota snapshot (the devices' upload quotas with their usage), published on the quota topic for token workers with --quotas-key-file. --username must then be an account of role console." type:"path" placeholder:"FILE"`
	DenyRoleARN       string        `name:"deny-role-arn" help:"The token workers' role ARN: revoking a device writes a bucket-policy Deny for its STS sessions, so credentials it already holds stop working (the OSS key then also needs oss:GetBucketPolicy, oss:PutBucketPolicy, oss:DeleteBucketPolicy)."`
	STSDuration       time.Duration `name:"sts-duration" help:"The token workers' --sts-duration (the longest credential lifetime): how long a bucket-policy Deny must last." default:"1h"`
	EMQXAPIURL        string        `name:"emqx-api-url" help:"EMQX 5 REST API base URL (e.g. http://emqx:18083): a revocation clears the device's authorization cache and kicks it."`
	EMQXAPIKey        string        `name:"emqx-api-key" help:"EMQX API key."`
	EMQXAPISecretFile string        `name:"emqx-api-secret-file" help:"File holding the EMQX API secret." type:"path" placeholder:"FILE" secret:""`
	ReconcileInterval time.Duration `help:"Time between reconciler passes over the bucket." default:"${defaultReconcile}"`
	ReconcileMinAge   time.Duration `help:"Objects younger than this are left to their events." default:"${defaultMinAge}"`

	ConnectTimeout time.Duration `help:"How long to keep trying to reach the broker (and the database) at start before giving up; the UI is served meanwhile (0: keep trying)." default:"30s"`
}

// Main is the program, separated from main() so that tests run it in-process.
type Main struct {
	CLI CLI
	IO  cli.IO

	ctx     *cli.Context
	log     zerolog.Logger
	db      *console.DB
	console *console.Console
	ops     *ops.Server
}

// NewMain returns a Main on io.
func NewMain(io cli.IO) *Main { return &Main{IO: io} }

// run is the command: it runs the console until ctx ends.
func run(ctx context.Context, io cli.IO, args []string) error {
	return cli.Serve(ctx, NewMain(io), args)
}

// ParseFlags parses args (without the program name), the environment and the config file.
// After --help or --version it returns cli.ErrExited.
func (m *Main) ParseFlags(args []string) error {
	ctx, err := cli.Parse(spec, &m.CLI, m.IO, args)
	if err != nil {
		return err
	}
	m.ctx = ctx
	return nil
}

// Run opens the database, builds the console from the parsed configuration and starts
// it. It returns once the console serves and (with a broker) is subscribed.
func (m *Main) Run(ctx context.Context) error {
	m.log = m.ctx.Logger()
	cfg, err := m.config()
	if err != nil {
		return cli.Usage(err)
	}
	startCtx := ctx
	if m.CLI.ConnectTimeout > 0 {
		var cancel context.CancelFunc
		startCtx, cancel = context.WithTimeout(ctx, m.CLI.ConnectTimeout)
		defer cancel()
	}
	if m.db, err = console.Open(startCtx, m.CLI.Database); err != nil {
		return err
	}
	cfg.Store = m.db
	if m.console, err = console.New(cfg); err != nil {
		return cli.Usage(err)
	}
	if err := m.console.Start(startCtx); err != nil {
		if errors.Is(err, console.ErrInvalidConfig) {
			return cli.Usage(err)
		}
		if errors.Is(err, natsbus.ErrNoMQTTStream) {
			return cli.Usage(fmt.Errorf("--nats: a new cluster: give --broker, the MQTT URL of a node's gateway, once: %w", err))
		}
		return err
	}
	reg := ops.NewRegistry("console")
	reg.MustRegister(m.console.Collectors()...)
	if m.ops, err = ops.Serve(m.CLI.MetricsAddr, "console", reg, m.console.ReadyChecks()...); err != nil {
		return cli.Usage(fmt.Errorf("--metrics-addr: %w", err))
	}
	m.log.Info().Str("url", m.console.URL()).Str("database", string(m.db.Dialect())).Str("metrics", m.ops.Addr()).Msg("console running")
	fmt.Fprintf(m.IO.Stdout, "console: serving %s\n", m.console.URL())
	return nil
}

// URL returns the console's URL once running.
func (m *Main) URL() string {
	if m.console == nil {
		return ""
	}
	return m.console.URL()
}

// OpsAddr returns the address of the --metrics-addr endpoint ("" when off).
func (m *Main) OpsAddr() string { return m.ops.Addr() }

// Close stops the console and closes the database.
func (m *Main) Close() error {
	errs := []error{m.ops.Close()}
	if m.console != nil {
		errs = append(errs, m.console.Close())
	}
	if m.db != nil {
		errs = append(errs, m.db.Close())
	}
	return errors.Join(errs...)
}

// config builds the console configuration (all but the Store).
func (m *Main) config() (console.Config, error) {
	c := &m.CLI
	// No hash is allowed: the console then starts only if its database holds an operator.
	hash, err := m.ctx.Secret("password-hash-file", "the admin password's hash (make one with 'broker hash-password')", false)
	if err != nil {
		return console.Config{}, err
	}
	ossSecret, err := m.ctx.Secret("oss-access-key-secret-file", "OSS access key secret", true)
	if err != nil {
		return console.Config{}, err
	}
	bucket, err := ossBucket(c.OSSEndpoint, c.OSSRegion, c.OSSBucket, c.OSSAccessKeyID, ossSecret)
	if err != nil {
		return console.Config{}, fmt.Errorf("--oss-endpoint: %w", err)
	}
	sign := bucket
	if c.OSSPublicEndpoint != "" {
		if sign, err = ossBucket(c.OSSPublicEndpoint, c.OSSRegion, c.OSSBucket, c.OSSAccessKeyID, ossSecret); err != nil {
			return console.Config{}, fmt.Errorf("--oss-public-endpoint: %w", err)
		}
	}
	scheme, err := topics.New(c.TopicRoot)
	if err != nil {
		return console.Config{}, fmt.Errorf("--topic-root: %w", err)
	}
	cfg := console.Config{
		BrokerURL:          c.Broker,
		Username:           c.Username,
		ClientID:           c.ClientID,
		Group:              c.Group,
		Topics:             scheme,
		Concurrency:        c.Concurrency,
		Bucket:             bucket,
		SignBucket:         sign,
		Prefix:             c.OSSPrefix,
		URLExpiry:          c.URLExpiry,
		Addr:               c.Listen,
		SecureCookies:      c.SecureCookies,
		PasswordHash:       hash,
		AdminName:          c.AdminName,
		SessionTTL:         c.SessionTTL,
		AuditTTL:           c.AuditTTL,
		RetentionEvery:     c.RetentionEvery,
		Lifecycle:          c.Lifecycle,
		RevocationsFile:    c.RevocationsFile,
		DenyRoleARN:        c.DenyRoleARN,
		CredentialLifetime: c.STSDuration,
		ReconcileInterval:  c.ReconcileInterval,
		ReconcileMinAge:    c.ReconcileMinAge,
		Logger:             m.log,
	}
	if c.Broker != "" || len(c.NATS) > 0 {
		if cfg.Password, err = m.ctx.Secret("password-file", "broker password", true); err != nil {
			return console.Config{}, err
		}
		if c.BrokerCA != "" {
			if cfg.TLS, err = (mqttclient.TLSFiles{CAFile: c.BrokerCA}).Load(); err != nil {
				return console.Config{}, fmt.Errorf("--broker-ca: %w", err)
			}
		}
	}
	if c.RevocationKeyFile != "" {
		if cfg.RevocationKey, err = identity.LoadKey(c.RevocationKeyFile); err != nil {
			return console.Config{}, fmt.Errorf("--revocation-key-file: %w", err)
		}
	}
	if c.EMQXAPIURL != "" {
		secret, err := m.ctx.Secret("emqx-api-secret-file", "EMQX API secret", true)
		if err != nil {
			return console.Config{}, err
		}
		cfg.EMQX = &console.EMQXAdmin{URL: c.EMQXAPIURL, APIKey: c.EMQXAPIKey, APISecret: secret}
	}
	if len(c.NATS) > 0 {
		name := c.ClientID
		if name == "" {
			name = c.Username + ":console"
		}
		conn := natsbus.Conn{URLs: c.NATS, Username: c.Username, Password: cfg.Password, Name: name, TLS: cfg.TLS, Logger: m.log}
		// The MQTT URL creates the gateway's stream on a new cluster; only one given is
		// used: the MQTT default (a local broker) is no node of the cluster.
		gateway := ""
		if m.ctx.Set("broker") {
			gateway = c.Broker
		}
		if cfg.Events, err = natsbus.NewEvents(natsbus.EventsConfig{Conn: conn, Topics: scheme, Durable: c.NATSDurable,
			Replicas: c.NATSReplicas, MQTTURL: gateway}); err != nil {
			return console.Config{}, err
		}
		conn.Name += "-status"
		if cfg.Status, err = natsbus.NewStatus(natsbus.StatusConfig{Conn: conn, Topics: scheme}); err != nil {
			return console.Config{}, err
		}
	}
	switch {
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return console.Config{}, errors.New("--tls-cert and --tls-key go together")
	case c.TLSCert != "":
		cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return console.Config{}, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		cfg.HTTPTLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if c.ConnectTimeout < 0 {
		return console.Config{}, fmt.Errorf("--connect-timeout %v: want 0 (keep trying) or more", c.ConnectTimeout)
	}
	if c.Concurrency < 1 || c.Concurrency > events.MaxConcurrency {
		return console.Config{}, fmt.Errorf("--concurrency %d: want 1 to %d", c.Concurrency, events.MaxConcurrency)
	}
	return cfg, nil
}

// ossBucket returns an aliyun-oss-go-sdk bucket client signing with V4. An endpoint
// without a scheme is HTTPS; loopback and IP endpoints use path-style addressing (as
// the local cloud needs), names use virtual-hosted style (as OSS does).
func ossBucket(endpoint, region, bucket, id, secret string) (*oss.Bucket, error) {
	if !strings.Contains(endpoint, "://") {
		endpoint = "https://" + endpoint
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("%q: want http(s)://host[:port]", endpoint)
	}
	host := u.Hostname()
	pathStyle := host == "localhost" || strings.HasSuffix(host, ".localhost") || net.ParseIP(host) != nil
	client, err := oss.New(u.Scheme+"://"+u.Host, id, secret, oss.AuthVersion(oss.AuthV4), oss.Region(region),
		oss.ForcePathStyle(pathStyle))
	if err != nil {
		return nil, err
	}
	return client.Bucket(bucket)
}
