package policyeval

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"unicode/utf8"

	"github.com/clipgate/clipgate/policy"
)

// Parse parses and checks a RAM policy document and compiles it for Evaluate.
//
// It is strict, as RAM is: element names, operators and "Allow"/"Deny" are
// case-sensitive; Version must be "1"; Statement must be a non-empty array; each statement
// needs Effect, exactly one of Action and NotAction, exactly one of Resource and
// NotResource, and may have a Condition. Action, Resource and condition values may be a
// string or an array of strings. Unknown or repeated fields, unknown operators, unknown
// condition keys, values of the wrong form (an IP address, an RFC 3339 time, true or
// false) and trailing data are errors. The text must be valid UTF-8 of at most
// MaxDocumentSize bytes; counts are bounded by MaxStatements, MaxValues, MaxConditions
// and MaxStringLen. Every error wraps ErrInvalidPolicy and says where the defect is.
func Parse(text []byte) (*Document, error) {
	return parseKind(text, Identity)
}

// parseKind parses and compiles a document of the given kind.
func parseKind(text []byte, kind Kind) (*Document, error) {
	if len(text) > MaxDocumentSize {
		return nil, invalidf("", "document is %d bytes, limit %d", len(text), MaxDocumentSize)
	}
	if !utf8.Valid(text) {
		return nil, invalidf("", "document is not valid UTF-8")
	}
	p := &parser{dec: json.NewDecoder(bytes.NewReader(text)), kind: kind}
	p.dec.UseNumber()
	doc, err := p.document()
	if err != nil {
		return nil, err
	}
	if _, err := p.dec.Token(); err != io.EOF {
		return nil, invalidf("", "unexpected data after the policy object")
	}
	if doc.prog, err = compile(doc); err != nil {
		return nil, err
	}
	return doc, nil
}

// ParseSession is Parse for an STS session policy, which must also be 1 to
// policy.MaxSessionPolicyLen characters long. Length errors wrap policy.ErrTooLong as well.
func ParseSession(text string) (*Document, error) {
	if text == "" {
		return nil, invalidf("", "session policy is empty")
	}
	// Count characters only when the bytes alone could exceed the limit.
	if len(text) > policy.MaxSessionPolicyLen {
		if n := utf8.RuneCountInString(text); n > policy.MaxSessionPolicyLen {
			return nil, fmt.Errorf("policy: %w: %w: session policy is %d characters, limit %d", ErrInvalidPolicy, policy.ErrTooLong, n, policy.MaxSessionPolicyLen)
		}
	}
	return Parse([]byte(text))
}

// OSS's limits on a bucket policy
// (https://help.aliyun.com/en/oss/user-guide/0030-00000001 and 0030-00000003).
const (
	MaxBucketPolicySize  = 16 << 10 // bytes of JSON
	MaxBucketPolicyField = 4095     // bytes in one value (an action, resource, principal or condition value)
)

// ParseBucketPolicy is Parse for an OSS bucket policy (Kind BucketPolicy): statements may
// name a Principal; the text is at most MaxBucketPolicySize bytes, no value is longer than
// MaxBucketPolicyField bytes, and no value has consecutive wildcards "**", which OSS
// refuses (https://help.aliyun.com/zh/oss/support/0030-00000007). Length errors wrap
// policy.ErrTooLong as well.
func ParseBucketPolicy(text []byte) (*Document, error) {
	if len(text) > MaxBucketPolicySize {
		return nil, fmt.Errorf("policy: %w: %w: bucket policy is %d bytes, limit %d", ErrInvalidPolicy, policy.ErrTooLong, len(text), MaxBucketPolicySize)
	}
	return parseKind(text, BucketPolicy)
}

// ParseTrustPolicy is Parse for a RAM role's trust policy (Kind TrustPolicy): every
// statement names a Principal by type and has no Resource.
func ParseTrustPolicy(text []byte) (*Document, error) {
	return parseKind(text, TrustPolicy)
}

// invalidf returns an error wrapping ErrInvalidPolicy, located at path.
func invalidf(path, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if path != "" {
		msg = path + ": " + msg
	}
	return fmt.Errorf("policy: %w: %s", ErrInvalidPolicy, msg)
}

// parser reads a policy with a token decoder, so that it can refuse duplicate and
// differently-cased field names, which encoding/json's struct decoding accepts silently.
type parser struct {
	dec  *json.Decoder
	kind Kind
}

