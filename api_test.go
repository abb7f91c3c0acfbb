package clipgate_test

import (
	"fmt"
	"go/importer"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/clipgate/clipgate"

// TestPublicAPIUsesOnlyPublicTypes type-checks every public package of the module (from
// the compiler's export data) and walks its exported API: functions, variables,
// constants, types, their exported fields and methods. A type from an internal package
// anywhere in it, directly or through an alias, is a name that code outside this module
// cannot write, so the test fails naming where it appears.
func TestPublicAPIUsesOnlyPublicTypes(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{.Name}} {{len .GoFiles}}", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var public []string
	for line := range strings.Lines(string(out)) {
		var path, name string
		var files int
		if _, err := fmt.Sscan(line, &path, &name, &files); err != nil {
			t.Fatalf("go list line %q: %v", line, err)
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(path, module), "/")
		if name == "main" || files == 0 || rel == "test" || strings.HasPrefix(rel, "test/") || slices.Contains(strings.Split(rel, "/"), "internal") {
			continue
		}
		public = append(public, path)
	}
	for _, want := range []string{module, module + "/devicekit", module + "/events", module + "/clipgatetest"} {
		if !slices.Contains(public, want) {
			t.Fatalf("public packages %v miss %s", public, want)
		}
	}

	// -export builds the public packages and their dependencies (from the build cache,
	// normally) and names each one's export data file, which the gc importer reads.
	out, err = exec.Command("go", append([]string{"list", "-export", "-deps", "-f", "{{.ImportPath}} {{.Export}}"}, public...)...).Output()
	if err != nil {
		t.Fatalf("go list -export: %v", err)
	}
	export := map[string]string{}
	for line := range strings.Lines(string(out)) {
		if path, file, ok := strings.Cut(strings.TrimSpace(line), " "); ok && file != "" {
			export[path] = file
		}
	}
	imp := importer.ForCompiler(token.NewFileSet(), "gc", func(path string) (io.ReadCloser, error) {
		file, ok := export[path]
		if !ok {
			return nil, fmt.Errorf("no export data for %s", path)
		}
		return os.Open(file)
	})
	for _, path := range public {
		pkg, err := imp.Import(path)
		if err != nil {
			t.Fatalf("import %s: %v", path, err)
		}
		w := apiWalker{seen: map[types.Type]bool{}}
		scope := pkg.Scope()
		for _, name := range scope.Names() {
			obj := scope.Lookup(name)
			if !obj.Exported() {
				continue
			}
			w.walk(pkg.Name()+"."+name, obj.Type())
		}
		for _, bad := range w.bad {
			t.Errorf("%s: %s", path, bad)
		}
	}
}

// apiWalker collects the internal types reachable from a public API.
type apiWalker struct {
	seen map[types.Type]bool
	bad  []string
}

func internalPath(p *types.Package) bool {
	return p != nil && strings.HasPrefix(p.Path(), module+"/") && slices.Contains(strings.Split(p.Path(), "/"), "internal")
}

// walk visits typ, reached at where (a readable path such as "devicekit.Config.DeviceKey").
func (w *apiWalker) walk(where string, typ types.Type) {
	if w.seen[typ] {
		return
	}
	w.seen[typ] = true
	switch t := typ.(type) {
	case *types.Alias:
		if internalPath(t.Obj().Pkg()) {
			w.bad = append(w.bad, fmt.Sprintf("%s uses %s", where, t.Obj().Pkg().Path()+"."+t.Obj().Name()))
			return
		}
		w.walk(where, t.Rhs())
	case *types.Named:
		obj := t.Obj()
		if internalPath(obj.Pkg()) {
			w.bad = append(w.bad, fmt.Sprintf("%s uses %s", where, obj.Pkg().Path()+"."+obj.Name()))
			return
		}
		if obj.Pkg() == nil || !strings.HasPrefix(obj.Pkg().Path(), module) {
			return // another module's type: its API is not ours to check
		}
		for i := range t.TypeArgs().Len() {
			w.walk(where, t.TypeArgs().At(i))
		}
		for i := range t.NumMethods() {
			if m := t.Method(i); m.Exported() {
				w.walk(where+"."+m.Name(), m.Type())
			}
		}
		w.walk(where, t.Underlying())
	case *types.Pointer:
		w.walk(where, t.Elem())
	case *types.Slice:
		w.walk(where, t.Elem())
	case *types.Array:
		w.walk(where, t.Elem())
	case *types.Chan:
		w.walk(where, t.Elem())
	case *types.Map:
		w.walk(where, t.Key())
		w.walk(where, t.Elem())
	case *types.Signature:
		for v := range t.Params().Variables() {
			w.walk(where, v.Type())
		}
		for v := range t.Results().Variables() {
			w.walk(where, v.Type())
		}
	case *types.Struct:
		for f := range t.Fields() {
			if f.Exported() {
				w.walk(where+"."+f.Name(), f.Type())
			}
		}
	case *types.Interface:
		for m := range t.Methods() {
			if m.Exported() {
				w.walk(where+"."+m.Name(), m.Type())
			}
		}
		for e := range t.EmbeddedTypes() {
			w.walk(where, e)
		}
	case *types.TypeParam:
		w.walk(where, t.Constraint())
	case *types.Union:
		for i := range t.Len() {
			w.walk(where, t.Term(i).Type())
		}
	}
}
