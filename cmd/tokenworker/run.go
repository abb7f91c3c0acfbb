package main

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/alecthomas/kong"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/clipgate/clipgate/internal/cli"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/mqttclient"
	"github.com/clipgate/clipgate/internal/natsbus"
	"github.com/clipgate/clipgate/internal/ops"
	"github.com/clipgate/clipgate/internal/protocol"
	"github.com/clipgate/clipgate/internal/quota"
	"github.com/clipgate/clipgate/internal/tokenworker"
	"github.com/clipgate/clipgate/policy"
	"github.com/clipgate/clipgate/topics"
)

// spec is the command's description to the command-line plumbing.
var spec = cli.Spec{
	Name:        "tokenworker",
	Description: "Answers clipgate device auth requests with least-privilege STS credentials.",
	EnvPrefix:   "CLIPGATE",
	Vars: kong.Vars{
		"defaultGroup":  topics.DefaultWorkerGroup,
		"defaultRoot":   topics.DefaultRoot,
		"defaultRegion": tokenworker.DefaultSTSRegion,
		"defaultPrefix": policy.DefaultPrefix,
	},
}

// CLI is the command line; see package cli for how flags, variables and the
// configuration file set it.
type CLI struct {
	cli.Common
	cli.Ops

	Broker         string   `help:"MQTT broker URL (tcp://, ssl://, ws://, wss://)." default:"tcp://127.0.0.1:1883"`
	BrokerCA       string   `help:"PEM file of CAs to trust for an ssl:// broker (default: system roots)." type:"path" placeholder:"FILE"`
	Username       string   `help:"Service account user name (role tokenworker)." default:"tokenworker"`
	PasswordFile   string   `help:"File holding the service account password." type:"path" placeholder:"FILE" secret:""`
	ClientID       string   `help:"MQTT client ID, USERNAME:INSTANCE; with --workers N, suffixed -1..-N (default: USERNAME:<random>)."`
	Group          string   `help:"Shared-subscription group (on NATS: the queue group)." default:"${defaultGroup}"`
	NATS           []string `name:"nats" placeholder:"URL" help:"NATS cluster URLs (nats://, tls://; repeat or comma-separate): take requests as a NATS queue group instead of from the MQTT --broker."`
	NATSPartitions int      `name:"nats-partitions" default:"16" help:"NATS: partitions of the cluster's auth-request mapping (0: no mapping)."`
	NATSOwned      []int    `name:"nats-owned" placeholder:"P" help:"NATS: the partitions this process takes (default all); give each partition one process for one STS call per device and credential lifetime."`
	TopicRoot      string   `help:"Topic root." default:"${defaultRoot}"`

	FleetKeysFile      string `help:"Fleet keyring file (mode 0600, from \"broker fleet-key\"); device request keys are derived from it. Required unless --fleet-ca-file serves a fleet of certificate devices only." type:"path" placeholder:"FILE"`
	FleetCAFile        string `name:"fleet-ca-file" help:"CA certificates (PEM) of devices without a device key: their requests carry a certificate (CN = device ID) and are signed with its key; replies are sealed to it." type:"path" placeholder:"FILE"`
	RevocationsFile    string `help:"Revoked device IDs, one a line; reloaded when it changes." type:"path" placeholder:"FILE"`
	RevocationsKeyFile string `help:"The console's revocation list public key (FILE.pub of 'broker revocation-key'): follow the signed list it publishes on the revocation topic instead of a file (with --nats: read retained from the MQTT gateway's stream, then followed live)." type:"path" placeholder:"FILE"`
	QuotasKeyFile      string `help:"The console's signing public key (the same FILE.pub): follow the signed quota snapshot it publishes on the quota topic and refuse write and append credentials (quota_exceeded) to devices over their upload quota. (with --nats: read retained from the MQTT gateway's stream, then followed live)." type:"path" placeholder:"FILE"`

	STSEndpoint            string        `help:"STS host[:port], e.g. sts.cn-hangzhou.aliyuncs.com." required:""`
	STSScheme              string        `help:"STS scheme." enum:"https,http" default:"https"`
	STSRegion              string        `help:"STS region." default:"${defaultRegion}"`
	STSAccessKeyID         string        `name:"sts-access-key-id" help:"Access key ID of the RAM user that assumes the role." required:""`
	STSAccessKeySecretFile string        `help:"File holding the access key secret." type:"path" placeholder:"FILE" secret:""`
	STSRoleARN             string        `name:"sts-role-arn" help:"Role to assume: acs:ram::ACCOUNT:role/NAME." required:""`
	STSDuration            time.Duration `help:"Lifetime of issued credentials (15m to the role's maximum)." default:"1h"`
	STSTimeout             time.Duration `help:"Timeout of one AssumeRole call." default:"10s"`
	OSSEndpoint            string        `help:"OSS endpoint returned to devices." required:""`
	OSSRegion              string        `help:"OSS region returned to devices (default: --sts-region)."`
	OSSBucket              string        `help:"OSS bucket." required:""`
	OSSPrefix              string        `help:"Global key prefix, empty (--oss-prefix='') or ending in '/'; devices write under PREFIX+ID/. The console's --oss-prefix must match." default:"${defaultPrefix}"`
	ClockWindow            time.Duration `help:"Accepted clock difference of requests." default:"5m"`
	ReuseMargin            time.Duration `help:"Reuse cached credentials with more than this left." default:"10m"`
	DeviceRate             float64       `help:"Requests per second per device." default:"1"`
	DeviceBurst            int           `help:"Burst per device." default:"5"`
	STSRate                float64       `name:"sts-rate" help:"AssumeRole calls per second per worker." default:"50"`
	STSBurst               int           `name:"sts-burst" help:"AssumeRole burst per worker." default:"50"`
	MaxConcurrent          int           `help:"AssumeRole calls in flight per worker; beyond, requests get busy." default:"32"`
	QueueSize              int           `help:"Queued requests per worker before busy (0: 8 x --max-concurrent)." default:"0"`
	NoSeal                 bool          `help:"Send credentials in clear instead of sealed to the device key (not recommended)."`
	Workers                int           `help:"Workers in this process." default:"1"`
	ConnectTimeout         time.Duration `help:"How long to keep trying to reach the broker at start before giving up (0: keep trying)." default:"0s"`
}

