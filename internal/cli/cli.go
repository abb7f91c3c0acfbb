// Package cli is the command-line plumbing every clipgate command uses: one kong setup,
// one YAML configuration loader, one secret reader, one logger setup, one version string
// and one set of exit statuses.
//
// Every flag of a command can be set three ways, in this order of precedence: on the
// command line, by an environment variable, and in the YAML file given by --config. The
// variable is the command's prefix and the flag's name in upper case with '_' for '-'
// (EnvName: --oss-bucket is CLIPGATE_OSS_BUCKET); the file's keys are the flag names
// (Loader). --help lists each flag with its variable. Secrets are never flags: a secret
// flag --x-file names a file holding the secret, and the variable of x (CLIPGATE_X)
// may hold it instead (Context.Secret).
//
// Exit statuses are the same for every command: ExitOK, ExitFailure, and ExitUsage for a
// usage or configuration error (Exec, ExitCode).
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit statuses of every command.
const (
	ExitOK      = 0 // success, and --help and --version
	ExitFailure = 1 // the command ran and failed
	ExitUsage   = 2 // bad flags, variables, configuration file or settings
)

// IO is what a command reads and writes besides its files: its standard streams and its
// environment. Tests replace them.
type IO struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Getenv looks up an environment variable; nil means os.LookupEnv.
	Getenv func(string) (string, bool)
}

// OS returns the process's standard streams and environment.
func OS() IO {
	return IO{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.LookupEnv}
}

func (o IO) withDefaults() IO {
	if o.Stdin == nil {
		o.Stdin = eofReader{}
	}
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.Stderr == nil {
		o.Stderr = io.Discard
	}
	if o.Getenv == nil {
		o.Getenv = os.LookupEnv
	}
	return o
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// UsageError is a usage or configuration error: the command exits with ExitUsage.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }

// Unwrap returns the error itself.
func (e *UsageError) Unwrap() error { return e.Err }

// Usage marks err as a usage or configuration error; nil stays nil.
func Usage(err error) error {
	if err == nil {
		return nil
	}
	var ue *UsageError
	if errors.As(err, &ue) {
		return err
	}
	return &UsageError{Err: err}
}

// Usagef returns a usage or configuration error.
func Usagef(format string, args ...any) error { return &UsageError{Err: fmt.Errorf(format, args...)} }

var (
	// ErrExited is returned by Parse after --help or --version printed what they print:
	// the command should stop and exit with ExitOK.
	ErrExited = errors.New("exited after --help or --version")
	// ErrReported is a failure the command has already reported in its own output: it
	// exits with ExitFailure and no further message.
	ErrReported = errors.New("failure reported")
)

// ExitCode returns the exit status for the error a command ended with.
func ExitCode(err error) int {
	var ue *UsageError
	switch {
	case err == nil, errors.Is(err, ErrExited):
		return ExitOK
	case errors.As(err, &ue):
		return ExitUsage
	}
	return ExitFailure
}

// RunFunc is the body of a command: it parses args (without the program name), runs, and
// returns when done or, for a service, once ctx ends and it has stopped.
type RunFunc func(ctx context.Context, io IO, args []string) error

// Service is a long-running command in steps that tests can drive one by one: parse its
// flags, start it, stop it.
type Service interface {
	// ParseFlags parses args (without the program name), the environment and the config
	// file; after --help or --version it returns ErrExited.
	ParseFlags(args []string) error
	// Run starts the service and returns once it serves, or with the first error.
	Run(ctx context.Context) error
	// Close stops whatever Run started (also after a failed Run).
	Close() error
}

// Serve is the RunFunc body of a Service: it parses args, starts s, waits for ctx to end
// and closes s, returning the first error (a failed start is joined with Close's error).
func Serve(ctx context.Context, s Service, args []string) error {
	if err := s.ParseFlags(args); err != nil {
		return err
	}
	if err := s.Run(ctx); err != nil {
		return errors.Join(err, s.Close())
	}
	<-ctx.Done()
	return s.Close()
}

// Exec runs a command and returns its exit status, after writing the error it ended with
// (unless ErrExited or ErrReported) to io.Stderr as "name: error".
func Exec(ctx context.Context, name string, run RunFunc, io IO, args []string) int {
	io = io.withDefaults()
	err := run(ctx, io, args)
	if err != nil && !errors.Is(err, ErrExited) && !errors.Is(err, ErrReported) {
		fmt.Fprintf(io.Stderr, "%s: %v\n", name, err)
	}
	return ExitCode(err)
}

// Main runs a command as the process and exits with its status. SIGINT and SIGTERM end
// ctx; a second signal kills the process at once.
func Main(name string, run RunFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // restore the default handling: the next signal kills
	}()
	code := Exec(ctx, name, run, OS(), os.Args[1:])
	stop()
	os.Exit(code)
}
