package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kong"

	"github.com/clipgate/clipgate/internal/broker"
	"github.com/clipgate/clipgate/internal/cli"
	"github.com/clipgate/clipgate/internal/deviceid"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/natsauth"
	"github.com/clipgate/clipgate/internal/ops"
	"github.com/clipgate/clipgate/topics"
)

// spec is the command's description to the command-line plumbing.
var spec = cli.Spec{
	Name:        "broker",
	Description: "clipgate MQTT broker: device and service authentication, topic ACL, persistent sessions.",
	EnvPrefix:   "CLIPGATE",
	Vars: kong.Vars{
		"defaultAddr":             broker.DefaultAddr,
		"defaultTLSAddr":          broker.DefaultTLSAddr,
		"defaultHTTPAddr":         broker.DefaultHTTPAddr,
		"defaultRoot":             topics.DefaultRoot,
		"defaultPasswordWindow":   identity.DefaultPasswordWindow.String(),
		"defaultHandshakeTimeout": broker.DefaultHandshakeTimeout.String(),
		"defaultRevocationSweep":  broker.DefaultRevocationSweep.String(),
		"defaultMaxPacketSize":    strconv.Itoa(broker.DefaultMaxPacketSize),
		"defaultMaxWritesPending": strconv.Itoa(broker.DefaultMaxWritesPending),
		"defaultSessionExpiry":    broker.DefaultSessionExpiry.String(),
		"defaultMessageExpiry":    broker.DefaultMessageExpiry.String(),
		"defaultDeviceRate":       strconv.Itoa(broker.DefaultDeviceRate),
		"defaultDeviceBurst":      strconv.Itoa(broker.DefaultDeviceBurst),
		"defaultWorkerRouting":    broker.WorkerRoutingRoundRobin,
		"defaultNATSAccount":      natsauth.DefaultAccount,
		"defaultGroup":            topics.DefaultWorkerGroup,
		// Abuse limits (broker.LimitsConfig).
		"defaultPasswordCacheEntries": strconv.Itoa(broker.DefaultPasswordCacheEntries),
		"defaultFailureDelay":         broker.DefaultFailureDelay.String(),
		"defaultMaxFailureDelay":      broker.DefaultMaxFailureDelay.String(),
		"defaultBlockAfter":           strconv.Itoa(broker.DefaultBlockAfter),
		"defaultBlockFor":             broker.DefaultBlockFor.String(),
		"defaultBcryptPerSource":      strconv.Itoa(broker.DefaultBcryptPerSource),
		"defaultBcryptWait":           broker.DefaultBcryptWait.String(),
		"defaultClientConnectRate":    strconv.Itoa(broker.DefaultClientConnectRate),
		"defaultClientConnectBurst":   strconv.Itoa(broker.DefaultClientConnectBurst),
		"defaultSourceConnectRate":    strconv.Itoa(broker.DefaultSourceConnectRate),
		"defaultSourceConnectBurst":   strconv.Itoa(broker.DefaultSourceConnectBurst),
		"defaultMaxPendingPerSource":  strconv.Itoa(broker.DefaultMaxPendingPerSource),
		"defaultMaxSubscriptions":     strconv.Itoa(broker.DefaultMaxSubscriptions),
	},
}

// CLI is the command line of the broker; see package cli for how flags, variables and
// the configuration file set it.
type CLI struct {
	cli.Common

	Serve         serveCmd         `cmd:"" help:"Run the MQTT broker."`
	FleetKey      fleetKeyCmd      `cmd:"" name:"fleet-key" help:"Create a new fleet keyring file (mode 0600) for the token workers and provisioning."`
	RotateKey     rotateKeyCmd     `cmd:"" name:"rotate-key" help:"Add the next fleet key; the current one stays accepted until now+grace."`
	ConnectKeys   connectKeysCmd   `cmd:"" name:"connect-keys" help:"Write the broker's keyring (connect roots only) derived from the fleet keys."`
	DeviceKey     deviceKeyCmd     `cmd:"" name:"device-key" help:"Derive a device's key file (and optionally its current MQTT password) from the current fleet key."`
	NATSCallout   natsCalloutCmd   `cmd:"" name:"nats-callout" help:"Run the auth callout of a NATS cluster: the broker's login decisions and ACL for devices and services connecting to NATS."`
	NATSIssuer    natsIssuerCmd    `cmd:"" name:"nats-issuer" help:"Create the NATS auth callout's issuer (an account nkey seed) and print its public key."`
	HashPassword  hashPasswordCmd  `cmd:"" name:"hash-password" help:"Read a service account password from stdin and print its bcrypt hash for the service accounts file."`
	RevocationKey revocationKeyCmd `cmd:"" name:"revocation-key" help:"Create the console's revocation list signing key (FILE, mode 0600) and its public key (FILE.pub) for brokers, token workers and consumers."`
}

