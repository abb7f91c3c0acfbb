// Package devstack is the logic of cmd/devstack: the whole of clipgate (local cloud,
// broker, token workers) in one process on fixed loopback ports, with development keys
// kept in a state directory, and a demo that runs simulated cameras and a consumer
// against it.
//
// The state directory (default ".devstack", mode 0700) holds what a restart reuses:
//
//	fleet.keys             the token workers' fleet keys (device keys derive from them)
//	connect.keys           the broker's connect roots (derived from fleet.keys)
//	keys.json              local cloud access keys and service account passwords (0600)
//	service-accounts.yaml  the broker's accounts (bcrypt), rewritten at every start
//	localcloud/            objects, multipart state, the STS token key
//	broker/                persistent MQTT sessions
//	devices/ID.key         the device key of the configured device
//	devices/ID/            that device's state (checkpoints, outbox)
//	device.yaml            the device's configuration, for cmd/device
//	console.db             the operator console's index (SQLite)
//	console-password       the console's operator password
//	revoked.txt            the revocation list the console writes
package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/rs/zerolog"
	"golang.org/x/crypto/bcrypt"

	"github.com/clipgate/clipgate/internal/broker"
	"github.com/clipgate/clipgate/internal/console"
	"github.com/clipgate/clipgate/internal/deviceconfig"
	"github.com/clipgate/clipgate/internal/deviceid"
	"github.com/clipgate/clipgate/internal/identity"
	"github.com/clipgate/clipgate/internal/inproc"
	"github.com/clipgate/clipgate/topics"
)

// Default listen addresses and settings of the development stack: the same ports as
// cmd/broker and cmd/localcloud, so clients configured for either work with both.
const (
	DefaultDir      = ".devstack"
	DefaultMQTTAddr = broker.DefaultAddr     // 127.0.0.1:1883
	DefaultHTTPAddr = broker.DefaultHTTPAddr // 127.0.0.1:18830
	DefaultOSSAddr  = "127.0.0.1:9100"
	DefaultSTSAddr  = "127.0.0.1:9101"
	// DefaultConsoleAddr is the operator console's, as cmd/console's.
	DefaultConsoleAddr = console.DefaultAddr // 127.0.0.1:8080
	DefaultDeviceID    = "cam-01"
	DefaultWorkers     = 2
	// DeviceFileName is the device configuration written into the state directory.
	DeviceFileName = "device.yaml"
)

// Config configures Start. Empty fields take the defaults above.
type Config struct {
	Dir                                  string // state directory
	MQTTAddr, HTTPAddr, OSSAddr, STSAddr string // listen addresses
	ConsoleAddr                          string // the operator console's
	Bucket, Prefix                       string // default clipgatetest's: "clips", "clips/"
	DeviceID                             string // the device written to device.yaml
	Workers                              int    // token workers
	// Engine is inproc.EngineMochi (default) or inproc.EngineNATS: a 3-node NATS
	// JetStream cluster in the process (random loopback ports; MQTTAddr and HTTPAddr
	// unused), with the auth callout, the workers as a queue group and the console on a
	// JetStream durable consumer.
	Engine string
	// BcryptCost is the cost of the service account hashes; 0 means bcrypt.DefaultCost
	// (10), as in production (issue 12.6). Tests lower it to bcrypt.MinCost: under the
	// race detector on a loaded machine a cost-10 login outlasts the clients' timeouts.
	BcryptCost int
	Logger     zerolog.Logger
}

// bcryptCost is the cost the stack hashes its service accounts with.
func (c *Config) bcryptCost() int {
	if c.BcryptCost == 0 {
		return bcrypt.DefaultCost
	}
	return c.BcryptCost
}

// Devstack is a running development stack.
type Devstack struct {
	Stack *inproc.Stack
	// Dir is the absolute state directory.
	Dir string
	// Device is what was written to DeviceFilePath, in the format cmd/device reads.
	Device         deviceconfig.File
	DeviceFilePath string
	// Console is the operator console, indexing the stack's uploads.
	Console *Console
}

