package clitest

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/alecthomas/kong"

	"github.com/clipgate/clipgate/internal/cli"
)

// recorder is a testing.TB that records failures instead of failing the test.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	errors []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Fatal(args ...any) { r.Fatalf("%s", fmt.Sprint(args...)) }

// record runs check with a recorder and returns what it reported.
func record(t *testing.T, check func(testing.TB)) []string {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		check(r)
	}()
	<-done
	return r.errors
}

// ignored is a flag type that drops every value it is given.
type ignored string

func (i *ignored) Decode(ctx *kong.DecodeContext) error {
	ctx.Scan.Pop()
	return nil
}

type good struct {
	cli.Common
	Name  string `help:"A name."`
	Count int    `default:"2" help:"A count."`
}

type broken struct {
	cli.Common
	Name    string  `help:"A name."`
	Ignored ignored `help:"Dropped."`
}

// TestCheckFlagsCanFail: the checker passes a sound command and reports a flag whose value
// no source sets.
func TestCheckFlagsCanFail(t *testing.T) {
	spec := cli.Spec{Name: "t", EnvPrefix: "CLIPGATE_T"}
	if errs := record(t, func(tb testing.TB) { CheckFlags(tb, Command{Spec: spec, Grammar: func() any { return &good{} }}) }); len(errs) != 0 {
		t.Errorf("a sound command: %v", errs)
	}
	errs := record(t, func(tb testing.TB) { CheckFlags(tb, Command{Spec: spec, Grammar: func() any { return &broken{} }}) })
	if n := countContaining(errs, "--ignored="); n < 3 || countContaining(errs, "--name") != 0 {
		t.Errorf("a flag no source sets: %d reports of it in %v", n, errs)
	}
}

func countContaining(list []string, s string) int {
	n := 0
	for _, e := range list {
		if strings.Contains(e, s) {
			n++
		}
	}
	return n
}

// TestCheckJSONLog: a repeated key and a line that is no JSON object are reported.
func TestCheckJSONLog(t *testing.T) {
	good := `{"level":"info","component":"broker","message":"x"}` + "\n" + `{"a":{"b":1,"b":2},"c":[1,1]}` + "\n"
	if errs := record(t, func(tb testing.TB) { CheckJSONLog(tb, good) }); len(errs) != 0 {
		t.Errorf("good lines: %v", errs)
	}
	for _, bad := range []string{`{"component":"broker","component":"mochi"}`, `not json`, `[1]`, `{"a":1} {"b":2}`} {
		if errs := record(t, func(tb testing.TB) { CheckJSONLog(tb, bad) }); len(errs) == 0 {
			t.Errorf("%s: not reported", bad)
		}
	}
}

// TestEveryCommandChecked: every command in cmd/ runs on the plumbing (cli.Main) and has
// tests that walk its flags and check its exit statuses.
func TestEveryCommandChecked(t *testing.T) {
	dirs, err := filepath.Glob("../../../cmd/*")
	if err != nil || len(dirs) < 8 {
		t.Fatalf("commands %v, %v", dirs, err)
	}
	for _, dir := range dirs {
		main, err := os.ReadFile(filepath.Join(dir, "main.go"))
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(dir)
		if !strings.Contains(string(main), `cli.Main("`+name+`", run)`) {
			t.Errorf("%s/main.go does not run cli.Main(%q, run)", dir, name)
		}
		tests, _ := filepath.Glob(filepath.Join(dir, "*_test.go"))
		var all strings.Builder
		for _, f := range tests {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			all.Write(b)
		}
		for _, call := range []string{"clitest.CheckFlags(t, ", "clitest.CheckExitCodes(t, \"" + name + "\", run, "} {
			if !strings.Contains(all.String(), call) {
				t.Errorf("%s: no test calls %s", dir, call)
			}
		}
	}
}