// env is what the commands' Run methods get.
type env struct {
	ctx context.Context
	io  cli.IO
	cli *cli.Context
}

// run is the command.
func run(ctx context.Context, io cli.IO, args []string) error {
	var c CLI
	kctx, err := cli.Parse(spec, &c, io, args)
	if err != nil {
		return err
	}
	return kctx.Kong.Run(&env{ctx: ctx, io: io, cli: kctx})
}

type serveCmd struct {
	cli.Ops
	Addr                 string        `help:"MQTT TCP listen address; \"none\" disables it." default:"${defaultAddr}"`
	TLSAddr              string        `name:"tls-addr" help:"MQTT over TLS listen address (default ${defaultTLSAddr} when --tls-cert is set)."`
	TLSCert              string        `name:"tls-cert" help:"TLS certificate chain (PEM); enables the TLS listener." type:"path" placeholder:"FILE"`
	TLSKey               string        `name:"tls-key" help:"TLS private key (PEM)." type:"path" placeholder:"FILE"`
	TLSClientCA          string        `name:"tls-client-ca" help:"CA certificates (PEM) for client certificates (mTLS); a certificate's CN must equal the client ID." type:"path" placeholder:"FILE"`
	TLSRequireClientCert bool          `name:"tls-require-client-cert" help:"Refuse TLS clients without a certificate."`
	HTTPAddr             string        `name:"http-addr" help:"HTTP address for /healthcheck, /sys and the EMQX endpoints; \"none\" disables it." default:"${defaultHTTPAddr}"`
	DataDir              string        `name:"data-dir" help:"Directory of the persistent session store." type:"path" placeholder:"DIR"`
	InMemory             bool          `name:"in-memory" help:"Run without a data dir: sessions and queued messages are lost on restart."`
	TopicRoot            string        `name:"topic-root" help:"Root of the topic scheme." default:"${defaultRoot}"`
	ConnectKeysFile      string        `name:"connect-keys-file" help:"Connect keys file (mode 0600, from \"broker connect-keys\"): device passwords are checked with it; it opens no sealed reply." type:"path" placeholder:"FILE"`
	ServiceAccountsFile  string        `name:"service-accounts-file" help:"Service accounts file (YAML, bcrypt hashes)." type:"path" placeholder:"FILE"`
	RevocationsFile      string        `name:"revocations-file" help:"Revocation list file (one device ID a line), watched for changes." type:"path" placeholder:"FILE"`
	RevocationsKeyFile   string        `name:"revocations-key-file" help:"The console's revocation list public key (FILE.pub of 'broker revocation-key'): follow the signed list it publishes on the revocation topic instead of a file." type:"path" placeholder:"FILE"`
	PasswordWindow       time.Duration `name:"password-window" help:"Accepted clock difference of device passwords made without the server time (synced ones: 5 minutes)." default:"${defaultPasswordWindow}"`
	HandshakeTimeout     time.Duration `name:"handshake-timeout" help:"Time a new connection has for its TLS handshake and CONNECT packet." default:"${defaultHandshakeTimeout}"`
	RevocationSweep      time.Duration `name:"revocation-sweep" help:"How often connected devices are checked against the revocation list." default:"${defaultRevocationSweep}"`
	MaxPacketSize        uint32        `name:"max-packet-size" help:"Largest MQTT packet accepted, bytes." default:"${defaultMaxPacketSize}"`
	MaxWritesPending     int32         `name:"max-writes-pending" help:"Outbound queue per client; messages beyond it are dropped and counted." default:"${defaultMaxWritesPending}"`
	SessionExpiry        time.Duration `name:"session-expiry" help:"How long disconnected persistent sessions are kept." default:"${defaultSessionExpiry}"`
	MessageExpiry        time.Duration `name:"message-expiry" help:"How long queued and retained messages are kept." default:"${defaultMessageExpiry}"`
	DeviceRate           float64       `name:"device-rate" help:"Publishes per second per device (negative: unlimited): QoS 0 floods beyond it disconnect, QoS 1 publishes are paced. A device publishes one event per clip, so this caps it at about as many uploads a second; raise it for devices that upload many small files." default:"${defaultDeviceRate}"`
	DeviceBurst          int           `name:"device-burst" help:"Burst of the device publish rate." default:"${defaultDeviceBurst}"`
	ServiceRate          float64       `name:"service-rate" help:"Publishes per second per service client (0: unlimited)." default:"0"`
	ServiceBurst         int           `name:"service-burst" help:"Burst of the service publish rate (0: the rate, at least 1)." default:"0"`
	WorkerRouting        string        `name:"worker-routing" enum:"round-robin,device" help:"How auth requests pick a token worker: round-robin (connected workers take turns) or device (a device's requests always go to the same connected worker, so its cached credentials and rate limit are per device)." default:"${defaultWorkerRouting}"`
	EMQX                 bool          `name:"emqx" help:"Serve POST /emqx/authn and /emqx/authz (EMQX HTTP contract) on the HTTP address."`
	Limits               limitFlags    `embed:""`
	EMQXTokenFile        string        `name:"emqx-token-file" help:"File holding the bearer token the EMQX requests must carry (none: no token required)." type:"path" placeholder:"FILE" secret:""`
}