// applyDefaults fills in the empty addresses, directory, device ID and worker count.
func (c *Config) applyDefaults() {
	set := func(p *string, def string) {
		if *p == "" {
			*p = def
		}
	}
	set(&c.Dir, DefaultDir)
	set(&c.MQTTAddr, DefaultMQTTAddr)
	set(&c.HTTPAddr, DefaultHTTPAddr)
	set(&c.OSSAddr, DefaultOSSAddr)
	set(&c.STSAddr, DefaultSTSAddr)
	set(&c.ConsoleAddr, DefaultConsoleAddr)
	set(&c.DeviceID, DefaultDeviceID)
	if c.Workers == 0 {
		c.Workers = DefaultWorkers
	}
}

// validate checks c after applyDefaults.
func (c *Config) validate() error {
	if c.Workers < 1 {
		return fmt.Errorf("devstack: workers %d: at least 1", c.Workers)
	}
	if err := deviceid.Validate(c.DeviceID); err != nil {
		return fmt.Errorf("devstack: device ID: %w", err)
	}
	return nil
}

// Start starts the stack on cfg's addresses with its state in cfg.Dir (created 0700),
// reusing the keys, passwords, objects and sessions of an earlier run, and writes the
// device's key file and device.yaml.
func Start(ctx context.Context, cfg Config) (*Devstack, error) {
	cfg.applyDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("devstack: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("devstack: state directory: %w", err)
	}
	if st, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("devstack: state directory: %w", err)
	} else if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("devstack: state directory %s holds keys but is accessible by others (mode %v); chmod 700 it", dir, st.Mode().Perm())
	}
	s, err := inproc.Start(ctx, inproc.Options{
		Dir:      dir,
		Workers:  cfg.Workers,
		Bucket:   cfg.Bucket,
		Prefix:   cfg.Prefix,
		MQTTAddr: cfg.MQTTAddr, HTTPAddr: cfg.HTTPAddr, OSSAddr: cfg.OSSAddr, STSAddr: cfg.STSAddr,
		Engine:       cfg.Engine,
		Logger:       cfg.Logger,
		BrokerConfig: func(b *broker.Config) { b.DataDir = filepath.Join(dir, "broker") },
		BcryptCost:   cfg.bcryptCost(),
	})
	if err != nil {
		return nil, err
	}
	d := &Devstack{Stack: s, Dir: dir, DeviceFilePath: filepath.Join(dir, DeviceFileName)}
	if err := d.writeDevice(cfg.DeviceID); err != nil {
		_ = s.Close()
		return nil, err
	}
	if d.Console, err = startConsole(ctx, s, dir, cfg.ConsoleAddr, cfg.Logger); err != nil {
		_ = s.Close()
		return nil, err
	}
	return d, nil
}

// writeDevice writes the device key file and device.yaml.
func (d *Devstack) writeDevice(id string) error {
	dc := d.Stack.DeviceConfig(id)
	keyPath := filepath.Join(d.Dir, "devices", id+".key")
	if err := os.MkdirAll(filepath.Dir(keyPath), 0o700); err != nil {
		return fmt.Errorf("devstack: %w", err)
	}
	if err := identity.WriteDeviceKey(keyPath, (*identity.DeviceKey)(dc.DeviceKey)); err != nil {
		return fmt.Errorf("devstack: %w", err)
	}
	d.Device = deviceconfig.File{
		Broker:        dc.BrokerURL,
		Failover:      dc.FailoverURLs,
		DeviceID:      id,
		DeviceKeyFile: keyPath,
		StateDir:      dc.StateDir,
		TopicRoot:     dc.Topics.Root(),
	}
	if err := deviceconfig.Write(d.DeviceFilePath, d.Device); err != nil {
		return fmt.Errorf("devstack: %w", err)
	}
	return nil
}

