// Package clitest checks that a command built on package cli keeps the plumbing's
// promises: every flag of every subcommand has its variable and its configuration key,
// --help lists the variables, each of the three sources sets the flag, flags win over
// variables and variables over the file, and the exit statuses are the shared ones.
package clitest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"
	"gopkg.in/yaml.v3"

	"github.com/clipgate/clipgate/internal/cli"
)

// Command is a command under test.
type Command struct {
	Spec cli.Spec
	// Grammar returns a new, zero grammar of the command.
	Grammar func() any
	// Args are the arguments that select a subcommand and fill its required positional
	// arguments, by the subcommand's path ("serve", "device-key"); by default the path's
	// words.
	Args map[string][]string
	// Samples are values for flags whose type the checker cannot make up, by flag name:
	// one value at least, three for the precedence check.
	Samples map[string][]string
}

// leaf is a subcommand (or the command itself when it has none) and its flags.
type leaf struct {
	path  string
	args  []string
	flags []*kong.Flag
}

func (c Command) leaves(t testing.TB) []leaf {
	t.Helper()
	p, err := cli.NewParser(c.Spec, c.Grammar(), cli.IO{})
	if err != nil {
		t.Fatal(err)
	}
	var out []leaf
	var visit func(n *kong.Node, flags []*kong.Flag)
	visit = func(n *kong.Node, flags []*kong.Flag) {
		flags = append(append([]*kong.Flag(nil), flags...), n.Flags...)
		var cmds []*kong.Node
		for _, ch := range n.Children {
			if ch.Type == kong.CommandNode && !ch.Hidden {
				cmds = append(cmds, ch)
			}
		}
		if len(cmds) == 0 {
			path := n.Path()
			args, ok := c.Args[path]
			if !ok {
				args = strings.Fields(path)
			}
			out = append(out, leaf{path: path, args: args, flags: flags})
		}
		for _, ch := range cmds {
			visit(ch, flags)
		}
	}
	visit(p.Kong.Model.Node, nil)
	return out
}

// envName is the variable the documented rule gives a flag.
func envName(prefix, flag string) string {
	name := strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
	last := prefix[strings.LastIndexByte(prefix, '_')+1:]
	return prefix + "_" + strings.TrimPrefix(name, last+"_")
}

// parsed is the result of one parse: the flag's value, or the error.
type parsed struct {
	value any
	ctx   *cli.Context
	err   error
}

// parse parses args with env and a configuration file holding file (YAML), and returns
// the value of the flag name.
func (c Command) parse(t testing.TB, name string, args []string, env map[string]string, file string) parsed {
	t.Helper()
	if file != "" {
		path := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append([]string{"--config", path}, args...)
	}
	getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	p, err := cli.NewParser(c.Spec, c.Grammar(), cli.IO{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}, Getenv: getenv})
	if err != nil {
		t.Fatal(err)
	}
	ctx, err := p.Parse(args)
	if err != nil {
		return parsed{err: err}
	}
	for _, f := range ctx.Kong.Flags() {
		if f.Name == name {
			return parsed{value: f.Target.Interface(), ctx: ctx}
		}
	}
	t.Fatalf("--%s not found after parsing %q", name, args)
	return parsed{}
}

// CheckFlags walks every subcommand of a command and checks each of its flags: its
// variable follows the naming rule and --help lists it; the flag, the variable and the
// configuration key each set it to the same value, which differs from its default; the
// flag wins over the variable, which wins over the file. The secret flags' secrets are
// read from their variables and files.
func CheckFlags(t testing.TB, c Command) {
	t.Helper()
	seen := map[string]bool{}
	for _, l := range c.leaves(t) {
		var help bytes.Buffer
		p, err := cli.NewParser(c.Spec, c.Grammar(), cli.IO{Stdout: &help, Stderr: &help})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Parse(append(append([]string(nil), l.args...), "--help")); err != cli.ErrExited {
			t.Fatalf("%s --help: %v", l.path, err)
		}
		for _, f := range l.flags {
			if f.Name == "help" || f.Name == "version" {
				continue
			}
			env := envName(c.Spec.EnvPrefix, f.Name)
			if !strings.Contains(help.String(), "($"+env+")") {
				t.Errorf("%s --help does not list $%s for --%s:\n%s", l.path, env, f.Name, help.String())
			}
			if seen[f.Name] {
				continue
			}
			seen[f.Name] = true
			c.checkFlag(t, l, f, env)
		}
	}
}