// limitFlags are the abuse limits (broker.LimitsConfig). A negative value turns a limit
// off (not for --password-cache-entries).
type limitFlags struct {
	PasswordCacheEntries int           `name:"password-cache-entries" help:"Device passwords remembered against replay (each of wide and synced ones); when full, device logins are refused as busy." default:"${defaultPasswordCacheEntries}"`
	FailureDelay         time.Duration `name:"login-failure-delay" help:"How long the answer to a failed login is held back, doubled per further failure of its source address or service username." default:"${defaultFailureDelay}"`
	MaxFailureDelay      time.Duration `name:"login-max-failure-delay" help:"Longest hold-back of a failed login." default:"${defaultMaxFailureDelay}"`
	BlockAfter           int           `name:"login-block-after" help:"Failed logins in a row after which a source address or service username is blocked." default:"${defaultBlockAfter}"`
	BlockFor             time.Duration `name:"login-block-for" help:"How long a block lasts; a key without failures that long starts from zero." default:"${defaultBlockFor}"`
	BcryptConcurrency    int           `name:"bcrypt-concurrency" help:"Service account password checks (bcrypt) at once; 0: half the CPUs." default:"0"`
	BcryptPerSource      int           `name:"bcrypt-per-source" help:"Password checks at once for one source address." default:"${defaultBcryptPerSource}"`
	BcryptWait           time.Duration `name:"bcrypt-wait" help:"How long a service login may wait for a password check before it is refused as busy." default:"${defaultBcryptWait}"`
	ClientConnectRate    float64       `name:"client-connect-rate" help:"Connections a minute per client ID." default:"${defaultClientConnectRate}"`
	ClientConnectBurst   int           `name:"client-connect-burst" help:"Burst of connections per client ID." default:"${defaultClientConnectBurst}"`
	SourceConnectRate    float64       `name:"source-connect-rate" help:"Connections a second per source address." default:"${defaultSourceConnectRate}"`
	SourceConnectBurst   int           `name:"source-connect-burst" help:"Burst of connections per source address." default:"${defaultSourceConnectBurst}"`
	MaxPendingPerSource  int           `name:"max-pending-per-source" help:"Sockets per source address not yet answered a CONNACK (TLS handshake, before CONNECT)." default:"${defaultMaxPendingPerSource}"`
	MaxSubscriptions     int           `name:"max-subscriptions" help:"Subscriptions per client." default:"${defaultMaxSubscriptions}"`
}

func (l *limitFlags) config() broker.LimitsConfig {
	return broker.LimitsConfig{
		PasswordCacheEntries: l.PasswordCacheEntries,
		FailureDelay:         l.FailureDelay,
		MaxFailureDelay:      l.MaxFailureDelay,
		BlockAfter:           l.BlockAfter,
		BlockFor:             l.BlockFor,
		BcryptConcurrency:    l.BcryptConcurrency,
		BcryptPerSource:      l.BcryptPerSource,
		BcryptWait:           l.BcryptWait,
		ClientConnectRate:    l.ClientConnectRate,
		ClientConnectBurst:   l.ClientConnectBurst,
		SourceConnectRate:    l.SourceConnectRate,
		SourceConnectBurst:   l.SourceConnectBurst,
		MaxPendingPerSource:  l.MaxPendingPerSource,
		MaxSubscriptions:     l.MaxSubscriptions,
	}
}

