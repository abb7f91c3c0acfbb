package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kong"
	"github.com/rs/zerolog"
	"golang.org/x/term"

	"github.com/clipgate/clipgate/devicekit"
	"github.com/clipgate/clipgate/internal/bytesize"
	"github.com/clipgate/clipgate/internal/deviceconfig"
)

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1 // an upload, the connection or the credentials failed
	exitUsage  = 2 // bad flags or configuration
)

// DefaultConfigPath is the config file read when --config is not given, if it exists: the
// one devstack writes in the directory it runs in.
const DefaultConfigPath = ".devstack/device.yaml"

// CLI is the command line. The device settings have no defaults here: what no flag sets
// comes from the environment, then from the config file (devicekit applies the defaults).
type CLI struct {
	Config string `help:"Device config file (YAML; keys are the flag names: broker, device-id, device-key-file, state-dir, ...). Default: ${defaultConfig} if it exists. Env: CLIPGATE_DEVICE_CONFIG." placeholder:"FILE"`

	Broker             string        `help:"MQTT broker URL (tcp://, ssl://, ws://, wss://). Env: CLIPGATE_DEVICE_BROKER." placeholder:"URL"`
	DeviceID           string        `name:"device-id" help:"Device ID. Env: CLIPGATE_DEVICE_ID." placeholder:"ID"`
	DeviceKeyFile      string        `help:"Device key file (mode 0600). Env: CLIPGATE_DEVICE_KEY_FILE." placeholder:"FILE"`
	StateDir           string        `help:"State directory (upload checkpoints, event outbox); one command of the device at a time holds it. Env: CLIPGATE_DEVICE_STATE_DIR." placeholder:"DIR"`
	TopicRoot          string        `help:"Topic root (default clipgate/v1). Env: CLIPGATE_DEVICE_TOPIC_ROOT."`
	Mode               string        `help:"Access asked for: letters of r, w, a (default w). Env: CLIPGATE_DEVICE_MODE."`
	MultipartThreshold bytesize.Size `help:"Size from which files go in parts, resumably: bytes or a size such as 8MiB or 500KB (default 8 MiB). Env: CLIPGATE_DEVICE_MULTIPART_THRESHOLD." placeholder:"SIZE"`
	PartSize           bytesize.Size `help:"Multipart part size: bytes or a size such as 1MiB (default 1 MiB). Env: CLIPGATE_DEVICE_PART_SIZE." placeholder:"SIZE"`
	TLSCAFile          string        `name:"tls-ca-file" help:"PEM CAs to trust for a TLS broker. Env: CLIPGATE_DEVICE_TLS_CA_FILE." placeholder:"FILE"`
	TLSCertFile        string        `name:"tls-cert-file" help:"PEM client certificate. Env: CLIPGATE_DEVICE_TLS_CERT_FILE." placeholder:"FILE"`
	TLSKeyFile         string        `name:"tls-key-file" help:"PEM client key (mode 0600). Env: CLIPGATE_DEVICE_TLS_KEY_FILE." placeholder:"FILE"`
	TLSServerName      string        `name:"tls-server-name" help:"Name to check in the broker's certificate. Env: CLIPGATE_DEVICE_TLS_SERVER_NAME."`

	Timeout  time.Duration `help:"How long to wait for the broker connection and for credentials." default:"30s"`
	LogLevel string        `help:"Level of the log on stderr." enum:"debug,info,warn,error" default:"warn"`

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
	// IsTerminal tells whether w is a terminal (for the progress bar); default: w is an
	// *os.File on a terminal.
	IsTerminal func(w io.Writer) bool

	cli CLI
	log zerolog.Logger

	// Test hooks (zero in production).
	drawAll    bool                    // draw the upload status line at every report
	onProgress func(sent, total int64) // told of every progress report of an upload
}

// NewMain returns a Main on the process's standard streams and environment.
func NewMain() *Main {
	return &Main{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.LookupEnv, IsTerminal: isTerminal}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// usageError is a configuration or command-line error (exit status 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// Run parses args (without the program name), runs the command and returns the exit status.
func (m *Main) Run(ctx context.Context, args []string) int {
	cmd, err := m.parseFlags(args)
	switch {
	case errors.Is(err, errHelp):
		return exitOK
	case err == nil:
		m.log = newLogger(m.Stderr, m.cli.LogLevel)
		switch cmd, _, _ = strings.Cut(cmd, " "); cmd {
		case "upload":
			err = m.upload(ctx)
		case "credentials":
			err = m.credentials(ctx)
		case "watch":
			err = m.watch(ctx)
		default:
			err = usagef("unknown command %q", cmd)
		}
	}
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errReported):
		return exitFailed
	case errors.As(err, &ue):
		fmt.Fprintln(m.Stderr, "device:", err)
		return exitUsage
	default:
		fmt.Fprintln(m.Stderr, "device:", err)
		return exitFailed
	}
}

