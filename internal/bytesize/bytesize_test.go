package bytesize

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestParse(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]Size{
		"0": 0, "1048576": 1 << 20, "500MB": 500e6, "2GiB": 2 << 30, "1.5g": 3 << 29, "10 KiB": 10240,
		"7kb": 7000, "3T": 3 << 40, "12B": 12, " 4 mib ": 4 << 20, "1MiB": 1 << 20, "0.5k": 512, ".5KiB": 512,
		"9223372036854775807": 1<<63 - 1, "1.0001KB": 1000, "8tb": 8e12, "100KiB": 102400,
	} {
		if got, err := Parse(in); err != nil || got != want {
			t.Errorf("Parse(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for in, why := range map[string]string{
		"": "want", "GiB": "want", "-1": "want", "-1MiB": "want", "1.2.3MB": "want", "5 parsecs": "want",
		"99999999999999999999": "too large", "9223372036854775808": "too large", "1e3": "want",
		"20000000TiB": "too large", "8388608TiB": "too large", "1.5": "whole", "0x10": "want", "1_000": "want",
		"1 MiB B": "want", "MiB1": "want", "+5": "want", "1,5MB": "want", ".": "want", "NaN": "want", "Inf": "want",
		"1\x00": "want", "１": "want",
	} {
		got, err := Parse(in)
		if err == nil {
			t.Errorf("Parse(%q) = %d, want an error", in, got)
			continue
		}
		if !strings.Contains(err.Error(), why) || !strings.Contains(err.Error(), "is not a size") {
			t.Errorf("Parse(%q): %v; want %q", in, err, why)
		}
	}
}

func TestText(t *testing.T) {
	t.Parallel()
	var s Size = 7
	if err := s.UnmarshalText([]byte("2MiB")); err != nil || s != 2<<20 {
		t.Errorf("UnmarshalText: %d, %v", s, err)
	}
	if err := s.UnmarshalText([]byte("lots")); err == nil || s != 2<<20 {
		t.Errorf("garbage: %d, %v; want an error and the value kept", s, err)
	}
}

func TestYAML(t *testing.T) {
	t.Parallel()
	var v struct {
		A Size `yaml:"a"`
		B Size `yaml:"b"`
		C Size `yaml:"c"`
	}
	if err := yaml.Unmarshal([]byte("a: 1048576\nb: 8MiB\nc: \"1.5 GB\"\n"), &v); err != nil || v.A != 1<<20 || v.B != 8<<20 || v.C != 1.5e9 {
		t.Errorf("%+v, %v", v, err)
	}
	for doc, want := range map[string]string{
		"a: 1\nb: lots\n":           `line 2: "lots" is not a size`,
		"a: -5\n":                   `line 1: "-5" is not a size`,
		"a: 1.5\n":                  "whole",
		"a: [1, 2]\n":               "line 1: want a size",
		"a: {x: 1}\n":               "line 1: want a size",
		"a: 1e30\n":                 "is not a size",
		"a: 99999999999999999999\n": "too large",
	} {
		if err := yaml.Unmarshal([]byte(doc), &v); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v; want %q", doc, err, want)
		}
	}
	// Written back as a plain number.
	out, err := yaml.Marshal(struct {
		A Size `yaml:"a"`
	}{8 << 20})
	if err != nil || string(out) != "a: 8388608\n" {
		t.Errorf("Marshal: %q, %v", out, err)
	}
}