// config builds the broker configuration.
func (s *serveCmd) config(ctx *cli.Context) (broker.Config, error) {
	token, err := ctx.Secret("emqx-token-file", "EMQX bearer token", false)
	if err != nil {
		return broker.Config{}, err
	}
	cfg := broker.Config{
		Addr: s.Addr,
		TLS: broker.TLSConfig{Addr: s.TLSAddr, CertFile: s.TLSCert, KeyFile: s.TLSKey, ClientCAFile: s.TLSClientCA,
			RequireClientCert: s.TLSRequireClientCert},
		HTTPAddr:            s.HTTPAddr,
		DataDir:             s.DataDir,
		TopicRoot:           s.TopicRoot,
		ConnectKeysFile:     s.ConnectKeysFile,
		ServiceAccountsFile: s.ServiceAccountsFile,
		RevocationsFile:     s.RevocationsFile,
		RevocationsKeyFile:  s.RevocationsKeyFile,
		PasswordWindow:      s.PasswordWindow,
		HandshakeTimeout:    s.HandshakeTimeout,
		RevocationSweep:     s.RevocationSweep,
		MaxPacketSize:       s.MaxPacketSize,
		MaxWritesPending:    s.MaxWritesPending,
		SessionExpiry:       s.SessionExpiry,
		MessageExpiry:       s.MessageExpiry,
		DeviceRate:          s.DeviceRate,
		DeviceBurst:         s.DeviceBurst,
		ServiceRate:         s.ServiceRate,
		ServiceBurst:        s.ServiceBurst,
		WorkerRouting:       s.WorkerRouting,
		Limits:              s.Limits.config(),
		EMQX:                broker.EMQXConfig{Enabled: s.EMQX, Token: token},
	}
	if s.InMemory {
		cfg.DataDir = ""
	} else if cfg.DataDir == "" {
		return cfg, errors.New("no data dir: set --data-dir, or --in-memory to keep sessions in memory only")
	}
	return cfg, nil
}

func (s *serveCmd) Run(e *env) error {
	cfg, err := s.config(e.cli)
	if err != nil {
		return cli.Usage(err)
	}
	log := e.cli.Logger()
	cfg.Logger = &log

	b, err := broker.New(cfg)
	if err != nil {
		return cli.Usage(err)
	}
	if err := b.Start(); err != nil {
		return err
	}
	reg := ops.NewRegistry("broker")
	reg.MustRegister(b.Collector())
	opsSrv, err := ops.Serve(s.MetricsAddr, "broker", reg, b.ReadyCheck())
	if err != nil {
		return errors.Join(cli.Usage(fmt.Errorf("--metrics-addr: %w", err)), b.Close())
	}
	if opsSrv != nil {
		log.Info().Str("addr", opsSrv.Addr()).Msg("serving /metrics, /healthz and /readyz")
	}
	<-e.ctx.Done()
	log.Info().Msg("shutting down")
	return errors.Join(opsSrv.Close(), b.Close())
}

type fleetKeyCmd struct {
	Path  string `arg:"" help:"Where to write the new fleet keyring." placeholder:"FILE"`
	Force bool   `help:"Replace an existing file (every device key derived from the old keys stops working)."`
}

func (c *fleetKeyCmd) Run(e *env) error {
	if !c.Force {
		if _, err := os.Lstat(c.Path); err == nil {
			return fmt.Errorf("%s exists; refusing to replace the fleet keys (use rotate-key, or --force)", c.Path)
		}
	}
	ring, err := identity.NewFleetKeyring()
	if err != nil {
		return err
	}
	if err := identity.WriteKeyring(c.Path, ring); err != nil {
		return err
	}
	fmt.Fprintf(e.io.Stdout, "wrote fleet keys %s (mode 0600), current key %s; now run: broker connect-keys --fleet-keys-file %s CONNECT_KEYS_FILE\n",
		c.Path, ring.CurrentID(), c.Path)
	return nil
}

// fleetKeysFlag is the fleet keyring every provisioning command reads.
type fleetKeysFlag struct {
	FleetKeysFile string `name:"fleet-keys-file" required:"" help:"Fleet keyring file (mode 0600); device keys are derived from it." type:"path" placeholder:"FILE"`
}

func (f fleetKeysFlag) load() (*identity.Keyring, error) {
	ring, err := identity.LoadKeyring(f.FleetKeysFile)
	if err != nil {
		return nil, cli.Usage(fmt.Errorf("--fleet-keys-file: %w", err))
	}
	return ring, nil
}

type rotateKeyCmd struct {
	fleetKeysFlag
	Grace           time.Duration `help:"How long the replaced key stays accepted: every device must ask for credentials within it to receive its new key." default:"720h"`
	ConnectKeysFile string        `name:"connect-keys-file" help:"Also rewrite the broker's connect keys file." type:"path" placeholder:"FILE"`
}

