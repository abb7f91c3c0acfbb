package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/alecthomas/kong"
	"gopkg.in/yaml.v3"

	"github.com/clipgate/clipgate/internal/cli"
	"github.com/clipgate/clipgate/internal/localcloud"
)

// maxPolicyFile bounds a policy file.
const maxPolicyFile = 64 << 10

// keySpec is one long-term access key as --keys or the configuration file gives it.
type keySpec struct {
	ID         string
	Secret     string // only from the configuration file (the old format); prefer SecretFile
	SecretFile string
	User       string
	Policy     string // JSON, from the configuration file
	PolicyFile string
}

// roleSpec is one role as --roles or the configuration file gives it.
type roleSpec struct {
	Name               string
	Policy             string
	PolicyFile         string
	Trust              string
	TrustFile          string
	MaxSessionDuration time.Duration
}

// keySpecs is the value of --keys: on the command line and in the variable, entries
// "ID,secret-file=FILE[,user=NAME][,policy-file=FILE]" (repeat the flag, or separate
// entries with ';'); in the configuration file, a list of mappings with the same keys
// (and, as the old format had them, secret and policy inline).
type keySpecs []keySpec

// roleSpecs is the value of --roles: entries "NAME,policy-file=FILE[,trust-file=FILE]
// [,max-session-duration=DURATION]", or in the file a list of mappings (policy and trust
// may be inline: JSON text or a YAML mapping).
type roleSpecs []roleSpec

// Decode implements kong.MapperValue.
func (k *keySpecs) Decode(ctx *kong.DecodeContext) error {
	return decodeSpecs(ctx, k.DecodeYAML, k.decodeText)
}

// decodeText appends the key of an entry, its relative paths taken relative to dir.
func (k *keySpecs) decodeText(s, dir string) error {
	f, err := parseSpec(s, dir, "secret-file", "user", "policy-file")
	if err != nil {
		return err
	}
	*k = append(*k, keySpec{ID: f[""], SecretFile: f["secret-file"], User: f["user"], PolicyFile: f["policy-file"]})
	return nil
}

// Decode implements kong.MapperValue.
func (r *roleSpecs) Decode(ctx *kong.DecodeContext) error {
	return decodeSpecs(ctx, r.DecodeYAML, r.decodeText)
}

// decodeText appends the role of an entry, its relative paths taken relative to dir.
func (r *roleSpecs) decodeText(s, dir string) error {
	f, err := parseSpec(s, dir, "policy-file", "trust-file", "max-session-duration")
	if err != nil {
		return err
	}
	spec := roleSpec{Name: f[""], PolicyFile: f["policy-file"], TrustFile: f["trust-file"]}
	if d := f["max-session-duration"]; d != "" {
		if spec.MaxSessionDuration, err = time.ParseDuration(d); err != nil {
			return fmt.Errorf("role %q: max-session-duration: %w", spec.Name, err)
		}
	}
	*r = append(*r, spec)
	return nil
}