// Close stops the console and the stack. The state directory stays for the next run.
func (d *Devstack) Close() error {
	var err error
	if d.Console != nil {
		err = d.Console.Close()
	}
	return errors.Join(err, d.Stack.Close())
}

// PrintBanner writes what runs and how to use it.
func (d *Devstack) PrintBanner(w io.Writer) error {
	s := d.Stack
	var b strings.Builder
	line := func(k, format string, args ...any) { fmt.Fprintf(&b, "  %-17s %s\n", k, fmt.Sprintf(format, args...)) }
	fmt.Fprintf(&b, "clipgate devstack is running (Ctrl-C to stop); state in %s\n", d.Dir)
	if d.Console != nil {
		line("console", "%s   (log in as %s, password %s)", d.Console.URL(), console.DefaultAdminName, d.Console.Password)
	}
	line("MQTT broker", "%s", strings.Join(s.BrokerURLs(), " "))
	if c := s.Cluster(); c != nil {
		line("NATS cluster", "%s", strings.Join(c.ClientURLs(), " "))
	}
	if h := s.BrokerHTTPAddr(); h != "" {
		line("broker health", "http://%s/healthcheck   statistics: http://%s/sys", h, h)
	}
	line("OSS endpoint", "%s   (path-style; region %s)", s.OSSEndpoint(), s.Region())
	line("bucket / prefix", "%s / %q   (objects: %s{device}/yyyy/mm/dd/{clip})", s.Bucket(), s.Prefix(), s.Prefix())
	id, secret := s.AdminKey()
	line("OSS admin key", "%s", id)
	line("OSS admin secret", "%s", secret)
	line("STS endpoint", "%s   (plain HTTP)", s.STSEndpoint())
	line("device role", "%s", s.RoleARN())
	line("token workers", "%d, group %q", s.Workers(), topics.DefaultWorkerGroup)
	for _, role := range []topics.Role{topics.RoleConsumer, topics.RoleAdmin, topics.RoleTokenWorker} {
		u, p := s.ServiceAccount(role)
		line("MQTT "+role.String(), "username %s  password %s", u, p)
	}
	line("fleet keys", "%s (token workers; the broker or NATS callout has %s)", s.FleetKeysFile(), s.ConnectKeysFile())
	line("device", "%s   key %s", d.Device.DeviceID, d.Device.DeviceKeyFile)
	line("device config", "%s", d.DeviceFilePath)
	b.WriteString("\nUpload a clip as the device:\n")
	fmt.Fprintf(&b, "  go run ./cmd/device --config %s upload CLIP.mp4\n", d.DeviceFilePath)
	b.WriteString("Watch the upload events (any MQTT client, e.g. mosquitto_sub):\n")
	u, p := s.ServiceAccount(topics.RoleConsumer)
	fmt.Fprintf(&b, "  mosquitto_sub -h %s -p %s -u %s -P %s -i %s:sub -q 1 -t '%s'\n",
		hostOf(s.BrokerURL()), portOf(s.BrokerURL()), u, p, u, s.Topics().EventFilter(""))
	_, err := io.WriteString(w, b.String())
	return err
}

func hostOf(url string) string {
	hp := strings.TrimPrefix(url, "tcp://")
	if i := strings.LastIndexByte(hp, ':'); i >= 0 {
		return hp[:i]
	}
	return hp
}

func portOf(url string) string {
	if i := strings.LastIndexByte(url, ':'); i >= 0 {
		return url[i+1:]
	}
	return ""
}

// Run starts the stack, prints the banner to stdout and serves until ctx is done.
func Run(ctx context.Context, cfg Config, stdout io.Writer) error {
	d, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	if err := d.PrintBanner(stdout); err != nil {
		return errors.Join(err, d.Close())
	}
	<-ctx.Done()
	fmt.Fprintln(stdout, "devstack: stopping")
	return d.Close()
}
