package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/alecthomas/kong"
	"gopkg.in/yaml.v3"
)

// maxConfigFile bounds the YAML configuration file.
const maxConfigFile = 1 << 20

// yamlLoader is a kong.ConfigurationLoader for YAML files: keys are flag names
// (kebab-case or snake_case), nested maps join their keys with '-' (oss: {bucket: x} is
// oss-bucket). Unknown keys are errors, so that a typo does not pass silently. The
// precedence is flags, then the environment, then the file.
func yamlLoader(r io.Reader) (kong.Resolver, error) {
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
		var more yaml.Node
		if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
			return nil, errors.New("configuration file: more than one YAML document")
		}
		if err := collect(&root, "", values); err != nil {
			return nil, fmt.Errorf("configuration file: %w", err)
		}
	}
	return resolver(values), nil
}

// collect gathers the scalar leaves of n under their joined keys.
func collect(n *yaml.Node, prefix string, out map[string]string) error {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil
		}
		return collect(n.Content[0], prefix, out)
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
			if err := collect(n.Content[i+1], key, out); err != nil {
				return err
			}
		}
		return nil
	case yaml.ScalarNode:
		switch {
		case prefix == "":
			return fmt.Errorf("line %d: the document must be a map of settings", n.Line)
		case n.Tag == "!!null":
			return fmt.Errorf("line %d: %q has no value", n.Line, prefix)
		}
		if _, dup := out[prefix]; dup {
			return fmt.Errorf("line %d: %q is set twice", n.Line, prefix)
		}
		out[prefix] = n.Value
		return nil
	}
	return fmt.Errorf("line %d: %q: lists and aliases are not supported", n.Line, prefix)
}

type resolver map[string]string

// Validate refuses keys that are no flag, with a hint for secrets put in the file.
func (r resolver) Validate(app *kong.Application) error {
	known := map[string]bool{}
	for _, group := range app.AllFlags(false) {
		for _, f := range group {
			known[f.Name] = f.Name != "config" && f.Name != "help"
		}
	}
	var unknown []string
	for k := range r {
		if !known[k] {
			if strings.Contains(k, "password") || strings.Contains(k, "secret") {
				return fmt.Errorf("configuration file: %q: secrets do not belong in the file; use %s / %s or a *-file setting",
					k, envPassword, envOSSSecret)
			}
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return fmt.Errorf("configuration file: unknown setting(s) %s", strings.Join(unknown, ", "))
	}
	return nil
}

// Resolve returns the file's value of a flag, unless its environment variable is set.
func (r resolver) Resolve(_ *kong.Context, _ *kong.Path, flag *kong.Flag) (any, error) {
	v, ok := r[flag.Name]
	if !ok {
		return nil, nil
	}
	for _, env := range flag.Envs {
		if _, set := os.LookupEnv(env); set {
			return nil, nil
		}
	}
	return v, nil
}
