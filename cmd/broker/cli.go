package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/alecthomas/kong"
	"github.com/rs/zerolog"

	"github.com/clipgate/clipgate/internal/broker"
	"github.com/clipgate/clipgate/internal/deviceid"
	"github.com/clipgate/clipgate/internal/identity"
)

// cli is the command line of the broker. Configuration precedence for serve:
// flags > environment variables > config file > defaults.
type cli struct {
	Serve        serveCmd        `cmd:"" help:"Run the MQTT broker."`
	FleetKey     fleetKeyCmd     `cmd:"" name:"fleet-key" help:"Create a new fleet key file (mode 0600)."`
	DeviceKey    deviceKeyCmd    `cmd:"" name:"device-key" help:"Derive a device's key (and optionally its current MQTT password) from the fleet key."`
	HashPassword hashPasswordCmd `cmd:"" name:"hash-password" help:"Read a service account password from stdin and print its bcrypt hash for the service accounts file."`
}

// env is what the commands' Run methods get.
type env struct {
	ctx    context.Context
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

type kongExit int

// run runs the command line args and returns the process exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) (code int) {
	var c cli
	k, err := kong.New(&c,
		kong.Name("broker"),
		kong.Description("clipgate MQTT broker: device and service authentication, topic ACL, persistent sessions."),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { panic(kongExit(code)) }),
		kong.UsageOnError(),
		kong.Vars{
			"default_addr":      broker.DefaultAddr,
			"default_tls_addr":  broker.DefaultTLSAddr,
			"default_http_addr": broker.DefaultHTTPAddr,
		},
	)
	if err != nil {
		fmt.Fprintln(stderr, "broker:", err)
		return 2
	}
	defer func() {
		if r := recover(); r != nil {
			ke, ok := r.(kongExit)
			if !ok {
				panic(r)
			}
			code = int(ke)
		}
	}()
	kctx, err := k.Parse(args)
	if err != nil {
		fmt.Fprintln(stderr, "broker:", err)
		return 2
	}
	if err := kctx.Run(&env{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr}); err != nil {
		fmt.Fprintln(stderr, "broker:", err)
		return 1
	}
	return 0
}

