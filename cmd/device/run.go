package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/bytesize"
	"github.com/clipgate/clipgate/internal/cli"
	"github.com/clipgate/clipgate/internal/deviceconfig"
)

// DefaultConfigPath is the config file read when --config is not given, if it exists: the
// one devstack writes in the directory it runs in.
const DefaultConfigPath = ".devstack/device.yaml"

// CLI is the command line; see package cli for how flags, variables (CLIPGATE_DEVICE_*)
// and the configuration file set it. The device settings have no defaults here: devicekit
// applies them.
type CLI struct {
	cli.Common

	Broker             string                     `help:"MQTT broker URL (tcp://, ssl://, ws://, wss://)." placeholder:"URL"`
	Failover           []string                   `help:"Further broker nodes (a NATS cluster's MQTT gateways), tried after --broker in order." placeholder:"URL"`
	DeviceID           string                     `name:"device-id" help:"Device ID." placeholder:"ID"`
	DeviceKeyFile      string                     `help:"Device key file (mode 0600)." type:"path" placeholder:"FILE"`
	StateDir           string                     `help:"State directory (upload checkpoints, event outbox); one command of the device at a time holds it." type:"path" placeholder:"DIR"`
	TopicRoot          string                     `help:"Topic root (default clipgate/v1)."`
	Mode               string                     `help:"Access asked for: letters of r, w, a (default w)."`
	MultipartThreshold bytesize.Size              `help:"Size from which files go in parts, resumably: bytes or a size such as 8MiB or 500KB (default 8 MiB)." placeholder:"SIZE"`
	PartSize           bytesize.Size              `help:"Multipart part size: bytes or a size such as 1MiB (default 1 MiB)." placeholder:"SIZE"`
	UploadRate         bytesize.Size              `help:"Cap on upload bytes per second, all uploads together: a size such as 1MiB (default 0: no cap)." placeholder:"SIZE"`
	UploadRateAt       []deviceconfig.RateProfile `help:"Daily exceptions to --upload-rate, local time, the first matching wins: HH:MM-HH:MM=SIZE (0: no cap), comma-separated or repeated, e.g. 22:00-06:00=0." placeholder:"WINDOW=SIZE"`
	TLSCAFile          string                     `name:"tls-ca-file" help:"PEM CAs to trust for a TLS broker." type:"path" placeholder:"FILE"`
	TLSCertFile        string                     `name:"tls-cert-file" help:"PEM client certificate." type:"path" placeholder:"FILE"`
	TLSKeyFile         string                     `name:"tls-key-file" help:"PEM client key (mode 0600)." type:"path" placeholder:"FILE"`
	TLSServerName      string                     `name:"tls-server-name" help:"Name to check in the broker's certificate."`

	Timeout time.Duration `help:"How long to wait for the broker connection and for credentials." default:"30s"`

	Upload      uploadCmd      `cmd:"" help:"Upload files as clips and announce each with an upload event. While device watch runs for the device (same state directory), the files are handed to its spool and it uploads them."`
	Credentials credentialsCmd `cmd:"" help:"Get the device's OSS credentials and show their scope and expiry (not while another process of the device runs: it would be disconnected)."`
	Watch       watchCmd       `cmd:"" help:"Upload the clips a recorder writes into a spool directory, until interrupted; each uploaded clip is deleted (--after remove, the default) or moved aside (--after move)."`
}

// Main is the program, apart from main() so that tests run it in-process.
type Main struct {
	Stdout, Stderr io.Writer
	// Getenv looks up environment variables; default os.LookupEnv.
	Getenv func(string) (string, bool)
	// WorkDir is where DefaultConfigPath is looked for; "" is the current directory.
	WorkDir string
	// IsTerminal tells whether w is a terminal (for the progress bar); default
	// cli.IsTerminal.
	IsTerminal func(w io.Writer) bool

	cli CLI
	ctx *cli.Context
	log zerolog.Logger

	// Test hooks (zero in production).
	drawAll    bool                    // draw the upload status line at every report
	onProgress func(sent, total int64) // told of every progress report of an upload
	onOpsAddr  func(addr string)       // told the --metrics-addr endpoint's address
}

// run is the command.
func run(ctx context.Context, io cli.IO, args []string) error {
	m := &Main{Stdout: io.Stdout, Stderr: io.Stderr, Getenv: io.Getenv}
	return m.run(ctx, args)
}

// spec is the command's description to the command-line plumbing.
func (m *Main) spec() cli.Spec {
	return cli.Spec{
		Name:          "device",
		Description:   "clipgate camera CLI: upload clips with short-lived, least-privilege OSS credentials.",
		EnvPrefix:     "CLIPGATE_DEVICE",
		DefaultConfig: filepath.Join(m.WorkDir, DefaultConfigPath),
		LogLevel:      "warn",
		LogFormat:     "console",
	}
}

// Run parses args (without the program name), runs the command and returns the exit status.
func (m *Main) Run(ctx context.Context, args []string) int {
	return cli.Exec(ctx, "device", func(ctx context.Context, _ cli.IO, args []string) error {
		return m.run(ctx, args)
	}, cli.IO{Stdout: m.Stdout, Stderr: m.Stderr, Getenv: m.Getenv}, args)
}

