package main

import (
	"crypto/ed25519"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/clipgate/clipgate/internal/broker"
	"github.com/clipgate/clipgate/internal/cli"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/mqttclient"
	"github.com/clipgate/clipgate/internal/natsauth"
	"github.com/clipgate/clipgate/internal/ops"
	"github.com/clipgate/clipgate/topics"
)

// natsCalloutCmd runs the NATS auth-callout service: the broker's decisions for a NATS
// cluster (see internal/natsauth and deploy/nats).
type natsCalloutCmd struct {
	cli.Ops
	NATS                []string      `name:"nats" required:"" placeholder:"URL" help:"NATS cluster URLs (nats://, tls://; repeat or comma-separate)."`
	NATSCA              string        `name:"nats-ca" help:"PEM file of CAs to trust for tls:// URLs (default: system roots)." type:"path" placeholder:"FILE"`
	CalloutUser         string        `name:"callout-user" default:"callout" help:"The callout's own user (auth_callout auth_users, account AUTH)."`
	CalloutPasswordFile string        `name:"callout-password-file" help:"File holding the callout user's password." type:"path" placeholder:"FILE" secret:""`
	SysUser             string        `name:"sys-user" default:"sys" help:"A system-account user, to kick revoked devices (empty: refuse at connect only)."`
	SysPasswordFile     string        `name:"sys-password-file" help:"File holding the system user's password." type:"path" placeholder:"FILE" secret:""`
	IssuerSeedFile      string        `name:"issuer-seed-file" required:"" help:"Account nkey seed (broker nats-issuer) whose public key is the auth_callout issuer." type:"path" placeholder:"FILE"`
	Account             string        `default:"${defaultNATSAccount}" help:"Account the clients are placed in."`
	Instances           int           `default:"2" help:"Callout instances in this process (run further processes for redundancy: they share one queue group)."`
	TopicRoot           string        `name:"topic-root" help:"Root of the topic scheme." default:"${defaultRoot}"`
	WorkerGroup         string        `name:"worker-group" help:"The token workers' queue group." default:"${defaultGroup}"`
	ConnectKeysFile     string        `name:"connect-keys-file" required:"" help:"Connect keys file (mode 0600, from \"broker connect-keys\"): device passwords are checked with it; it opens no sealed reply." type:"path" placeholder:"FILE"`
	ServiceAccountsFile string        `name:"service-accounts-file" help:"Service accounts file (YAML, bcrypt hashes)." type:"path" placeholder:"FILE"`
	RevocationsFile     string        `name:"revocations-file" help:"Revocation list file (one device ID a line), watched; revoked devices are refused and kicked." type:"path" placeholder:"FILE"`
	RevocationsKeyFile  string        `name:"revocations-key-file" help:"The console's revocation list public key (FILE.pub of 'broker revocation-key'): follow the signed list it publishes, retained, on the revocation topic instead of a file." type:"path" placeholder:"FILE"`
	PasswordWindow      time.Duration `name:"password-window" help:"Accepted clock difference of device passwords." default:"${defaultPasswordWindow}"`
	RevocationSweep     time.Duration `name:"revocation-sweep" help:"How often admitted devices are checked against the revocation list." default:"1s"`
	JWTExpiry           time.Duration `name:"jwt-expiry" help:"Lifetime of the user JWTs issued (0: the connection's)." default:"0s"`
}

