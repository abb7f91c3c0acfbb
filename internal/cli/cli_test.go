package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

// testCLI is a grammar with a flag of each kind the commands use.
type testCLI struct {
	Common
	OSSBucket    string        `name:"oss-bucket" help:"Bucket."`
	Workers      int           `default:"1" help:"Workers."`
	Timeout      time.Duration `default:"3s" help:"Timeout."`
	Buckets      []string      `help:"Buckets."`
	DataDir      string        `type:"path" help:"Data."`
	PasswordFile string        `type:"path" secret:"" help:"Password file."`
	Serve        struct {
		Rate float64 `default:"1" help:"Rate."`
	} `cmd:"" help:"Serve."`
	Other struct{} `cmd:"" help:"Other."`
}

var testSpec = Spec{Name: "test", EnvPrefix: "CLIPGATE_TEST"}

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// parseTest parses args with env and, unless file is "", a configuration file holding it.
func parseTest(t *testing.T, env map[string]string, file string, args ...string) (*testCLI, *Context, error) {
	t.Helper()
	if file != "" {
		path := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append([]string{"--config", path}, args...)
	}
	var c testCLI
	ctx, err := Parse(testSpec, &c, IO{Getenv: envOf(env)}, args)
	return &c, ctx, err
}

func TestPrecedence(t *testing.T) {
	t.Parallel()
	file := "oss:\n  bucket: from-file\nworkers: 3\ntimeout: 5s\nbuckets: [a, 'b,c']\ndataDir: rel\nrate: 2.5\n"
	c, ctx, err := parseTest(t, map[string]string{"CLIPGATE_TEST_TIMEOUT": "7s", "CLIPGATE_TEST_WORKERS": ""}, file, "--workers", "4", "serve")
	if err != nil {
		t.Fatal(err)
	}
	if c.OSSBucket != "from-file" || c.Workers != 4 || c.Timeout != 7*time.Second || c.Serve.Rate != 2.5 ||
		len(c.Buckets) != 2 || c.Buckets[1] != "b,c" || c.DataDir != filepath.Join(filepath.Dir(ctx.ConfigFile()), "rel") {
		t.Fatalf("nested key, flag over variable over file, a list, a path relative to the file: %+v", c)
	}
	for flag, want := range map[string]string{
		"workers": "--workers", "timeout": "$CLIPGATE_TEST_TIMEOUT", "oss-bucket": "oss-bucket in " + ctx.ConfigFile(), "rate": "rate in " + ctx.ConfigFile(), "log-level": "",
	} {
		if got := ctx.Source(flag); got != want {
			t.Errorf("Source(%s) = %q, want %q", flag, got, want)
		}
	}
	// Defaults without any source.
	if c, _, err = parseTest(t, nil, "", "other"); err != nil || c.Workers != 1 || c.Timeout != 3*time.Second || c.LogLevel != "info" || c.LogFormat != "json" {
		t.Fatalf("defaults: %+v, %v", c, err)
	}
	// The configuration file named by the variable.
	if c, _, err = parseTest(t, map[string]string{"CLIPGATE_TEST_CONFIG": writeFile(t, "workers: 9\n")}, "", "other"); err != nil || c.Workers != 9 {
		t.Fatalf("$CLIPGATE_TEST_CONFIG: %+v, %v", c, err)
	}
}