func (m *Main) run(ctx context.Context, args []string) error {
	cmd, err := m.parseFlags(args)
	if err != nil {
		return err
	}
	m.log = m.ctx.Logger()
	switch cmd, _, _ = strings.Cut(cmd, " "); cmd {
	case "upload":
		return m.upload(ctx)
	case "credentials":
		return m.credentials(ctx)
	case "watch":
		return m.watch(ctx)
	}
	return cli.Usagef("unknown command %q", cmd)
}

// parseFlags parses args into m.cli and returns the command; cli.ErrExited after --help.
func (m *Main) parseFlags(args []string) (string, error) {
	if m.IsTerminal == nil {
		m.IsTerminal = cli.IsTerminal
	}
	m.cli = CLI{}
	ctx, err := cli.Parse(m.spec(), &m.cli, cli.IO{Stdout: m.Stdout, Stderr: m.Stderr, Getenv: m.Getenv}, args)
	if err != nil {
		return "", err
	}
	m.ctx = ctx
	if m.cli.Timeout <= 0 {
		return "", cli.Usagef("--timeout %v: must be positive", m.cli.Timeout)
	}
	return ctx.Command(), nil
}

// deviceFile returns the device settings as a device configuration.
func (m *Main) deviceFile() deviceconfig.File {
	c := &m.cli
	f := deviceconfig.File{
		Broker: c.Broker, Failover: c.Failover, DeviceID: c.DeviceID, DeviceKeyFile: c.DeviceKeyFile, StateDir: c.StateDir,
		TopicRoot: c.TopicRoot, Mode: c.Mode, MultipartThreshold: c.MultipartThreshold, PartSize: c.PartSize,
		UploadRate: c.UploadRate, UploadRateAt: c.UploadRateAt,
		TLS: &deviceconfig.TLS{CAFile: c.TLSCAFile, CertFile: c.TLSCertFile, KeyFile: c.TLSKeyFile, ServerName: c.TLSServerName},
	}
	if *f.TLS == (deviceconfig.TLS{}) {
		f.TLS = nil
	}
	return f
}

// flagOf returns the flag of a deviceconfig field ("tls.ca-file" is --tls-ca-file).
func flagOf(field string) string { return strings.ReplaceAll(field, ".", "-") }

// hint says how to set a field.
func (m *Main) hint(field string) string {
	flag := flagOf(field)
	file := m.ctx.ConfigFile()
	if file == "" {
		file = "none read: --config, $" + cli.EnvName(m.spec().EnvPrefix, "config") + " or " + DefaultConfigPath
	}
	return fmt.Sprintf("set --%s, $%s or %s in the config file (%s)", flag, cli.EnvName(m.spec().EnvPrefix, flag), flag, file)
}

// kitConfig turns the merged configuration into a devicekit configuration, with errors
// that name where the bad value came from.
func (m *Main) kitConfig() (devicekit.Config, error) {
	kc, err := m.deviceFile().KitConfig()
	if err != nil {
		var fe *deviceconfig.FieldError
		if !errors.As(err, &fe) {
			return kc, cli.Usage(err)
		}
		if fe.Missing {
			return kc, cli.Usagef("%s is not set: %s", flagOf(fe.Field), m.hint(fe.Field))
		}
		src := m.ctx.Source(flagOf(fe.Field))
		if src == "" {
			src = flagOf(fe.Field)
		}
		return kc, cli.Usagef("%s: %v", src, fe.Err)
	}
	kc.Logger = m.log
	return kc, nil
}

// newKit builds a kit from the configuration. While another process of the camera holds
// the state directory, the error is a *devicekit.StateInUseError. A one-shot command's kit
// gives up at a refused login (oneShot), a watcher's keeps trying.
func (m *Main) newKit(oneShot bool) (*devicekit.Kit, devicekit.Config, error) {
	kc, err := m.kitConfig()
	if err != nil {
		return nil, kc, err
	}
	kc.StopWhenRefused = oneShot
	kit, err := devicekit.New(kc)
	var inUse *devicekit.StateInUseError
	switch {
	case errors.As(err, &inUse):
		return nil, kc, inUse
	case err != nil:
		return nil, kc, cli.Usage(err)
	}
	return kit, kc, nil
}

// connect builds a kit from the configuration and connects it to the broker. A state
// directory held by another process is an error that names it.
func (m *Main) connect(ctx context.Context) (*devicekit.Kit, devicekit.Config, error) {
	kit, kc, err := m.newKit(true)
	var inUse *devicekit.StateInUseError
	if errors.As(err, &inUse) {
		return nil, kc, busyError(inUse, kc.DeviceID)
	}
	if err != nil {
		return nil, kc, err
	}
	if err := m.dial(ctx, kit, kc); err != nil {
		kit.Close()
		return nil, kc, err
	}
	return kit, kc, nil
}

// dial connects kit to the broker within --timeout.
func (m *Main) dial(ctx context.Context, kit *devicekit.Kit, kc devicekit.Config) error {
	cctx, cancel := context.WithTimeout(ctx, m.cli.Timeout)
	defer cancel()
	if err := kit.Connect(cctx); err != nil {
		if errors.Is(err, devicekit.ErrRefused) {
			return fmt.Errorf("connect to %s as %s: %w (is the device revoked, or its key or clock wrong?)", kc.BrokerURL, kc.DeviceID, err)
		}
		return fmt.Errorf("connect to %s as %s: %w", kc.BrokerURL, kc.DeviceID, err)
	}
	return nil
}
