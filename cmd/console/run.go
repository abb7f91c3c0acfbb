package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/alecthomas/kong"
	"github.com/aliyun/aliyun-oss-go-sdk/oss"
	"github.com/rs/zerolog"

	"github.com/clipgate/clipgate/events"
	"github.com/clipgate/clipgate/internal/console"
	"github.com/clipgate/clipgate/internal/kongyaml"
	"github.com/clipgate/clipgate/internal/secretfile"
	"github.com/clipgate/clipgate/policy"
	"github.com/clipgate/clipgate/topics"
)

// Environment variables that carry secrets (never flags).
const (
	envPassword  = "CLIPGATE_PASSWORD"
	envOSSSecret = "CLIPGATE_OSS_ACCESS_KEY_SECRET"
)

// CLI is the command line. Every flag also reads CLIPGATE_<FLAG> (dashes as underscores)
// and the same key in the YAML file given by --config.
type CLI struct {
	Config kong.ConfigFlag `help:"YAML configuration file; keys are flag names (nested maps join with '-')." type:"path"`

	Listen           string        `help:"HTTP listen address." default:"${defaultAddr}"`
	TLSCert          string        `name:"tls-cert" help:"PEM certificate chain: serve HTTPS (session cookies are then Secure)." type:"path"`
	TLSKey           string        `name:"tls-key" help:"PEM private key of --tls-cert." type:"path"`
	SecureCookies    bool          `help:"Mark the session cookie Secure without --tls-cert (behind a proxy that terminates TLS)."`
	PasswordHash     string        `help:"bcrypt hash of the password of the admin named --admin-name (make one with 'broker hash-password'); the admin adds other operators in the console. Optional once the database has an operator."`
	PasswordHashFile string        `help:"File holding the admin password's bcrypt hash." type:"path"`
	AdminName        string        `help:"Name of the admin whose password hash is configured." default:"${defaultAdmin}"`
	SessionTTL       time.Duration `name:"session-ttl" help:"Lifetime of a login." default:"12h"`
	AuditTTL         time.Duration `name:"audit-ttl" help:"How long audit log entries are kept (negative: for ever)." default:"${defaultAuditTTL}"`

	RetentionEvery time.Duration `help:"Interval of the scheduled runs of the retention rules set in the console (negative: none)." default:"${defaultRetentionEvery}"`
	Lifecycle      bool          `help:"Also write the retention rules as the bucket's OSS lifecycle rules (the key then needs oss:PutBucketLifecycle and oss:GetBucketLifecycle)."`

	Database string `help:"SQLite database file, or PostgreSQL: a postgres:// URL or host=... dbname=... string." default:"console.db"`

	Broker       string `help:"MQTT broker URL (tcp://, ssl://, ws://, wss://); empty: serve the index without ingesting." default:"tcp://127.0.0.1:1883"`
	BrokerCA     string `help:"PEM file of CAs to trust for an ssl:// broker (default: system roots)." type:"path"`
	Username     string `help:"Service account user name (role consumer)." default:"consumer"`
	PasswordFile string `help:"File holding the service account password (or set ${envPassword})." type:"path"`
	ClientID     string `help:"MQTT client ID of the events consumer's persistent session (default USERNAME:console); keep it stable, one per instance."`
	Group        string `help:"Shared-subscription group of the events consumer." default:"${defaultGroup}"`
	TopicRoot    string `help:"Topic root." default:"${defaultRoot}"`
	Concurrency  int    `help:"Events indexed at once." default:"16"`

	OSSEndpoint            string        `help:"OSS endpoint, e.g. https://oss-cn-hangzhou.aliyuncs.com or http://127.0.0.1:9100 (localcloud)." required:""`
	OSSPublicEndpoint      string        `help:"OSS endpoint the operators' browsers reach, for the player's signed URLs (default: --oss-endpoint)."`
	OSSRegion              string        `help:"OSS region (V4 signatures)." default:"cn-hangzhou"`
	OSSBucket              string        `help:"Bucket the devices upload to." required:""`
	OSSPrefix              string        `help:"Global key prefix, empty (--oss-prefix='') or ending in '/'; devices write under PREFIX+ID/. The token workers' --oss-prefix must match." default:"${defaultPrefix}"`
	OSSAccessKeyID         string        `name:"oss-access-key-id" help:"Access key allowed to head, list, get and delete the bucket's objects." required:""`
	OSSAccessKeySecretFile string        `help:"File holding the access key secret (or set ${envOSSSecret})." type:"path"`
	URLExpiry              time.Duration `name:"url-expiry" help:"Lifetime of the player's signed URLs." default:"5m"`

	RevocationsFile   string        `help:"Revocation list shared with the broker and token workers (their --revocations-file); the console rewrites it." type:"path"`
	ReconcileInterval time.Duration `help:"Time between reconciler passes over the bucket." default:"${defaultReconcile}"`
	ReconcileMinAge   time.Duration `help:"Objects younger than this are left to their events." default:"${defaultMinAge}"`

	ConnectTimeout time.Duration `help:"Give up if the broker cannot be reached in this time at start, trying again meanwhile (0: keep trying)." default:"30s"`
	LogLevel       string        `help:"Log level." enum:"debug,info,warn,error" default:"info"`
	LogFormat      string        `help:"Log format." enum:"json,console" default:"json"`
}

var errHelp = errors.New("help shown")

