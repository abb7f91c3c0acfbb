package policyeval

import (
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/clipgate/clipgate/policy"
)

// MarshalJSON encodes the document as compact RAM policy JSON, every list as an array and
// the conditions grouped by operator in order of first appearance, so that the parse
// function of its Kind (Parse, ParseBucketPolicy, ParseTrustPolicy) gives the document
// back. It refuses a document that function would refuse.
func (d *Document) MarshalJSON() ([]byte, error) {
	if _, err := compile(d); err != nil {
		return nil, err
	}
	b := make([]byte, 0, 256)
	b = append(b, `{"Version":`...)
	b = appendString(b, d.Version)
	b = append(b, `,"Statement":[`...)
	for i := range d.Statements {
		if i > 0 {
			b = append(b, ',')
		}
		st := &d.Statements[i]
		b = append(b, `{"Effect":`...)
		b = appendString(b, string(st.Effect))
		b = appendPrincipals(b, d.Kind, st.Principals)
		b = appendList(b, "Action", st.Actions)
		b = appendList(b, "NotAction", st.NotActions)
		b = appendList(b, "Resource", st.Resources)
		b = appendList(b, "NotResource", st.NotResources)
		if len(st.Conditions) > 0 {
			b = appendConditions(b, st.Conditions)
		}
		b = append(b, '}')
	}
	b = append(b, "]}"...)
	if d.Kind == BucketPolicy && len(b) > MaxBucketPolicySize {
		return nil, fmt.Errorf("policy: %w: %w: bucket policy is %d bytes, limit %d", ErrInvalidPolicy, policy.ErrTooLong, len(b), MaxBucketPolicySize)
	}
	return b, nil
}

// appendPrincipals appends a statement's Principal: a list in a bucket policy, an object
// by type in a trust policy.
func appendPrincipals(b []byte, kind Kind, ps []Principal) []byte {
	if len(ps) == 0 {
		return b
	}
	if kind == BucketPolicy {
		b = append(b, `,"Principal":[`...)
		for i, id := range ps[0].IDs {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, id)
		}
		return append(b, ']')
	}
	b = append(b, `,"Principal":{`...)
	for i, p := range ps {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, p.Type)
		b = append(b, ':', '[')
		for j, id := range p.IDs {
			if j > 0 {
				b = append(b, ',')
			}
			b = appendString(b, id)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

func appendList(b []byte, name string, list []string) []byte {
	if len(list) == 0 {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, `":[`...)
	for i, s := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

func appendConditions(b []byte, conds []Condition) []byte {
	b = append(b, `,"Condition":{`...)
	done := make([]bool, len(conds))
	firstOp := true
	for i := range conds {
		if done[i] {
			continue
		}
		if !firstOp {
			b = append(b, ',')
		}
		firstOp = false
		op := conds[i].Operator
		b = appendString(b, op)
		b = append(b, ":{"...)
		for j := i; j < len(conds); j++ {
			if done[j] || conds[j].Operator != op {
				continue
			}
			done[j] = true
			if j > i {
				b = append(b, ',')
			}
			b = appendString(b, conds[j].Key)
			b = append(b, ':', '[')
			for k, v := range conds[j].Values {
				if k > 0 {
					b = append(b, ',')
				}
				b = appendString(b, v)
			}
			b = append(b, ']')
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

// appendString appends s as a JSON string. Only '"', '\\' and control characters are
// escaped, so the policy stays as short as possible; invalid UTF-8 becomes U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20 || c == 0x7f:
				b = fmt.Appendf(b, `\u%04x`, c)
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, `\ufffd`...)
		} else if r == '\u2028' || r == '\u2029' {
			b = append(b, `\u`...)
			b = strconv.AppendInt(b, int64(r), 16)
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return append(b, '"')
}