var errHelp = errors.New("help shown")

// parseFlags parses args into m.cli and returns the command; errHelp after --help.
func (m *Main) parseFlags(args []string) (string, error) {
	if m.Getenv == nil {
		m.Getenv = os.LookupEnv
	}
	if m.IsTerminal == nil {
		m.IsTerminal = isTerminal
	}
	m.cli = CLI{}
	exited := false
	parser, err := kong.New(&m.cli,
		kong.Name("device"),
		kong.Description("clipgate camera CLI: upload clips with short-lived, least-privilege OSS credentials."),
		kong.Vars{"defaultConfig": DefaultConfigPath},
		kong.Writers(m.Stdout, m.Stderr),
		kong.Exit(func(int) { exited = true }),
	)
	if err != nil {
		return "", err
	}
	kctx, err := parser.Parse(args)
	if exited {
		return "", errHelp
	}
	if err != nil {
		return "", usageError{err}
	}
	if m.cli.Timeout <= 0 {
		return "", usagef("--timeout %v: must be positive", m.cli.Timeout)
	}
	return kctx.Command(), nil
}

// errReported is returned when the failure has already been written (result lines).
var errReported = errors.New("failures reported")

func newLogger(w io.Writer, level string) zerolog.Logger {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil {
		lvl = zerolog.WarnLevel
	}
	return zerolog.New(zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}).Level(lvl).With().Timestamp().Logger()
}

// setting is one device setting: the flag, the variable and the config file field that
// may set it, in that order of precedence. ptr points into the CLI or the File: a *string
// or a *bytesize.Size.
type setting struct {
	field, flag, env string
	ptr              func(c *CLI, f *deviceconfig.File) (flag, file any)
}

var settings = []setting{
	{"broker", "--broker", "CLIPGATE_DEVICE_BROKER", func(c *CLI, f *deviceconfig.File) (any, any) { return &c.Broker, &f.Broker }},
	{"device-id", "--device-id", "CLIPGATE_DEVICE_ID", func(c *CLI, f *deviceconfig.File) (any, any) { return &c.DeviceID, &f.DeviceID }},
	{"device-key-file", "--device-key-file", "CLIPGATE_DEVICE_KEY_FILE", func(c *CLI, f *deviceconfig.File) (any, any) { return &c.DeviceKeyFile, &f.DeviceKeyFile }},
	{"state-dir", "--state-dir", "CLIPGATE_DEVICE_STATE_DIR", func(c *CLI, f *deviceconfig.File) (any, any) { return &c.StateDir, &f.StateDir }},
	{"topic-root", "--topic-root", "CLIPGATE_DEVICE_TOPIC_ROOT", func(c *CLI, f *deviceconfig.File) (any, any) { return &c.TopicRoot, &f.TopicRoot }},
	{"mode", "--mode", "CLIPGATE_DEVICE_MODE", func(c *CLI, f *deviceconfig.File) (any, any) { return &c.Mode, &f.Mode }},
	{"multipart-threshold", "--multipart-threshold", "CLIPGATE_DEVICE_MULTIPART_THRESHOLD", func(c *CLI, f *deviceconfig.File) (any, any) { return &c.MultipartThreshold, &f.MultipartThreshold }},
	{"part-size", "--part-size", "CLIPGATE_DEVICE_PART_SIZE", func(c *CLI, f *deviceconfig.File) (any, any) { return &c.PartSize, &f.PartSize }},
	{"tls.ca-file", "--tls-ca-file", "CLIPGATE_DEVICE_TLS_CA_FILE", func(c *CLI, f *deviceconfig.File) (any, any) { return &c.TLSCAFile, &f.TLS.CAFile }},
	{"tls.cert-file", "--tls-cert-file", "CLIPGATE_DEVICE_TLS_CERT_FILE", func(c *CLI, f *deviceconfig.File) (any, any) { return &c.TLSCertFile, &f.TLS.CertFile }},
	{"tls.key-file", "--tls-key-file", "CLIPGATE_DEVICE_TLS_KEY_FILE", func(c *CLI, f *deviceconfig.File) (any, any) { return &c.TLSKeyFile, &f.TLS.KeyFile }},
	{"tls.server-name", "--tls-server-name", "CLIPGATE_DEVICE_TLS_SERVER_NAME", func(c *CLI, f *deviceconfig.File) (any, any) { return &c.TLSServerName, &f.TLS.ServerName }},
}

