package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"unicode"

	"github.com/alecthomas/kong"
	"gopkg.in/yaml.v3"
)

// MaxConfigFile bounds a configuration file.
const MaxConfigFile = 1 << 20

// YAMLNode is the token value a flag gets from the configuration file when the file gives
// it a YAML structure (a list or a mapping) rather than a scalar; Dir is the file's
// directory, for relative paths. Only flags whose type implements YAMLDecoder get one.
type YAMLNode struct {
	Node *yaml.Node
	Dir  string
}

// YAMLDecoder is implemented by flag types (kong.MapperValue) whose value may be a YAML
// structure in the configuration file; their Decode method then receives a YAMLNode.
type YAMLDecoder interface {
	DecodeYAML(n YAMLNode) error
}

var yamlDecoderType = reflect.TypeOf((*YAMLDecoder)(nil)).Elem()

// resolver gives the flags that the command line leaves unset their values from the
// environment, then from the configuration file.
type resolver struct {
	spec   Spec
	getenv func(string) (string, bool)
	flags  map[string]*kong.Flag // every flag of the grammar
	envs   map[*kong.Flag]string // the variable of each flag
	loaded bool
	file   *configFile // nil when none was read
	// sources maps the flags the resolver set to the variable or "name in FILE".
	sources map[*kong.Flag]string
}

// configFile is a configuration file's settings, by flag name.
type configFile struct {
	path, dir   string
	fromDefault bool
	values      map[string]*yaml.Node
	order       []string // keys in file order
}

// load reads the configuration file named by --config, else by its variable, else the
// spec's default file if it exists. kong calls it before resolving, once per element of
// the parse path.
func (r *resolver) load(kctx *kong.Context) error {
	if r.loaded {
		return nil
	}
	r.loaded = true
	cfg := r.flags["config"]
	path, def := "", false
	for _, p := range kctx.Path {
		if p.Flag == cfg {
			path, _ = kctx.FlagValue(cfg).(string)
		}
	}
	if path == "" {
		if v, ok := r.getenv(r.envs[cfg]); ok && v != "" {
			path = kong.ExpandPath(v)
		}
	}
	if path == "" && r.spec.DefaultConfig != "" {
		if _, err := os.Stat(r.spec.DefaultConfig); err == nil {
			path, def = kong.ExpandPath(r.spec.DefaultConfig), true
		}
	}
	if path == "" {
		return nil
	}
	f, err := readConfigFile(path, r.flags)
	if err != nil {
		return err
	}
	f.fromDefault = def
	r.file = f
	return nil
}

