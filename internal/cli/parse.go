package cli

import (
	"fmt"
	"strings"
	"unicode"

	"github.com/alecthomas/kong"
	"github.com/rs/zerolog"
)

// Spec describes a command to Parse.
type Spec struct {
	Name        string
	Description string
	// EnvPrefix is the prefix of the command's environment variables, e.g. "CLIPGATE".
	EnvPrefix string
	// DefaultConfig is a configuration file read when neither --config nor its variable
	// is set, if it exists; "" for none.
	DefaultConfig string
	// LogLevel and LogFormat are the defaults of --log-level and --log-format; "" means
	// info and json.
	LogLevel, LogFormat string
	// Vars are kong variables for the grammar's tags (${name}).
	Vars kong.Vars
}

// Common holds the flags every command has. Every grammar embeds it:
//
//	type CLI struct {
//		cli.Common
//		...
//	}
type Common struct {
	Config    string      `name:"config" short:"c" type:"path" placeholder:"FILE" help:"YAML file of settings: the keys are flag names (nested maps join their keys with '-'), relative paths are relative to the file."`
	Version   versionFlag `name:"version" help:"Print the version and exit."`
	LogLevel  string      `name:"log-level" enum:"debug,info,warn,error" default:"${logLevel}" help:"Log level: ${enum}."`
	LogFormat string      `name:"log-format" enum:"console,json" default:"${logFormat}" help:"Log format: console (for people; coloured on a terminal only) or json."`
}

func (c *Common) common() *Common { return c }

// grammar is what Parse accepts: a pointer to a struct that embeds Common.
type grammar interface{ common() *Common }

// Flags that are given on the command line only: no variable, no configuration key.
var commandLineOnly = map[string]bool{"help": true, "version": true}

// EnvName returns the environment variable of a flag: prefix, '_', and the flag's name
// in upper case with '_' for '-'. A name that starts with the prefix's last word does not
// repeat it: with prefix CLIPGATE_DEVICE, --device-id is CLIPGATE_DEVICE_ID.
func EnvName(prefix, flag string) string {
	name := strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
	if i := strings.LastIndexByte(prefix, '_'); i >= 0 {
		if last := prefix[i+1:]; strings.HasPrefix(name, last+"_") {
			name = strings.TrimPrefix(name, last+"_")
		}
	}
	return prefix + "_" + name
}

// Parser is a command's kong parser with the plumbing's resolver, for one parse.
type Parser struct {
	Kong *kong.Kong
	spec Spec
	io   IO
	res  *resolver
	g    grammar
}

// NewParser builds the parser of a command: g is a pointer to its grammar, a struct that
// embeds Common.
func NewParser(spec Spec, g any, io IO) (*Parser, error) {
	gr, ok := g.(grammar)
	if !ok {
		return nil, fmt.Errorf("cli: the grammar %T does not embed cli.Common", g)
	}
	io = io.withDefaults()
	p := &Parser{spec: spec, io: io, g: gr}
	p.res = &resolver{spec: spec, getenv: io.Getenv, sources: map[*kong.Flag]string{}}
	vars := kong.Vars{"logLevel": or(spec.LogLevel, "info"), "logFormat": or(spec.LogFormat, "json")}
	for k, v := range spec.Vars {
		vars[k] = v
	}
	k, err := kong.New(g,
		kong.Name(spec.Name),
		kong.Description(spec.Description),
		kong.Writers(io.Stdout, io.Stderr),
		kong.Exit(func(code int) { panic(exitPanic(code)) }),
		vars,
		kong.Resolvers(p.res),
		kong.WithBeforeResolve(p.res.load),
		kong.PostBuild(p.res.prepare),
		kong.ValueFormatter(p.res.helpValue),
	)
	if err != nil {
		return nil, err
	}
	p.Kong = k
	return p, nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

type exitPanic int

// Env returns the variable of a flag, "" for --help and --version.
func (p *Parser) Env(f *kong.Flag) string { return p.res.envs[f] }

// Parse parses args (without the program name) into the grammar: from the command line,
// the environment and the configuration file. After --help or --version it returns
// ErrExited; a bad flag, variable or file is a *UsageError.
func (p *Parser) Parse(args []string) (ctx *Context, err error) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(exitPanic); !ok {
				panic(r)
			}
			ctx, err = nil, ErrExited
		}
	}()
	kctx, err := p.Kong.Parse(args)
	if err != nil {
		return nil, Usage(err)
	}
	return &Context{Kong: kctx, IO: p.io, res: p.res, common: p.g.common()}, nil
}

// Parse parses args into g (see NewParser and Parser.Parse).
func Parse(spec Spec, g any, io IO, args []string) (*Context, error) {
	p, err := NewParser(spec, g, io)
	if err != nil {
		return nil, err
	}
	return p.Parse(args)
}

// Context is a parsed command line.
type Context struct {
	Kong *kong.Context
	IO   IO

	res    *resolver
	common *Common
}