func writeFile(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDefaultConfig: the spec's default file is read when it exists and no other file is
// named; a named file replaces it.
func TestDefaultConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	spec := testSpec
	spec.DefaultConfig = filepath.Join(dir, "default.yaml")
	parse := func(env map[string]string, args ...string) (*testCLI, error) {
		var c testCLI
		_, err := Parse(spec, &c, IO{Getenv: envOf(env)}, args)
		return &c, err
	}
	if c, err := parse(nil, "other"); err != nil || c.Config != "" || c.Workers != 1 {
		t.Fatalf("no default file: %+v, %v", c, err)
	}
	if err := os.WriteFile(spec.DefaultConfig, []byte("workers: 5\noss-bucket: def\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := parse(nil, "other"); err != nil || c.Config != spec.DefaultConfig || c.Workers != 5 {
		t.Fatalf("default file: %+v, %v", c, err)
	}
	named := writeFile(t, "workers: 6\n")
	if c, err := parse(nil, "--config", named, "other"); err != nil || c.Workers != 6 || c.OSSBucket != "" {
		t.Fatalf("--config over the default: %+v, %v", c, err)
	}
	if c, err := parse(map[string]string{"CLIPGATE_TEST_CONFIG": named}, "other"); err != nil || c.Workers != 6 || c.OSSBucket != "" {
		t.Fatalf("$CLIPGATE_TEST_CONFIG over the default: %+v, %v", c, err)
	}
	if _, err := parse(nil, "--config", filepath.Join(dir, "none.yaml"), "other"); err == nil {
		t.Fatal("a named file that does not exist was accepted")
	}
}

func TestConfigFileGarbage(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct{ file, want string }{
		"unknown key":      {"buckets: x\nworkerz: 2\n", "unknown setting(s) workerz (line 2)"},
		"secret":           {"password: x\n", "secrets do not belong in the file; put it in a file named by password-file, or in $CLIPGATE_TEST_PASSWORD"},
		"other secret":     {"oss-secret: x\n", "secrets do not belong"},
		"list":             {"workers: [1, 2]\n", "lists are not supported"},
		"list of lists":    {"buckets: [[a]]\n", "list of single values"},
		"mapping":          {"workers: {a: 1}\n", "want a single value"},
		"no value":         {"workers:\n", "no value"},
		"set twice":        {"oss-bucket: a\noss:\n  bucket: b\n", `"oss-bucket" is set twice`},
		"two documents":    {"workers: 1\n---\nworkers: 2\n", "more than one YAML document"},
		"not yaml":         {"{{{", "configuration file"},
		"not a map":        {"- a\n", "map of settings"},
		"scalar":           {"text\n", "map of settings"},
		"empty key":        {"'': 1\n", "non-empty"},
		"alias":            {"a: &x 1\nworkers: *x\n", "aliases"},
		"bad value":        {"timeout: soon\n", "timeout in"},
		"bad value line":   {"workers: 1\ntimeout: soon\n", "(line 2)"},
		"config key":       {"config: other.yaml\n", "unknown setting(s) config"},
		"help key":         {"help: true\n", "unknown setting(s) help"},
		"version key":      {"version: true\n", "unknown setting(s) version"},
		"enum":             {"log-level: loud\n", "log-level"},
		"oversized":        {"workers: 1\n#" + strings.Repeat("x", MaxConfigFile), "larger than"},
		"binary":           {"\x00\x01\xff", "configuration file"},
		"nested unknown":   {"oss:\n  buckett: b\n", "oss-buckett (line 2)"},
		"key not a string": {"? [a]\n: 1\n", "non-empty strings"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, _, err := parseTest(t, nil, tc.file, "other")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
			if ExitCode(err) != ExitUsage {
				t.Errorf("exit status %d, want %d", ExitCode(err), ExitUsage)
			}
		})
	}
	// Empty files and comments set nothing.
	for _, text := range []string{"\n", "# nothing\n"} {
		if c, _, err := parseTest(t, nil, text, "other"); err != nil || c.Workers != 1 {
			t.Errorf("%q: %+v, %v", text, c, err)
		}
	}
	dir := t.TempDir()
	if _, _, err := parseTest(t, nil, "", "--config", dir, "other"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a directory as the file: %v", err)
	}
}