func (c *rotateKeyCmd) Run(e *env) error {
	ring, err := c.load()
	if err != nil {
		return err
	}
	if c.Grace < time.Minute {
		return cli.Usage(fmt.Errorf("--grace %v: at least 1m", c.Grace))
	}
	now := time.Now()
	keys, err := ring.Rotate(now, c.Grace)
	if err != nil {
		return err
	}
	if err := ring.Set(keys); err != nil {
		return err
	}
	if err := identity.WriteKeyring(c.FleetKeysFile, ring); err != nil {
		return err
	}
	if c.ConnectKeysFile != "" {
		if err := identity.WriteKeyring(c.ConnectKeysFile, ring.ConnectRoots()); err != nil {
			return err
		}
	}
	fmt.Fprintf(e.io.Stdout, "new current key %s; %s is accepted until %s. Restart the broker (with the new connect keys) first, then the token workers.\n",
		ring.CurrentID(), keys[1].ID, keys[1].Until.UTC().Format(time.RFC3339))
	return nil
}

type connectKeysCmd struct {
	fleetKeysFlag
	Path string `arg:"" help:"Where to write the broker's connect keys." placeholder:"FILE"`
}

func (c *connectKeysCmd) Run(e *env) error {
	ring, err := c.load()
	if err != nil {
		return err
	}
	if err := identity.WriteKeyring(c.Path, ring.ConnectRoots()); err != nil {
		return err
	}
	fmt.Fprintf(e.io.Stdout, "wrote connect keys %s (mode 0600) for the broker\n", c.Path)
	return nil
}

type deviceKeyCmd struct {
	fleetKeysFlag
	DeviceID string `arg:"" name:"DEVICE_ID" help:"Device ID (2 to 64 characters of [A-Za-z0-9_-]; '.' only with --allow-dot)."`
	Out      string `help:"Write the device key file to this path (0600) instead of printing it." placeholder:"FILE"`
	Password bool   `help:"Print a fresh MQTT password of the device instead of its key (for mosquitto_pub and the like; the broker accepts it for one connection)."`
	AllowDot bool   `name:"allow-dot" help:"Accept a device ID with '.', for fleets on the mochi broker only (a NATS cluster refuses it)."`
}

func (c *deviceKeyCmd) Run(e *env) error {
	validate := deviceid.ValidatePortable
	if c.AllowDot {
		validate = deviceid.Validate
	}
	if err := validate(c.DeviceID); err != nil {
		return cli.Usage(err)
	}
	ring, err := c.load()
	if err != nil {
		return err
	}
	key, err := identity.NewDeviceKey(ring, c.DeviceID)
	if err != nil {
		return err
	}
	switch {
	case c.Password:
		fmt.Fprintln(e.io.Stdout, key.Password(time.Now()))
	case c.Out != "":
		if err := identity.WriteDeviceKey(c.Out, key); err != nil {
			return err
		}
		fmt.Fprintf(e.io.Stdout, "wrote device key of %s to %s (mode 0600)\n", c.DeviceID, c.Out)
	default:
		text, err := key.MarshalText()
		if err != nil {
			return err
		}
		e.io.Stdout.Write(text)
	}
	return nil
}

type revocationKeyCmd struct {
	Path  string `arg:"" help:"Where to write the signing key; the public key goes to PATH.pub." placeholder:"FILE"`
	Force bool   `help:"Replace existing files (followers then need the new public key)."`
}

func (c *revocationKeyCmd) Run(e *env) error {
	if !c.Force {
		for _, p := range []string{c.Path, c.Path + ".pub"} {
			if _, err := os.Lstat(p); err == nil {
				return fmt.Errorf("%s exists; refusing to replace a revocation key (use --force)", p)
			}
		}
	}
	seed, err := identity.NewRevocationKey()
	if err != nil {
		return err
	}
	pub, err := identity.RevocationPublicKey(seed)
	if err != nil {
		return err
	}
	if err := identity.WriteKey(c.Path, seed); err != nil {
		return err
	}
	if err := os.WriteFile(c.Path+".pub", []byte(base64.StdEncoding.EncodeToString(pub)+"\n"), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(e.io.Stdout, "wrote revocation signing key %s (mode 0600) and public key %s.pub\n", c.Path, c.Path)
	return nil
}

type hashPasswordCmd struct{}

// maxPasswordLine bounds what hash-password reads.
const maxPasswordLine = 1024

func (c *hashPasswordCmd) Run(e *env) error {
	r := bufio.NewReaderSize(io.LimitReader(e.io.Stdin, maxPasswordLine+1), maxPasswordLine+1)
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
	fmt.Fprintln(e.io.Stdout, h)
	return nil
}