// Main is the program, separated from main() so that tests run it in-process.
type Main struct {
	CLI CLI
	IO  cli.IO

	ctx     *cli.Context
	log     zerolog.Logger
	workers []*tokenworker.Worker
	metrics *tokenworker.Metrics
	ops     *ops.Server
	stop    context.CancelFunc
	wg      sync.WaitGroup
}

// NewMain returns a Main on io.
func NewMain(io cli.IO) *Main { return &Main{IO: io} }

// run is the command: it starts the workers and stops them when ctx ends.
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
	if m.CLI.Workers < 1 || m.CLI.Workers > 1024 {
		return cli.Usagef("--workers %d: want 1 to 1024", m.CLI.Workers)
	}
	return nil
}

// Run builds the workers from the parsed configuration and starts them. It returns once
// every worker is subscribed, or with the first error.
func (m *Main) Run(ctx context.Context) error {
	m.log = m.ctx.Logger()
	m.metrics = tokenworker.NewMetrics()
	cfg, rev, err := m.config()
	if err != nil {
		return cli.Usage(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	m.stop = stop
	if m.CLI.RevocationsFile != "" {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			err := rev.Watch(runCtx, m.CLI.RevocationsFile, func(err error) {
				m.log.Error().Err(err).Msg("revocation list")
			})
			if err != nil {
				m.log.Error().Err(err).Msg("revocation list is not watched; changes need a restart")
			}
		}()
	}
	startCtx := ctx
	if m.CLI.ConnectTimeout > 0 {
		var cancel context.CancelFunc
		startCtx, cancel = context.WithTimeout(ctx, m.CLI.ConnectTimeout)
		defer cancel()
	}
	for i := 0; i < m.CLI.Workers; i++ {
		c := cfg
		if c.ClientID != "" && m.CLI.Workers > 1 {
			c.ClientID += "-" + strconv.Itoa(i+1)
		}
		if len(m.CLI.NATS) > 0 {
			name := c.ClientID
			if name == "" {
				name = c.Username + ":" + strconv.Itoa(os.Getpid()) + "-" + strconv.Itoa(i+1) // USERNAME:INSTANCE
			}
			tr, err := natsbus.NewWorkers(natsbus.WorkersConfig{
				Conn:       natsbus.Conn{URLs: m.CLI.NATS, Username: c.Username, Password: c.Password, Name: name, TLS: c.TLS, Logger: m.log},
				Topics:     c.Topics,
				Group:      c.Group,
				Partitions: m.CLI.NATSPartitions,
				Owned:      m.CLI.NATSOwned,
			})
			if err != nil {
				return cli.Usage(err)
			}
			c.Transport = tr
		}
		w, err := tokenworker.New(c)
		if err != nil {
			return cli.Usage(err)
		}
		m.workers = append(m.workers, w)
		if err := w.Start(startCtx); err != nil {
			return err
		}
	}
	reg := ops.NewRegistry("tokenworker")
	reg.MustRegister(m.metrics)
	if m.ops, err = ops.Serve(m.CLI.MetricsAddr, "tokenworker", reg, tokenworker.ReadyChecks(m.workers)...); err != nil {
		return cli.Usage(fmt.Errorf("--metrics-addr: %w", err))
	}
	m.log.Info().Int("workers", len(m.workers)).Str("broker", cfg.BrokerURL).Str("metrics", m.ops.Addr()).Msg("tokenworker running")
	return nil
}

// OpsAddr returns the address of the --metrics-addr endpoint ("" when off).
func (m *Main) OpsAddr() string { return m.ops.Addr() }

// Workers returns the running workers (for tests and stats).
func (m *Main) Workers() []*tokenworker.Worker { return m.workers }

// Close stops every worker and the revocation watch.
func (m *Main) Close() error {
	errs := []error{m.ops.Close()}
	for _, w := range m.workers {
		errs = append(errs, w.Close())
	}
	if m.stop != nil {
		m.stop()
	}
	m.wg.Wait()
	return errors.Join(errs...)
}

// config builds the worker configuration shared by every worker of the process.
func (m *Main) config() (tokenworker.Config, *identity.Revocations, error) {
	c := &m.CLI
	if c.FleetKeysFile == "" && c.FleetCAFile == "" {
		return tokenworker.Config{}, nil, errors.New("--fleet-keys-file is required (or --fleet-ca-file, for certificate devices only)")
	}
	var fleet *identity.Keyring
	var err error
	if c.FleetKeysFile != "" {
		if fleet, err = identity.LoadKeyring(c.FleetKeysFile); err != nil {
			return tokenworker.Config{}, nil, fmt.Errorf("--fleet-keys-file: %w", err)
		}
	}
	var fleetCA *x509.CertPool
	if c.FleetCAFile != "" {
		ca, err := (mqttclient.TLSFiles{CAFile: c.FleetCAFile}).Load()
		if err != nil {
			return tokenworker.Config{}, nil, fmt.Errorf("--fleet-ca-file: %w", err)
		}
		fleetCA = ca.RootCAs
	}
	password, err := m.ctx.Secret("password-file", "broker password", false)
	if err != nil {
		return tokenworker.Config{}, nil, err
	}
	stsSecret, err := m.ctx.Secret("sts-access-key-secret-file", "STS access key secret", true)
	if err != nil {
		return tokenworker.Config{}, nil, err
	}
	scheme, err := topics.New(c.TopicRoot)
	if err != nil {
		return tokenworker.Config{}, nil, fmt.Errorf("--topic-root: %w", err)
	}
	rev := identity.NewRevocations()
	var revKey ed25519.PublicKey
	if c.RevocationsKeyFile != "" {
		if c.RevocationsFile != "" {
			return tokenworker.Config{}, nil, errors.New("--revocations-file and --revocations-key-file: choose one way to receive the revocation list")
		}
		if revKey, err = identity.LoadRevocationPublicKey(c.RevocationsKeyFile); err != nil {
			return tokenworker.Config{}, nil, err
		}
	}
	if c.RevocationsFile != "" {
		if rev, err = identity.LoadRevocations(c.RevocationsFile); err != nil {
			return tokenworker.Config{}, nil, err
		}
	}
	var quotasKey ed25519.PublicKey
	if c.QuotasKeyFile != "" {
		if quotasKey, err = identity.LoadRevocationPublicKey(c.QuotasKeyFile); err != nil {
			return tokenworker.Config{}, nil, fmt.Errorf("--quotas-key-file: %w", err)
		}
	}
	var tlsCfg *tls.Config
	if c.BrokerCA != "" {
		if tlsCfg, err = (mqttclient.TLSFiles{CAFile: c.BrokerCA}).Load(); err != nil {
			return tokenworker.Config{}, nil, fmt.Errorf("--broker-ca: %w", err)
		}
	}
	seal := !c.NoSeal
	if c.ClockWindow <= 0 {
		return tokenworker.Config{}, nil, errors.New("--clock-window must be positive")
	}
	cfg := tokenworker.Config{
		BrokerURL:      c.Broker,
		TLS:            tlsCfg,
		Username:       c.Username,
		Password:       password,
		ClientID:       c.ClientID,
		Group:          c.Group,
		Topics:         scheme,
		FleetKeys:      fleet,
		FleetCA:        fleetCA,
		Revocations:    rev,
		RevocationsKey: revKey,
		QuotasKey:      quotasKey,
		STS: tokenworker.STSConfig{
			Endpoint:        c.STSEndpoint,
			Scheme:          c.STSScheme,
			Region:          c.STSRegion,
			AccessKeyID:     c.STSAccessKeyID,
			AccessKeySecret: stsSecret,
			RoleARN:         c.STSRoleARN,
			Duration:        c.STSDuration,
			Timeout:         c.STSTimeout,
		},
		OSS:           protocol.OSSInfo{Endpoint: c.OSSEndpoint, Region: c.OSSRegion, Bucket: c.OSSBucket, Prefix: c.OSSPrefix},
		ClockWindow:   c.ClockWindow,
		ReuseMargin:   c.ReuseMargin,
		DeviceRate:    rate.Limit(c.DeviceRate),
		DeviceBurst:   c.DeviceBurst,
		STSRate:       rate.Limit(c.STSRate),
		STSBurst:      c.STSBurst,
		MaxConcurrent: c.MaxConcurrent,
		QueueSize:     c.QueueSize,
		Seal:          &seal,
		// One replay cache for the whole process, so that a replay cannot slip through a
		// sibling worker.
		Replay:  identity.NewReplayCache(c.ClockWindow, identity.DefaultReplayEntries),
		Logger:  m.log,
		Metrics: m.metrics,
	}
	if quotasKey != nil {
		cfg.Quotas = new(quota.Table) // one for the process's workers
	}
	if c.DeviceRate <= 0 || c.DeviceBurst <= 0 || c.STSRate <= 0 || c.STSBurst <= 0 || c.MaxConcurrent <= 0 || c.QueueSize < 0 {
		return tokenworker.Config{}, nil, errors.New("rates, bursts and --max-concurrent must be positive, --queue-size not negative")
	}
	if c.ReuseMargin < 0 {
		return tokenworker.Config{}, nil, errors.New("--reuse-margin must not be negative")
	}
	return cfg, rev, nil
}