// token returns the next token, turning a syntax error into a policy error.
func (p *parser) token(path string) (json.Token, error) {
	t, err := p.dec.Token()
	if err == io.EOF {
		return nil, invalidf(path, "unexpected end of document")
	}
	if err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, invalidf(path, "malformed JSON at byte %d: %v", se.Offset, err)
		}
		return nil, invalidf(path, "malformed JSON: %v", err)
	}
	return t, nil
}

// describe names a token's JSON type for error messages.
func describe(t json.Token) string {
	switch v := t.(type) {
	case json.Delim:
		switch v {
		case '{':
			return "an object"
		case '[':
			return "an array"
		}
		return fmt.Sprintf("%q", rune(v))
	case string:
		return fmt.Sprintf("the string %q", truncate(v))
	case json.Number:
		return "the number " + truncate(v.String())
	case bool:
		return fmt.Sprintf("%t", v)
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", t)
}

// truncate shortens s for an error message.
func truncate(s string) string {
	const n = 64
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "..."
}

// object reads an object's fields, calling field for each name; the object's opening
// brace has not been read yet. It refuses repeated names.
func (p *parser) object(path string, field func(name, path string) error) error {
	t, err := p.token(path)
	if err != nil {
		return err
	}
	if t != json.Delim('{') {
		return invalidf(path, "want an object, got %s", describe(t))
	}
	seen := map[string]bool{}
	for {
		t, err := p.token(path)
		if err != nil {
			return err
		}
		if t == json.Delim('}') {
			return nil
		}
		name, ok := t.(string)
		if !ok { // the decoder reports a syntax error first; kept so nothing can panic
			return invalidf(path, "want a field name, got %s", describe(t))
		}
		if seen[name] {
			return invalidf(path, "field %q appears twice", truncate(name))
		}
		seen[name] = true
		if err := field(name, joinPath(path, name)); err != nil {
			return err
		}
	}
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func (p *parser) str(path string) (string, error) {
	t, err := p.token(path)
	if err != nil {
		return "", err
	}
	s, ok := t.(string)
	if !ok {
		return "", invalidf(path, "want a string, got %s", describe(t))
	}
	return s, nil
}

// strings reads a string or an array of strings (allowBool: JSON true/false too, as
// "true"/"false"), at most MaxValues of them.
func (p *parser) strings(path string, allowBool bool) ([]string, error) {
	want, elem := "a string or an array of strings", "a string"
	if allowBool {
		want, elem = "a string, a boolean or an array of them", "a string or a boolean"
	}
	scalar := func(t json.Token) (string, bool) {
		switch v := t.(type) {
		case string:
			return v, true
		case bool:
			if allowBool {
				if v {
					return "true", true
				}
				return "false", true
			}
		}
		return "", false
	}
	t, err := p.token(path)
	if err != nil {
		return nil, err
	}
	if s, ok := scalar(t); ok {
		return []string{s}, nil
	}
	if t != json.Delim('[') {
		return nil, invalidf(path, "want %s, got %s", want, describe(t))
	}
	var out []string
	for {
		t, err := p.token(path)
		if err != nil {
			return nil, err
		}
		if t == json.Delim(']') {
			if len(out) == 0 {
				return nil, invalidf(path, "empty array")
			}
			return out, nil
		}
		s, ok := scalar(t)
		if !ok {
			return nil, invalidf(fmt.Sprintf("%s[%d]", path, len(out)), "want %s, got %s", elem, describe(t))
		}
		if len(out) == MaxValues {
			return nil, invalidf(path, "more than %d values", MaxValues)
		}
		out = append(out, s)
	}
}

func (p *parser) document() (*Document, error) {
	doc := &Document{Kind: p.kind}
	var haveVersion, haveStatement bool
	err := p.object("", func(name, path string) error {
		var err error
		switch name {
		case "Version":
			haveVersion = true
			doc.Version, err = p.str(path)
		case "Statement":
			haveStatement = true
			doc.Statements, err = p.statements(path)
		default:
			return invalidf("", "unknown field %q (a policy has Version and Statement; names are case-sensitive)", truncate(name))
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if !haveVersion {
		return nil, invalidf("", "missing Version (want \"1\")")
	}
	if !haveStatement {
		return nil, invalidf("", "missing Statement")
	}
	return doc, nil
}

func (p *parser) statements(path string) ([]Statement, error) {
	t, err := p.token(path)
	if err != nil {
		return nil, err
	}
	if t != json.Delim('[') {
		// RAM's grammar has "Statement": [ <statement>, ... ]; a lone object is refused.
		return nil, invalidf(path, "want an array of statements, got %s", describe(t))
	}
	var out []Statement
	for p.dec.More() {
		if len(out) == MaxStatements {
			return nil, invalidf(path, "more than %d statements", MaxStatements)
		}
		st, err := p.statement(fmt.Sprintf("%s[%d]", path, len(out)))
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	if _, err := p.token(path); err != nil { // the closing ']'
		return nil, err
	}
	return out, nil
}

func (p *parser) statement(path string) (Statement, error) {
	var st Statement
	var haveEffect bool
	err := p.object(path, func(name, fpath string) error {
		var err error
		switch name {
		case "Effect":
			haveEffect = true
			var s string
			s, err = p.str(fpath)
			st.Effect = Effect(s)
		case "Action":
			st.Actions, err = p.strings(fpath, false)
		case "NotAction":
			st.NotActions, err = p.strings(fpath, false)
		case "Resource":
			st.Resources, err = p.strings(fpath, false)
		case "NotResource":
			st.NotResources, err = p.strings(fpath, false)
		case "Condition":
			st.Conditions, err = p.conditions(fpath)
		case "Principal":
			switch p.kind {
			case BucketPolicy:
				var ids []string
				ids, err = p.principalList(fpath)
				st.Principals = []Principal{{IDs: ids}}
			case TrustPolicy:
				st.Principals, err = p.principalMap(fpath)
			default:
				return invalidf(fpath, "Principal belongs only in resource-based (bucket or trust) policies, not in a permission or session policy")
			}
		default:
			return invalidf(path, "unknown field %q (a statement has Effect, %sAction or NotAction, %sCondition; names are case-sensitive)", truncate(name), principalField[p.kind], resourceField[p.kind])
		}
		return err
	})
	if err != nil {
		return st, err
	}
	if !haveEffect {
		return st, invalidf(path, "missing Effect (want \"Allow\" or \"Deny\")")
	}
	if p.kind == TrustPolicy && st.Principals == nil {
		return st, invalidf(path, "missing Principal (a trust policy names who may assume the role)")
	}
	return st, nil
}

// Field lists for error messages, by kind.
var (
	principalField = [...]string{Identity: "", BucketPolicy: "Principal, ", TrustPolicy: "Principal, "}
	resourceField  = [...]string{Identity: "Resource or NotResource, ", BucketPolicy: "Resource or NotResource, ", TrustPolicy: ""}
)

// principalList reads a bucket policy's Principal: a string or an array of strings, which
// may be empty (meaning anyone, as OSS documents).
func (p *parser) principalList(path string) ([]string, error) {
	t, err := p.token(path)
	if err != nil {
		return nil, err
	}
	if s, ok := t.(string); ok {
		return []string{s}, nil
	}
	if t != json.Delim('[') {
		return nil, invalidf(path, "want a string or an array of strings, got %s", describe(t))
	}
	out := []string{}
	for {
		t, err := p.token(path)
		if err != nil {
			return nil, err
		}
		if t == json.Delim(']') {
			return out, nil
		}
		s, ok := t.(string)
		if !ok {
			return nil, invalidf(fmt.Sprintf("%s[%d]", path, len(out)), "want a string, got %s", describe(t))
		}
		if len(out) == MaxValues {
			return nil, invalidf(path, "more than %d values", MaxValues)
		}
		out = append(out, s)
	}
}

// principalTypes are the Principal types of a trust policy.
var principalTypes = []string{"RAM", "Service", "Federated"}

// principalMap reads a trust policy's Principal: an object from type to a string or an
// array of strings.
func (p *parser) principalMap(path string) ([]Principal, error) {
	var out []Principal
	err := p.object(path, func(name, fpath string) error {
		if !slices.Contains(principalTypes, name) {
			return invalidf(path, "unknown principal type %q (want RAM, Service or Federated; names are case-sensitive)", truncate(name))
		}
		ids, err := p.strings(fpath, false)
		if err != nil {
			return err
		}
		out = append(out, Principal{Type: name, IDs: ids})
		return nil
	})
	if err == nil && len(out) == 0 {
		return nil, invalidf(path, "no principals")
	}
	return out, err
}

func (p *parser) conditions(path string) ([]Condition, error) {
	var out []Condition
	err := p.object(path, func(op, opPath string) error {
		n := len(out)
		err := p.object(opPath, func(key, keyPath string) error {
			if len(out) == MaxConditions {
				return invalidf(path, "more than %d conditions", MaxConditions)
			}
			vals, err := p.strings(keyPath, true)
			if err != nil {
				return err
			}
			out = append(out, Condition{Operator: op, Key: key, Values: vals})
			return nil
		})
		if err == nil && len(out) == n {
			return invalidf(opPath, "no condition keys")
		}
		return err
	})
	return out, err
}