func (c *natsCalloutCmd) Run(e *env) error {
	if c.Instances < 1 || c.Instances > 64 {
		return cli.Usagef("--instances %d: want 1 to 64", c.Instances)
	}
	calloutPW, err := e.cli.Secret("callout-password-file", "callout user password", true)
	if err != nil {
		return err
	}
	sysPW, err := e.cli.Secret("sys-password-file", "system user password", c.SysUser != "")
	if err != nil {
		return err
	}
	seed, err := os.ReadFile(c.IssuerSeedFile)
	if err != nil {
		return cli.Usage(fmt.Errorf("--issuer-seed-file: %w", err))
	}
	seed = []byte(strings.TrimSpace(string(seed)))
	scheme, err := topics.New(c.TopicRoot)
	if err != nil {
		return cli.Usage(fmt.Errorf("--topic-root: %w", err))
	}
	urls := splitURLs(c.NATS)
	log := e.cli.Logger()
	rev := identity.NewRevocations()
	var revKey ed25519.PublicKey
	if c.RevocationsKeyFile != "" {
		if c.RevocationsFile != "" {
			return cli.Usagef("--revocations-file and --revocations-key-file: choose one way to receive the revocation list")
		}
		if revKey, err = identity.LoadRevocationPublicKey(c.RevocationsKeyFile); err != nil {
			return cli.Usage(err)
		}
	}
	if c.RevocationsFile != "" {
		if rev, err = identity.LoadRevocations(c.RevocationsFile); err != nil {
			return cli.Usage(err)
		}
		go func() {
			if err := rev.Watch(e.ctx, c.RevocationsFile, func(err error) { log.Error().Err(err).Msg("revocation list") }); err != nil {
				log.Error().Err(err).Msg("revocation list is not watched; changes need a restart")
			}
		}()
	}
	// The broker is never started: it makes the same decisions as a running one.
	b, err := broker.New(broker.Config{
		HTTPAddr: "none", TopicRoot: scheme.Root(), ConnectKeysFile: c.ConnectKeysFile,
		ServiceAccountsFile: c.ServiceAccountsFile, Revocations: rev, PasswordWindow: c.PasswordWindow, Logger: &log,
	})
	if err != nil {
		return cli.Usage(err)
	}
	cfg := natsauth.Config{
		URLs: urls, Username: c.CalloutUser, Password: calloutPW, SysUsername: c.SysUser, SysPassword: sysPW,
		IssuerSeed: seed, Account: c.Account, WorkerGroup: c.WorkerGroup, Topics: scheme, Broker: b,
		Sweep: c.RevocationSweep, JWTExpiry: c.JWTExpiry, Logger: log, RevocationsKey: revKey, Revocations: rev,
	}
	if c.NATSCA != "" {
		if cfg.TLS, err = (mqttclient.TLSFiles{CAFile: c.NATSCA}).Load(); err != nil {
			return cli.Usage(fmt.Errorf("--nats-ca: %w", err))
		}
	}
	metrics := natsauth.NewMetrics()
	cfg.Metrics = metrics
	var services []*natsauth.Service
	defer func() {
		for _, s := range services {
			s.Close()
		}
	}()
	host, _ := os.Hostname()
	for i := range c.Instances {
		cfg.Name = "callout:" + host + "-" + strconv.Itoa(os.Getpid()) + "-" + strconv.Itoa(i+1)
		s, err := natsauth.New(cfg)
		if err != nil {
			return cli.Usage(err)
		}
		if err := s.Start(e.ctx); err != nil {
			return err
		}
		services = append(services, s)
	}
	reg := ops.NewRegistry("broker")
	reg.MustRegister(metrics)
	opsSrv, err := ops.Serve(c.MetricsAddr, "broker", reg, metrics.ReadyCheck())
	if err != nil {
		return cli.Usage(fmt.Errorf("--metrics-addr: %w", err))
	}
	defer opsSrv.Close()
	log.Info().Int("instances", c.Instances).Strs("nats", urls).Str("metrics", opsSrv.Addr()).Msg("NATS auth callout running")
	<-e.ctx.Done()
	log.Info().Msg("shutting down")
	return nil
}

// splitURLs accepts repeated and comma-separated URLs.
func splitURLs(in []string) []string {
	var out []string
	for _, s := range in {
		for _, u := range strings.Split(s, ",") {
			if u = strings.TrimSpace(u); u != "" {
				out = append(out, u)
			}
		}
	}
	return out
}

// natsIssuerCmd creates the callout's issuer: an account nkey seed.
type natsIssuerCmd struct {
	Path  string `arg:"" help:"Where to write the new account seed (mode 0600)." placeholder:"FILE"`
	Force bool   `help:"Replace an existing file (the cluster's auth_callout issuer must then change too)."`
}

func (c *natsIssuerCmd) Run(e *env) error {
	if !c.Force {
		if _, err := os.Lstat(c.Path); err == nil {
			return fmt.Errorf("%s exists; refusing to replace the issuer seed (use --force)", c.Path)
		}
	}
	kp, err := nkeys.CreateAccount()
	if err != nil {
		return err
	}
	seed, _ := kp.Seed()
	pub, _ := kp.PublicKey()
	if err := os.WriteFile(c.Path, append(seed, '\n'), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(e.io.Stdout, "wrote issuer seed %s (mode 0600); auth_callout issuer: %s\n", c.Path, pub)
	return nil
}
