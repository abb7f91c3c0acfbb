package protocol

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/clipgate/clipgate"
	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// The decoders use github.com/go-json-experiment/json, the module that mirrors Go 1.27's
// encoding/json/v2. Its defaults already refuse duplicate member names (in maps too, and
// compared after unescaping), invalid UTF-8 and anything but exactly one JSON value, and
// it matches member names case-sensitively. RejectUnknownMembers refuses unknown members. The
// unmarshalers refuse what the library allows and the protocol does not: null, which the
// library reads as the zero value (a top-level null is refused by decode); strings
// holding NUL (clipgate uses it as a separator when it derives IDs from them); and times
// other than the strict RFC 3339 of parseTime.
//
// The unmarshalers are per type, as one for every type would cost an allocation per
// value: every type of a message field needs one (TestDecodeRefusesNullEverywhere).
var (
	strict = jsonv2.JoinOptions(
		jsonv2.RejectUnknownMembers(true),
		jsonv2.WithUnmarshalers(jsonv2.JoinUnmarshalers(
			jsonv2.UnmarshalFromFunc(unmarshalString[string]),
			jsonv2.UnmarshalFromFunc(unmarshalString[Status]),
			jsonv2.UnmarshalFromFunc(unmarshalString[clipgate.Mode]),
			jsonv2.UnmarshalFromFunc(unmarshalTime),
			nonNull[bool](), nonNull[int](), nonNull[int64](), nonNull[Code](),
			nonNull[map[string]string](), nonNull[*Credentials](), nonNull[*OSSInfo](), nonNull[*ReplyError](),
		)),
	)
	// lenient skips unknown members: see decode.
	lenient = jsonv2.JoinOptions(strict, jsonv2.RejectUnknownMembers(false))
)

// maxDepth bounds the nesting of a message. Known members nest at most two deep, so only
// unknown ones can go deeper.
const maxDepth = 32

var (
	errNUL     = errors.New("NUL character in string")
	errNotTime = errors.New("not a time")
)

// nullErr refuses a null where a T is wanted.
func nullErr[T any]() error {
	return &jsonv2.SemanticError{JSONKind: 'n', GoType: reflect.TypeFor[T]()}
}

// nonNull refuses null for a T and leaves anything else to the library.
func nonNull[T any]() *jsonv2.Unmarshalers {
	return jsonv2.UnmarshalFromFunc(func(dec *jsontext.Decoder, _ *T) error {
		if dec.PeekKind() == 'n' {
			return nullErr[T]()
		}
		return errors.ErrUnsupported
	})
}

// unmarshalString reads a string (or a string type: Status, clipgate.Mode), refusing
// null and NUL.
func unmarshalString[S ~string](dec *jsontext.Decoder, p *S) error {
	switch dec.PeekKind() {
	case 'n':
		return nullErr[S]()
	case '"':
	default:
		return errors.ErrUnsupported // the library refuses it
	}
	tok, err := dec.ReadToken()
	if err != nil {
		return err
	}
	s := tok.String()
	if strings.IndexByte(s, 0) >= 0 {
		return errNUL
	}
	*p = S(s)
	return nil
}

// unmarshalTime reads a time in the strict RFC 3339 form of parseTime, refusing null.
func unmarshalTime(dec *jsontext.Decoder, p *time.Time) error {
	switch dec.PeekKind() {
	case 'n':
		return nullErr[time.Time]()
	case '"':
	default:
		return errors.ErrUnsupported // the library refuses it
	}
	tok, err := dec.ReadToken()
	if err != nil {
		return err
	}
	s := tok.String()
	t, ok := parseTime(s)
	if !ok {
		return &jsonv2.SemanticError{JSONKind: '"', JSONValue: jsontext.Value(strconv.Quote(s)), Err: errNotTime}
	}
	*p = t
	return nil
}