// Main is the program, separated from main() so that tests run it in-process.
type Main struct {
	CLI    CLI
	Getenv func(string) (string, bool) // secret lookup; default os.LookupEnv
	Stdout io.Writer
	Stderr io.Writer

	log     zerolog.Logger
	db      *console.DB
	console *console.Console
}

// NewMain returns a Main reading the process environment and writing to stdout/stderr.
func NewMain() *Main {
	return &Main{Getenv: os.LookupEnv, Stdout: os.Stdout, Stderr: os.Stderr}
}

// ParseFlags parses args (without the program name), the environment and the config file.
func (m *Main) ParseFlags(args []string) error {
	exited := false
	parser, err := kong.New(&m.CLI,
		kong.Name("console"),
		kong.Description("clipgate's operator console: indexes upload events and serves the web UI and API."),
		kong.DefaultEnvars("CLIPGATE"),
		kong.Configuration(kongyaml.Loader(fmt.Sprintf("use %s / %s or a *-file setting", envPassword, envOSSSecret))),
		kong.Vars{
			"envPassword":           envPassword,
			"envOSSSecret":          envOSSSecret,
			"defaultAddr":           console.DefaultAddr,
			"defaultGroup":          console.DefaultGroup,
			"defaultRoot":           topics.DefaultRoot,
			"defaultReconcile":      events.DefaultReconcileInterval.String(),
			"defaultMinAge":         events.DefaultMinAge.String(),
			"defaultPrefix":         policy.DefaultPrefix,
			"defaultAdmin":          console.DefaultAdminName,
			"defaultAuditTTL":       console.DefaultAuditTTL.String(),
			"defaultRetentionEvery": console.DefaultRetentionEvery.String(),
		},
		kong.Writers(m.Stdout, m.Stderr),
		kong.Exit(func(int) { exited = true }),
	)
	if err != nil {
		return err
	}
	if _, err := parser.Parse(args); err != nil {
		if exited {
			return errHelp
		}
		return err
	}
	if exited {
		return errHelp
	}
	return nil
}

// Run opens the database, builds the console from the parsed configuration and starts
// it. It returns once the console serves and (with a broker) is subscribed.
func (m *Main) Run(ctx context.Context) error {
	m.log = newLogger(m.Stderr, m.CLI.LogFormat, m.CLI.LogLevel)
	cfg, err := m.config()
	if err != nil {
		return err
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
		return err
	}
	if err := m.console.Start(startCtx); err != nil {
		return err
	}
	m.log.Info().Str("url", m.console.URL()).Str("database", string(m.db.Dialect())).Msg("console running")
	fmt.Fprintf(m.Stdout, "console: serving %s\n", m.console.URL())
	return nil
}

// URL returns the console's URL once running.
func (m *Main) URL() string {
	if m.console == nil {
		return ""
	}
	return m.console.URL()
}

// Close stops the console and closes the database.
func (m *Main) Close() error {
	var errs []error
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
	hash, err := m.passwordHash()
	if err != nil {
		return console.Config{}, err
	}
	ossSecret, err := secretfile.Lookup(m.Getenv, envOSSSecret, c.OSSAccessKeySecretFile, "OSS access key secret", true)
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
		BrokerURL:         c.Broker,
		Username:          c.Username,
		ClientID:          c.ClientID,
		Group:             c.Group,
		Topics:            scheme,
		Concurrency:       c.Concurrency,
		Bucket:            bucket,
		SignBucket:        sign,
		Prefix:            c.OSSPrefix,
		URLExpiry:         c.URLExpiry,
		Addr:              c.Listen,
		SecureCookies:     c.SecureCookies,
		PasswordHash:      hash,
		AdminName:         c.AdminName,
		SessionTTL:        c.SessionTTL,
		AuditTTL:          c.AuditTTL,
		RetentionEvery:    c.RetentionEvery,
		Lifecycle:         c.Lifecycle,
		RevocationsFile:   c.RevocationsFile,
		ReconcileInterval: c.ReconcileInterval,
		ReconcileMinAge:   c.ReconcileMinAge,
		Logger:            m.log,
	}
	if c.Broker != "" {
		if cfg.Password, err = secretfile.Lookup(m.Getenv, envPassword, c.PasswordFile, "broker password", true); err != nil {
			return console.Config{}, err
		}
		if c.BrokerCA != "" {
			pem, err := os.ReadFile(c.BrokerCA)
			if err != nil {
				return console.Config{}, fmt.Errorf("--broker-ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return console.Config{}, fmt.Errorf("--broker-ca %s: no PEM certificate found", c.BrokerCA)
			}
			cfg.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
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

// passwordHash reads the admin's password hash: --password-hash (or its environment
// variable or YAML key) or --password-hash-file, at most one. None is allowed: the
// console then starts only if its database holds an operator.
func (m *Main) passwordHash() (string, error) {
	c := &m.CLI
	switch {
	case c.PasswordHash != "" && c.PasswordHashFile != "":
		return "", errors.New("set --password-hash or --password-hash-file, not both")
	case c.PasswordHash != "":
		return c.PasswordHash, nil
	case c.PasswordHashFile != "":
		h, err := secretfile.Read(c.PasswordHashFile)
		if err != nil {
			return "", fmt.Errorf("--password-hash-file: %w", err)
		}
		return h, nil
	}
	return "", nil
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

func newLogger(w io.Writer, format, level string) zerolog.Logger {
	if format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339}
	}
	lvl, err := zerolog.ParseLevel(level)
	if err != nil {
		lvl = zerolog.InfoLevel
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger()
}
