package protocol

import (
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// reader is a small strict JSON reader for the flat messages of this package. Unlike
// encoding/json it matches field names exactly, refuses duplicates, and names the field
// in every error; and it reads the fast path (strings without escapes) without
// allocating: strings are slices of one copy of the input.
type reader struct {
	s       string
	pos     int
	unknown error // the first unknown field, reported after the version check
}

// maxDepth bounds the nesting of skipped (unknown) values.
const maxDepth = 32

// newReader checks the size limit (before anything else) and UTF-8 validity.
func newReader(b []byte, limit int, what string) (reader, error) {
	if len(b) > limit {
		return reader{}, invalidf("%s is %d bytes, at most %d allowed", what, len(b), limit)
	}
	if !utf8.Valid(b) {
		return reader{}, invalidf("%s is not valid UTF-8", what)
	}
	return reader{s: string(b)}, nil
}

func (r *reader) syntax(msg string) *Error {
	return invalidf("malformed JSON at offset %d: %s", r.pos, msg)
}

func (r *reader) ws() {
	for r.pos < len(r.s) {
		switch r.s[r.pos] {
		case ' ', '\t', '\n', '\r':
			r.pos++
		default:
			return
		}
	}
}

// got describes the value at r.pos, for error messages.
func (r *reader) got() string {
	if r.pos >= len(r.s) {
		return "end of input"
	}
	switch c := r.s[r.pos]; {
	case c == '"':
		return "a string"
	case c == '{':
		return "an object"
	case c == '[':
		return "an array"
	case c == 't' || c == 'f':
		return "a boolean"
	case c == 'n':
		return "null"
	case c == '-' || c >= '0' && c <= '9':
		return "a number"
	}
	return "invalid JSON"
}

// end checks that only whitespace follows the message.
func (r *reader) end() error {
	r.ws()
	if r.pos != len(r.s) {
		return r.syntax("trailing data after the JSON object")
	}
	return nil
}

// object is one JSON object being read member by member.
type object struct {
	r      *reader
	names  []string // the known member names; index i is bit 1<<i of seen
	prefix string   // "" or "parent." for error messages
	first  bool
	seen   uint32
}

// object consumes the '{' of an object whose members are names; field names the object
// in errors ("" for the message itself).
func (r *reader) object(field string, names []string) (object, error) {
	r.ws()
	if r.pos >= len(r.s) || r.s[r.pos] != '{' {
		if field == "" {
			return object{}, invalidf("message must be a JSON object, got %s", r.got())
		}
		return object{}, fieldErr(field, "want an object, got %s", r.got())
	}
	r.pos++
	prefix := ""
	if field != "" {
		prefix = field + "."
	}
	return object{r: r, names: names, prefix: prefix, first: true}, nil
}

// next reads the next known member's name up to its ':' and returns its index in
// o.names, or more false at the end of the object. Unknown members are skipped (the first
// is remembered in r.unknown); a repeated member is an error.
func (o *object) next() (i int, more bool, err error) {
	for {
		key, more, err := o.r.key(&o.first)
		if err != nil || !more {
			return 0, false, err
		}
		i := index(o.names, key)
		if i < 0 {
			if o.r.unknown == nil {
				o.r.unknown = fieldErr(o.prefix+key, "unknown field")
			}
			if err := o.r.skip(0); err != nil {
				return 0, false, err
			}
			continue
		}
		if o.seen&(1<<i) != 0 {
			return 0, false, fieldErr(o.prefix+key, "appears more than once")
		}
		o.seen |= 1 << i
		return i, true, nil
	}
}

// missing returns an error naming the first member of required (a bit set over o.names)
// that was not present.
func (o *object) missing(required uint32, why string) error {
	for i, name := range o.names {
		if required&(1<<i) != 0 && o.seen&(1<<i) == 0 {
			return fieldErr(o.prefix+name, "is required%s", why)
		}
	}
	return nil
}

func (o *object) has(i int) bool { return o.seen&(1<<i) != 0 }

func index(names []string, key string) int {
	for i, n := range names {
		if n == key {
			return i
		}
	}
	return -1
}

// key reads ",", or "}" (more false), then a member name and ':'.
func (r *reader) key(first *bool) (key string, more bool, err error) {
	r.ws()
	if r.pos < len(r.s) && r.s[r.pos] == '}' {
		r.pos++
		return "", false, nil
	}
	if !*first {
		if r.pos >= len(r.s) || r.s[r.pos] != ',' {
			return "", false, r.syntax("want ',' or '}'")
		}
		r.pos++
		r.ws()
	}
	*first = false
	if r.pos >= len(r.s) || r.s[r.pos] != '"' {
		return "", false, r.syntax("want a member name")
	}
	key, err = r.rawString()
	if err != nil {
		return "", false, err
	}
	r.ws()
	if r.pos >= len(r.s) || r.s[r.pos] != ':' {
		return "", false, r.syntax("want ':'")
	}
	r.pos++
	return key, true, nil
}

// str reads a string value.
func (r *reader) str(field string) (string, error) {
	r.ws()
	if r.pos >= len(r.s) || r.s[r.pos] != '"' {
		return "", fieldErr(field, "want a string, got %s", r.got())
	}
	return r.rawString()
}

// rawString reads the string at r.pos (a '"'); without escapes it is a slice of r.s.
func (r *reader) rawString() (string, error) {
	start := r.pos + 1
	for i := start; i < len(r.s); i++ {
		switch c := r.s[i]; {
		case c == '"':
			r.pos = i + 1
			return r.s[start:i], nil
		case c == '\\':
			return r.unescape(start)
		case c < 0x20:
			r.pos = i
			return "", r.syntax("control character in string")
		}
	}
	r.pos = len(r.s)
	return "", r.syntax("unterminated string")
}

func (r *reader) unescape(start int) (string, error) {
	buf := make([]byte, 0, 64)
	i := start
	fail := func(msg string) (string, error) {
		r.pos = i
		return "", r.syntax(msg)
	}
	for i < len(r.s) {
		c := r.s[i]
		switch {
		case c == '"':
			r.pos = i + 1
			return string(buf), nil
		case c < 0x20:
			return fail("control character in string")
		case c != '\\':
			buf = append(buf, c)
			i++
			continue
		}
		if i+1 >= len(r.s) {
			break
		}
		switch e := r.s[i+1]; e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r1, ok := hex4(r.s, i+2)
			if !ok {
				return fail(`invalid \u escape`)
			}
			if r1 == 0 {
				return fail("NUL character in string")
			}
			if utf16.IsSurrogate(r1) {
				r2, ok := hex4(r.s, i+8)
				if r1 >= 0xdc00 || !ok || r.s[i+6] != '\\' || r.s[i+7] != 'u' || r2 < 0xdc00 || r2 > 0xdfff {
					return fail("unpaired UTF-16 surrogate in string")
				}
				r1 = utf16.DecodeRune(r1, r2)
				i += 6
			}
			buf = utf8.AppendRune(buf, r1)
			i += 6
			continue
		default:
			return fail("invalid escape in string")
		}
		i += 2
	}
	return fail("unterminated string")
}