// decode strictly unmarshals b, at most limit bytes (checked before parsing), into a new
// T. It returns an unknown member apart, for the caller to report after the version: a
// message of a newer version may add members. Every error is an *Error with CodeInvalid.
func decode[T any](b []byte, limit int, what string) (m *T, unknown, err error) {
	if len(b) > limit {
		return nil, nil, invalidf("%s is %d bytes, at most %d allowed", what, len(b), limit)
	}
	if string(bytes.Trim(b, " \t\r\n")) == "null" { // the library reads it as the zero T
		return nil, nil, invalidf("message must be a JSON object, got null")
	}
	m = new(T)
	err = jsonv2.Unmarshal(b, m, strict)
	if err == nil {
		return m, nil, nil
	}
	root := reflect.TypeFor[T]()
	if se, ok := errors.AsType[*jsonv2.SemanticError](err); !ok || se.Err != jsonv2.ErrUnknownName {
		return nil, nil, translate(b, root, err)
	}
	// The library stops at the first unknown member. Every other defect, wherever it is,
	// comes first: decode again skipping unknown members, once their nesting is bounded.
	unknown = translate(b, root, err)
	if err := checkDepth(b, root); err != nil {
		return nil, nil, err
	}
	m = new(T)
	if err := jsonv2.Unmarshal(b, m, lenient); err != nil {
		return nil, nil, translate(b, root, err)
	}
	return m, unknown, nil
}

// checkDepth refuses b if it nests deeper than maxDepth. It stops quietly at a syntax
// error, which the decoder then reports.
func checkDepth(b []byte, root reflect.Type) error {
	dec := jsontext.NewDecoder(bytes.NewReader(b))
	for {
		if _, err := dec.ReadToken(); err != nil {
			return nil
		}
		if dec.StackDepth() > maxDepth {
			name, _, _ := locate(root, dec.StackPointer())
			return fieldErr(name, "nested too deeply (more than %d levels)", maxDepth)
		}
	}
}

// finish applies the checks common to every message once decoded, given its version v
// (0 when absent) and its first unknown member: a version other than ours comes first,
// then the unknown member, then a missing version.
func finish(b []byte, v int, unknown error) error {
	switch {
	case v != Version && (v != 0 || hasMember(b, "v")):
		return versionErr(v)
	case unknown != nil:
		return unknown
	case v == 0:
		return fieldErr("v", "is required")
	}
	return nil
}

// hasMember reports whether the decoded JSON object b has a member name. It tells a
// missing member from one holding its zero value, for the few whose zero value is valid.
func hasMember(b []byte, name string) bool {
	// b is valid: no need to track names for duplicates.
	dec := jsontext.NewDecoder(bytes.NewBuffer(b), jsontext.AllowDuplicateNames(true))
	if _, err := dec.ReadToken(); err != nil { // '{'
		return false
	}
	for dec.PeekKind() == '"' {
		tok, err := dec.ReadToken()
		if err != nil {
			return false
		}
		if tok.String() == name {
			return true
		}
		if err := dec.SkipValue(); err != nil {
			return false
		}
	}
	return false
}

// translate turns an error of the library into an *Error that names the field.
func translate(b []byte, root reflect.Type, err error) *Error {
	if se, ok := errors.AsType[*jsonv2.SemanticError](err); ok {
		return semanticErr(root, se)
	}
	if se, ok := errors.AsType[*jsontext.SyntacticError](err); ok {
		return syntaxErr(b, root, se)
	}
	return invalidf("malformed JSON: %v", err)
}

func semanticErr(root reflect.Type, se *jsonv2.SemanticError) *Error {
	name, t, _ := locate(root, se.JSONPointer)
	if se.GoType != nil {
		t = se.GoType
	}
	switch {
	case se.Err == jsonv2.ErrUnknownName:
		return fieldErr(name, "unknown field")
	case name == "":
		return invalidf("message must be a JSON object, got %s", kindName(se.JSONKind))
	case se.Err == errNUL:
		return fieldErr(name, "%v", se.Err)
	case se.Err == errNotTime:
		return fieldErr(name, "must be an RFC 3339 time such as 2006-01-02T15:04:05Z, got %s", se.JSONValue)
	case se.Err == strconv.ErrSyntax: // a number with a fraction or exponent
		return fieldErr(name, "must be an integer, got %s", se.JSONValue)
	case se.Err == strconv.ErrRange:
		return fieldErr(name, "%s is out of range for %v", se.JSONValue, t)
	case se.Err != nil:
		return fieldErr(name, "%v", se.Err)
	}
	return fieldErr(name, "want %s, got %s", typeName(t), kindName(se.JSONKind))
}