// serveCmd flags are pointers so that only flags (or variables) actually given
// override the config file.
type serveCmd struct {
	Config string `help:"YAML configuration file (keys as in internal/broker.Config)." env:"CLIPGATE_BROKER_CONFIG" placeholder:"FILE"`

	Addr                 *string        `help:"MQTT TCP listen address; \"none\" disables it (default ${default_addr})." env:"CLIPGATE_BROKER_ADDR"`
	TLSAddr              *string        `name:"tls-addr" help:"MQTT over TLS listen address (default ${default_tls_addr} when --tls-cert is set)." env:"CLIPGATE_BROKER_TLS_ADDR"`
	TLSCert              *string        `name:"tls-cert" help:"TLS certificate chain (PEM); enables the TLS listener." env:"CLIPGATE_BROKER_TLS_CERT" placeholder:"FILE"`
	TLSKey               *string        `name:"tls-key" help:"TLS private key (PEM)." env:"CLIPGATE_BROKER_TLS_KEY" placeholder:"FILE"`
	TLSClientCA          *string        `name:"tls-client-ca" help:"CA certificates (PEM) for client certificates (mTLS); a certificate's CN must equal the client ID." env:"CLIPGATE_BROKER_TLS_CLIENT_CA" placeholder:"FILE"`
	TLSRequireClientCert *bool          `name:"tls-require-client-cert" help:"Refuse TLS clients without a certificate." env:"CLIPGATE_BROKER_TLS_REQUIRE_CLIENT_CERT"`
	HTTPAddr             *string        `name:"http-addr" help:"HTTP address for /healthcheck, /sys and the EMQX endpoints; \"none\" disables it (default ${default_http_addr})." env:"CLIPGATE_BROKER_HTTP_ADDR"`
	DataDir              *string        `name:"data-dir" help:"Directory of the persistent session store." env:"CLIPGATE_BROKER_DATA_DIR" placeholder:"DIR"`
	InMemory             bool           `name:"in-memory" help:"Run without a data dir: sessions and queued messages are lost on restart." env:"CLIPGATE_BROKER_IN_MEMORY"`
	TopicRoot            *string        `name:"topic-root" help:"Root of the topic scheme (default clipgate/v1)." env:"CLIPGATE_TOPIC_ROOT"`
	FleetKey             *string        `name:"fleet-key" help:"Fleet key file." env:"CLIPGATE_FLEET_KEY_FILE" placeholder:"FILE"`
	ServiceAccounts      *string        `name:"service-accounts" help:"Service accounts file (YAML, bcrypt hashes)." env:"CLIPGATE_SERVICE_ACCOUNTS_FILE" placeholder:"FILE"`
	Revocations          *string        `name:"revocations" help:"Revocation list file (one device ID a line), watched for changes." env:"CLIPGATE_REVOCATIONS_FILE" placeholder:"FILE"`
	PasswordWindow       *time.Duration `name:"password-window" help:"Accepted clock difference of device passwords (default 24h)." env:"CLIPGATE_BROKER_PASSWORD_WINDOW"`
	ConnectTimeout       *time.Duration `name:"connect-timeout" help:"Time a new connection has for its TLS handshake and CONNECT (default 10s)." env:"CLIPGATE_BROKER_CONNECT_TIMEOUT"`
	RevocationSweep      *time.Duration `name:"revocation-sweep" help:"How often connected devices are checked against the revocation list (default 1s)." env:"CLIPGATE_BROKER_REVOCATION_SWEEP"`
	MaxPacketSize        *uint32        `name:"max-packet-size" help:"Largest MQTT packet accepted, bytes." env:"CLIPGATE_BROKER_MAX_PACKET_SIZE"`
	MaxWritesPending     *int32         `name:"max-writes-pending" help:"Outbound queue per client; messages beyond it are dropped and counted." env:"CLIPGATE_BROKER_MAX_WRITES_PENDING"`
	SessionExpiry        *time.Duration `name:"session-expiry" help:"How long disconnected persistent sessions are kept." env:"CLIPGATE_BROKER_SESSION_EXPIRY"`
	MessageExpiry        *time.Duration `name:"message-expiry" help:"How long queued and retained messages are kept." env:"CLIPGATE_BROKER_MESSAGE_EXPIRY"`
	DeviceRate           *float64       `name:"device-rate" help:"Publishes per second per device (negative: unlimited): QoS 0 floods beyond it disconnect, QoS 1 publishes are paced." env:"CLIPGATE_BROKER_DEVICE_RATE"`
	DeviceBurst          *int           `name:"device-burst" help:"Burst of the device publish rate." env:"CLIPGATE_BROKER_DEVICE_BURST"`
	ServiceRate          *float64       `name:"service-rate" help:"Publishes per second per service client (0: unlimited)." env:"CLIPGATE_BROKER_SERVICE_RATE"`
	ServiceBurst         *int           `name:"service-burst" help:"Burst of the service publish rate." env:"CLIPGATE_BROKER_SERVICE_BURST"`
	WorkerRouting        *string        `name:"worker-routing" enum:"round-robin,device" help:"How auth requests pick a token worker: round-robin (default; connected workers take turns) or device (a device's requests always go to the same connected worker, so its cached credentials and rate limit are per device)." env:"CLIPGATE_BROKER_WORKER_ROUTING"`
	EMQX                 *bool          `name:"emqx" help:"Serve POST /emqx/authn and /emqx/authz (EMQX HTTP contract) on the HTTP address." env:"CLIPGATE_BROKER_EMQX"`
	EMQXTokenFile        *string        `name:"emqx-token-file" help:"Bearer token the EMQX requests must carry." env:"CLIPGATE_BROKER_EMQX_TOKEN_FILE" placeholder:"FILE"`

	LogLevel  string `name:"log-level" default:"info" enum:"debug,info,warn,error" help:"Log level (${enum})." env:"CLIPGATE_LOG_LEVEL"`
	LogFormat string `name:"log-format" default:"json" enum:"json,console" help:"Log format (${enum})." env:"CLIPGATE_LOG_FORMAT"`
}