// hex4 decodes the four hex digits at s[i:i+4].
func hex4(s string, i int) (rune, bool) {
	if i < 0 || i+4 > len(s) {
		return 0, false
	}
	var v rune
	for _, c := range []byte(s[i : i+4]) {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		v = v<<4 | rune(c)
	}
	return v, true
}

// number scans a JSON number and reports whether it is an integer (no fraction or
// exponent).
func (r *reader) number() (num string, integer bool, err error) {
	start := r.pos
	s := r.s
	i := start
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		r.pos = i
		return "", false, r.syntax("invalid number")
	}
	integer = true
	if i < len(s) && s[i] == '.' {
		integer = false
		i++
		if !(i < len(s) && s[i] >= '0' && s[i] <= '9') {
			r.pos = i
			return "", false, r.syntax("invalid number")
		}
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		integer = false
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if !(i < len(s) && s[i] >= '0' && s[i] <= '9') {
			r.pos = i
			return "", false, r.syntax("invalid number")
		}
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	}
	r.pos = i
	return s[start:i], integer, nil
}

// integer reads an integer value in [min, max].
func (r *reader) integer(field string, min, max int64) (int64, error) {
	r.ws()
	if r.pos >= len(r.s) || (r.s[r.pos] != '-' && (r.s[r.pos] < '0' || r.s[r.pos] > '9')) {
		return 0, fieldErr(field, "want a number, got %s", r.got())
	}
	num, integer, err := r.number()
	if err != nil {
		return 0, err
	}
	if !integer {
		return 0, fieldErr(field, "must be an integer, got %s", num)
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v < min || v > max {
		return 0, fieldErr(field, "%s is out of range [%d, %d]", num, min, max)
	}
	return v, nil
}

// boolean reads true or false.
func (r *reader) boolean(field string) (bool, error) {
	r.ws()
	switch {
	case r.lit("true"):
		return true, nil
	case r.lit("false"):
		return false, nil
	}
	return false, fieldErr(field, "want a boolean, got %s", r.got())
}

// lit consumes the literal word if it is next.
func (r *reader) lit(word string) bool {
	if len(r.s)-r.pos >= len(word) && r.s[r.pos:r.pos+len(word)] == word {
		r.pos += len(word)
		return true
	}
	return false
}

// time reads an RFC 3339 time string.
func (r *reader) time(field string) (time.Time, error) {
	s, err := r.str(field)
	if err != nil {
		return time.Time{}, err
	}
	t, ok := parseTime(s)
	if !ok {
		return time.Time{}, fieldErr(field, "must be an RFC 3339 time such as 2006-01-02T15:04:05Z, got %q", s)
	}
	return t, nil
}

// stringMap reads an object of string values with at most maxEntries members; an empty
// object yields nil.
func (r *reader) stringMap(field string, maxEntries int) (map[string]string, error) {
	o, err := r.object(field, nil)
	if err != nil {
		return nil, err
	}
	var m map[string]string
	for {
		k, more, err := r.key(&o.first)
		if err != nil {
			return nil, err
		}
		if !more {
			return m, nil
		}
		if _, dup := m[k]; dup {
			return nil, fieldErr(field, "key %q appears more than once", k)
		}
		if len(m) == maxEntries {
			return nil, fieldErr(field, "more than %d entries", maxEntries)
		}
		v, err := r.str(field)
		if err != nil {
			return nil, err
		}
		if m == nil {
			m = make(map[string]string)
		}
		m[k] = v
	}
}

// skip skips any JSON value (of an unknown member).
func (r *reader) skip(depth int) error {
	r.ws()
	if r.pos >= len(r.s) {
		return r.syntax("unexpected end of input")
	}
	switch c := r.s[r.pos]; {
	case c == '"':
		_, err := r.rawString()
		return err
	case c == '-' || c >= '0' && c <= '9':
		_, _, err := r.number()
		return err
	case r.lit("true"), r.lit("false"), r.lit("null"):
		return nil
	case c == '{' || c == '[':
		if depth >= maxDepth {
			return r.syntax("nested too deeply")
		}
		r.pos++
		if c == '{' {
			for first := true; ; {
				_, more, err := r.key(&first)
				if err != nil || !more {
					return err
				}
				if err := r.skip(depth + 1); err != nil {
					return err
				}
			}
		}
		r.ws()
		if r.pos < len(r.s) && r.s[r.pos] == ']' {
			r.pos++
			return nil
		}
		for {
			if err := r.skip(depth + 1); err != nil {
				return err
			}
			r.ws()
			if r.pos < len(r.s) && r.s[r.pos] == ',' {
				r.pos++
				continue
			}
			if r.pos < len(r.s) && r.s[r.pos] == ']' {
				r.pos++
				return nil
			}
			return r.syntax("want ',' or ']'")
		}
	}
	return r.syntax("invalid value")
}