const envConfig = "CLIPGATE_DEVICE_CONFIG"

// resolved is the merged device configuration and where each value came from.
type resolved struct {
	file    deviceconfig.File
	path    string            // the config file read, "" if none
	sources map[string]string // field -> "--flag", "VARIABLE" or "PATH" (the config file)
}

// config merges flags, environment and config file into a device configuration.
func (m *Main) config() (*resolved, error) {
	r := &resolved{sources: make(map[string]string)}
	path, explicit := m.cli.Config, m.cli.Config != ""
	if !explicit {
		if v, ok := m.Getenv(envConfig); ok && v != "" {
			path, explicit = v, true
		}
	}
	if !explicit {
		def := DefaultConfigPath
		if m.WorkDir != "" {
			def = filepath.Join(m.WorkDir, def)
		}
		if _, err := os.Stat(def); err == nil {
			path = def
		}
	}
	if path != "" {
		f, err := deviceconfig.Load(path)
		if err != nil {
			return nil, usageError{err}
		}
		r.file, r.path = f, path
	}
	if r.file.TLS == nil {
		r.file.TLS = &deviceconfig.TLS{}
	}
	for _, s := range settings {
		flagPtr, filePtr := s.ptr(&m.cli, &r.file)
		v, src := "", s.flag
		switch p := flagPtr.(type) {
		case *string:
			v = *p
		case *bytesize.Size:
			if *p != 0 {
				v = strconv.FormatInt(int64(*p), 10)
			}
		}
		if v == "" {
			if ev, ok := m.Getenv(s.env); ok && ev != "" {
				v, src = ev, s.env
			}
		}
		if v == "" {
			if r.path != "" {
				r.sources[s.field] = r.path
			}
			continue
		}
		r.sources[s.field] = src
		switch p := filePtr.(type) {
		case *string:
			*p = v
		case *bytesize.Size:
			n, err := bytesize.Parse(v)
			if err != nil {
				return nil, usagef("%s: %v", src, err)
			}
			*p = n
		}
	}
	if *r.file.TLS == (deviceconfig.TLS{}) {
		r.file.TLS = nil
	}
	return r, nil
}

// hint says how to set a field.
func (r *resolved) hint(field string) string {
	for _, s := range settings {
		if s.field == field {
			return fmt.Sprintf("set %s, %s or %s in the config file (%s)", s.flag, s.env, field, r.configName())
		}
	}
	return "set " + field + " in the config file"
}

func (r *resolved) configName() string {
	if r.path == "" {
		return "none read: --config, " + envConfig + " or " + DefaultConfigPath
	}
	return r.path
}

// kitConfig turns the merged configuration into a devicekit configuration, with errors
// that name where the bad value came from.
func (m *Main) kitConfig() (devicekit.Config, error) {
	r, err := m.config()
	if err != nil {
		return devicekit.Config{}, err
	}
	kc, err := r.file.KitConfig()
	if err != nil {
		var fe *deviceconfig.FieldError
		if !errors.As(err, &fe) {
			return kc, usageError{err}
		}
		if fe.Missing {
			return kc, usagef("%s is not set: %s", fe.Field, r.hint(fe.Field))
		}
		src := r.sources[fe.Field]
		if src == "" {
			src = fe.Field
		} else if src == r.path {
			src = fe.Field + " in " + r.path
		}
		return kc, usagef("%s: %v", src, fe.Err)
	}
	kc.Logger = m.log
	return kc, nil
}

// newKit builds a kit from the configuration. While another process of the camera holds
// the state directory, the error is a *devicekit.StateInUseError.
func (m *Main) newKit() (*devicekit.Kit, devicekit.Config, error) {
	kc, err := m.kitConfig()
	if err != nil {
		return nil, kc, err
	}
	kit, err := devicekit.New(kc)
	var inUse *devicekit.StateInUseError
	switch {
	case errors.As(err, &inUse):
		return nil, kc, inUse
	case err != nil:
		return nil, kc, usageError{err}
	}
	return kit, kc, nil
}

// connect builds a kit from the configuration and connects it to the broker. A state
// directory held by another process is an error that names it.
func (m *Main) connect(ctx context.Context) (*devicekit.Kit, devicekit.Config, error) {
	kit, kc, err := m.newKit()
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
		return fmt.Errorf("connect to %s as %s: %w", kc.BrokerURL, kc.DeviceID, err)
	}
	return nil
}
