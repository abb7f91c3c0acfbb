// Package kongyaml is the YAML configuration file of clipgate's commands, as a kong
// configuration loader: keys are flag names, nested maps join their keys with '-', unknown
// keys and secrets written into the file are errors, and a flag's environment variable
// wins over the file.
package kongyaml

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/alecthomas/kong"
	"gopkg.in/yaml.v3"
)

// maxConfigFile bounds the YAML configuration file.
const maxConfigFile = 1 << 20

// Loader returns a kong.ConfigurationLoader for YAML files. Keys are flag names in
// kebab-case or snake_case; nested maps join their keys with '-' (sts: {endpoint: x} is
// sts-endpoint). Unknown keys are errors, so that a typo does not pass silently; a key
// naming a password or secret is refused with secretHint (where secrets go instead). A
// flag whose environment variable is set takes that value: the precedence is flags, then
// the environment, then the file.
func Loader(secretHint string) kong.ConfigurationLoader {
	return func(r io.Reader) (kong.Resolver, error) { return load(r, secretHint) }
}

func load(r io.Reader, secretHint string) (kong.Resolver, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxConfigFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxConfigFile {
		return nil, fmt.Errorf("configuration file is larger than %d bytes", maxConfigFile)
	}
	values := map[string]string{}
	if len(bytes.TrimSpace(data)) > 0 {
		var root yaml.Node
		dec := yaml.NewDecoder(bytes.NewReader(data))
		if err := dec.Decode(&root); err != nil {
			return nil, fmt.Errorf("configuration file: %w", err)
		}
		var extra yaml.Node
		if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
			return nil, errors.New("configuration file: more than one YAML document")
		}
		if err := flatten(&root, "", values); err != nil {
			return nil, fmt.Errorf("configuration file: %w", err)
		}
	}
	return &yamlResolver{values: values, secretHint: secretHint}, nil
}

// flatten collects the scalar leaves of n under their joined keys.
func flatten(n *yaml.Node, prefix string, out map[string]string) error {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil
		}
		return flatten(n.Content[0], prefix, out)
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != yaml.ScalarNode || k.Value == "" {
				return fmt.Errorf("line %d: keys must be non-empty strings", k.Line)
			}
			key := strings.ReplaceAll(strings.ToLower(k.Value), "_", "-")
			if prefix != "" {
				key = prefix + "-" + key
			}
			if err := flatten(n.Content[i+1], key, out); err != nil {
				return err
			}
		}
		return nil
	case yaml.ScalarNode:
		if prefix == "" {
			return fmt.Errorf("line %d: the document must be a map of settings", n.Line)
		}
		if _, dup := out[prefix]; dup {
			return fmt.Errorf("line %d: %q is set twice", n.Line, prefix)
		}
		if n.Tag == "!!null" {
			return fmt.Errorf("line %d: %q has no value", n.Line, prefix)
		}
		out[prefix] = n.Value
		return nil
	case yaml.AliasNode:
		return fmt.Errorf("line %d: aliases are not supported", n.Line)
	default:
		return fmt.Errorf("line %d: %q: lists are not supported", n.Line, prefix)
	}
}

type yamlResolver struct {
	values     map[string]string
	secretHint string
}

// Validate refuses keys that are no flag, and secrets written into the file.
func (r *yamlResolver) Validate(app *kong.Application) error {
	known := map[string]bool{}
	for _, group := range app.AllFlags(false) {
		for _, f := range group {
			known[f.Name] = true
		}
	}
	var unknown []string
	for k := range r.values {
		if !known[k] || k == "config" || k == "help" {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		if strings.Contains(k, "password") || strings.Contains(k, "secret") {
			return fmt.Errorf("configuration file: %q: secrets do not belong in the file; %s", k, r.secretHint)
		}
	}
	return fmt.Errorf("configuration file: unknown setting(s) %s", strings.Join(unknown, ", "))
}

// Resolve returns the file's value of a flag, unless its environment variable is set.
func (r *yamlResolver) Resolve(_ *kong.Context, _ *kong.Path, flag *kong.Flag) (any, error) {
	v, ok := r.values[flag.Name]
	if !ok {
		return nil, nil
	}
	for _, env := range flag.Envs {
		if _, set := os.LookupEnv(env); set {
			return nil, nil // the environment wins over the file
		}
	}
	return v, nil
}