// config builds the broker configuration: defaults, then the file, then flags and
// environment variables.
func (s *serveCmd) config() (broker.Config, error) {
	var cfg broker.Config
	if s.Config != "" {
		if err := broker.LoadConfigFile(s.Config, &cfg); err != nil {
			return cfg, err
		}
	}
	set(&cfg.Addr, s.Addr)
	set(&cfg.TLS.Addr, s.TLSAddr)
	set(&cfg.TLS.CertFile, s.TLSCert)
	set(&cfg.TLS.KeyFile, s.TLSKey)
	set(&cfg.TLS.ClientCAFile, s.TLSClientCA)
	set(&cfg.TLS.RequireClientCert, s.TLSRequireClientCert)
	set(&cfg.HTTPAddr, s.HTTPAddr)
	set(&cfg.DataDir, s.DataDir)
	set(&cfg.TopicRoot, s.TopicRoot)
	set(&cfg.FleetKeyFile, s.FleetKey)
	set(&cfg.ServiceAccountsFile, s.ServiceAccounts)
	set(&cfg.RevocationsFile, s.Revocations)
	set(&cfg.PasswordWindow, s.PasswordWindow)
	set(&cfg.ConnectTimeout, s.ConnectTimeout)
	set(&cfg.RevocationSweep, s.RevocationSweep)
	set(&cfg.MaxPacketSize, s.MaxPacketSize)
	set(&cfg.MaxWritesPending, s.MaxWritesPending)
	set(&cfg.SessionExpiry, s.SessionExpiry)
	set(&cfg.MessageExpiry, s.MessageExpiry)
	set(&cfg.DeviceRate, s.DeviceRate)
	set(&cfg.DeviceBurst, s.DeviceBurst)
	set(&cfg.ServiceRate, s.ServiceRate)
	set(&cfg.ServiceBurst, s.ServiceBurst)
	set(&cfg.WorkerRouting, s.WorkerRouting)
	set(&cfg.EMQX.Enabled, s.EMQX)
	set(&cfg.EMQX.TokenFile, s.EMQXTokenFile)
	if s.InMemory {
		cfg.DataDir = ""
	} else if cfg.DataDir == "" {
		return cfg, errors.New("no data dir: set --data-dir (or dataDir in the config file), or --in-memory to keep sessions in memory only")
	}
	return cfg, nil
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

func (s *serveCmd) Run(e *env) error {
	cfg, err := s.config()
	if err != nil {
		return err
	}
	level, _ := zerolog.ParseLevel(s.LogLevel) // enum-checked
	var w io.Writer = e.stderr
	if s.LogFormat == "console" {
		w = zerolog.ConsoleWriter{Out: e.stderr, TimeFormat: time.RFC3339}
	}
	log := zerolog.New(w).Level(level).With().Timestamp().Logger()
	cfg.Logger = &log

	b, err := broker.New(cfg)
	if err != nil {
		return err
	}
	if err := b.Start(); err != nil {
		return err
	}
	<-e.ctx.Done()
	log.Info().Msg("shutting down")
	return b.Close()
}

type fleetKeyCmd struct {
	Path  string `arg:"" help:"Where to write the new fleet key." placeholder:"FILE"`
	Force bool   `help:"Replace an existing file (every device key derived from the old key stops working)."`
}

func (c *fleetKeyCmd) Run(e *env) error {
	if !c.Force {
		if _, err := os.Lstat(c.Path); err == nil {
			return fmt.Errorf("%s exists; refusing to replace a fleet key (use --force)", c.Path)
		}
	}
	key, err := identity.NewFleetKey()
	if err != nil {
		return err
	}
	if err := identity.WriteKey(c.Path, key); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "wrote fleet key %s (mode 0600)\n", c.Path)
	return nil
}

type deviceKeyCmd struct {
	FleetKey string `name:"fleet-key" required:"" help:"Fleet key file." env:"CLIPGATE_FLEET_KEY_FILE" placeholder:"FILE"`
	DeviceID string `arg:"" name:"DEVICE_ID" help:"Device ID (2 to 64 characters of [A-Za-z0-9._-])."`
	Out      string `help:"Write the device key to this file (0600) instead of printing it." placeholder:"FILE"`
	Password bool   `help:"Print the device's MQTT password for the current time instead of its key (for mosquitto_pub and the like)."`
}

func (c *deviceKeyCmd) Run(e *env) error {
	if err := deviceid.Validate(c.DeviceID); err != nil {
		return err
	}
	fleet, err := identity.LoadKey(c.FleetKey)
	if err != nil {
		return err
	}
	key := identity.DeriveDeviceKey(fleet, c.DeviceID)
	switch {
	case c.Password:
		fmt.Fprintln(e.stdout, identity.MQTTPassword(key, c.DeviceID, time.Now()))
	case c.Out != "":
		if err := identity.WriteKey(c.Out, key); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "wrote device key of %s to %s (mode 0600)\n", c.DeviceID, c.Out)
	default:
		fmt.Fprintln(e.stdout, base64.StdEncoding.EncodeToString(key))
	}
	return nil
}

type hashPasswordCmd struct{}

// maxPasswordLine bounds what hash-password reads.
const maxPasswordLine = 1024

func (c *hashPasswordCmd) Run(e *env) error {
	r := bufio.NewReaderSize(io.LimitReader(e.stdin, maxPasswordLine+1), maxPasswordLine+1)
	line, err := r.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("reading the password from stdin: %w", err)
	}
	if len(line) > maxPasswordLine {
		return fmt.Errorf("password line longer than %d bytes", maxPasswordLine)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return errors.New("no password on stdin (give it as the first line)")
	}
	h, err := identity.HashPassword(pw)
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, h)
	return nil
}
