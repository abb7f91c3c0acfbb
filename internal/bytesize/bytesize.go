// Package bytesize is the one way clipgate's commands read byte sizes: flags,
// environment variables and YAML configuration files all accept a whole number of bytes
// ("1048576") or a number with a unit ("500MB", "2GiB", "1.5g", "10 KiB").
//
// Units (any case): B; decimal KB, MB, GB, TB (powers of 1000); binary KiB, MiB, GiB, TiB
// and the single letters K, M, G, T (powers of 1024). A fractional number needs a unit and
// is rounded to the nearest byte. Negative sizes, other units and sizes above 2^63-1
// bytes are errors.
package bytesize

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Size is a number of bytes that flags (kong, through encoding.TextUnmarshaler) and YAML
// files read with Parse.
type Size int64

// units are the multipliers of the suffixes Parse accepts, by lower-case suffix.
var units = map[string]float64{
	"": 1, "b": 1,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
	"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}

// errSyntax says what a size looks like.
var errSyntax = errors.New("want a whole number of bytes or a size with a unit such as 500KB, 8MiB or 2GiB (units B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)")

// Parse reads a size: "1048576", "500MB", "2GiB", "1.5g", " 4 mib ". Errors quote s.
func Parse(s string) (Size, error) {
	n, err := parse(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size: %w", s, err)
	}
	return n, nil
}

func parse(s string) (Size, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	mult, ok := units[unit]
	if num == "" || !ok {
		return 0, errSyntax
	}
	if !strings.Contains(num, ".") {
		n, err := strconv.ParseInt(num, 10, 64)
		if errors.Is(err, strconv.ErrRange) {
			return 0, errors.New("too large")
		} else if err != nil {
			return 0, errSyntax
		}
		if mult == 1 {
			return Size(n), nil
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, errSyntax
	}
	if mult == 1 && f != math.Trunc(f) {
		return 0, errors.New("a number of bytes must be whole (or give a unit: 1.5MiB)")
	}
	v := math.Round(f * mult)
	if v >= math.MaxInt64 { // float64(MaxInt64) is 2^63: anything this large overflows
		return 0, errors.New("too large")
	}
	return Size(v), nil
}

// UnmarshalText parses text with Parse (flags, environment variables).
func (s *Size) UnmarshalText(text []byte) error {
	n, err := Parse(string(text))
	if err != nil {
		return err
	}
	*s = n
	return nil
}

// UnmarshalYAML reads a YAML scalar, a number or a string, with Parse; errors name the
// line.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a size such as 1048576 or 8MiB", n.Line)
	}
	v, err := Parse(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*s = v
	return nil
}