func (c Command) checkFlag(t testing.TB, l leaf, f *kong.Flag, env string) {
	t.Helper()
	name := f.Name
	samples := c.samples(t, f)
	if len(samples) == 0 {
		t.Errorf("--%s (%s): no sample value; give one in Command.Samples", name, f.Target.Type())
		return
	}
	// The other required flags, from the command line.
	base := append([]string(nil), l.args...)
	for _, o := range l.flags {
		if o.Required && o != f {
			s := c.samples(t, o)
			if len(s) == 0 {
				t.Fatalf("--%s is required and has no sample", o.Name)
			}
			base = append(base, "--"+o.Name+"="+s[0])
		}
	}
	flagArg := func(s string) string { return "--" + name + "=" + s }
	if name == "config" {
		empty := filepath.Join(t.TempDir(), "empty.yaml")
		if err := os.WriteFile(empty, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		byFlag := c.parse(t, name, append(base, flagArg(empty)), nil, "")
		byEnv := c.parse(t, name, base, map[string]string{env: empty}, "")
		if byFlag.err != nil || byEnv.err != nil || byFlag.value != empty || byEnv.value != empty {
			t.Errorf("--config by flag: %v %v; by $%s: %v %v", byFlag.value, byFlag.err, env, byEnv.value, byEnv.err)
		}
		if r := c.parse(t, name, base, nil, "config: "+empty+"\n"); r.err == nil || !strings.Contains(r.err.Error(), "unknown setting") {
			t.Errorf("config: key in the configuration file: %v, want refused", r.err)
		}
		return
	}
	def := parsed{value: reflect.Zero(f.Target.Type()).Interface()}
	if !f.Required {
		if def = c.parse(t, name, base, nil, ""); def.err != nil {
			t.Errorf("--%s: parsing %q without it: %v", name, base, def.err)
			return
		}
	}
	s := samples[0]
	byFlag := c.parse(t, name, append(base, flagArg(s)), nil, "")
	byEnv := c.parse(t, name, base, map[string]string{env: s}, "")
	byFile := c.parse(t, name, base, nil, fileText(f, name, s))
	for src, r := range map[string]parsed{"flag": byFlag, "$" + env: byEnv, "configuration key " + name: byFile} {
		switch {
		case r.err != nil:
			t.Errorf("--%s=%q by %s: %v", name, s, src, r.err)
		case !reflect.DeepEqual(r.value, byFlag.value):
			t.Errorf("--%s=%q by %s gives %#v, by flag %#v", name, s, src, r.value, byFlag.value)
		case reflect.DeepEqual(r.value, def.value):
			t.Errorf("--%s=%q by %s gives %#v, the same as without it", name, s, src, r.value)
		}
	}
	if r := byEnv; r.err == nil && r.ctx.Source(name) != "$"+env {
		t.Errorf("--%s by $%s: Source says %q", name, env, r.ctx.Source(name))
	}
	if f.Tag.Has("secret") {
		c.checkSecret(t, base, name, env)
	}
	if len(samples) < 3 {
		return
	}
	// Precedence: flag over variable over file.
	want := func(s string) any { return c.parse(t, name, append(base, flagArg(s)), nil, "").value }
	all := c.parse(t, name, append(base, flagArg(samples[0])), map[string]string{env: samples[1]}, fileText(f, name, samples[2]))
	envFile := c.parse(t, name, base, map[string]string{env: samples[1]}, fileText(f, name, samples[2]))
	emptyEnv := c.parse(t, name, base, map[string]string{env: ""}, fileText(f, name, samples[2]))
	if all.err != nil || !reflect.DeepEqual(all.value, want(samples[0])) {
		t.Errorf("--%s: flag, variable and file: %#v %v, want the flag's", name, all.value, all.err)
	}
	if envFile.err != nil || !reflect.DeepEqual(envFile.value, want(samples[1])) {
		t.Errorf("--%s: variable and file: %#v %v, want the variable's", name, envFile.value, envFile.err)
	}
	if emptyEnv.err != nil || !reflect.DeepEqual(emptyEnv.value, want(samples[2])) {
		t.Errorf("--%s: empty variable and file: %#v %v, want the file's", name, emptyEnv.value, emptyEnv.err)
	}
}

// checkSecret checks that the secret of the secret flag name comes from its variable or
// its file.
func (c Command) checkSecret(t testing.TB, base []string, name, env string) {
	t.Helper()
	secretEnv := strings.TrimSuffix(env, "_FILE")
	file := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(file, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := c.parse(t, name, base, map[string]string{secretEnv: "from-env"}, "")
	if r.err != nil {
		t.Fatalf("--%s: %v", name, r.err)
	}
	if s, err := r.ctx.Secret(name, "test secret", true); err != nil || s != "from-env" {
		t.Errorf("--%s: secret from $%s: %q, %v", name, secretEnv, s, err)
	}
	r = c.parse(t, name, append(base, "--"+name+"="+file), nil, "")
	if s, err := r.ctx.Secret(name, "test secret", true); err != nil || s != "from-file" {
		t.Errorf("--%s: secret from the file: %q, %v", name, s, err)
	}
}

// fileText is a configuration file setting the flag name to s.
func fileText(f *kong.Flag, name, s string) string {
	var v any = s
	typ := f.Target.Type()
	if typ.Kind() == reflect.Slice && typ.Elem().Kind() == reflect.String && f.Tag.Sep != -1 && strings.ContainsRune(s, f.Tag.Sep) {
		v = strings.Split(s, string(f.Tag.Sep)) // a YAML list
	}
	b, err := yaml.Marshal(map[string]any{name: v})
	if err != nil {
		panic(err)
	}
	return string(b)
}

var durationType = reflect.TypeOf(time.Duration(0))

// samples returns values for f that differ from its default and from each other.
func (c Command) samples(t testing.TB, f *kong.Flag) []string {
	t.Helper()
	if s, ok := c.Samples[f.Name]; ok {
		return s
	}
	var cand []string
	typ := f.Target.Type()
	switch {
	case f.Enum != "":
		for _, e := range strings.Split(f.Enum, ",") {
			cand = append(cand, strings.TrimSpace(e))
		}
	case f.Tag.Type == "path" || f.Tag.Type == "existingfile" || f.Tag.Type == "existingdir":
		dir := t.TempDir()
		for i := 1; i <= 3; i++ {
			p := filepath.Join(dir, fmt.Sprintf("sample-%d", i))
			switch f.Tag.Type {
			case "existingfile":
				if err := os.WriteFile(p, nil, 0o600); err != nil {
					t.Fatal(err)
				}
			case "existingdir":
				if err := os.Mkdir(p, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			cand = append(cand, p)
		}
	case typ == durationType:
		cand = []string{"7s", "8s", "9s", "10s"}
	case typ.Kind() == reflect.Bool:
		cand = []string{"true", "false"}
	case typ.Kind() == reflect.String:
		cand = []string{"sample-1", "sample-2", "sample-3"}
	case typ.Kind() >= reflect.Int && typ.Kind() <= reflect.Uint64:
		cand = []string{"7", "8", "9", "11"}
	case typ.Kind() == reflect.Float32 || typ.Kind() == reflect.Float64:
		cand = []string{"2.5", "3.5", "4.5", "5.5"}
	case typ.Kind() == reflect.Slice && typ.Elem().Kind() == reflect.String:
		cand = []string{"a1,b1", "a2,b2", "a3,b3"}
	}
	var out []string
	for _, s := range cand {
		if !sameAsDefault(f, s) {
			out = append(out, s)
		}
	}
	return out
}

// sameAsDefault reports whether s is the flag's default.
func sameAsDefault(f *kong.Flag, s string) bool {
	if f.Target.Kind() == reflect.Bool {
		def, _ := strconv.ParseBool(f.Default)
		v, _ := strconv.ParseBool(s)
		return v == def
	}
	if f.Target.Type() == durationType {
		def, err1 := time.ParseDuration(f.Default)
		v, err2 := time.ParseDuration(s)
		return err1 == nil && err2 == nil && def == v
	}
	return s == f.Default
}

// Exits are command lines of a command and the exit status each must end with, besides
// the ones CheckExitCodes always tries.
type Exits map[int][][]string

// CheckExitCodes runs a command in-process with Exec: --help and --version exit 0 (and
// --version prints the name), an unknown flag, a bad --log-level and a configuration
// file with an unknown key exit 2 with a message, and each of more exits as it says.
func CheckExitCodes(t testing.TB, name string, run cli.RunFunc, more Exits) {
	t.Helper()
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("no-such-setting: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := Exits{
		cli.ExitOK:    {{"--help"}},
		cli.ExitUsage: {{"--no-such-flag"}, {"--log-level", "loud"}, {"--config", bad}},
	}
	for code, list := range more {
		cases[code] = append(cases[code], list...)
	}
	check := func(code int, args []string) {
		t.Helper()
		var stdout, stderr Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		got := cli.Exec(ctx, name, run, cli.IO{Stdout: &stdout, Stderr: &stderr, Getenv: func(string) (string, bool) { return "", false }}, args)
		if got != code {
			t.Errorf("%s %q: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", name, args, got, code, stdout.String(), stderr.String())
		}
		if code == cli.ExitUsage && !strings.Contains(stderr.String(), name+": ") {
			t.Errorf("%s %q: no message on stderr: %q", name, args, stderr.String())
		}
	}
	for code, list := range cases {
		for _, args := range list {
			check(code, args)
		}
	}
	var stdout Buffer
	if got := cli.Exec(context.Background(), name, run, cli.IO{Stdout: &stdout}, []string{"--version"}); got != cli.ExitOK || !strings.HasPrefix(stdout.String(), name+" ") {
		t.Errorf("%s --version: exit %d, %q", name, got, stdout.String())
	}
}