// Command returns the selected command, e.g. "serve" or "upload <FILE>"; "" for a
// command without subcommands.
func (c *Context) Command() string { return c.Kong.Command() }

// Logger returns the command's logger on stderr, as --log-level and --log-format say.
func (c *Context) Logger() zerolog.Logger {
	return NewLogger(c.IO.Stderr, c.common.LogLevel, c.common.LogFormat)
}

// ConfigFile returns the configuration file read, "" if none.
func (c *Context) ConfigFile() string {
	if c.res.file == nil {
		return ""
	}
	return c.res.file.path
}

// flag returns the flag of the selected command (or its parents) called name.
func (c *Context) flag(name string) *kong.Flag {
	for _, f := range c.Kong.Flags() {
		if f.Name == name {
			return f
		}
	}
	return nil
}

// Source says where the value of a flag came from: "--name" for the command line,
// "$VARIABLE" for the environment, or "name in FILE" for the configuration file; "" when
// it has its default.
func (c *Context) Source(name string) string {
	f := c.flag(name)
	if f == nil {
		return ""
	}
	if src, ok := c.res.sources[f]; ok {
		return src
	}
	for _, p := range c.Kong.Path {
		if p.Flag == f && !p.Resolved {
			return "--" + name
		}
	}
	return ""
}

// Set reports whether a flag was set by the command line, a variable or the file.
func (c *Context) Set(name string) bool { return c.Source(name) != "" }

// prepare gives every flag its variable, checks the secret flags and adds to the help what
// the flags' tags do not say.
func (r *resolver) prepare(k *kong.Kong) error {
	r.flags = map[string]*kong.Flag{}
	r.envs = map[*kong.Flag]string{}
	return walk(k.Model.Node, func(f *kong.Flag) error {
		if len(f.Tag.Envs) > 0 {
			return fmt.Errorf("cli: --%s: set no env tag; the variable is derived from the name", f.Name)
		}
		if prev, dup := r.flags[f.Name]; dup && prev.Target.Type() != f.Target.Type() {
			return fmt.Errorf("cli: --%s is declared twice with different types", f.Name)
		}
		r.flags[f.Name] = f
		if commandLineOnly[f.Name] {
			return nil
		}
		r.envs[f] = EnvName(r.spec.EnvPrefix, f.Name)
		if f.Tag.Has("secret") {
			if !strings.HasSuffix(f.Name, "-file") {
				return fmt.Errorf("cli: secret flag --%s must be named *-file", f.Name)
			}
			f.Help = strings.TrimSuffix(f.Help, ".") + fmt.Sprintf("; or set $%s to the secret itself.", r.secretEnv(f))
		}
		if f.Name == "config" && r.spec.DefaultConfig != "" {
			f.Help = strings.TrimSuffix(f.Help, ".") + fmt.Sprintf("; default %s if it exists.", r.spec.DefaultConfig)
		}
		return nil
	})
}

// walk calls fn for every flag of n and its subcommands.
func walk(n *kong.Node, fn func(*kong.Flag) error) error {
	for _, f := range n.Flags {
		if err := fn(f); err != nil {
			return err
		}
	}
	for _, c := range n.Children {
		if err := walk(c, fn); err != nil {
			return err
		}
	}
	return nil
}

// secretEnv returns the variable that may hold the secret of a secret flag x-file: x's.
func (r *resolver) secretEnv(f *kong.Flag) string {
	return EnvName(r.spec.EnvPrefix, strings.TrimSuffix(f.Name, "-file"))
}

// helpValue is kong's help text of a flag, followed by its variable.
func (r *resolver) helpValue(v *kong.Value) string {
	env := r.envs[v.Flag]
	if v.Flag == nil || env == "" {
		return v.Help
	}
	suffix := "($" + env + ")"
	if v.Help == "" {
		return suffix
	}
	h := strings.TrimRightFunc(v.Help, unicode.IsSpace)
	if strings.HasSuffix(h, ".") {
		return h[:len(h)-1] + " " + suffix + "."
	}
	return h + " " + suffix
}

// Secret returns the secret of the secret flag fileFlag (named x-file): read from the file
// it names, or taken from the variable of x (an empty variable counts as unset); setting
// both is an error. With required, a missing secret is an error; otherwise it is "".
// Errors are *UsageError and name what the secret is for.
func (c *Context) Secret(fileFlag, what string, required bool) (string, error) {
	f := c.flag(fileFlag)
	if f == nil || !f.Tag.Has("secret") {
		return "", fmt.Errorf("cli: --%s is no secret flag of this command", fileFlag)
	}
	path, _ := c.Kong.FlagValue(f).(string)
	s, err := lookupSecret(c.IO.Getenv, c.res.secretEnv(f), "--"+fileFlag, path, what, required)
	return s, Usage(err)
}

// versionFlag prints the version.
type versionFlag bool

// BeforeReset prints the version and exits.
func (versionFlag) BeforeReset(k *kong.Kong) error {
	fmt.Fprintln(k.Stdout, Version(k.Model.Name))
	k.Exit(ExitOK)
	return nil
}