// decodeSpecs decodes a flag value: a YAML structure from the configuration file, or
// text with entries separated by ';'.
func decodeSpecs(ctx *kong.DecodeContext, fromYAML func(cli.YAMLNode) error, fromText func(string, string) error) error {
	t := ctx.Scan.Pop()
	switch v := t.Value.(type) {
	case cli.YAMLNode:
		return fromYAML(v)
	case string:
		for _, entry := range strings.Split(v, ";") {
			if entry = strings.TrimSpace(entry); entry == "" {
				continue
			}
			if err := fromText(entry, ""); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("want text, got %v", t)
}

// parseSpec parses "NAME,key=value,...": the name under "", then the keys, each of
// which must be one of keys. File paths are made absolute, relative ones taken relative
// to dir ("" for the working directory).
func parseSpec(s, dir string, keys ...string) (map[string]string, error) {
	parts := strings.Split(s, ",")
	out := map[string]string{"": strings.TrimSpace(parts[0])}
	if out[""] == "" || strings.Contains(out[""], "=") {
		return nil, fmt.Errorf("%q: want NAME,%s=...", s, keys[0])
	}
	for _, p := range parts[1:] {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		switch {
		case k == "secret" || k == "policy" || k == "trust":
			return nil, fmt.Errorf("%q: %s: give it in a file (%s-file=FILE); secrets and policies are not given inline here", s, k, k)
		case !ok || v == "" || !contains(keys, k):
			return nil, fmt.Errorf("%q: %q: want one of %s, as key=value", s, p, strings.Join(keys, ", "))
		case out[k] != "":
			return nil, fmt.Errorf("%q: %s is given twice", s, k)
		}
		if strings.HasSuffix(k, "-file") {
			if dir != "" && !filepath.IsAbs(v) {
				v = filepath.Join(dir, v)
			}
			abs, err := filepath.Abs(v)
			if err != nil {
				return nil, err
			}
			v = abs
		}
		out[k] = v
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// DecodeYAML implements cli.YAMLDecoder: a list of mappings with id, secret or
// secret-file, user, and policy or policy-file.
func (k *keySpecs) DecodeYAML(n cli.YAMLNode) error {
	return eachMapping(n, "keys", k.decodeText, []string{"id", "secret", "secret-file", "user", "policy", "policy-file"}, func(f map[string]*yaml.Node) error {
		var spec keySpec
		var err error
		spec.ID, err = scalar(f, "id")
		if err == nil {
			spec.Secret, err = scalar(f, "secret")
		}
		if err == nil {
			spec.SecretFile, err = path(f, "secret-file", n.Dir)
		}
		if err == nil {
			spec.User, err = scalar(f, "user")
		}
		if err == nil {
			spec.Policy, err = policyText(f, "policy")
		}
		if err == nil {
			spec.PolicyFile, err = path(f, "policy-file", n.Dir)
		}
		*k = append(*k, spec)
		return err
	})
}

// DecodeYAML implements cli.YAMLDecoder: a list of mappings with name, policy or
// policy-file, trust or trust-file, and max-session-duration.
func (r *roleSpecs) DecodeYAML(n cli.YAMLNode) error {
	return eachMapping(n, "roles", r.decodeText, []string{"name", "policy", "policy-file", "trust", "trust-file", "max-session-duration"}, func(f map[string]*yaml.Node) error {
		var spec roleSpec
		var err error
		var d string
		spec.Name, err = scalar(f, "name")
		if err == nil {
			spec.Policy, err = policyText(f, "policy")
		}
		if err == nil {
			spec.PolicyFile, err = path(f, "policy-file", n.Dir)
		}
		if err == nil {
			spec.Trust, err = policyText(f, "trust")
		}
		if err == nil {
			spec.TrustFile, err = path(f, "trust-file", n.Dir)
		}
		if err == nil {
			d, err = scalar(f, "max-session-duration")
		}
		if err == nil && d != "" {
			if spec.MaxSessionDuration, err = time.ParseDuration(d); err != nil {
				err = fmt.Errorf("line %d: max-session-duration: %w", f["max-session-duration"].Line, err)
			}
		}
		*r = append(*r, spec)
		return err
	})
}

// eachMapping calls fn for every mapping of the list n, its keys normalized as the
// configuration file's (maxSessionDuration is max-session-duration); a key not in keys
// is an error. An entry may also be text as on the command line, given to text.
func eachMapping(n cli.YAMLNode, what string, text func(s, dir string) error, keys []string, fn func(map[string]*yaml.Node) error) error {
	if n.Node.Kind != yaml.SequenceNode {
		return fmt.Errorf("line %d: %s: want a list", n.Node.Line, what)
	}
	for _, m := range n.Node.Content {
		if m.Kind == yaml.ScalarNode {
			if err := text(m.Value, n.Dir); err != nil {
				return fmt.Errorf("line %d: %w", m.Line, err)
			}
			continue
		}
		if m.Kind != yaml.MappingNode {
			return fmt.Errorf("line %d: %s: want a mapping or text for each entry", m.Line, what)
		}
		fields := map[string]*yaml.Node{}
		for i := 0; i+1 < len(m.Content); i += 2 {
			k := cli.NormalizeKey(m.Content[i].Value)
			if !contains(keys, k) {
				return fmt.Errorf("line %d: %s: unknown field %q; known: %s", m.Content[i].Line, what, m.Content[i].Value, strings.Join(keys, ", "))
			}
			if _, dup := fields[k]; dup {
				return fmt.Errorf("line %d: %s: %q is set twice", m.Content[i].Line, what, k)
			}
			fields[k] = m.Content[i+1]
		}
		if err := fn(fields); err != nil {
			return err
		}
	}
	return nil
}

func scalar(f map[string]*yaml.Node, key string) (string, error) {
	n := f[key]
	if n == nil {
		return "", nil
	}
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return "", fmt.Errorf("line %d: %s: want a single value", n.Line, key)
	}
	return n.Value, nil
}

func path(f map[string]*yaml.Node, key, dir string) (string, error) {
	p, err := scalar(f, key)
	if err != nil || p == "" || filepath.IsAbs(p) {
		return p, err
	}
	return filepath.Join(dir, p), nil
}

// policyText returns a policy given as JSON text or as a YAML mapping, as JSON.
func policyText(f map[string]*yaml.Node, key string) (string, error) {
	n := f[key]
	switch {
	case n == nil:
		return "", nil
	case n.Kind == yaml.ScalarNode:
		return n.Value, nil
	case n.Kind != yaml.MappingNode:
		return "", fmt.Errorf("line %d: %s: a policy must be a JSON string or a mapping", n.Line, key)
	}
	var v map[string]any
	if err := n.Decode(&v); err != nil {
		return "", fmt.Errorf("line %d: %s: %w", n.Line, key, err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("line %d: %s: %w", n.Line, key, err)
	}
	return string(b), nil
}

// accessKey returns the key with its secret and policy read from their files.
func (k keySpec) accessKey() (localcloud.AccessKey, error) {
	what := fmt.Sprintf("key %q", k.ID)
	switch {
	case k.ID == "":
		return localcloud.AccessKey{}, errors.New("a key without an id")
	case k.Secret != "" && k.SecretFile != "":
		return localcloud.AccessKey{}, fmt.Errorf("%s: set secret or secret-file, not both", what)
	case k.Secret == "" && k.SecretFile == "":
		return localcloud.AccessKey{}, fmt.Errorf("%s has no secret: set secret-file", what)
	case k.Policy != "" && k.PolicyFile != "":
		return localcloud.AccessKey{}, fmt.Errorf("%s: set policy or policy-file, not both", what)
	}
	key := localcloud.AccessKey{ID: k.ID, Secret: k.Secret, User: k.User, Policy: k.Policy}
	var err error
	if k.SecretFile != "" {
		if key.Secret, err = cli.ReadSecretFile(k.SecretFile); err != nil {
			return key, fmt.Errorf("%s: secret-file: %w", what, err)
		}
	}
	if k.PolicyFile != "" {
		if key.Policy, err = readPolicy(k.PolicyFile); err != nil {
			return key, fmt.Errorf("%s: policy-file: %w", what, err)
		}
	}
	return key, nil
}

// role returns the role with its policies read from their files.
func (r roleSpec) role() (localcloud.Role, error) {
	what := fmt.Sprintf("role %q", r.Name)
	switch {
	case r.Name == "":
		return localcloud.Role{}, errors.New("a role without a name")
	case r.Policy != "" && r.PolicyFile != "":
		return localcloud.Role{}, fmt.Errorf("%s: set policy or policy-file, not both", what)
	case r.Trust != "" && r.TrustFile != "":
		return localcloud.Role{}, fmt.Errorf("%s: set trust or trust-file, not both", what)
	}
	role := localcloud.Role{Name: r.Name, Policy: r.Policy, Trust: r.Trust, MaxSessionDuration: r.MaxSessionDuration}
	var err error
	if r.PolicyFile != "" {
		if role.Policy, err = readPolicy(r.PolicyFile); err != nil {
			return role, fmt.Errorf("%s: policy-file: %w", what, err)
		}
	}
	if r.TrustFile != "" {
		if role.Trust, err = readPolicy(r.TrustFile); err != nil {
			return role, fmt.Errorf("%s: trust-file: %w", what, err)
		}
	}
	return role, nil
}

// readPolicy reads a policy document (JSON) from a file.
func readPolicy(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPolicyFile+1))
	if err != nil {
		return "", err
	}
	if len(b) > maxPolicyFile {
		return "", fmt.Errorf("%s is larger than %d bytes", path, maxPolicyFile)
	}
	return string(b), nil
}