// Validate refuses keys of the configuration file that are no flag, and secrets written
// into it.
func (r *resolver) Validate(*kong.Application) error {
	if r.file == nil {
		return nil
	}
	var unknown []string
	for _, k := range r.file.order {
		if f := r.flags[k]; f == nil || commandLineOnly[k] || k == "config" {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	for _, k := range unknown {
		f := r.flags[k+"-file"]
		switch {
		case f != nil && f.Tag.Has("secret"):
			return fmt.Errorf("configuration file %s: %q: secrets do not belong in the file; put it in a file named by %s-file, or in $%s", r.file.path, k, k, r.secretEnv(f))
		case f != nil:
			return fmt.Errorf("configuration file %s: %q: secrets do not belong in the file; put it in a file named by %s-file", r.file.path, k, k)
		case strings.Contains(k, "password") || strings.Contains(k, "secret") || strings.Contains(k, "token"):
			return fmt.Errorf("configuration file %s: %q: secrets do not belong in the file; give it in a file named by a *-file setting, or in the environment", r.file.path, k)
		}
	}
	sort.Strings(unknown)
	for i, k := range unknown {
		unknown[i] = fmt.Sprintf("%s (line %d)", k, r.file.values[k].Line)
	}
	return fmt.Errorf("configuration file %s: unknown setting(s) %s", r.file.path, strings.Join(unknown, ", "))
}

// Resolve returns a flag's value from its variable (unless empty), else from the file.
func (r *resolver) Resolve(_ *kong.Context, _ *kong.Path, f *kong.Flag) (any, error) {
	env := r.envs[f]
	if env == "" {
		return nil, nil
	}
	if v, ok := r.getenv(env); ok && v != "" {
		if err := tryDecode(f, v); err != nil {
			return nil, fmt.Errorf("$%s=%q: %w", env, v, err)
		}
		r.sources[f] = "$" + env
		return v, nil
	}
	if r.file == nil {
		return nil, nil
	}
	if f.Name == "config" {
		if r.file.fromDefault {
			return r.file.path, nil
		}
		return nil, nil
	}
	n, ok := r.file.values[f.Name]
	if !ok {
		return nil, nil
	}
	src := fmt.Sprintf("%s in %s", f.Name, r.file.path)
	v, err := r.file.value(f, n)
	if err == nil {
		err = tryDecode(f, v)
	}
	if err != nil {
		return nil, fmt.Errorf("%s (line %d): %w", src, n.Line, err)
	}
	r.sources[f] = src
	return v, nil
}

// tryDecode decodes v as f would, into a scratch value, so that a bad value is reported
// with where it came from.
func tryDecode(f *kong.Flag, v any) error {
	scratch := reflect.New(f.Target.Type()).Elem()
	scan := kong.ScanFromTokens(kong.Token{Type: kong.FlagValueToken, Value: v})
	return f.Mapper.Decode(&kong.DecodeContext{Value: f.Value, Scan: scan}, scratch)
}

// value returns the token value of flag f from the file's node n: the scalar text, a
// list of scalars joined with the flag's separator, or a YAMLNode for flag types that
// take structure. Relative paths are made relative to the file.
func (c *configFile) value(f *kong.Flag, n *yaml.Node) (any, error) {
	isPath := f.Tag.Type == "path" || f.Tag.Type == "existingfile" || f.Tag.Type == "existingdir"
	scalar := func(n *yaml.Node) (string, error) {
		if n.Tag == "!!null" {
			return "", errors.New("no value")
		}
		s := n.Value
		if isPath && s != "" && !filepath.IsAbs(s) && !strings.HasPrefix(s, "~") {
			s = filepath.Join(c.dir, s)
		}
		return s, nil
	}
	structured := reflect.PointerTo(f.Target.Type()).Implements(yamlDecoderType)
	switch {
	case n.Kind == yaml.ScalarNode:
		return scalar(n)
	case structured:
		return YAMLNode{Node: n, Dir: c.dir}, nil
	case n.Kind == yaml.SequenceNode && f.Target.Kind() == reflect.Slice && f.Tag.Sep != -1:
		parts := make([]string, len(n.Content))
		for i, e := range n.Content {
			if e.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("line %d: want a list of single values", e.Line)
			}
			s, err := scalar(e)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", e.Line, err)
			}
			parts[i] = strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), string(f.Tag.Sep), `\`+string(f.Tag.Sep))
		}
		return strings.Join(parts, string(f.Tag.Sep)), nil
	case n.Kind == yaml.SequenceNode:
		return nil, errors.New("lists are not supported for this setting")
	}
	return nil, errors.New("want a single value")
}

// readConfigFile reads and flattens a configuration file. flags are the grammar's flags:
// a mapping under a key that names a flag is that flag's value, any other mapping is a
// group whose keys join the group's with '-'.
func readConfigFile(path string, flags map[string]*kong.Flag) (*configFile, error) {
	fail := func(err error) (*configFile, error) {
		return nil, fmt.Errorf("configuration file %s: %w", path, err)
	}
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("configuration file: %w", err)
	}
	defer fh.Close()
	if st, err := fh.Stat(); err != nil {
		return fail(err)
	} else if !st.Mode().IsRegular() {
		return fail(errors.New("not a regular file"))
	}
	data, err := io.ReadAll(io.LimitReader(fh, MaxConfigFile+1))
	if err != nil {
		return fail(err)
	}
	if len(data) > MaxConfigFile {
		return fail(fmt.Errorf("larger than %d bytes", MaxConfigFile))
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return fail(err)
	}
	c := &configFile{path: path, dir: dir, values: map[string]*yaml.Node{}}
	if len(bytes.TrimSpace(data)) == 0 {
		return c, nil
	}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); errors.Is(err, io.EOF) {
		return c, nil // comments only
	} else if err != nil {
		return fail(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return fail(errors.New("more than one YAML document"))
	}
	doc := &root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	if doc.Kind != yaml.MappingNode {
		return fail(fmt.Errorf("line %d: the document must be a map of settings", doc.Line))
	}
	if err := c.flatten(doc, "", flags); err != nil {
		return fail(err)
	}
	return c, nil
}

func (c *configFile) flatten(m *yaml.Node, prefix string, flags map[string]*kong.Flag) error {
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Value == "" {
			return fmt.Errorf("line %d: keys must be non-empty strings", k.Line)
		}
		key := NormalizeKey(k.Value)
		if prefix != "" {
			key = prefix + "-" + key
		}
		if v.Kind == yaml.AliasNode || v.Anchor != "" {
			return fmt.Errorf("line %d: %q: anchors and aliases are not supported", v.Line, key)
		}
		if v.Kind == yaml.MappingNode && flags[key] == nil {
			if err := c.flatten(v, key, flags); err != nil {
				return err
			}
			continue
		}
		if _, dup := c.values[key]; dup {
			return fmt.Errorf("line %d: %q is set twice", k.Line, key)
		}
		c.values[key] = v
		c.order = append(c.order, key)
	}
	return nil
}

// NormalizeKey turns a configuration key into the flag name it stands for: lower case,
// with '-' for '_' and between the words of a camelCase key (dataDir and data_dir are
// data-dir, OSSBucket is oss-bucket).
func NormalizeKey(k string) string {
	rs := []rune(k)
	var b strings.Builder
	for i, r := range rs {
		if r == '_' {
			r = '-'
		}
		if unicode.IsUpper(r) && i > 0 {
			prev := rs[i-1]
			nextLower := i+1 < len(rs) && unicode.IsLower(rs[i+1])
			if unicode.IsLower(prev) || unicode.IsDigit(prev) || (unicode.IsUpper(prev) && nextLower) {
				b.WriteByte('-')
			}
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}