// syntaxPhrases words the library's syntax errors, found by a part of their text, as this
// package always has. An error not listed keeps the library's wording: a new wording in a
// later version of the library changes a message, never what is refused.
var syntaxPhrases = []struct{ lib, ours string }{
	{"after object name (expecting ':')", "want ':'"},
	{"after object value (expecting ',' or '}')", "want ',' or '}'"},
	{"after array element (expecting ',' or ']')", "want ',' or ']'"},
	{"in number", "invalid number"},
	{"escape sequence `\\u", `invalid \u escape`},
	{`escape sequence "\\u`, `invalid \u escape`},
}

// syntaxErr describes a syntax error. It reads b again with the library's tokenizer up to
// the error: where the tokenizer stands tells a missing member name from a value that is
// not JSON and from data after the message, and what it left unread tells a string cut
// short.
func syntaxErr(b []byte, root reflect.Type, se *jsontext.SyntacticError) *Error {
	name, t, key := locate(root, se.JSONPointer)
	if se.Err == jsontext.ErrDuplicateName {
		if key != "" {
			return fieldErr(name, "key %q appears more than once", key)
		}
		return fieldErr(name, "appears more than once")
	}
	dec := jsontext.NewDecoder(bytes.NewReader(b))
	tokens := 0
	for ; ; tokens++ {
		if _, err := dec.ReadToken(); err != nil {
			break
		}
	}
	kind, n := dec.StackIndex(dec.StackDepth())
	rest := bytes.TrimLeft(dec.UnreadBuffer(), ",: \t\r\n")
	msg := se.Err.Error()
	badStart := strings.HasSuffix(msg, "at start of value")
	switch {
	case tokens == 0 && len(rest) == 0:
		return invalidf("message must be a JSON object, got end of input")
	case tokens == 0:
		return invalidf("message must be a JSON object, got invalid JSON")
	case dec.StackDepth() == 0:
		msg = "trailing data after the JSON object"
	case se.Err == io.ErrUnexpectedEOF && len(rest) > 0 && rest[0] == '"':
		msg = "unterminated string"
	case se.Err == io.ErrUnexpectedEOF:
		msg = "unexpected end of input"
	case badStart && kind == '{' && n%2 == 0:
		msg = "want a member name"
	case badStart && kind == '{' && t != nil:
		return fieldErr(name, "want %s, got invalid JSON", typeName(t))
	}
	for _, p := range syntaxPhrases {
		if strings.Contains(msg, p.lib) {
			msg = p.ours
			break
		}
	}
	if name != "" {
		return fieldErr(name, "malformed JSON at offset %d: %s", se.ByteOffset, msg)
	}
	return invalidf("malformed JSON at offset %d: %s", se.ByteOffset, msg)
}

// locate follows the JSON pointer p through the message type root. It returns the
// field's name as errors give it ("credentials.accessKeyId") and its Go type; for a
// pointer into a map, the map's name and type and the key; for a pointer into an unknown
// member, that member's name and a nil type.
func locate(root reflect.Type, p jsontext.Pointer) (name string, t reflect.Type, key string) {
	t = root
	var names []string
	for tok := range p.Tokens() {
		if t == nil {
			break
		}
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		switch t.Kind() {
		case reflect.Map:
			return strings.Join(names, "."), t, tok
		case reflect.Struct:
			t = fieldType(t, tok)
		default:
			t = nil
		}
		names = append(names, tok)
	}
	return strings.Join(names, "."), t, ""
}

// fieldType returns the type of the field of struct t whose JSON name is name, or nil.
func fieldType(t reflect.Type, name string) reflect.Type {
	for i := range t.NumField() {
		f := t.Field(i)
		if tag, _, _ := strings.Cut(f.Tag.Get("json"), ","); tag == name {
			return f.Type
		}
	}
	return nil
}

// typeName says what JSON a Go type of the messages wants.
func typeName(t reflect.Type) string {
	if t == reflect.TypeFor[time.Time]() {
		return "a string"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int64:
		return "a number"
	}
	return "an object"
}

// kindName names a JSON kind.
func kindName(k jsontext.Kind) string {
	switch k {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	case '0':
		return "a number"
	}
	return "invalid JSON"
}