func TestEnvGarbage(t *testing.T) {
	t.Parallel()
	for env, want := range map[string]string{
		"CLIPGATE_TEST_WORKERS":   `$CLIPGATE_TEST_WORKERS="many"`,
		"CLIPGATE_TEST_TIMEOUT":   `$CLIPGATE_TEST_TIMEOUT="many"`,
		"CLIPGATE_TEST_LOG_LEVEL": "log-level",
	} {
		if _, _, err := parseTest(t, map[string]string{env: "many"}, "", "other"); err == nil || !strings.Contains(err.Error(), want) || ExitCode(err) != ExitUsage {
			t.Errorf("%s=many: %v, want a usage error mentioning %q", env, err, want)
		}
	}
	// A bad variable does not matter when the flag is given.
	if c, _, err := parseTest(t, map[string]string{"CLIPGATE_TEST_WORKERS": "many"}, "", "--workers", "2", "other"); err != nil || c.Workers != 2 {
		t.Errorf("flag over a bad variable: %+v, %v", c, err)
	}
}

func TestNormalizeKey(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"data-dir": "data-dir", "data_dir": "data-dir", "dataDir": "data-dir", "DataDir": "data-dir",
		"OSSBucket": "oss-bucket", "stsRate": "sts-rate", "accountId": "account-id", "tls": "tls",
		"maxSessionDuration": "max-session-duration", "http2Addr": "http2-addr", "TLS": "tls",
	} {
		if got := NormalizeKey(in); got != want {
			t.Errorf("NormalizeKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEnvName(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ prefix, flag, want string }{
		{"CLIPGATE", "oss-bucket", "CLIPGATE_OSS_BUCKET"},
		{"CLIPGATE", "log-level", "CLIPGATE_LOG_LEVEL"},
		{"CLIPGATE_DEVICE", "device-id", "CLIPGATE_DEVICE_ID"},
		{"CLIPGATE_DEVICE", "device-key-file", "CLIPGATE_DEVICE_KEY_FILE"},
		{"CLIPGATE_DEVICE", "broker", "CLIPGATE_DEVICE_BROKER"},
		{"CLIPGATE_DEVICE", "devices", "CLIPGATE_DEVICE_DEVICES"},
	} {
		if got := EnvName(c.prefix, c.flag); got != c.want {
			t.Errorf("EnvName(%s, %s) = %s, want %s", c.prefix, c.flag, got, c.want)
		}
	}
}

// TestHelp: --help lists each flag's variable, and the secret flags' secret variables.
func TestHelp(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	var c testCLI
	if _, err := Parse(testSpec, &c, IO{Stdout: &out}, []string{"serve", "--help"}); !errors.Is(err, ErrExited) {
		t.Fatal(err)
	}
	for _, want := range []string{"($CLIPGATE_TEST_OSS_BUCKET)", "($CLIPGATE_TEST_RATE)", "($CLIPGATE_TEST_CONFIG)",
		"$CLIPGATE_TEST_PASSWORD to the secret itself", "--version", "--log-format"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "CLIPGATE_TEST_HELP") || strings.Contains(out.String(), "CLIPGATE_TEST_VERSION") {
		t.Errorf("--help and --version have variables:\n%s", out.String())
	}
}

// TestBadGrammars: the plumbing refuses grammars that would break its promises.
func TestBadGrammars(t *testing.T) {
	t.Parallel()
	var noCommon struct {
		X string
	}
	var envTag struct {
		Common
		X string `env:"X"`
	}
	var secretName struct {
		Common
		Password string `secret:""`
	}
	for name, g := range map[string]any{"no Common": &noCommon, "env tag": &envTag, "secret not a file": &secretName} {
		if _, err := NewParser(testSpec, g, IO{}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestSecret(t *testing.T) {
	t.Parallel()
	file := writeFile(t, "from-file\n")
	open := writeFile(t, "x\n")
	if err := os.Chmod(open, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env       map[string]string
		file      string
		required  bool
		want, err string
	}{
		{map[string]string{"CLIPGATE_TEST_PASSWORD": "from-env"}, "", true, "from-env", ""},
		{nil, file, true, "from-file", ""},
		{nil, "", false, "", ""},
		{map[string]string{"CLIPGATE_TEST_PASSWORD": "x"}, file, false, "", "not both"},
		{map[string]string{"CLIPGATE_TEST_PASSWORD": ""}, "", true, "", "is empty"},
		{map[string]string{"CLIPGATE_TEST_PASSWORD": ""}, file, true, "from-file", ""},
		{map[string]string{"CLIPGATE_TEST_PASSWORD": ""}, "", false, "", ""},
		{nil, "", true, "", "the secret is required: set $CLIPGATE_TEST_PASSWORD or --password-file"},
		{nil, open, true, "", "chmod 600"},
		{map[string]string{"CLIPGATE_TEST_PASSWORD_FILE": file}, "", true, "from-file", ""},
	} {
		args := []string{"other"}
		if tc.file != "" {
			args = append(args, "--password-file", tc.file)
		}
		_, ctx, err := parseTest(t, tc.env, "", args...)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ctx.Secret("password-file", "the secret", tc.required)
		if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && (!strings.Contains(err.Error(), tc.err) || ExitCode(err) != ExitUsage)) {
			t.Errorf("env %v, file %q: %q, %v; want %q, %q", tc.env, tc.file, got, err, tc.want, tc.err)
		}
	}
	_, ctx, _ := parseTest(t, nil, "", "other")
	if _, err := ctx.Secret("data-dir", "x", false); err == nil {
		t.Error("a flag not marked secret gave a secret")
	}
}

func TestReadSecretFile(t *testing.T) {
	t.Parallel()
	if s, err := ReadSecretFile(writeFile(t, "hunter2\n")); err != nil || s != "hunter2" {
		t.Fatalf("ReadSecretFile = %q, %v", s, err)
	}
	mode := func(text string, m os.FileMode) string {
		p := writeFile(t, text)
		if err := os.Chmod(p, m); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for name, tc := range map[string]struct{ path, want string }{
		"group readable": {mode("x\n", 0o640), "chmod 600"},
		"empty":          {writeFile(t, "\n"), "empty"},
		"two lines":      {writeFile(t, "a\nb\n"), "more than one line"},
		"oversized":      {writeFile(t, strings.Repeat("x", MaxSecretFile+1)), "larger than"},
		"directory":      {t.TempDir(), "not a regular file"},
		"missing":        {filepath.Join(t.TempDir(), "none"), "no such file"},
	} {
		if _, err := ReadSecretFile(tc.path); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
}

// TestLoggerColour: the console format is coloured on a terminal only; a file or a pipe
// gets no escape codes.
func TestLoggerColour(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := NewLogger(&buf, "debug", "console")
	log.Info().Str("k", "v").Msg("hello")
	if !strings.Contains(buf.String(), "hello") || strings.Contains(buf.String(), "\x1b[") {
		t.Errorf("console log to a buffer: %q", buf.String())
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	flog := NewLogger(f, "info", "console")
	flog.Warn().Msg("to a file")
	text, _ := os.ReadFile(f.Name())
	if !strings.Contains(string(text), "to a file") || strings.Contains(string(text), "\x1b[") {
		t.Errorf("console log to a file: %q", text)
	}
	buf.Reset()
	jlog := NewLogger(&buf, "warn", "json")
	jlog.Info().Msg("dropped")
	jlog.Warn().Msg("kept")
	if strings.Contains(buf.String(), "dropped") || !strings.HasPrefix(buf.String(), `{"level":"warn"`) {
		t.Errorf("json log at warn: %q", buf.String())
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		t.Skip("no build information in this binary")
	}
	if v := Version("broker"); !strings.HasPrefix(v, "broker "+bi.Main.Version) || !strings.Contains(v, bi.GoVersion) {
		t.Errorf("Version = %q; module version %q, Go %s", v, bi.Main.Version, bi.GoVersion)
	}
	fake := &debug.BuildInfo{GoVersion: "go1.99", Main: debug.Module{Version: "v1.2.3"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123abcd"}, {Key: "vcs.time", Value: "2026-01-02T03:04:05Z"}, {Key: "vcs.modified", Value: "true"},
	}}
	if got, want := formatVersion("device", fake), "device v1.2.3 revision 0123abcd+modified (2026-01-02T03:04:05Z) go1.99"; got != want {
		t.Errorf("formatVersion = %q, want %q", got, want)
	}
	fake.Settings = fake.Settings[:1]
	if got, want := formatVersion("device", fake), "device v1.2.3 revision 0123abcd go1.99"; got != want {
		t.Errorf("formatVersion = %q, want %q", got, want)
	}
	var out bytes.Buffer
	var c testCLI
	if _, err := Parse(testSpec, &c, IO{Stdout: &out}, []string{"--version"}); !errors.Is(err, ErrExited) || out.String() != Version("test")+"\n" {
		t.Errorf("--version: %v, %q", err, out.String())
	}
}

func TestExec(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		code int
		msg  string
	}{
		{nil, ExitOK, ""},
		{ErrExited, ExitOK, ""},
		{ErrReported, ExitFailure, ""},
		{errors.New("boom"), ExitFailure, "test: boom\n"},
		{Usagef("bad %s", "flag"), ExitUsage, "test: bad flag\n"},
		{errors.Join(Usage(errors.New("bad")), errors.New("and closing")), ExitUsage, "test: bad\nand closing\n"},
		{Usage(nil), ExitOK, ""},
	} {
		var stderr bytes.Buffer
		code := Exec(context.Background(), "test", func(context.Context, IO, []string) error { return tc.err }, IO{Stderr: &stderr}, nil)
		if code != tc.code || stderr.String() != tc.msg {
			t.Errorf("%v: exit %d, %q; want %d, %q", tc.err, code, stderr.String(), tc.code, tc.msg)
		}
	}
}

// FuzzConfigFile: any configuration text is read or refused with an error, never a panic,
// and what is read parses into the grammar or is refused with a usage error.
func FuzzConfigFile(f *testing.F) {
	f.Add("workers: 3\noss:\n  bucket: b\n")
	f.Add("buckets: [a, b]\ntimeout: 2s\n")
	f.Add("---\n---\n")
	f.Add("{workers: [1, 2]}")
	f.Add("&a x: *a\n")
	f.Fuzz(func(t *testing.T, text string) {
		path := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		var c testCLI
		if _, err := Parse(testSpec, &c, IO{Getenv: envOf(nil)}, []string{"--config", path, "other"}); err != nil && ExitCode(err) != ExitUsage {
			t.Fatalf("%q: %v is no usage error", text, err)
		}
	})
}

// fakeService records the steps Serve takes.
type fakeService struct {
	parseErr, runErr, closeErr error
	steps                      []string
}

func (f *fakeService) ParseFlags([]string) error {
	f.steps = append(f.steps, "parse")
	return f.parseErr
}
func (f *fakeService) Run(context.Context) error { f.steps = append(f.steps, "run"); return f.runErr }
func (f *fakeService) Close() error              { f.steps = append(f.steps, "close"); return f.closeErr }
func (f *fakeService) did() string               { return strings.Join(f.steps, ",") }

func TestServe(t *testing.T) {
	t.Parallel()
	errParse, errRun, errClose := errors.New("parse"), errors.New("run"), errors.New("close")
	done, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name  string
		svc   *fakeService
		steps string
		errs  []error
	}{
		{"served until ctx ends", &fakeService{}, "parse,run,close", nil},
		{"close error", &fakeService{closeErr: errClose}, "parse,run,close", []error{errClose}},
		{"bad flags: nothing started", &fakeService{parseErr: errParse}, "parse", []error{errParse}},
		{"failed start is closed", &fakeService{runErr: errRun, closeErr: errClose}, "parse,run,close", []error{errRun, errClose}},
	} {
		err := Serve(done, tc.svc, nil)
		if tc.svc.did() != tc.steps {
			t.Errorf("%s: steps %s, want %s", tc.name, tc.svc.did(), tc.steps)
		}
		if len(tc.errs) == 0 && err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		for _, want := range tc.errs {
			if !errors.Is(err, want) {
				t.Errorf("%s: error %v does not wrap %v", tc.name, err, want)
			}
		}
	}
}
